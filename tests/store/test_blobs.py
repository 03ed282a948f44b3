from pathlib import Path

import pytest

from dxserve.core.security.envelope import (
    HEADER_BYTES,
    KeyRing,
    SealedError,
    new_master_key,
    parse_master_key,
)
from dxserve.store.blobs import BlobStore


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([parse_master_key(new_master_key())])


def test_content_addressed_and_idempotent(tmp_path: Path, ring: KeyRing) -> None:
    blobs = BlobStore(tmp_path, ring)
    digest = blobs.put(b"pixels")
    assert digest == blobs.put(b"pixels")
    assert blobs.get(digest) == b"pixels" and blobs.exists(digest)
    assert blobs.path(digest) == tmp_path / digest[:2] / digest[2:]
    assert not list(tmp_path.rglob(".tmp-*"))
    assert list(blobs.digests()) == [digest]


def test_nothing_on_disk_in_clear(tmp_path: Path, ring: KeyRing) -> None:
    secret = b"PATIENT^NAME=DOE^JANE " * 50
    digest = BlobStore(tmp_path, ring).put(secret)
    on_disk = (tmp_path / digest[:2] / digest[2:]).read_bytes()
    assert b"DOE^JANE" not in on_disk and len(on_disk) > len(secret)


def test_tampered_moved_or_foreign_blobs_do_not_open(tmp_path: Path, ring: KeyRing) -> None:
    blobs = BlobStore(tmp_path, ring)
    a, b = blobs.put(b"first"), blobs.put(b"second")
    path_a = blobs.path(a)
    sealed = bytearray(path_a.read_bytes())
    sealed[-1] ^= 1
    path_a.write_bytes(bytes(sealed))
    with pytest.raises(SealedError, match="altered"):
        blobs.get(a)
    path_a.write_bytes(blobs.path(b).read_bytes())  # a blob swapped for another
    with pytest.raises(SealedError):
        blobs.get(a)
    stranger = BlobStore(tmp_path, KeyRing([parse_master_key(new_master_key())]))
    with pytest.raises(SealedError, match="does not hold"):
        stranger.get(b)


def test_rewrap_changes_only_the_header(tmp_path: Path) -> None:
    old, new = parse_master_key(new_master_key()), parse_master_key(new_master_key())
    blobs = BlobStore(tmp_path, KeyRing([old]))
    digest = blobs.put(b"x" * 1000)
    before = blobs.path(digest).read_bytes()
    rotated = BlobStore(tmp_path, KeyRing([new, old]))
    assert rotated.rewrap(digest) and not rotated.rewrap(digest)
    after = blobs.path(digest).read_bytes()
    assert after[HEADER_BYTES:] == before[HEADER_BYTES:]
    assert after[:HEADER_BYTES] != before[:HEADER_BYTES]
    assert BlobStore(tmp_path, KeyRing([new])).get(digest) == b"x" * 1000
    with pytest.raises(SealedError):
        blobs.get(digest)  # the old key alone no longer opens it


def test_refuses_paths_that_are_not_digests(tmp_path: Path, ring: KeyRing) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path, ring).path("../../etc/passwd")
