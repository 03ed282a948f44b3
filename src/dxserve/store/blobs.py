"""Content-addressed, encrypted blob store: ``ROOT/ab/cdef…`` named by the sha256 of the bytes.

Every blob is sealed (AES-256-GCM under its own data key, bound to its name) with the master
key ring: nothing is on disk in clear, and a blob swapped for another fails to open.
"""

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dxserve.core.security.envelope import HEADER_BYTES, KeyRing, is_sealed
from dxserve.errors import StorageFull, StorageUnavailable


class BlobStore:
    """Immutable blobs on the local file system, written atomically, stored once per content."""

    def __init__(self, root: Path, keys: KeyRing) -> None:
        self.root = Path(root)
        self.keys = keys

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("not a sha256 hex digest")
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its sha256 (hex). :class:`StorageFull` (no space left) or
        :class:`StorageUnavailable` (read-only, not a directory, …) when the disk refuses."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        try:
            if not target.exists():
                _write_atomically(target, self.keys.seal(data, digest.encode()))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull("the blob store's disk is full") from None
            raise StorageUnavailable(
                f"the blob store cannot be written ({errno.errorcode.get(exc.errno or 0, 'error')})"
            ) from None
        return digest

    def get(self, digest: str) -> bytes:
        return self.keys.open(self.path(digest).read_bytes(), digest.encode())

    def delete(self, digest: str) -> bool:
        """Remove a blob (a deleted dataset's); False when it was not there."""
        try:
            self.path(digest).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def digests(self) -> Iterator[str]:
        for path in self.root.glob("??/*"):
            if not path.name.startswith("."):
                yield path.parent.name + path.name

    def rewrap(self, digest: str) -> bool:
        """Re-wrap one blob's data key under the current master key (its ciphertext is not
        touched); a blob an earlier version stored in clear is sealed. True if it changed."""
        path = self.path(digest)
        with open(path, "r+b") as f:
            header = f.read(HEADER_BYTES)
            if not is_sealed(header):
                clear = header + f.read()
                if hashlib.sha256(clear).hexdigest() != digest:
                    return False  # neither sealed nor ours: leave it for an operator
                _write_atomically(path, self.keys.seal(clear, digest.encode()))
                return True
            new = self.keys.rewrap(header)
            if new == header:
                return False
            f.seek(0)
            f.write(new)  # same size, in place: one sector
            f.flush()
            os.fsync(f.fileno())
        return True


def _write_atomically(target: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename, fsync the folder: after a crash the blob is
    whole or absent, never a prefix a later read would trust."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
