"""Upgrades: a database of the first schema revision, filled as the first release filled it,
upgrades to the newest with its data intact and usable; a database written by a newer dxserve
is refused with a clear message, by the stores, `dxserve db` and `dxserve serve`."""

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from dxserve.cli import app
from dxserve.core.security.keys import new_key
from dxserve.core.security.principal import Role
from dxserve.errors import SchemaTooNew
from dxserve.store.accounts import Accounts
from dxserve.store.database import current_revision, head_revision, make_engine, migrate
from dxserve.store.diagnoses import Diagnoses

RECORD = {"model": "echo-cnn", "version": 1, "label": "abnormal", "probability": 0.91}


def test_the_first_schema_upgrades_with_its_data(own_database_url: str) -> None:
    engine = make_engine(own_database_url)
    migrate(engine, to="0001")
    assert current_revision(engine) == "0001"
    key = new_key()
    now = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)
    record = {**RECORD, "id": "d" * 32, "created": now.isoformat()}
    with engine.begin() as connection:  # as the first release wrote them
        connection.execute(
            text("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'st-mary', :now)"),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO api_keys (id, tenant_id, role, name, salt, hash, created_at) "
                "VALUES (:id, 't1', 'clinician', 'ward', :salt, :hash, :now)"
            ),
            {"id": key.key_id, "salt": key.salt, "hash": key.hash, "now": now},
        )
        connection.execute(
            text(
                "INSERT INTO diagnoses (id, tenant_id, key_id, model, version, label, "
                "probability, input_sha256, input_media_type, input_bytes, result, created_at) "
                "VALUES (:id, 't1', :key, 'echo-cnn', 1, 'abnormal', 0.91, :sha, 'image/png', "
                "1234, :result, :now)"
            ),
            {
                "id": "d" * 32,
                "key": key.key_id,
                "sha": "ab" * 32,
                "result": json.dumps(record),
                "now": now,
            },
        )
    migrate(engine)
    assert current_revision(engine) == head_revision()
    principal = Accounts(engine).authenticate(key.token)
    assert principal.tenant_name == "st-mary" and principal.role == Role.clinician
    diagnoses = Diagnoses(engine)
    try:
        kept = diagnoses.get("t1", "d" * 32)
        assert kept["label"] == "abnormal" and kept["probability"] == 0.91
        assert [d["id"] for d in diagnoses.page("t1", 10, None)[0]] == ["d" * 32]
    finally:
        engine.dispose()


def test_a_database_written_by_a_newer_dxserve_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'dxserve.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9001'"))
    with pytest.raises(SchemaTooNew, match="revision 9001, newer than this dxserve knows"):
        migrate(engine)
    engine.dispose()
    monkeypatch.setenv("DXSERVE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    current = runner.invoke(app, ["db", "current"])
    assert current.exit_code == 0 and "written by a newer dxserve" in current.output
    with pytest.raises(SchemaTooNew):  # main() turns it into the message and exit code 2
        runner.invoke(app, ["serve", "--no-demo"], catch_exceptions=False)


def test_db_upgrade_and_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DXSERVE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert "no revision" in runner.invoke(app, ["db", "current"]).output
    upgraded = runner.invoke(app, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"up to {head_revision()} (up to date)" in runner.invoke(app, ["db", "current"]).output
