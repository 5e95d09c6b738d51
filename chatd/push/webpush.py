"""One Web Push request (RFC 8030) with its payload encrypted for the subscription (RFC 8291,
aes128gcm, by http_ece) and the node's VAPID Authorization (RFC 8292)."""

import base64
import os
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from chatd.push.vapid import VapidKey

TTL_SECONDS = 24 * 3600  # how long the push service keeps a push for a device that is away
MAX_TOPIC = 32  # RFC 8030: at most 32 characters of the base64url alphabet


def b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def valid_keys(p256dh: str, auth: str) -> bool:
    """A P-256 public key (uncompressed point) and a 16-byte auth secret, base64url."""
    try:
        point, secret = b64decode(p256dh), b64decode(auth)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except (ValueError, TypeError):
        return False
    return len(point) == 65 and len(secret) == 16


def request(vapid: VapidKey, endpoint: str, p256dh: str, auth: str, payload: bytes,
            topic: str) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the push: the payload encrypted with a fresh key pair and salt."""
    body = http_ece.encrypt(payload, salt=os.urandom(16),
                            private_key=ec.generate_private_key(ec.SECP256R1()),
                            dh=b64decode(p256dh), auth_secret=b64decode(auth),
                            version="aes128gcm")
    parts = urlsplit(endpoint)
    headers = {"Content-Type": "application/octet-stream", "Content-Encoding": "aes128gcm",
               "TTL": str(TTL_SECONDS), "Urgency": "high", "Topic": topic[:MAX_TOPIC],
               "Authorization": vapid.authorization(f"{parts.scheme}://{parts.netloc}")}
    return headers, body
