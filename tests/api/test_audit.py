"""Every access to patient data, every diagnosis, admin command and failed authentication is
audited; the chain verifies, and `dxserve audit verify` names the event someone edited."""

import json
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dxserve.cli import app as cli
from tests.api.conftest import auth
from tests.api.test_v1 import png, post_png


def test_requests_are_audited_with_who_what_and_outcome(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    audit = client.app.state.services.audit  # type: ignore[attr-defined]
    before = sum(1 for _ in audit.events())
    created = post_png(client, keys["clinician"], png(phantom_dir), "?explain=true").json()
    client.get(f"/v1/diagnoses/{created['id']}", headers=auth(keys["clinician"]))
    client.get(f"/v1/diagnoses/{created['id']}", headers=auth(keys["other"]))  # 404
    client.get("/v1/diagnoses", headers=auth("dxs_nope_nope"))  # 401
    client.get("/v2/health/ready")  # not audited: no data, no account
    deadline = time.monotonic() + 10  # events commit just after their responses
    while len(events := list(audit.events())[before:]) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [(e["action"], e["status"]) for e in events] == [
        ("POST /v1/diagnoses", 201),
        ("GET /v1/diagnoses/{diagnosis_id}", 200),
        ("GET /v1/diagnoses/{diagnosis_id}", 404),
        ("GET /v1/diagnoses", 401),
    ]
    first, read, foreign, refused = events
    assert first["resource_id"] == created["id"] and first["role"] == "clinician"
    assert first["tenant_id"] == read["tenant_id"] != foreign["tenant_id"]
    assert foreign["resource_id"] == f"diagnosis_id={created['id']}"
    assert refused["tenant_id"] is None and refused["key_id"] is None
    source = getattr(client, "source", "testclient")  # on Ray, the real client's address
    assert all(e["source"] == source and e["request_id"] for e in events)
    assert audit.verify().ok


def test_audit_cli_verifies_exports_and_names_an_edited_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DXSERVE_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["tenants", "create", "clinic"]).exit_code == 0
    for role in ("admin", "clinician"):
        assert (
            runner.invoke(cli, ["keys", "create", "--tenant", "clinic", "--role", role]).exit_code
            == 0
        )
    ok = runner.invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 3 events" in ok.output
    exported = runner.invoke(
        cli, ["audit", "export", "--out", str(tmp_path / "a.json"), "--tenant", "clinic"]
    )
    assert exported.exit_code == 0, exported.output
    bundle = json.loads((tmp_path / "a.json").read_text())
    assert [e["resource"]["subtype"][0]["code"] for e in bundle["entry"]] == [
        "cli: tenants create",
        "cli: keys create (admin)",
        "cli: keys create (clinician)",
    ]
    with sqlite3.connect(tmp_path / "dxserve.db") as db:
        db.execute("update audit_events set role = 'admin' where seq = 3")
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "broken at event 3" in broken.output and "edited" in broken.output


def test_admins_read_their_tenants_audit_as_fhir_pages(
    client: TestClient, keys: dict[str, str]
) -> None:
    for _ in range(3):
        client.get("/v1/models", headers=auth(keys["clinician"]))
    client.get("/v1/models", headers=auth(keys["other"]))
    audit = client.app.state.services.audit  # type: ignore[attr-defined]

    def models_reads() -> int:
        return sum(1 for e in audit.events() if e["action"] == "GET /v1/models")

    deadline = time.monotonic() + 10  # events commit just after their responses
    while models_reads() < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    admin = auth(keys["admin"])
    page = client.get("/v1/admin/audit?limit=2", headers=admin).json()
    assert page["resourceType"] == "Bundle" and page["total"] == 2
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in page["entry"])
    seen = []
    url: str | None = "/v1/admin/audit?limit=2"
    while url:
        page = client.get(url, headers=admin).json()
        seen += [e["resource"] for e in page["entry"]]
        url = next(
            (link["url"] for link in page.get("link", []) if link["relation"] == "next"), None
        )
    other_tenant = {e["tenant_id"] for e in audit.events() if e["key_id"] is not None} - {
        seen[0]["source"]["site"]
    }
    assert other_tenant and all(r["source"]["site"] == seen[0]["source"]["site"] for r in seen)
    assert len({r["id"] for r in seen}) == len(seen) >= 3
    refused = client.get("/v1/admin/audit", headers=auth(keys["clinician"]))
    assert refused.status_code == 403
