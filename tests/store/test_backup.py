"""Backups of each database kind: the snapshot, the blobs and the sealed audit key round-trip
into an empty place; a backup never holds the master key."""

import tarfile
from pathlib import Path

import pytest

from dxserve.core.security.envelope import KeyRing, new_master_key
from dxserve.core.security.principal import Role
from dxserve.errors import InvalidInput
from dxserve.store.accounts import Accounts
from dxserve.store.audit import load_key
from dxserve.store.backup import backup, restore, verify
from dxserve.store.blobs import BlobStore
from dxserve.store.database import make_engine, migrate
from dxserve.store.diagnoses import Diagnoses, StoredInput
from dxserve.store.ledger import Unit
from tests.conftest import new_postgres_database


def fill(url: str, data: Path, keys: KeyRing) -> tuple[str, str, str]:
    """A tenant, a key, a diagnosis and its blob; the token, diagnosis id and blob digest."""
    engine = make_engine(url)
    migrate(engine)
    accounts, diagnoses = Accounts(engine), Diagnoses(engine)
    tenant = accounts.create_tenant("st-mary")
    _, token = accounts.create_key("st-mary", Role.clinician)
    digest = BlobStore(data / "blobs", keys).put(b"an input of a diagnosis")
    result = {"model": "echo-cnn", "version": 1, "label": "normal", "probability": 0.1}
    unit = Unit()
    made = diagnoses.add(unit, tenant, "k", result, StoredInput(digest, "image/png", 23))
    with engine.begin() as connection:
        unit.apply(connection)
    engine.dispose()
    load_key(None, data)  # the audit key, as the server creates it
    return token, str(made["id"]), digest


@pytest.mark.postgres
def test_postgresql_round_trip(tmp_path: Path) -> None:
    keys = KeyRing.from_settings(new_master_key(), None)
    with new_postgres_database() as source, new_postgres_database() as target:
        token, diagnosis, digest = fill(source, tmp_path / "data", keys)
        out = tmp_path / "backup.tar"
        summary = backup(source, tmp_path / "data", keys, out)
        assert summary.database == "postgresql" and summary.blobs == 1
        with tarfile.open(out) as archive:
            names = archive.getnames()
        assert "database/dxserve.pgdump" in names and "secrets/audit.key.sealed" in names
        assert (tmp_path / "data" / "audit.key").read_bytes() not in out.read_bytes()
        restore(out, tmp_path / "restored", keys, target)
        engine = make_engine(target)
        principal = Accounts(engine).authenticate(token)
        kept = Diagnoses(engine)
        assert kept.get(principal.tenant_id, diagnosis)["label"] == "normal"
        engine.dispose()
        assert (
            BlobStore(tmp_path / "restored" / "blobs", keys).get(digest)
            == b"an input of a diagnosis"
        )
        assert load_key(None, tmp_path / "restored") == load_key(None, tmp_path / "data")


def test_a_restore_needs_the_master_key_and_a_sound_backup(tmp_path: Path) -> None:
    keys = KeyRing.from_settings(new_master_key(), None)
    url = f"sqlite:///{tmp_path / 'data' / 'dxserve.db'}"
    fill(url, tmp_path / "data", keys)
    out = tmp_path / "backup.tar"
    backup(url, tmp_path / "data", keys, out)
    assert verify(out)["master_key_included"] is False
    other = KeyRing.from_settings(new_master_key(), None)
    with pytest.raises(Exception, match="master key"):
        restore(out, tmp_path / "elsewhere", other)
    (tmp_path / "not-a-backup.tar").write_bytes(b"nothing")
    with pytest.raises(InvalidInput, match="cannot read the backup"):
        verify(tmp_path / "not-a-backup.tar")
