"""Every letter between nodes, encoded and decoded here and nowhere else.

Nodes talk over Redis publish/subscribe, on four kinds of channel: a *user* channel per
user, which every node holding one of the user's sessions listens to; a *node* channel per
node incarnation (the node's id and a random suffix, new at each start: b"3.a1b2c3d4"), which
only that node listens to; the *control* channel, which every node listens to; and the
*agreement* channel, where nodes compare the settings they must share
(chatd/cluster/agreement.py). What one
node publishes there is a *letter*: a one-character tag, its fields after single blanks, and
for some letters a newline and a *frame*, a JSON chat frame already encoded for the client
(ending with its own newline) that the receiver passes on as it is.

    user channel
    U <mid> <report-to> <token>\\n<frame>  Copy: one recipient's copy of message <mid>; the
                                          receiver reports <token> to node <report-to> once
                                          the copy is safe (else that node stores it)
    N\\n<frame>                            Live: live only, never reported or stored (typing,
                                          receipts, notices)
    O\\n                                   Stored: frames were stored offline for the user:
                                          look again
    S <origin>\\n<frame>                   DeviceCopy: what the user sent from a device of
                                          node <origin>, for the devices on other nodes
    K <origin> <device>\\n                 TakenOver: node <origin> took the user's device
                                          (its name may hold blanks: it runs to the newline)
    D\\n                                   Spread: the user's devices are on several nodes now

    node channel
    G <mid> <report-to> <token> <uid,...>\\n<frame>
                                          GroupCopy: copies for several users held there
    A <token> [<token> ...]               Reports: these copies are safe
    R <query-id> <json>                   QueryReport: one node's answer to a Query

    control channel
    C <groupid>                           GroupChanged: a group's members changed
    B <blocker> <blocked> <0|1>           BlockChanged: a user blocked (1) or unblocked (0)
    X <origin> <uid> <kind>               EndSession: the operator (kicked, banned), a
                                          password change (password_changed) or a deletion
                                          (account_deleted) ends the user's sessions;
                                          <origin> ended its own
    W <origin> <text>                     Broadcast: the operator's notice for every session
                                          (the text runs to the end: blanks, newlines)
    Q <origin> <query-id>                 Query: report your sessions on <origin>'s channel

    agreement channel
    H <origin> <node-id> <json>           Hello: a node joining, with its settings; every
                                          node of the cluster answers with a Present
    P <origin> <node-id> <json>           Present: a node of the cluster, with its settings
                                          (every few seconds, and in answer to a Hello)

Why one place, and typed: letters used to be built with `b"U %d %s %d\\n" % ...` in one module
and taken apart with `fields[0] == b"U"` in another, so the two could drift; K and N meant one
thing on a user channel and another on the control channel; and a malformed letter raised
inside the Redis connection's read loop, which drops the connection. Here each tag means one
letter on one channel (a letter read on another channel is recognised and dropped), encoders
sit next to their decoders, and a decoder checks every field and returns either a typed letter
or None, with one warning logged, and never raises. Receivers match on the class:

    match decode_user(payload):
        case Copy(mid, report_to, token, frame): ...
        case Live(frame): ...
        case None: pass  # dropped; the warning is logged

Letters are NamedTuples, so they compare as tuples: Stored() == Spread(), and TakenOver and
Broadcast with the same fields are equal. Tell letters apart by class, never by `==`.

U, G, A, S and N are on the path of every message that crosses nodes: their encoders are also
plain functions (`encode_copy`, ...), which the classes' `encode` call, so the router sends
them without building a tuple; every letter is one bytes %-format, and its decoding a split or
two and a digit check per number.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

import ujson
from twisted.logger import Logger

log = Logger()

# Why a user's sessions are ended (EndSession.kind): by the operator, or by the user's own
# SET_PASSWORD or DELETE_ACCOUNT on another session (which the origin node spares).
END_KINDS = ("kicked", "banned", "password_changed", "account_deleted")

LOGGED_BYTES = 80  # how much of a dropped letter the warning shows

# A NamedTuple made without its generated Python-level __new__, which does just this: 0.1 µs
# less per letter, a sixth of a Copy's decoding.
_new = tuple.__new__


# user channel


class Copy(NamedTuple):
    """U: one recipient's copy of message `mid`. The receiving node reports `token` to node
    `report_to` once the copy is safe (written, acknowledged or stored): only then may the
    sending node forget it; without a report in time it stores the copy itself."""

    mid: int
    report_to: bytes
    token: int
    frame: bytes

    def encode(self) -> bytes:
        return encode_copy(*self)


def encode_copy(mid: int, report_to: bytes, token: int, frame: bytes) -> bytes:
    """`Copy(...).encode()` without the tuple: one per message to a user of another node."""
    return b"U %d %s %d\n%s" % (mid, report_to, token, frame)


class Live(NamedTuple):
    """N: a frame for the user's sessions that nobody waits for and nothing stores (typing,
    receipts, notices): dropped where the user has no session."""

    frame: bytes

    def encode(self) -> bytes:
        return encode_live(self.frame)


def encode_live(frame: bytes) -> bytes:
    """`Live(frame).encode()` without the tuple."""
    return b"N\n%s" % frame


class Stored(NamedTuple):
    """O: frames were stored offline for the user. A session logging in meanwhile may have
    read the offline store before they were there, so it looks again."""

    def encode(self) -> bytes:
        return b"O\n"


class DeviceCopy(NamedTuple):
    """S: a live copy of what the user sent from a device on node `origin`, for the user's
    devices on the other nodes (`origin`'s own devices had theirs already)."""

    origin: bytes
    frame: bytes

    def encode(self) -> bytes:
        return encode_device_copy(self.origin, self.frame)


def encode_device_copy(origin: bytes, frame: bytes) -> bytes:
    """`DeviceCopy(...).encode()` without the tuple: one per message of a user whose devices
    are on several nodes."""
    return b"S %s\n%s" % (origin, frame)


class TakenOver(NamedTuple):
    """K: a login on node `origin` took the user's `device`; the session holding it elsewhere
    ends. A device name may hold blanks (it runs to the newline)."""

    origin: bytes
    device: str

    def encode(self) -> bytes:
        return b"K %s %s\n" % (self.origin, self.device.encode())


class Spread(NamedTuple):
    """D: the user's devices are on several nodes now, so what the user sends is copied to
    the other nodes (DeviceCopy)."""

    def encode(self) -> bytes:
        return b"D\n"


# node channel


class GroupCopy(NamedTuple):
    """G: copies of message `mid` for several users held by the receiving node (one letter
    per node, not per member); reported as one, like a Copy."""

    mid: int
    report_to: bytes
    token: int
    user_ids: list[int]
    frame: bytes

    def encode(self) -> bytes:
        return encode_group_copy(*self)


def encode_group_copy(mid: int, report_to: bytes, token: int, user_ids: Sequence[int],
                      frame: bytes) -> bytes:
    """`GroupCopy(...).encode()` without the tuple: one per node holding members of a group
    a message goes to. The ids are in the same format as the rest (twice as fast as joining
    them one by one)."""
    return (b"G %d %s %d " + (b",%d" * len(user_ids))[1:] + b"\n%s") % (
        mid, report_to, token, *user_ids, frame)


class Reports(NamedTuple):
    """A: the copies sent with these tokens are safe; a node gathers the reports of a reactor
    turn for each node into one letter."""

    tokens: list[int]

    def encode(self) -> bytes:
        return encode_reports(self.tokens)


def encode_reports(tokens: Sequence[int]) -> bytes:
    """`Reports(tokens).encode()` without the tuple."""
    return (b"A" + b" %d" * len(tokens)) % tuple(tokens)


class QueryReport(NamedTuple):
    """R: one node's answer to the operator's Query `query_id` (its sessions), on the asking
    node's channel."""

    query_id: int
    report: dict[str, Any]

    def encode(self) -> bytes:
        return b"R %d %s" % (self.query_id, ujson.dumps(self.report).encode())


# control channel


class GroupChanged(NamedTuple):
    """C: the members of group `group_id` changed: every node forgets what it cached."""

    group_id: int

    def encode(self) -> bytes:
        return b"C %d" % self.group_id


class BlockChanged(NamedTuple):
    """B: `blocker` blocked (`block`) or unblocked `blocked`: every node updates its cache."""

    blocker: int
    blocked: int
    block: bool

    def encode(self) -> bytes:
        return b"B %d %d %d" % (self.blocker, self.blocked, self.block)


class EndSession(NamedTuple):
    """X: node `origin` ends the sessions of `user_id`, telling them why (`kind`, one of
    END_KINDS); `origin` ended its own already (all but the one that changed the password)."""

    origin: bytes
    user_id: int
    kind: str

    def encode(self) -> bytes:
        return b"X %s %d %s" % (self.origin, self.user_id, self.kind.encode())


class Broadcast(NamedTuple):
    """W: the operator's notice for every session of every node but `origin`, which told its
    own. Text that has no UTF-8 form (a lone surrogate) goes as "?", as in a chat frame."""

    origin: bytes
    text: str

    def encode(self) -> bytes:
        return b"W %s %s" % (self.origin, self.text.encode("utf-8", "replace"))


class Query(NamedTuple):
    """Q: every node (`origin` too) reports its sessions to `origin`'s channel (QueryReport
    `query_id`)."""

    origin: bytes
    query_id: int

    def encode(self) -> bytes:
        return b"Q %s %d" % (self.origin, self.query_id)


# agreement channel

Setting: TypeAlias = int | str  # the value of one setting the nodes must share


class Hello(NamedTuple):
    """H: node `origin` (number `node_id`) is joining the cluster with these settings; every
    node of the cluster answers with its Present, so that the newcomer can compare."""

    origin: bytes
    node_id: int
    settings: dict[str, Setting]

    def encode(self) -> bytes:
        return _encode_settings(b"H", self.origin, self.node_id, self.settings)


class Present(NamedTuple):
    """P: node `origin` (number `node_id`) is in the cluster with these settings: every few
    seconds, and in answer to a Hello."""

    origin: bytes
    node_id: int
    settings: dict[str, Setting]

    def encode(self) -> bytes:
        return _encode_settings(b"P", self.origin, self.node_id, self.settings)


def _encode_settings(tag: bytes, origin: bytes, node_id: int,
                     settings: dict[str, Setting]) -> bytes:
    return b"%s %s %d %s" % (tag, origin, node_id,
                             ujson.dumps(settings, sort_keys=True).encode())


UserLetter: TypeAlias = Copy | Live | Stored | DeviceCopy | TakenOver | Spread
NodeLetter: TypeAlias = GroupCopy | Reports | QueryReport
ControlLetter: TypeAlias = GroupChanged | BlockChanged | EndSession | Broadcast | Query
AgreementLetter: TypeAlias = Hello | Present


# decoding: one function per tag, which checks the whole letter and returns None when it is
# not one. A number is ASCII digits only: int() alone would also take "-1", " 1" and "1_0".


def _ints(fields: list[bytes]) -> list[int] | None:
    """The numbers of a list (None when one is not a number, or the list is empty)."""
    if all(fields) and b"".join(fields).isdigit():
        return [int(field) for field in fields]
    return None


def _copy(payload: bytes) -> Copy | None:
    head, _, frame = payload.partition(b"\n")
    fields = head.split(b" ")
    if len(fields) == 4 and frame[-1:] == b"\n":
        tag, mid, report_to, token = fields
        if tag == b"U" and mid.isdigit() and token.isdigit() and report_to:
            return _new(Copy, (int(mid), report_to, int(token), frame))
    return None


def _live(payload: bytes) -> Live | None:
    frame = payload[2:]
    if payload[:2] == b"N\n" and frame[-1:] == b"\n":
        return _new(Live, (frame,))
    return None


def _stored(payload: bytes) -> Stored | None:
    return Stored() if payload == b"O\n" else None


def _device_copy(payload: bytes) -> DeviceCopy | None:
    head, _, frame = payload.partition(b"\n")
    fields = head.split(b" ")
    if len(fields) == 2 and fields[0] == b"S" and fields[1] and frame[-1:] == b"\n":
        return _new(DeviceCopy, (fields[1], frame))
    return None


def _taken_over(payload: bytes) -> TakenOver | None:
    head, newline, rest = payload.partition(b"\n")
    fields = head.split(b" ", 2)
    if newline and not rest and len(fields) == 3 and fields[0] == b"K" and all(fields):
        try:
            return TakenOver(fields[1], fields[2].decode())
        except UnicodeDecodeError:
            pass
    return None


def _spread(payload: bytes) -> Spread | None:
    return Spread() if payload == b"D\n" else None


def _group_copy(payload: bytes) -> GroupCopy | None:
    head, _, frame = payload.partition(b"\n")
    fields = head.split(b" ")
    if len(fields) == 5 and frame[-1:] == b"\n":
        tag, mid, report_to, token, ids = fields
        user_ids = _ints(ids.split(b","))
        if tag == b"G" and mid.isdigit() and token.isdigit() and report_to and user_ids:
            return _new(GroupCopy, (int(mid), report_to, int(token), user_ids, frame))
    return None


def _reports(payload: bytes) -> Reports | None:
    fields = payload.split(b" ")
    tokens = _ints(fields[1:])
    if fields[0] == b"A" and tokens:
        return _new(Reports, (tokens,))
    return None


def _query_report(payload: bytes) -> QueryReport | None:
    fields = payload.split(b" ", 2)
    if len(fields) == 3 and fields[0] == b"R" and fields[1].isdigit():
        try:
            report = ujson.loads(fields[2])
        except ValueError:  # ujson's JSONDecodeError, bad UTF-8 and too deep nesting too
            return None
        if type(report) is dict:
            return QueryReport(int(fields[1]), report)
    return None


def _group_changed(payload: bytes) -> GroupChanged | None:
    fields = payload.split(b" ")
    if len(fields) == 2 and fields[0] == b"C" and fields[1].isdigit():
        return GroupChanged(int(fields[1]))
    return None


def _block_changed(payload: bytes) -> BlockChanged | None:
    fields = payload.split(b" ")
    if (len(fields) == 4 and fields[0] == b"B" and fields[1].isdigit()
            and fields[2].isdigit() and fields[3] in (b"0", b"1")):
        return BlockChanged(int(fields[1]), int(fields[2]), fields[3] == b"1")
    return None


_END_KINDS = {kind.encode(): kind for kind in END_KINDS}


def _end_session(payload: bytes) -> EndSession | None:
    fields = payload.split(b" ")
    if (len(fields) == 4 and fields[0] == b"X" and fields[1] and fields[2].isdigit()
            and fields[3] in _END_KINDS):
        return EndSession(fields[1], int(fields[2]), _END_KINDS[fields[3]])
    return None


def _broadcast(payload: bytes) -> Broadcast | None:
    fields = payload.split(b" ", 2)
    if len(fields) == 3 and fields[0] == b"W" and fields[1]:
        try:
            return Broadcast(fields[1], fields[2].decode())
        except UnicodeDecodeError:
            pass
    return None


def _query(payload: bytes) -> Query | None:
    fields = payload.split(b" ")
    if len(fields) == 3 and fields[0] == b"Q" and fields[1] and fields[2].isdigit():
        return Query(fields[1], int(fields[2]))
    return None


_SETTINGS_LETTERS: dict[bytes, type[Hello] | type[Present]] = {b"H": Hello, b"P": Present}


def _settings_letter(payload: bytes) -> Hello | Present | None:
    fields = payload.split(b" ", 3)
    if (len(fields) != 4 or fields[0] not in _SETTINGS_LETTERS or not fields[1]
            or not fields[2].isdigit()):
        return None
    try:
        settings = ujson.loads(fields[3])
    except ValueError:
        return None
    if type(settings) is not dict or not all(type(v) in (int, str) for v in settings.values()):
        return None
    return _SETTINGS_LETTERS[fields[0]](fields[1], int(fields[2]), settings)


# The letters of each channel by tag. A tag is in one table only: a letter read on another
# channel than its own is dropped, not taken for another letter.
_USER: dict[bytes, Callable[[bytes], UserLetter | None]] = {
    b"U": _copy, b"N": _live, b"O": _stored, b"S": _device_copy, b"K": _taken_over,
    b"D": _spread}
_NODE: dict[bytes, Callable[[bytes], NodeLetter | None]] = {
    b"G": _group_copy, b"A": _reports, b"R": _query_report}
_CONTROL: dict[bytes, Callable[[bytes], ControlLetter | None]] = {
    b"C": _group_changed, b"B": _block_changed, b"X": _end_session, b"W": _broadcast,
    b"Q": _query}
_AGREEMENT: dict[bytes, Callable[[bytes], AgreementLetter | None]] = {
    b"H": _settings_letter, b"P": _settings_letter}
_CHANNELS: dict[str, dict[bytes, Any]] = {"user": _USER, "node": _NODE, "control": _CONTROL,
                                          "agreement": _AGREEMENT}


def _dropped(channel: str, payload: bytes) -> None:
    """One warning for a letter that is not one of `channel`'s: where it belongs, if
    anywhere, and how it starts."""
    tag = payload[:1]
    if tag in _CHANNELS[channel]:
        why = f"a malformed {tag.decode()} letter"
    else:
        why = next((f"a letter of the {other} channel" for other, tags in _CHANNELS.items()
                    if tag in tags), "an unknown letter")
    log.warn("{channel} channel: dropped {why} of {size} bytes: {start!r}", channel=channel,
             why=why, size=len(payload), start=payload[:LOGGED_BYTES])


def _decode(channel: str, payload: bytes) -> Any:
    parse = _CHANNELS[channel].get(payload[:1])
    letter = None if parse is None else parse(payload)
    if letter is None:
        _dropped(channel, payload)
    return letter


def decode_user(payload: bytes) -> UserLetter | None:
    """The letter read on a user's channel; None (and a warning) when it is none of a user
    channel's letters. Never raises."""
    return _decode("user", payload)


def decode_node(payload: bytes) -> NodeLetter | None:
    """The letter read on this node's channel; None (and a warning) when it is none of a node
    channel's letters. Never raises."""
    return _decode("node", payload)


def decode_control(payload: bytes) -> ControlLetter | None:
    """The letter read on the control channel; None (and a warning) when it is none of the
    control channel's letters. Never raises."""
    return _decode("control", payload)


def decode_agreement(payload: bytes) -> AgreementLetter | None:
    """The letter read on the agreement channel; None (and a warning) when it is none of its
    letters. Never raises."""
    return _decode("agreement", payload)
