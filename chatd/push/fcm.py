"""FCM HTTP v1: a service account's OAuth2 access token (a JWT signed with its key, traded
at its token_uri), refreshed before it expires, and the message a push sends.

The credentials file is the JSON a Firebase project's service account gives (type,
project_id, private_key, client_email, token_uri). --push-fcm-url points the sender at
another FCM base URL (the tests' stand-in); the token URL is the file's token_uri.
"""

import json
import time
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chatd.push.vapid import b64url

DEFAULT_FCM_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_LIFETIME = 3600
REFRESH_BEFORE = 300  # seconds before its expiry a token is replaced


class Credentials:
    """A service account: who it is and the key it signs its token requests with."""

    def __init__(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
            self.project_id: str = info["project_id"]
            self.client_email: str = info["client_email"]
            self.token_uri: str = info["token_uri"]
            key = serialization.load_pem_private_key(info["private_key"].encode(), None)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--push-fcm-credentials {path}: {e}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"--push-fcm-credentials {path}: private_key is not an RSA key")
        self._key = key

    def assertion(self, now: float) -> str:
        """The signed JWT (RS256) that asks the token endpoint for an access token."""
        header = {"alg": "RS256", "typ": "JWT"}
        claims = {"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
                  "iat": int(now), "exp": int(now) + JWT_LIFETIME}
        signing = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                           for part in (header, claims))
        signature = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{b64url(signature)}"


def token_request(credentials: Credentials, now: float) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the POST to token_uri."""
    body = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                      "assertion": credentials.assertion(now)}).encode()
    return {"Content-Type": "application/x-www-form-urlencoded"}, body


class AccessToken:
    """The current access token and when it must be replaced."""

    def __init__(self) -> None:
        self.value = ""
        self.renew_at = 0.0

    def fresh(self, now: float | None = None) -> bool:
        return bool(self.value) and (time.time() if now is None else now) < self.renew_at

    def update(self, answer: dict[str, Any], now: float) -> None:
        """From the token endpoint's JSON answer: access_token, expires_in (seconds)."""
        self.value = str(answer["access_token"])
        lifetime = float(answer.get("expires_in", 3600))
        self.renew_at = now + max(lifetime - REFRESH_BEFORE, lifetime / 2)


def message(token: str, data: dict[str, str], collapse: str, title: str) -> bytes:
    """The body of messages:send: a data message (the app draws the notification) that
    replaces an undelivered one of the same conversation."""
    return json.dumps({"message": {
        "token": token, "data": data,
        "notification": {"title": title},
        "android": {"collapse_key": collapse, "priority": "high"},
        "apns": {"headers": {"apns-collapse-id": collapse, "apns-priority": "10"}},
    }}, separators=(",", ":")).encode()


def send_url(base: str, credentials: Credentials) -> str:
    return f"{base.rstrip('/')}/v1/projects/{credentials.project_id}/messages:send"
