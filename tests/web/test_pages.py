"""The web app over HTTP (no browser): sign-in and sessions, CSRF and Fetch Metadata, the pages
of each role, a study from upload to feedback and history, tenant isolation, and the CSP."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.test_v1 import png

PAGE_CSP = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web"), model_repository=trained_repo)
    with TestClient(create_app(build_services(settings))) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(app: TestClient) -> dict[str, str]:
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    accounts.create_tenant("st-mary")
    accounts.create_tenant("elsewhere")
    accounts.create_tenant("operator")
    return {
        "platform": accounts.create_key("operator", Role.platform_admin)[1],
        "clinician": accounts.create_key("st-mary", Role.clinician)[1],
        "admin": accounts.create_key("st-mary", Role.admin)[1],
        "other": accounts.create_key("elsewhere", Role.clinician)[1],
    }


def browser(app: TestClient, token: str) -> TestClient:
    """A fresh cookie jar signed in with ``token`` (on the app's event loop)."""
    client = TestClient(app.app)
    client.portal = app.portal  # the app's event loop, where its batchers live
    form = client.get("/sign-in")
    signin = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert signin
    response = client.post(
        "/sign-in",
        data={"api_key": token, "csrf": signin.group(1)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "dxserve_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert token not in cookie
    return client


def csrf_of(client: TestClient, path: str = "/history") -> str:
    page = client.get(path)
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_sign_in_refuses_a_bad_key_and_a_forged_form(app: TestClient) -> None:
    client = TestClient(app.app)
    client.portal = app.portal  # the app's event loop, where its batchers live
    assert client.get("/history", follow_redirects=False).headers["location"] == "/sign-in"
    form = client.get("/sign-in")
    assert form.status_code == 200 and form.headers["content-security-policy"] == PAGE_CSP
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    bad = client.post("/sign-in", data={"api_key": "dxs_nope", "csrf": token})
    assert bad.status_code == 401 and "does not work" in bad.text
    client.cookies.clear()  # a form posted from elsewhere: no sign-in cookie to match
    forged = client.post("/sign-in", data={"api_key": "x", "csrf": "guessed"})
    assert forged.status_code == 403


def test_a_study_from_upload_to_history(
    app: TestClient, tokens: dict[str, str], phantom_dir: Path
) -> None:
    client = browser(app, tokens["clinician"])
    csrf = csrf_of(client, "/studies/new")
    files = {"file": ("study.png", png(phantom_dir), "image/png")}
    refused = client.post("/studies?explain=true", files=files)
    assert refused.status_code == 403  # no CSRF token
    created = client.post("/studies?explain=true", files=files, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201, created.text
    location = created.json()["location"]
    result = client.get(location)
    assert result.status_code == 200
    assert "Not for clinical use" in result.text and "echo-cnn" in result.text
    assert result.headers["cache-control"] == "no-store"
    assert not re.search(r"<script(?![^>]*\b(src|type=\"application/json\"))", result.text)
    for suffix in ("/cine.png", "/explanation.png", "/download/heatmap-png"):
        media = client.get(location + suffix)
        assert media.status_code == 200 and media.content[:4] == b"\x89PNG", suffix
    assert client.get(location + "/download/fhir").json()["resourceType"] == "Bundle"
    assert client.get(location + "/download/sr").content[128:132] == b"DICM"

    saved = client.post(
        location + "/feedback",
        data={"verdict": "disagree", "correct_label": "normal", "comment": "septum looks fine"},
        headers={"X-CSRF-Token": csrf},
    )
    assert saved.status_code == 200 and "Saved" in saved.text, saved.text
    history = client.get("/history", params={"model": "echo-cnn"})
    assert location in history.text
    assert location not in client.get("/history", params={"refer": "yes", "label": "x"}).text

    stranger = browser(app, tokens["other"])
    elsewhere = stranger.get(location)
    assert elsewhere.status_code == 404 and "Not found" in elsewhere.text
    assert stranger.get(location + "/cine.png").status_code == 404


def test_state_changes_from_another_site_are_refused(
    app: TestClient, tokens: dict[str, str]
) -> None:
    client = browser(app, tokens["admin"])
    csrf = csrf_of(client)
    cross = client.post(
        "/admin/keys",
        data={"role": "clinician", "csrf": csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "another site" in cross.text
    same = client.post(
        "/admin/keys",
        data={"role": "clinician", "name": "ward 3", "csrf": csrf},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 200 and "shown only on this page" in same.text


def test_roles_see_their_own_pages(app: TestClient, tokens: dict[str, str]) -> None:
    clinician = browser(app, tokens["clinician"])
    assert clinician.get("/admin/keys").status_code == 403
    assert clinician.get("/admin/usage").status_code == 403
    admin = browser(app, tokens["admin"])
    for path in ("/admin/keys", "/admin/usage", "/admin/audit", "/admin/models"):
        assert admin.get(path).status_code == 200, path
    ranged = admin.get(
        "/admin/usage", params={"from": "2026-11-20", "to": "2026-12-10", "metric": "frames"}
    )
    assert ranged.status_code == 200 and '"metric": "frames"' in ranged.text
    assert '"2026-11-20"' in ranged.text and '"2026-12-10"' in ranged.text
    backwards = admin.get("/admin/usage", params={"from": "2026-12-10", "to": "2026-12-01"})
    assert backwards.status_code == 400 and "at most a year" in backwards.text
    csv = admin.get("/admin/usage/invoice.csv")
    assert csv.status_code == 200 and csv.text.startswith("tenant,month,description")
    assert "The chain is intact" in admin.get("/admin/audit/verify").text


def test_sign_out_ends_the_session(app: TestClient, tokens: dict[str, str]) -> None:
    client = browser(app, tokens["clinician"])
    session = client.cookies.get("dxserve_session")
    csrf = csrf_of(client)
    out = client.post("/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    replay = TestClient(app.app, cookies={"dxserve_session": session})  # a stolen copy
    replay.portal = app.portal  # the app's event loop, where its batchers live
    assert replay.get("/history", follow_redirects=False).status_code == 303


def test_a_platform_admin_manages_tenants_and_aliases(
    app: TestClient, tokens: dict[str, str], trained_repo: Path
) -> None:
    client = browser(app, tokens["platform"])
    csrf = csrf_of(client, "/admin/tenants")
    made = client.post("/admin/tenants", data={"name": "st-luke", "plan": "trial", "csrf": csrf})
    assert made.status_code == 200 and "Tenant st-luke created." in made.text
    changed = client.post("/admin/tenants/st-luke/plan", data={"plan": "standard", "csrf": csrf})
    assert "Tenant st-luke is on plan standard." in changed.text
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    assert {t["name"]: t["plan"] for t in accounts.tenants()}["st-luke"] == "standard"

    bad = client.post(
        "/admin/models/echo-cnn/aliases",
        data={"alias": "canary", "routes": "9:10", "csrf": csrf},
    )
    assert bad.status_code == 400 and "no version" in bad.text
    aliases = trained_repo / "echo-cnn" / "aliases.json"
    try:
        set_ = client.post(
            "/admin/models/echo-cnn/aliases",
            data={"alias": "canary", "routes": "1:100", "csrf": csrf},
        )
        assert set_.status_code == 200 and "canary" in set_.text
        assert '"canary"' in aliases.read_text()
    finally:
        aliases.unlink(missing_ok=True)
    admin = browser(app, tokens["admin"])
    assert admin.get("/admin/tenants").status_code == 403
    refused = admin.post(
        "/admin/models/echo-cnn/aliases",
        data={"alias": "canary", "routes": "1", "csrf": csrf_of(admin)},
    )
    assert refused.status_code == 403 and not aliases.exists()


def test_the_new_study_page_lists_the_studies_received(
    app: TestClient, tokens: dict[str, str], phantom_dir: Path
) -> None:
    client = browser(app, tokens["clinician"])
    csrf = csrf_of(client, "/studies/new")
    files = {"file": ("study.png", png(phantom_dir), "image/png")}
    location = client.post("/studies", files=files, headers={"X-CSRF-Token": csrf}).json()[
        "location"
    ]
    assert location in client.get("/studies/new").text


def test_a_note_from_the_form_to_its_marked_up_result(
    app: TestClient, tokens: dict[str, str]
) -> None:
    client = browser(app, tokens["clinician"])
    form = client.get("/notes/new")
    assert form.status_code == 200 and 'name="note"' in form.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    note = "Patient: Ozric Vantablack  MRN: 55501234\nNo chest pain. Possible pneumonia.\n"
    assert client.post("/notes", data={"note": note}).status_code == 403  # no CSRF token
    made = client.post("/notes", data={"note": note, "csrf": csrf}, follow_redirects=False)
    assert made.status_code == 303
    address = made.headers["location"]
    assert re.fullmatch(r"/notes/[0-9a-f]{32}", address)  # no identifier in the URL
    result = client.get(address)
    assert result.status_code == 200 and result.headers["cache-control"] == "no-store"
    assert "Ozric" not in result.text and "55501234" not in result.text
    assert '<mark class="entity problem negated"' in result.text
    assert "<code>J18.9</code>" in result.text and "<code>R07.9</code>" not in result.text
    bundle = client.get(f"{address}/fhir.json")
    assert bundle.headers["content-type"].startswith("application/fhir+json")
    assert bundle.json()["resourceType"] == "Bundle"
    empty = client.post("/notes", data={"note": " ", "csrf": csrf})
    assert empty.status_code == 400 and "empty" in empty.text
    other = browser(app, tokens["other"])
    assert other.get(address).status_code == 404
    assert other.get(f"{address}/fhir.json").status_code == 404
