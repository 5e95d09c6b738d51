"""The node context: the parts a handler may use, built once in `build_node`.

A handler takes what it needs from here in its constructor and never reaches through
another handler, so that each one can be read, tested and replaced on its own.
"""

from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime

from chatd.delivery.history import HistoryWriter
from chatd.delivery.offline import Offline
from chatd.delivery.router import Router
from chatd.handlers.accountdata import AccountData
from chatd.handlers.befriending import FriendRequests
from chatd.handlers.blocks import Blocks
from chatd.handlers.composer import Composer
from chatd.handlers.members import GroupMembers
from chatd.handlers.naming import Naming
from chatd.handlers.passwords import PasswordHasher
from chatd.handlers.presence import Presence
from chatd.handlers.quotas import Quotas
from chatd.handlers.resume import ResumeTokens
from chatd.handlers.roles import Roles
from chatd.handlers.settings import Settings
from chatd.handlers.throttle import Throttle
from chatd.metrics import Stats
from chatd.mids import MidGenerator
from chatd.store import Store


@dataclass(frozen=True)
class Context:
    """One per node; every field is shared by the handlers that use it."""

    store: Store
    router: Router
    offline: Offline
    history: HistoryWriter
    clock: IReactorTime
    stats: Stats
    mids: MidGenerator
    hasher: PasswordHasher
    throttle: Throttle
    quotas: Quotas
    blocks: Blocks
    members: GroupMembers
    presence: Presence
    resume: ResumeTokens
    settings: Settings
    friend_requests: FriendRequests
    roles: Roles  # who moderates a group: Roles.can_moderate(groupid, userid)
    naming: Naming
    account_data: AccountData
    composer: Composer  # the parts of a chat message beyond its text, filled in build_node
