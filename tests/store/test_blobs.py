from pathlib import Path

import pytest

from dxserve.store.blobs import BlobStore


def test_content_addressed_and_idempotent(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path)
    digest = blobs.put(b"pixels")
    assert digest == blobs.put(b"pixels")
    assert blobs.get(digest) == b"pixels" and blobs.exists(digest)
    assert blobs.path(digest) == tmp_path / digest[:2] / digest[2:]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_refuses_paths_that_are_not_digests(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path).path("../../etc/passwd")
