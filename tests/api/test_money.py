"""Plans, usage metering, invoices, rate limits and quotas, key lifecycle and the platform admin,
through the real app on a plans file with small limits."""

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from dxserve.store.tables import ApiKey
from tests.api.conftest import auth
from tests.api.test_v1 import assert_problem, png, post_png
from tests.api.test_v2 import infer_body

PLANS = """
[plans.clinic]
currency = "EUR"
monthly_fee = "100.00"
included_images = 2
per_image = "0.50"
per_frame = "0.01"
rate_per_second = 1000
burst = 1000

[plans.tiny]
monthly_quota = 2
per_image = "1"
rate_per_second = 1000
burst = 1000

[plans.slow]
rate_per_second = 0.5
burst = 3
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("money")
    (data / "plans.toml").write_text(PLANS)
    settings = Settings(
        data_dir=data, model_repository=trained_repo, plans_file=data / "plans.toml"
    )
    with TestClient(create_app(build_services(settings))) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(app: TestClient) -> dict[str, str]:
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    for name, plan in (("clinic", "clinic"), ("tiny", "tiny"), ("slow", "slow"), ("ops", "clinic")):
        accounts.create_tenant(name, plan)
    return {
        "admin": accounts.create_key("clinic", Role.admin)[1],
        "clinician": accounts.create_key("clinic", Role.clinician)[1],
        "service": accounts.create_key("clinic", Role.service)[1],
        "tiny": accounts.create_key("tiny", Role.service)[1],
        "slow": accounts.create_key("slow", Role.clinician)[1],
        "platform": accounts.create_key("ops", Role.platform_admin)[1],
    }


def settled(app: TestClient, token: str, images: int) -> dict:  # type: ignore[type-arg]
    """/v1/usage once the usage events (committed after their responses) are all in."""
    deadline = time.monotonic() + 5
    while True:
        usage = app.get("/v1/usage", headers=auth(token)).json()
        if usage["images"] >= images or time.monotonic() > deadline:
            return usage
        time.sleep(0.05)


def test_usage_and_invoice_add_up(app: TestClient, tokens: dict[str, str], phantom_dir: Path):
    for _ in range(3):
        assert post_png(app, tokens["clinician"], png(phantom_dir)).status_code == 201
    x = np.zeros((4, 3, 128, 128), dtype=np.float32)
    url = "/v2/models/echo-cnn/versions/1/infer"
    assert app.post(url, content=infer_body(x), headers=auth(tokens["service"])).status_code == 200
    usage = settled(app, tokens["admin"], 7)
    assert (usage["requests"], usage["images"], usage["frames"]) == (4, 7, 7)
    assert usage["tenant"] == "clinic" and usage["bytes"] > x.nbytes
    (line,) = usage["by_model"]
    assert (line["model"], line["version"], line["images"]) == ("echo-cnn", 1, 7)
    assert usage["compute_ms"] > 0

    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    invoice = app.get(f"/v1/admin/invoices/{month}", headers=auth(tokens["admin"])).json()
    lines = {item["description"]: item for item in invoice["lines"]}
    assert (
        lines["echo-cnn:1 images"]["quantity"] == 7 and lines["echo-cnn:1 frames"]["quantity"] == 7
    )
    assert lines["included images (2/month)"]["amount"] == "-1.00"
    # 100 fee + 7 × 0.50 + 7 × 0.01 − 2 × 0.50
    assert (
        Decimal(invoice["total"])
        == Decimal("102.57")
        == sum(Decimal(item["amount"]) for item in invoice["lines"])
    )
    response = app.get(f"/v1/admin/invoices/{month}?format=csv", headers=auth(tokens["admin"]))
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[-1]["description"] == "total" and rows[-1]["amount"] == invoice["total"]
    empty = app.get("/v1/admin/invoices/2020-01", headers=auth(tokens["admin"])).json()
    assert empty["total"] == "100.00" and empty["usage"]["images"] == 0

    assert_problem(app.get("/v1/usage", headers=auth(tokens["clinician"])), 403, "forbidden")
    assert_problem(
        app.get("/v1/admin/invoices/2026-13", headers=auth(tokens["admin"])), 422, "invalid_request"
    )
    assert_problem(
        app.get("/v1/usage?from=2026-02-01&to=2026-01-01", headers=auth(tokens["admin"])),
        400,
        "invalid_input",
    )


def test_monthly_quota_is_a_429_naming_the_quota(
    app: TestClient, tokens: dict[str, str], phantom_dir: Path
) -> None:
    for _ in range(2):
        assert post_png(app, tokens["tiny"], png(phantom_dir)).status_code == 201
    refused = post_png(app, tokens["tiny"], png(phantom_dir))
    assert_problem(refused, 429, "monthly_quota_exceeded")
    assert "2 images a month" in refused.json()["detail"]
    assert 0 < int(refused.headers["retry-after"]) <= 31 * 86400
    x = np.zeros((1, 3, 128, 128), dtype=np.float32)
    oip = app.post("/v2/models/echo-cnn/infer", content=infer_body(x), headers=auth(tokens["tiny"]))
    assert oip.status_code == 429 and "error" in oip.json()


def test_rate_limit_is_a_429_with_retry_after(app: TestClient, tokens: dict[str, str]) -> None:
    statuses = [app.get("/v1/models", headers=auth(tokens["slow"])) for _ in range(6)]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]  # the burst
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert_problem(limited[0], 429, "rate_limited")
    assert limited[0].headers["retry-after"] in ("1", "2")
    # another key of another tenant is not slowed down
    assert app.get("/v1/models", headers=auth(tokens["clinician"])).status_code == 200


def test_key_scopes_expiry_rotation_and_last_use(app: TestClient, tokens: dict[str, str]) -> None:
    admin = auth(tokens["admin"])
    made = app.post(
        "/v1/admin/keys",
        json={"role": "clinician", "name": "viewer", "scopes": ["read_results"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    viewer = auth(made.json()["token"])
    assert app.get("/v1/diagnoses", headers=viewer).status_code == 200
    denied = app.post(
        "/v1/diagnoses", content=b"x", headers={**viewer, "Content-Type": "image/png"}
    )
    assert_problem(denied, 403, "forbidden")
    assert "scopes" in denied.json()["detail"]
    too_much = app.post(
        "/v1/admin/keys", json={"role": "service", "scopes": ["read_audit"]}, headers=admin
    )
    assert_problem(too_much, 400, "invalid_input")

    listed = {k["id"]: k for k in app.get("/v1/admin/keys", headers=admin).json()["keys"]}
    assert listed[made.json()["id"]]["scopes"] == ["read_results"]
    assert listed[made.json()["id"]]["last_used_at"] is not None
    assert all(k["tenant"] == "clinic" for k in listed.values())
    assert not any("hash" in k or "salt" in k for k in listed.values())

    rotated = app.post(
        f"/v1/admin/keys/{made.json()['id']}/rotate", json={"grace_hours": 1}, headers=admin
    )
    assert rotated.status_code == 201
    assert app.get("/v1/diagnoses", headers=auth(rotated.json()["token"])).status_code == 200
    assert app.get("/v1/diagnoses", headers=viewer).status_code == 200  # within its grace
    listed = {k["id"]: k for k in app.get("/v1/admin/keys", headers=admin).json()["keys"]}
    assert listed[made.json()["id"]]["expires_at"] is not None
    assert listed[rotated.json()["id"]]["scopes"] == ["read_results"]

    now_rotated = app.post(
        f"/v1/admin/keys/{rotated.json()['id']}/rotate", json={"grace_hours": 0}, headers=admin
    )
    assert_problem(
        app.get("/v1/diagnoses", headers=auth(rotated.json()["token"])), 401, "unauthenticated"
    )
    assert app.get("/v1/diagnoses", headers=auth(now_rotated.json()["token"])).status_code == 200

    # a key whose expiry passed is refused like an unknown one
    services = app.app.state.services  # type: ignore[attr-defined]
    key_id, token = services.accounts.create_key("clinic", Role.service)
    with services.accounts.engine.begin() as connection:
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(expires_at=past))
    assert_problem(app.get("/v1/models", headers=auth(token)), 401, "unauthenticated")

    gone = app.delete(f"/v1/admin/keys/{now_rotated.json()['id']}", headers=admin)
    assert gone.status_code == 204
    assert app.get("/v1/diagnoses", headers=auth(now_rotated.json()["token"])).status_code == 401
    for role in ("clinician", "service"):
        assert_problem(app.get("/v1/admin/keys", headers=auth(tokens[role])), 403, "forbidden")


def test_platform_admin_across_tenants_and_tenant_admins_within_theirs(
    app: TestClient, tokens: dict[str, str]
) -> None:
    platform, admin = auth(tokens["platform"]), auth(tokens["admin"])
    tenants = app.get("/v1/admin/tenants", headers=platform).json()
    assert {"clinic", "tiny", "slow", "ops"} <= {t["name"] for t in tenants["tenants"]}
    assert sorted(tenants["plans"]) == ["clinic", "slow", "tiny"]
    made = app.post(
        "/v1/admin/tenants", json={"name": "new-clinic", "plan": "clinic"}, headers=platform
    )
    assert made.status_code == 201
    bad_plan = app.post("/v1/admin/tenants", json={"name": "x", "plan": "gold"}, headers=platform)
    assert_problem(bad_plan, 400, "invalid_input")
    assert app.get("/v1/usage?tenant=tiny", headers=platform).json()["tenant"] == "tiny"
    key = app.post("/v1/admin/keys?tenant=new-clinic", json={"role": "admin"}, headers=platform)
    assert key.status_code == 201
    assert app.get("/v1/usage", headers=auth(key.json()["token"])).json()["tenant"] == "new-clinic"

    assert_problem(app.get("/v1/admin/tenants", headers=admin), 403, "forbidden")
    assert_problem(app.get("/v1/usage?tenant=tiny", headers=admin), 403, "forbidden")
    assert_problem(app.get("/v1/admin/keys?tenant=tiny", headers=admin), 403, "forbidden")
    escalate = app.post("/v1/admin/keys", json={"role": "platform-admin"}, headers=admin)
    assert_problem(escalate, 400, "invalid_input")
    other = app.app.state.services.accounts.list_keys(  # type: ignore[attr-defined]
        app.app.state.services.accounts.tenant_id("tiny")  # type: ignore[attr-defined]
    )[0]["id"]
    assert_problem(app.delete(f"/v1/admin/keys/{other}", headers=admin), 404, "not_found")
    assert_problem(
        app.post(f"/v1/admin/keys/{other}/rotate", json={}, headers=admin), 404, "not_found"
    )
