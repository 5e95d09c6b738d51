"""The node's VAPID key pair (RFC 8292) and the Authorization header it signs per push
service.

The key comes from --push-vapid-key FILE; when the file does not exist the node creates it
(mode 0600) at start, so `make run` works out of the box. Every node of a cluster should
share one key: a browser's subscription is tied to the public key it subscribed with.
"""

import base64
import os
import time

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

DEFAULT_KEY_FILE = "chatd-vapid.pem"
TOKEN_LIFETIME = 12 * 3600  # seconds a signed JWT is valid (RFC 8292 allows up to 24 h)
RENEW_BEFORE = 3600  # a cached header is signed again this long before it expires


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class VapidKey:
    """Signs `vapid t=JWT,k=KEY` headers, one per push service origin, cached until near
    their expiry (signing costs an ECDSA signature)."""

    def __init__(self, path: str, subject: str) -> None:
        self.path = path
        self.subject = subject
        self._vapid = _load_or_create(path)
        raw = self._vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.public_key = b64url(raw)
        self._headers: dict[str, tuple[str, float]] = {}

    def authorization(self, audience: str, now: float | None = None) -> str:
        """The Authorization header for a push service origin (scheme://host[:port])."""
        now = time.time() if now is None else now
        cached = self._headers.get(audience)
        if cached is not None and cached[1] - RENEW_BEFORE > now:
            return cached[0]
        expires = int(now) + TOKEN_LIFETIME
        header = self._vapid.sign({"aud": audience, "exp": expires, "sub": self.subject}
                                  )["Authorization"]
        self._headers[audience] = (header, expires)
        return header


def _load_or_create(path: str) -> Vapid02:
    """Blocking file access, once at start. Nodes starting together from one directory may
    all find the file absent: the key is written whole to a file of its own and linked into
    place, so the first link wins and the others read the winner's key."""
    if not os.path.exists(path):
        vapid = Vapid02()
        vapid.generate_keys()
        fresh = f"{path}.{os.getpid()}.new"
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(vapid.private_pem())
        try:
            os.link(fresh, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(fresh)
    try:
        return Vapid02.from_file(path)
    except Exception as e:
        raise ValueError(f"--push-vapid-key {path}: not a VAPID private key ({e})") from None
