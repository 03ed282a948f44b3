"""Envelope encryption: each object under its own AES-256-GCM data key, wrapped by a master key.

A sealed object is ``MAGIC | master key id (8) | wrapped data key (40, RFC 3394 AES key wrap) |
nonce (12) | ciphertext and tag``. Re-wrapping under a new master key rewrites only the fixed-size
header; the ciphertext is never touched. Master keys come from ``DXSERVE_MASTER_KEY`` or a key
file (one base64 key a line, the first is current, the others still unwrap during a rotation).
"""

import base64
import binascii
import hashlib
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dxserve.errors import DxError

MAGIC = b"\x89DXE\r\n\x1a\x01"
KEY_BYTES = 32
KEY_ID_BYTES = 8
WRAPPED_BYTES = KEY_BYTES + 8
NONCE_BYTES = 12
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + WRAPPED_BYTES + NONCE_BYTES


class MasterKeyError(DxError):
    """No usable master key: the service will not store patient data in clear."""

    code = "master_key"


class SealedError(DxError):
    """A sealed object that cannot be opened: unknown master key, or tampered with."""

    code = "sealed_object"


def new_master_key() -> str:
    """A fresh master key as stored: urlsafe base64 of 32 random bytes."""
    return encode_master_key(secrets.token_bytes(KEY_BYTES))


def encode_master_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def parse_master_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode())
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            "a master key is the urlsafe base64 of 32 bytes (dxserve keys create-master)"
        )
    return key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"dxserve master key id\0" + key).digest()[:KEY_ID_BYTES]


class KeyRing:
    """The master keys: the first seals, all of them open. One read from a file re-reads it
    when it changes, so a running server follows ``dxserve keys rotate-master``."""

    def __init__(self, keys: list[bytes], path: Path | None = None) -> None:
        if not keys:
            raise MasterKeyError("the master key file holds no key")
        self.path = path
        self._lock = threading.Lock()
        self._stamp = _stamp(path)
        self._keys = {key_id(k): k for k in keys}
        self._current = keys[0]

    @classmethod
    def from_settings(cls, value: str | None, path: Path | None) -> "KeyRing":
        """The ring of ``DXSERVE_MASTER_KEY`` (one key) or ``DXSERVE_MASTER_KEY_FILE``."""
        if value:
            return cls([parse_master_key(value)])
        if path is None:
            raise MasterKeyError(
                "no master key: set DXSERVE_MASTER_KEY_FILE (create one with `dxserve keys "
                "create-master --out PATH`, kept outside the data dir) or DXSERVE_MASTER_KEY; "
                "dxserve does not store patient data in clear"
            )
        return cls(read_key_file(path), path)

    @property
    def current_id(self) -> bytes:
        self._refresh()
        return key_id(self._current)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``plaintext`` encrypted under a new data key bound to ``aad``."""
        self._refresh()
        data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        nonce = os.urandom(NONCE_BYTES)
        wrapped = aes_key_wrap(self._current, data_key)
        sealed = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return MAGIC + key_id(self._current) + wrapped + nonce + sealed

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of ``sealed``; :class:`SealedError` if it was altered or moved."""
        if not is_sealed(sealed):
            raise SealedError("object is not sealed (stored in clear by an earlier version?)")
        data_key = self._unwrap(sealed[:HEADER_BYTES])
        nonce = sealed[HEADER_BYTES - NONCE_BYTES : HEADER_BYTES]
        try:
            return AESGCM(data_key).decrypt(nonce, sealed[HEADER_BYTES:], aad)
        except InvalidTag:
            raise SealedError("sealed object failed authentication (altered or moved)") from None

    def rewrap(self, header: bytes) -> bytes:
        """``header`` with its data key wrapped under the current master key."""
        data_key = self._unwrap(header)
        nonce = header[HEADER_BYTES - NONCE_BYTES : HEADER_BYTES]
        return MAGIC + key_id(self._current) + aes_key_wrap(self._current, data_key) + nonce

    def _unwrap(self, header: bytes) -> bytes:
        start = len(MAGIC)
        wanted = header[start : start + KEY_ID_BYTES]
        wrapped = header[start + KEY_ID_BYTES : start + KEY_ID_BYTES + WRAPPED_BYTES]
        self._refresh()
        master = self._keys.get(wanted)
        if master is None:
            raise SealedError("sealed under a master key this server does not hold")
        try:
            return aes_key_unwrap(master, wrapped)
        except InvalidUnwrap:
            raise SealedError("wrapped data key failed authentication") from None

    def _refresh(self) -> None:
        """Re-read the key file if it changed since it was read."""
        if self.path is None or _stamp(self.path) == self._stamp:
            return
        with self._lock:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            keys = read_key_file(self.path)
            self._keys = {key_id(k): k for k in keys}
            self._current, self._stamp = keys[0], stamp


def is_sealed(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC and len(data) >= HEADER_BYTES


def read_key_file(path: Path) -> list[bytes]:
    try:
        lines = Path(path).read_text().split()
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    return [parse_master_key(line) for line in lines]


def write_key_file(path: Path, keys: list[str]) -> None:
    """Replace the key file atomically, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(keys) + "\n")
    os.replace(temp, path)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_ino
