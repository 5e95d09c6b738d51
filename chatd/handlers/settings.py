"""A user's settings (SETTINGS, docs/protocol.md): who may befriend them without asking, and
whether FIND_USER finds them; what a user never chose is the node's default."""

from dataclasses import dataclass

from chatd.store import Store

OPEN, APPROVE = "open", "approve"
FRIEND_REQUESTS = (OPEN, APPROVE)
DEFAULT_FRIEND_REQUESTS = OPEN  # as the original server: anyone may add anyone
DEFAULT_DISCOVERABLE = True


@dataclass(frozen=True)
class UserSettings:
    friend_requests: str = DEFAULT_FRIEND_REQUESTS
    discoverable: bool = DEFAULT_DISCOVERABLE

    def view(self) -> dict[str, object]:
        return {"friend_requests": self.friend_requests, "discoverable": self.discoverable}


class Settings:
    """Reads and changes settings, filling in the defaults of `--friend-requests` and
    `--discoverable`."""

    def __init__(self, store: Store, defaults: UserSettings = UserSettings()) -> None:
        self.store = store
        self.defaults = defaults

    async def of(self, user_id: int) -> UserSettings:
        stored = await self.store.settings(user_id)
        return self._filled(stored.friend_requests, stored.discoverable)

    async def change(self, user_id: int, friend_requests: str | None,
                     discoverable: bool | None) -> UserSettings:
        stored = await self.store.set_settings(user_id, friend_requests, discoverable)
        return self._filled(stored.friend_requests, stored.discoverable)

    def _filled(self, friend_requests: str | None, discoverable: bool | None) -> UserSettings:
        return UserSettings(
            self.defaults.friend_requests if friend_requests is None else friend_requests,
            self.defaults.discoverable if discoverable is None else discoverable)
