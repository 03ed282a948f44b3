"""API keys: ``dxs_<key id>_<secret>``; only a salted scrypt hash of the secret is stored."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "dxs"
# scrypt cost (RFC 7914): n=2**14, r=8 — about 20-50 ms a hash; verified keys are cached.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class NewKey:
    key_id: str
    token: str  # shown once, never stored
    salt: bytes
    hash: bytes


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secret}", salt, hash_secret(secret, salt))


def hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def split_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token, else None."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def verify_secret(secret: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_secret(secret, salt), expected)
