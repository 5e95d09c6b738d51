"""Ending a user's sessions on this node with the reason told in each session's dialect: the
operator's kick and ban, and a password change (which spares the session that made it)."""

from chatd.delivery.router import Router
from chatd.delivery.session import Session
from chatd.messages import ChatError, Errno, MsgId, error_frame
from chatd.metrics import Stats

# The original dialect has no NOTICE: it is told with an ERROR_MSG of this errno.
KINDS = {"kicked": Errno.KICKED, "banned": Errno.BANNED,
         "password_changed": Errno.PASSWORD_CHANGED, "account_deleted": Errno.ACCOUNT_DELETED}


def end_sessions(router: Router, stats: Stats, user_id: int, kind: str,
                 spare: Session | None = None) -> int:
    """Tell the user's sessions here (each device but `spare`) why, then end them: each
    closes once its device is released, so its client never sees it listed again; how many
    were ended."""
    ended = 0
    for inbox in router.user_inboxes(user_id):
        session = inbox.session
        if session is spare:
            continue
        if session.proto == 2:
            session.send({"msgid": MsgId.NOTICE, "kind": kind})
        else:
            send_error(session, stats, ChatError(KINDS.get(kind, Errno.KICKED)))
        session.end()
        ended += 1
    return ended


def send_error(session: Session, stats: Stats, err: ChatError) -> None:
    """An ERROR_MSG no request asked for, counted like any other."""
    stats.error(err.errno)
    session.send(error_frame(err))
