"""Names users choose (REG, SET_PROFILE): kept in Unicode's NFKC form, refused when they are
another user's name written differently (chatd/names.py)."""

from chatd.messages import ChatError, Errno
from chatd.names import key, normal
from chatd.requests import check_name
from chatd.store import Store
from chatd.store.deletion import name_hold_cutoff

MAX_NAME = 50


class Naming:
    """Checks a chosen name against every other user's. Users from before name keys existed
    get theirs at the first check after the node started (once per node; idempotent)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._filled = False

    async def admit(self, name: str, user_id: int = 0) -> tuple[str, str]:
        """The name as it is kept and its key; raises 107 when normalising broke the name
        rules, 3 when it is taken as it is, 233 when another user's name looks like it."""
        kept = normal(name)
        check_name("name", kept, MAX_NAME)
        name_key = key(kept)
        if not self._filled:
            await self.store.fill_name_keys(key)
            self._filled = True
        others = await self.store.look_alikes(name_key, user_id, name_hold_cutoff())
        if kept in others:
            raise ChatError(Errno.NAME_TAKEN)
        if others:
            raise ChatError(Errno.NAME_LOOKALIKE)
        return kept, name_key
