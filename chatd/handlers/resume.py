"""The cluster's resume tokens: issued at a proto-2 login, checked at a token login, revoked
at logout, by the operator, or when a password changes.

The signing secret lives in the database, so that every node issues and accepts the same
tokens; it is read once, at first use.
"""

from twisted.internet.interfaces import IReactorTime

from chatd.store import Store, UserRecord
from chatd.tokens import DEFAULT_LIFETIME, TokenSigner


class ResumeTokens:
    """Issue, check and revoke resume tokens with the cluster's secret."""

    def __init__(self, store: Store, clock: IReactorTime,
                 lifetime: float = DEFAULT_LIFETIME) -> None:
        self.store = store
        self._clock = clock
        self._lifetime = lifetime
        self._signer: TokenSigner | None = None

    async def _tokens(self) -> TokenSigner:
        if self._signer is None:
            secret = await self.store.secret("token")
            self._signer = TokenSigner(secret, self._lifetime, self._clock.seconds)
        return self._signer

    async def issue(self, user_id: int, after_ms: int = 0) -> str:
        return (await self._tokens()).issue(user_id, after_ms)

    async def valid(self, token: str, user: UserRecord) -> bool:
        return (await self._tokens()).valid(token, user.id, user.tokens_revoked)

    async def revoke(self, user_id: int) -> int:
        """Every resume token issued to the user so far stops working, on every node; the
        time (ms) up to which they are revoked, for a token that must outlive the revocation."""
        tokens = await self._tokens()
        until = tokens.revocation_ms()
        await self.store.revoke_tokens(user_id, until)
        return until
