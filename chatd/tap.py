"""`twistd chatd`: command-line options and the service tree of one node."""

import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from chatd.admin import admin_site
from chatd.cluster import open_bus
from chatd.cluster.agreement import Agreement
from chatd.cluster.redis import parse_redis_url
from chatd.connections import (
    DEFAULT_MAX_CONNS_PER_ADDRESS,
    RESERVED_FDS,
    Connections,
    default_max_connections,
    raise_file_limit,
)
from chatd.delivery.devices import DEFAULT_MAX_DEVICES
from chatd.delivery.history import DEFAULT_DAYS, HistoryWriter
from chatd.delivery.inbound import Inbound
from chatd.delivery.offline import DEFAULT_OFFLINE_BUFFER, DEFAULT_OFFLINE_QUOTA, Offline
from chatd.delivery.router import DEFAULT_ACK_TIMEOUT, Router
from chatd.delivery.session import Session
from chatd.gcpauses import Pauses, freeze
from chatd.handlers.accountdata import AccountData
from chatd.handlers.accounts import Accounts
from chatd.handlers.actions import (
    DEFAULT_EDIT_WINDOW,
    DEFAULT_MAX_REACTIONS,
    DEFAULT_RECALL_WINDOW,
    ActionLimits,
    Actions,
    edited_line,
    recalled_line,
)
from chatd.handlers.attachments import Attachments, original_line
from chatd.handlers.befriending import DEFAULT_MAX_PENDING, FriendRequests
from chatd.handlers.blocks import BlockFollower, Blocks
from chatd.handlers.chat import Chat
from chatd.handlers.composer import Composer
from chatd.handlers.context import Context
from chatd.handlers.conversations import Conversations
from chatd.handlers.friendrequests import Requests
from chatd.handlers.groupadmin import GroupAdmin
from chatd.handlers.media import (
    DEFAULT_MAX_UPLOAD,
    DEFAULT_QUOTA,
    DEFAULT_SLOT_LIFETIME,
    DEFAULT_UPLOADS_PER_USER,
    DEFAULT_URL_LIFETIME,
    Media,
    MediaLimits,
)
from chatd.handlers.members import GroupMembers
from chatd.handlers.mentions import Mentions
from chatd.handlers.naming import Naming
from chatd.handlers.notifications import DEFAULT_MAX_SUBSCRIPTIONS, Notifications, SubscriptionRules
from chatd.handlers.operator import Operator
from chatd.handlers.ownaccount import OwnAccount
from chatd.handlers.passwords import DEFAULT_COST, DEFAULT_HASH_WAIT, MAX_COST, PasswordHasher
from chatd.handlers.presence import Presence
from chatd.handlers.profiles import DEFAULT_MAX_FINDS, Profiles
from chatd.handlers.quotas import (
    DEFAULT_MAX_FRIENDS,
    DEFAULT_MAX_GROUP_MEMBERS,
    DEFAULT_MAX_GROUPS_CREATED,
    QuotaLimits,
    Quotas,
)
from chatd.handlers.relations import Relations
from chatd.handlers.reply import Reply
from chatd.handlers.resume import ResumeTokens
from chatd.handlers.roles import Roles
from chatd.handlers.settings import FRIEND_REQUESTS, Settings, UserSettings
from chatd.handlers.social import Social
from chatd.handlers.throttle import (
    DEFAULT_ADDRESS_FAILURES,
    DEFAULT_LOGIN_BACKOFF,
    DEFAULT_LOGIN_FAILURES,
    DEFAULT_REGISTRATIONS,
    Throttle,
    ThrottleLimits,
)
from chatd.logformat import FORMATS, use_chatd_logs
from chatd.media import open_media_store
from chatd.messages import MsgId
from chatd.metrics import Stats, node_registry
from chatd.mids import MAX_NODE, MidGenerator
from chatd.protocol import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOGIN_TIMEOUT,
    DEFAULT_MAX_FRAME,
    DEFAULT_MAX_SEND_BUFFER,
    ChatFactory,
)
from chatd.proxied import listening
from chatd.push.endpoints import EndpointPolicy
from chatd.push.fcm import DEFAULT_FCM_URL
from chatd.push.http import DEFAULT_TIMEOUT as DEFAULT_PUSH_TIMEOUT
from chatd.push.notifier import DEFAULT_INTERVAL, PushOptions
from chatd.push.queue import DEFAULT_CONCURRENCY, DEFAULT_QUEUE, DEFAULT_RETRIES, PushCollector
from chatd.push.service import PushService, PushSettings
from chatd.push.vapid import DEFAULT_KEY_FILE
from chatd.store import StoreUnavailable, open_store
from chatd.tokens import DEFAULT_LIFETIME
from chatd.web.channel import (
    DEFAULT_BODY_RATE,
    DEFAULT_BODY_WINDOW,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_HEADERS,
    DEFAULT_MAX_REQUEST_LINE,
    DEFAULT_MAX_UPLOADS_PER_ADDRESS,
    WebLimits,
)
from chatd.web.channel import DEFAULT_IDLE_TIMEOUT as DEFAULT_WEB_IDLE_TIMEOUT
from chatd.web.site import parse_origins, web_factory

log = Logger()

DEFAULT_DB = "sqlite:chatd.sqlite3"
DEFAULT_MEDIA_STORE = "file:media"
MEDIA_THREADS = 4  # Pillow and boto3 work, off the reactor
IDENTIFY_RETRY = 5.0  # seconds between attempts to read the database's identity
# Twisted's default listen backlog of 50 makes a storm of thousands of (re)connecting clients
# wait for SYN retransmits (seconds each); the kernel caps this by net.core.somaxconn.
DEFAULT_BACKLOG = 1024


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run one chatd node: a WeChat-like chat server speaking JSON frames over TCP "
        "(docs/protocol.md). With no options it listens on tcp:6000 and keeps its data in the "
        "SQLite file chatd.sqlite3. Several nodes sharing one MySQL database and one Redis "
        "form a cluster.")
    optParameters = [
        ["listen", "l", "tcp:6000",
         "Twisted server endpoint to listen on, e.g. tcp:6000, "
         "tcp:6000:interface=127.0.0.1, ssl:6001:privateKey=key.pem, unix:/run/chatd.sock; "
         "haproxy:tcp:6001 behind nginx's proxy_protocol, so that limits see client addresses. "
         f"tcp, ssl and unix listeners get backlog={DEFAULT_BACKLOG} unless the string sets "
         "its own backlog."],
        ["db", None, None,
         "Database URL: sqlite:PATH or mysql://user:password@host:port/database "
         f"[env CHATD_DB; default {DEFAULT_DB}]. Missing tables are created at start."],
        ["redis", None, None,
         "Redis URL joining a cluster, e.g. redis://127.0.0.1:6379/0 (redis://:password@host"
         ":port/db with a password), or the master that Redis Sentinel names: sentinel://HOST:"
         "PORT[,HOST:PORT...]/SERVICE[/DB] (sentinel://:password@... for the master's "
         "password), followed through failovers; empty runs the node alone [env "
         "CHATD_REDIS]. Every node of a cluster needs the same --db and Redis database and "
         "its own --node-id."],
        ["node-id", None, 0, f"This node's number in the cluster, 0-{MAX_NODE}; a node "
         "whose number is in use refuses to start.", int],
        ["max-frame", None, DEFAULT_MAX_FRAME,
         "Largest accepted frame in bytes (1024-16777216); a longer one closes the connection.",
         int],
        ["password-cost", None, DEFAULT_COST,
         f"scrypt work factor as log2(n), 1-{MAX_COST}; each step doubles the time and memory of a "
         "login. Lower it only for tests and benchmarks.", int],
        ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT,
         "Seconds of silence after which a proto-2 session is closed (5-3600).", float],
        ["login-timeout", None, DEFAULT_LOGIN_TIMEOUT,
         "Seconds of silence after which a connection that has not logged in is closed, on "
         "the chat port and on the WebSocket (1-3600).", float],
        ["token-lifetime", None, DEFAULT_LIFETIME,
         "Seconds a resume token is valid after it was issued (60-31536000); a proto-2 client "
         "logs in again with it without the password hash.", float],
        ["ack-timeout", None, DEFAULT_ACK_TIMEOUT,
         "Seconds a proto-2 client has to acknowledge a message before it is stored "
         "offline (1-600).", float],
        ["web", None, "",
         "Twisted server endpoint for the web client and its WebSocket (/ws), e.g. tcp:8080 or "
         "ssl:8443:privateKey=key.pem; empty (the default) serves no web."],
        ["web-origin", None, "",
         "Comma-separated origins (scheme://host[:port]) whose pages may open the WebSocket; "
         "empty (the default) allows only the site's own origin."],
        ["web-trusted-proxy", None, "",
         "Comma-separated proxy addresses (e.g. nginx's 127.0.0.1) whose X-Real-IP header "
         "names the client's address of each web request and WebSocket for the per-address "
         "limits and the logs; empty (the default) believes no header."],
        ["web-header-timeout", None, DEFAULT_HEADER_TIMEOUT,
         "Seconds a web connection has to send a request's whole header section, counted "
         "from the connection or the request's first byte (1-300); then 408 and close.",
         float],
        ["web-idle-timeout", None, DEFAULT_WEB_IDLE_TIMEOUT,
         "Seconds of silence after which a keep-alive web connection is closed (1-3600).",
         float],
        ["web-body-rate", None, DEFAULT_BODY_RATE,
         "Bytes a second a request body must average over each --web-body-window "
         "(1-100000000); a slower one gets 408 and is closed.", int],
        ["web-body-window", None, DEFAULT_BODY_WINDOW,
         "Seconds over which a request body's rate is measured (1-600).", float],
        ["web-max-request-line", None, DEFAULT_MAX_REQUEST_LINE,
         "Longest request line, and longest header line, in bytes (256-65536); longer gets "
         "414 (431 for a header line) and is closed.", int],
        ["web-max-headers", None, DEFAULT_MAX_HEADERS,
         "Headers in one request (10-1000); more get 400 and close.", int],
        ["web-max-header-size", None, DEFAULT_MAX_HEADER_SIZE,
         "Bytes of a request's line and headers together (1024-1048576); more get 400 and "
         "close.", int],
        ["web-max-uploads-per-address", None, DEFAULT_MAX_UPLOADS_PER_ADDRESS,
         "Request bodies being received at once from one client address (1-100000); one "
         "more gets 429 and is closed.", int],
        ["media-store", None, DEFAULT_MEDIA_STORE,
         "Where attachments' bytes go: file:DIR (relative to the working directory; a "
         "directory every node shares in a cluster) or s3://BUCKET?endpoint=URL&region=R "
         "(credentials from the standard AWS environment variables or files)."],
        ["media-url", None, "",
         "Base URL of the web listener as clients reach it (e.g. https://chat.example.com), "
         "for attachments' links; default http:// and --web's interface (127.0.0.1) and port."],
        ["max-upload", None, DEFAULT_MAX_UPLOAD,
         "Largest attachment in bytes (1-10737418240); larger gets errno 190. Keep nginx's "
         "client_max_body_size equal.", int],
        ["media-quota", None, DEFAULT_QUOTA,
         "Bytes of attachments one user may keep (1-1099511627776); more gets errno 191.",
         int],
        ["media-url-lifetime", None, DEFAULT_URL_LIFETIME,
         "Seconds an attachment's signed download URL stays valid (60-31536000).", int],
        ["upload-slot-lifetime", None, DEFAULT_SLOT_LIFETIME,
         "Seconds an upload slot may be used after UPLOAD (10-86400).", int],
        ["max-uploads-per-user", None, DEFAULT_UPLOADS_PER_USER,
         "Upload bodies of one user being received at once (1-1000); one more gets HTTP "
         "429 (errno 199).", int],
        ["history-days", None, DEFAULT_DAYS,
         "Days every chat message is kept for HISTORY and SYNC (0-3650); 0 keeps none. The "
         "same on every node of a cluster.", int],
        ["recall-window", None, DEFAULT_RECALL_WINDOW,
         "Seconds after sending during which a sender may RECALL a message (0-604800); 0 "
         "turns recall off (a group's owner may still recall as moderation).", int],
        ["edit-window", None, DEFAULT_EDIT_WINDOW,
         "Seconds after sending during which a sender may EDIT a message (0-31536000); 0 "
         "turns edits off.", int],
        ["max-reactions", None, DEFAULT_MAX_REACTIONS,
         "Different emoji on one message (1-1000); one more gets errno 216.", int],
        ["max-devices", None, DEFAULT_MAX_DEVICES,
         "Proto-2 sessions (devices) of one account online at once (1-100); one more gets "
         "errno 166. The same on every node of a cluster.", int],
        ["max-send-buffer", None, DEFAULT_MAX_SEND_BUFFER,
         "Bytes queued for a client that does not read before its connection is closed "
         "(65536-1073741824); what it had not received is stored offline.", int],
        ["max-conns-per-address", None, DEFAULT_MAX_CONNS_PER_ADDRESS,
         "Connections from one client address to the chat port and the web listener "
         "together, logged in or not (1-1000000); behind nginx listen through haproxy: (and "
         "set --web-trusted-proxy) so that the address is the client's.", int],
        ["max-connections", None, None,
         "Connections the chat port and the web listener hold together; one more gets "
         "errno 149 or HTTP 503 and is closed. The node raises its soft limit of open files "
         f"to the hard limit at start; the default is that limit less {RESERVED_FDS} "
         "descriptors kept for the database, Redis, the logs and the admin listener, and "
         "no value may leave fewer.", int],
        ["hash-wait", None, DEFAULT_HASH_WAIT,
         "Seconds a LOGIN or REG may expect to wait for a password-hashing thread "
         "(0.1-600); beyond it they are refused with errno 141 at once.", float],
        ["login-failures", None, DEFAULT_LOGIN_FAILURES,
         "Failed logins of one account from one address within a minute before further "
         "attempts are refused (errno 142) (1-1000).", int],
        ["address-failures", None, DEFAULT_ADDRESS_FAILURES,
         "Failed logins from one address, any account, within a minute before it is "
         "refused (errno 142) (1-100000).", int],
        ["login-backoff", None, DEFAULT_LOGIN_BACKOFF,
         "Seconds of the first lock-out after too many failed logins; each further failure "
         "doubles it, up to an hour (1-3600).", float],
        ["max-registrations", None, DEFAULT_REGISTRATIONS,
         "Registrations from one address within a minute (1-100000); more get errno 144.",
         int],
        ["offline-quota", None, DEFAULT_OFFLINE_QUOTA,
         "Offline messages stored for one user (1-10000000); a message beyond it is refused "
         "(errno 145).", int],
        ["offline-buffer", None, DEFAULT_OFFLINE_BUFFER,
         "Frames held in memory while the offline store is unreachable (10-10000000); "
         "past it, or after about a minute of retries, senders get errno 130 and send "
         "again.", int],
        ["max-friends", None, DEFAULT_MAX_FRIENDS,
         "Friends of one user (1-1000000); more get errno 148.", int],
        ["max-groups-created", None, DEFAULT_MAX_GROUPS_CREATED,
         "Groups one user may create (1-1000000); more get errno 147.", int],
        ["max-group-members", None, DEFAULT_MAX_GROUP_MEMBERS,
         "Members of one group (2-1000000); more get errno 146.", int],
        ["friend-requests", None, "open",
         "What ADD_FRIEND does for users who never chose (SETTINGS): open (adds at once, as "
         "the original server) or approve (sends a friend request to accept). The same on "
         "every node of a cluster."],
        ["discoverable", None, "yes",
         "Whether FIND_USER finds users who never chose (SETTINGS): yes or no. The same on "
         "every node of a cluster."],
        ["max-pending-requests", None, DEFAULT_MAX_PENDING,
         "Friend requests of one user waiting for an answer (1-10000); one more gets errno "
         "223. Requests expire after 30 days.", int],
        ["max-finds", None, DEFAULT_MAX_FINDS,
         "FIND_USER requests of one user a minute, on every node together (1-10000); more "
         "get errno 235.", int],
        ["admin", None, "",
         "Twisted server endpoint of the operators' HTTP listener, e.g. "
         "tcp:9600:interface=127.0.0.1: /metrics (Prometheus), /health, and with "
         "--admin-token-file the admin API /admin/v1 (docs/operations.md). Empty: off."],
        ["admin-token-file", None, "",
         "File holding the bearer token of the admin API (one line, at least 16 characters); "
         "without it /admin/v1 is not served."],
        ["push-vapid-key", None, DEFAULT_KEY_FILE,
         "PEM file of the node's VAPID key pair for Web Push (created, mode 0600, when it "
         "does not exist). Every node of a cluster should share one: browsers subscribe with "
         "its public key, which LOGIN_MSG_ACK carries in `vapid`."],
        ["push-vapid-subject", None, "mailto:chatd@localhost",
         "The VAPID `sub` claim: a mailto: or https: URL where push services can reach the "
         "operator."],
        ["push-fcm-credentials", None, "",
         "Firebase service-account JSON file for FCM HTTP v1 pushes; empty: FCM is off "
         "(PUSH_SUBSCRIBE kind fcm gets errno 202)."],
        ["push-fcm-url", None, DEFAULT_FCM_URL, "Base URL of the FCM HTTP v1 API."],
        ["push-interval", None, DEFAULT_INTERVAL,
         "Seconds between two pushes of one conversation to one user from this node "
         "(0-3600); the messages between them are collapsed into the first.", float],
        ["push-queue", None, DEFAULT_QUEUE,
         "Pushes waiting to be sent (10-10000000); more are dropped and counted.", int],
        ["push-concurrency", None, DEFAULT_CONCURRENCY,
         "Pushes in flight at once (1-10000).", int],
        ["push-retries", None, DEFAULT_RETRIES,
         "Times a push is tried again after 429, 5xx or no answer (0-10), with a back-off "
         "doubling from 2 s (or the service's Retry-After, up to 300 s).", int],
        ["push-timeout", None, DEFAULT_PUSH_TIMEOUT,
         "Seconds a push service has to connect and to answer (1-120).", float],
        ["push-max-subscriptions", None, DEFAULT_MAX_SUBSCRIPTIONS,
         "Push subscriptions of one account, over all its devices (1-1000); one more gets "
         "errno 205.", int],
        ["log-format", None, "text",
         "text, or json: one JSON object per line with the event's fields (for Loki or "
         "Elasticsearch), to twistd's --logfile or standard output; the lines of a reactor "
         "turn are written together at its end. Text logs give way to twistd's --logger or "
         "--syslog."],
    ]
    optFlags = [
        ["push-preview", None, "Pushes carry the first 80 characters of the message; by "
         "default no message text leaves the server."],
        ["push-allow-http", None, "Accept http:// push endpoints (tests only)."],
        ["push-allow-private", None, "Accept push endpoints on private, loopback and "
         "link-local addresses (tests only: a subscription could make the node send requests "
         "into its own network)."],
    ]

    def postOptions(self) -> None:
        self["db"] = self["db"] or os.environ.get("CHATD_DB") or DEFAULT_DB
        self["redis"] = self["redis"] or os.environ.get("CHATD_REDIS") or ""
        if self["redis"]:
            try:
                parse_redis_url(self["redis"])
            except ValueError as e:
                raise usage.UsageError(f"--redis: {e}") from None
        try:
            self["web-origin"] = parse_origins(self["web-origin"])
            self["web-trusted-proxy"] = frozenset(
                filter(None, (a.strip() for a in self["web-trusted-proxy"].split(","))))
        except ValueError as e:
            raise usage.UsageError(f"--web-origin: {e}") from None
        _check_range("node-id", self["node-id"], 0, MAX_NODE)
        _check_range("max-frame", self["max-frame"], 1024, 16 * 1024 * 1024)
        _check_range("password-cost", self["password-cost"], 1, MAX_COST)
        _check_range("idle-timeout", self["idle-timeout"], 5, 3600)
        _check_range("ack-timeout", self["ack-timeout"], 1, 600)
        _check_range("token-lifetime", self["token-lifetime"], 60, 365 * 24 * 3600)
        _check_range("history-days", self["history-days"], 0, 3650)
        _check_range("max-devices", self["max-devices"], 1, 100)
        _check_range("recall-window", self["recall-window"], 0, 7 * 86400)
        _check_range("edit-window", self["edit-window"], 0, 365 * 86400)
        _check_range("max-reactions", self["max-reactions"], 1, 1000)
        _check_range("max-send-buffer", self["max-send-buffer"], 65536, 1 << 30)
        _check_range("max-conns-per-address", self["max-conns-per-address"], 1, 1_000_000)
        ceiling = default_max_connections(raise_file_limit())
        if self["max-connections"] is None:
            self["max-connections"] = ceiling
        _check_range("max-connections", self["max-connections"], 1, ceiling)
        _check_range("login-timeout", self["login-timeout"], 1, 3600)
        _check_range("web-header-timeout", self["web-header-timeout"], 1, 300)
        _check_range("web-idle-timeout", self["web-idle-timeout"], 1, 3600)
        _check_range("web-body-rate", self["web-body-rate"], 1, 100_000_000)
        _check_range("web-body-window", self["web-body-window"], 1, 600)
        _check_range("web-max-request-line", self["web-max-request-line"], 256, 65536)
        _check_range("web-max-headers", self["web-max-headers"], 10, 1000)
        _check_range("web-max-header-size", self["web-max-header-size"], 1024, 1 << 20)
        _check_range("web-max-uploads-per-address", self["web-max-uploads-per-address"], 1,
                     100_000)
        _check_range("max-upload", self["max-upload"], 1, 10 << 30)
        _check_range("media-quota", self["media-quota"], 1, 1 << 40)
        _check_range("media-url-lifetime", self["media-url-lifetime"], 60, 365 * 86400)
        _check_range("upload-slot-lifetime", self["upload-slot-lifetime"], 10, 86400)
        _check_range("max-uploads-per-user", self["max-uploads-per-user"], 1, 1000)
        _check_range("hash-wait", self["hash-wait"], 0.1, 600)
        _check_range("login-failures", self["login-failures"], 1, 1000)
        _check_range("address-failures", self["address-failures"], 1, 100_000)
        _check_range("login-backoff", self["login-backoff"], 1, 3600)
        _check_range("max-registrations", self["max-registrations"], 1, 100_000)
        _check_range("offline-quota", self["offline-quota"], 1, 10_000_000)
        _check_range("offline-buffer", self["offline-buffer"], 10, 10_000_000)
        _check_range("max-friends", self["max-friends"], 1, 1_000_000)
        _check_range("max-groups-created", self["max-groups-created"], 1, 1_000_000)
        _check_range("max-group-members", self["max-group-members"], 2, 1_000_000)
        _check_range("max-pending-requests", self["max-pending-requests"], 1, 10_000)
        _check_range("max-finds", self["max-finds"], 1, 10_000)
        self["defaults"] = _user_defaults(self["friend-requests"], self["discoverable"])
        _check_range("push-interval", self["push-interval"], 0, 3600)
        _check_range("push-queue", self["push-queue"], 10, 10_000_000)
        _check_range("push-concurrency", self["push-concurrency"], 1, 10_000)
        _check_range("push-retries", self["push-retries"], 0, 10)
        _check_range("push-timeout", self["push-timeout"], 1, 120)
        _check_range("push-max-subscriptions", self["push-max-subscriptions"], 1, 1000)
        self["admin-token"] = _admin_token(self["admin-token-file"], self["admin"])
        if self["log-format"] not in FORMATS:
            raise usage.UsageError(f"--log-format must be one of {', '.join(FORMATS)}")
        parent = getattr(self, "parent", None)
        if parent is not None:
            use_chatd_logs(parent, self["log-format"])


def _user_defaults(friend_requests: str, discoverable: str) -> UserSettings:
    """The settings of users who never chose, from --friend-requests and --discoverable."""
    if friend_requests not in FRIEND_REQUESTS:
        raise usage.UsageError(f"--friend-requests must be one of {', '.join(FRIEND_REQUESTS)}")
    if discoverable not in ("yes", "no"):
        raise usage.UsageError("--discoverable must be yes or no")
    return UserSettings(friend_requests, discoverable == "yes")


MIN_TOKEN = 16


def _admin_token(path: str, admin: str) -> bytes | None:
    """The admin API's bearer token, read once at start."""
    if not path:
        return None
    if not admin:
        raise usage.UsageError("--admin-token-file needs --admin")
    try:
        with open(path, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise usage.UsageError(f"--admin-token-file: {e}") from None
    if len(token) < MIN_TOKEN or b"\n" in token:
        raise usage.UsageError(f"--admin-token-file: the token must be one line of at least "
                               f"{MIN_TOKEN} characters")
    return token


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise usage.UsageError(f"--{name} must be between {low} and {high}, not {value}")


class ChatNode(MultiService):
    """Starts the worker pools before listening and, on stop, ends every session (storing
    what was in flight) before the database pool closes."""

    push: PushService  # set by build_node

    def __init__(self, context: Context, factory: ChatFactory,
                 end: Callable[[Session], Deferred[None]], operator: Operator,
                 media: Media) -> None:
        super().__init__()
        self.media = media
        self.context = context
        self.store, self.hasher, self.router = context.store, context.hasher, context.router
        self.history, self.stats = context.history, context.stats
        self.factory = factory
        self.operator = operator
        self._end = end
        self._identifying: Deferred[None] | None = None
        self.pauses = Pauses()

    def startService(self) -> None:
        self.pauses.start()
        self.hasher.start()
        self.router.start()
        self.history.start()
        self.media.start()
        super().startService()
        agreement = self.router.bus.agreement
        if agreement is not None:
            self._identifying = Deferred.fromCoroutine(self._identify(agreement))
            self._identifying.addErrback(lambda f: f.trap(CancelledError))

    async def _identify(self, agreement: Agreement) -> None:
        """Tell the agreement which database this node uses, once the store answers: nodes
        with different --db URLs may still reach one database, so it is named by a random
        identity kept in it (made by the first node)."""
        while True:
            try:
                identity = await self.store.secret("identity")
            except StoreUnavailable:
                await deferLater(self.context.clock, IDENTIFY_RETRY)
                continue
            agreement.known("database", identity.hex()[:16])
            return

    async def _stop(self) -> None:
        if self._identifying is not None:
            self._identifying.cancel()
        await super().stopService()
        for session in list(self.factory.sessions):
            self._end(session)
            session.close()
        await self.router.stop()
        await self.history.stop()
        self.media.stop()
        self.hasher.stop()
        self.store.close()
        self.pauses.stop()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())


class Listener(StreamServerEndpointService):
    """The listening port; failing to listen is one clear line and exit status 1."""

    _raiseSynchronously = True

    def __init__(self, description: str, factory: Any, reactor: Any,
                 option: str = "--listen") -> None:
        try:
            endpoint, wrapped = listening(reactor, with_backlog(description), factory)
        except ValueError as e:
            raise ValueError(f"{option} {description!r}: {e}") from None
        super().__init__(endpoint, wrapped)
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(f"chatd: cannot listen on {self.description}: {e.socketError}"
                             ) from None


def with_backlog(description: str) -> str:
    """The endpoint string with DEFAULT_BACKLOG added where it takes one and sets none
    (haproxy: wraps another endpoint string, which gets it)."""
    kind = description.removeprefix("haproxy:").split(":", 1)[0]
    if kind in ("tcp", "tcp6", "ssl", "unix") and "backlog=" not in description:
        return f"{description}:backlog={DEFAULT_BACKLOG}"
    return description


def build_context(options: Options, reactor: Any) -> Context:
    """The parts of a node that the handlers share; raises StoreUnavailable or ValueError for
    a bad --db."""
    stats = Stats()
    store = open_store(options["db"], stats)
    bus = open_bus(options["redis"], options["node-id"], reactor, {
        "history-days": options["history-days"], "max-devices": options["max-devices"],
        "friend-requests": options["friend-requests"], "discoverable": options["discoverable"]})
    offline = Offline(store, reactor, stats, options["offline-quota"], options["offline-buffer"])
    router = Router(bus, reactor, offline, stats, options["ack-timeout"], options["max-devices"])
    blocks = Blocks()
    settings = Settings(store, options["defaults"])
    resume = ResumeTokens(store, reactor, options["token-lifetime"])
    history = HistoryWriter(store, reactor, options["history-days"])
    return Context(
        store=store, router=router, offline=offline, clock=reactor, stats=stats,
        history=history,
        mids=MidGenerator(options["node-id"]),
        hasher=PasswordHasher(reactor, options["password-cost"], max_wait=options["hash-wait"],
                              stats=stats),
        throttle=Throttle(bus, ThrottleLimits(
            options["login-failures"], options["address-failures"], options["login-backoff"],
            options["max-registrations"])),
        quotas=Quotas(store, QuotaLimits(options["max-friends"], options["max-groups-created"],
                                         options["max-group-members"])),
        blocks=blocks, members=GroupMembers(store), presence=Presence(router, blocks),
        resume=resume, settings=settings,
        friend_requests=FriendRequests(store, router, settings, reactor,
                                       options["max-pending-requests"]),
        roles=Roles(store), naming=Naming(store),
        account_data=AccountData(store, router, resume, settings, stats, history),
        composer=Composer())


def build_node(options: Options, reactor: Any) -> ChatNode:
    """The node without its listener: the context, every handler's msgids in one dispatch
    table, and the listeners between parts; raises StoreUnavailable or ValueError for a bad
    --db."""
    context = build_context(options, reactor)
    router = context.router
    accounts, chat, conversations = Accounts(context), Chat(context), Conversations(context)
    media = build_media(options, context, reactor)
    attachments = Attachments(context, media)
    actions = Actions(context, ActionLimits(options["recall-window"], options["edit-window"],
                                            options["max-reactions"]))
    context.composer.register(attachments)
    actions.on_recalled.connect(attachments.recalled)
    context.composer.register(Reply(context))
    router.dialect.field(attachments.field, original_line)
    router.dialect.frame(MsgId.RECALLED, recalled_line)
    router.dialect.frame(MsgId.EDITED, edited_line)
    dispatch = {**accounts.handlers(), **chat.handlers(), **Social(context).handlers(),
                **conversations.handlers(), **Relations(context).handlers(),
                **OwnAccount(context).handlers(), **Requests(context).handlers(),
                **GroupAdmin(context).handlers(),
                **Profiles(context, media, options["max-finds"]).handlers(),
                **attachments.handlers(), **actions.handlers()}
    follower = BlockFollower(context.blocks, context.store, router)
    router.on.group_changed.connect(context.members.forget)
    router.on.group_changed.connect(context.roles.forget)
    router.on.block_changed.connect(follower.changed)
    router.on.bus_back.connect(follower.reload)
    router.on.offline_stored.connect(accounts.welcome.offline_stored)
    router.on.taken_over.connect(accounts.taken_over)
    push = push_service(options, context, reactor)
    notifications = Notifications(context, SubscriptionRules(
        push.senders.policy, push.senders.credentials is not None,
        options["push-max-subscriptions"]), push.vapid.public_key)
    dispatch.update(notifications.handlers())
    context.composer.register(Mentions(context.store))
    context.offline.stored_new.connect(push.notifier.stored_new)
    router.on.unacknowledged.connect(push.notifier.unacknowledged)
    conversations.marked_read.connect(push.notifier.read)
    accounts.welcome.reply_fields.append(notifications.login_fields)
    accounts.logged_out.connect(notifications.logged_out)
    inbound = Inbound(router)
    connections = Connections(options["max-conns-per-address"], options["max-connections"])
    factory = ChatFactory(dispatch, accounts.end, context.stats, reactor, connections,
                          options["max-frame"], options["idle-timeout"],
                          options["max-send-buffer"], options["login-timeout"])
    node = ChatNode(context, factory, accounts.end,
                    Operator(context, inbound, options["node-id"]), media)
    node.push = push
    push.setServiceParent(node)
    return node


def build_media(options: Options, context: Context, reactor: Any) -> Media:
    """The node's attachments: the media store on a thread pool of its own (started and
    stopped with the node) and the --media-* limits."""
    pool = ThreadPool(0, MEDIA_THREADS, "chatd-media")

    def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        return deferToThreadPool(reactor, pool, fn, *args, **kwargs)
    files = open_media_store(options["media-store"], run)
    limits = MediaLimits(
        max_upload=options["max-upload"], quota=options["media-quota"],
        url_lifetime=options["media-url-lifetime"],
        slot_lifetime=options["upload-slot-lifetime"],
        uploads_per_user=options["max-uploads-per-user"],
        history_days=options["history-days"], base_url=media_url(options))
    return Media(context.store, files, run, context.clock, limits, pool)


def media_url(options: Options) -> str:
    """--media-url, or the --web listener's http://interface:port ("" without --web)."""
    if options["media-url"] or not options["web"]:
        return str(options["media-url"]).rstrip("/")
    parts = options["web"].split(":")
    fields = dict(f.split("=", 1) for f in parts if "=" in f)
    port = next((f for f in parts[1:] if f.isdigit()), "80")
    scheme = "https" if parts[0] == "ssl" else "http"
    return f"{scheme}://{fields.get('interface', '127.0.0.1')}:{port}"


def push_service(options: Options, context: Context, reactor: Any) -> PushService:
    """The --push-* machinery: VAPID key (made when absent), senders, queue, notifier."""
    return PushService(context.store, reactor, PushSettings(
        vapid_key=options["push-vapid-key"], subject=options["push-vapid-subject"],
        policy=EndpointPolicy(bool(options["push-allow-http"]),
                              bool(options["push-allow-private"])),
        fcm_credentials=options["push-fcm-credentials"], fcm_url=options["push-fcm-url"],
        options=PushOptions(options["push-interval"], bool(options["push-preview"])),
        queue=options["push-queue"], concurrency=options["push-concurrency"],
        retries=options["push-retries"], timeout=options["push-timeout"]))


def web_limits(options: Options) -> WebLimits:
    """The --web-* limits."""
    return WebLimits(
        header_timeout=options["web-header-timeout"], idle_timeout=options["web-idle-timeout"],
        body_rate=options["web-body-rate"], body_window=options["web-body-window"],
        max_request_line=options["web-max-request-line"],
        max_headers=options["web-max-headers"], max_header_size=options["web-max-header-size"],
        max_uploads_per_address=options["web-max-uploads-per-address"])


def admin_listener(node: ChatNode, options: Options, reactor: Any) -> Listener:
    """The operators' HTTP listener of --admin."""
    registry = node_registry(node)
    registry.register(PushCollector(node.push.queue))
    site = admin_site(node, registry, options["admin-token"], reactor)
    return Listener(options["admin"], site, reactor, "--admin")


def refuse(reactor: Any, found: list[str]) -> None:
    """The node joined a cluster whose nodes use other settings (chatd/cluster/agreement.py):
    one line on the process's stderr (twistd's sys.stderr goes to the log, which has it
    already), a clean stop, exit status 1 (twistd itself would exit with 0)."""
    print(f"chatd: refusing to join the cluster: {'; '.join(found)}", file=sys.__stderr__,
          flush=True)
    reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
    reactor.stop()


def makeService(options: Options) -> IService:
    """Build the node and its listener; exits with one clear line when --db is unusable."""
    from twisted.internet import reactor

    try:
        node = build_node(options, reactor)
    except (StoreUnavailable, ValueError) as e:
        raise SystemExit(f"chatd: {e}") from None
    agreement = node.router.bus.agreement
    if agreement is not None:
        agreement.on_refused = lambda found: refuse(reactor, found)
    try:
        Listener(options["listen"], node.factory, reactor).setServiceParent(node)
        if options["admin"]:
            admin_listener(node, options, reactor).setServiceParent(node)
        if options["web"]:
            site = web_factory(node.factory, options["web-origin"],
                               options["web-trusted-proxy"], web_limits(options), node.media,
                               node.context.account_data.export_by_token)
            Listener(options["web"], site, reactor, "--web").setServiceParent(node)
    except ValueError as e:
        raise SystemExit(f"chatd: bad listener endpoint: {e}") from None
    reactor.callWhenRunning(freeze_set_up)
    return node


def freeze_set_up() -> None:
    """Take what the node built at start out of the garbage collector's walks
    (chatd/gcpauses.py); only in a twistd process, where nothing built before is garbage."""
    log.info("{objects} objects of the node's set-up frozen out of garbage collections",
             objects=freeze())
