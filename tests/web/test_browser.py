"""The web app in a real browser: Debian's Chromium driven by Playwright against a real
`dxserve serve` on loopback. A clinician signs in, sends an echo cine, plays it with the
explanation, gives feedback and finds it in the history, then sends a real DICOM ECG and reads
its intervals; an admin creates and revokes keys, sees the usage chart and downloads the invoice;
a clinician is refused the console; another tenant's diagnosis is a 404 page; a cross-site POST
changes nothing. No page logs a CSP violation, axe-core finds no WCAG 2 A/AA violation, and a
screenshot of each page is saved (``DXSERVE_SCREENSHOTS``, default the test's own folder)."""

import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from dxserve.core.security.principal import Role
from dxserve.phantoms.dicom import write_study
from dxserve.phantoms.study import make_study
from dxserve.store.accounts import Accounts
from dxserve.store.database import make_engine
from tests.api.test_tritonclient import run_server
from tests.processes import free_port

playwright_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra")
expect = playwright_api.expect
pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
AXE = Path(__file__).with_name("vendor") / "axe-4.10.3.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_repo: Path) -> Iterator[dict[str, str]]:
    """`dxserve serve` with the echo and ECG models: its address, the dev admin key, and a
    clinician key of another tenant."""
    data = tmp_path_factory.mktemp("web-live")
    for url, admin in run_server(data, model_repo):
        engine = make_engine(f"sqlite:///{data / 'dxserve.db'}")
        accounts = Accounts(engine)
        accounts.create_tenant("elsewhere")
        _, other = accounts.create_key("elsewhere", Role.clinician)
        accounts.create_tenant("operator")
        _, platform = accounts.create_key("operator", Role.platform_admin)
        engine.dispose()
        yield {"base": f"http://{url}", "admin": admin, "other": other, "platform": platform}


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: apt-get install chromium (.ci/run does)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DXSERVE_SCREENSHOTS")
    out = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    out.mkdir(parents=True, exist_ok=True)
    return out


class Visit:
    """A browser context that watches for CSP violations and console errors."""

    def __init__(self, browser, base: str, shots: Path, width: int = 1280) -> None:  # type: ignore[no-untyped-def]
        self.context = browser.new_context(viewport={"width": width, "height": 800})
        self.page = self.context.new_page()
        self.base, self.shots = base, shots
        self.problems: list[str] = []
        self.page.on("console", self._console)

    def _console(self, message) -> None:  # type: ignore[no-untyped-def]
        if message.type == "error" or "Content Security Policy" in message.text:
            self.problems.append(message.text)

    def go(self, path: str, shot: str | None = None):  # type: ignore[no-untyped-def]
        response = self.page.goto(self.base + path)
        if shot:
            self.page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)
        return response

    def sign_in(self, token: str) -> None:
        self.go("/sign-in", "sign-in")
        self.page.get_by_label("API key").fill(token)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/studies/new")

    def close(self) -> None:
        self.context.close()


def axe_violations(browser, base: str, cookies: list, paths: list[str]) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """axe-core on each page, in a context that lets the test inject axe (the CSP would not)."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    context.add_cookies(cookies)
    page = context.new_page()
    found = {}
    for path in paths:
        page.goto(base + path)
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG
        )
        assert len(result["passes"]) > 10, path  # axe ran its WCAG rules on the page
        ids = [f"{v['id']}: {v['nodes'][0]['target']}" for v in result["violations"]]
        if ids:
            found[path] = ids
    context.close()
    return found


def echo_cine(folder: Path) -> Path:
    path = folder / "echo.dcm"
    write_study(path, make_study(5, 2, 128, frames=8).frames, np.random.default_rng(5))
    return path


def test_the_web_app_in_chromium(
    server: dict[str, str],
    chromium,
    shots: Path,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    base = server["base"]
    admin = Visit(chromium, base, shots)
    admin.sign_in(server["admin"])

    # The admin creates a clinician's key, and another key it then revokes.
    admin.go("/admin/keys")
    admin.page.get_by_label("Name").fill("ward 3")
    admin.page.get_by_label("Role").select_option("clinician")
    admin.page.get_by_role("button", name="Create key").click()
    clinician_token = admin.page.get_by_label("Secret").input_value()
    assert clinician_token.startswith("dxs_")
    admin.page.screenshot(path=str(shots / "admin-keys-created.png"), full_page=True)
    admin.page.get_by_label("Name").fill("temporary")
    admin.page.get_by_role("button", name="Create key").click()
    temporary = admin.page.locator("div.secret strong").inner_text().split()[1]
    admin.page.get_by_role("button", name=f"Revoke {temporary}").click()
    expect(admin.page.get_by_text(f"Key {temporary} is revoked.")).to_be_visible()

    # The clinician sends an echo cine, plays it with the explanation, gives feedback.
    clinician = Visit(chromium, base, shots)
    clinician.sign_in(clinician_token)
    clinician.page.screenshot(path=str(shots / "new-study.png"), full_page=True)
    clinician.page.get_by_label("Study file(s)").set_input_files(str(echo_cine(tmp_path)))
    clinician.page.get_by_role("button", name="Diagnose").click()
    clinician.page.wait_for_url("**/diagnoses/*", timeout=60_000)
    page = clinician.page
    result_url = page.url
    expect(page.get_by_text("Not for clinical use.").first).to_be_visible()
    frame_number = page.locator("#frame-number")
    expect(frame_number).to_have_text("1 / 8")  # the cine loaded: 8 frames
    page.get_by_role("button", name="Play").click()
    expect(frame_number).not_to_have_text("1 / 8")  # it plays
    page.get_by_role("button", name="Pause").click()
    page.get_by_label("Show explanation").check()
    expect(page.locator("#overlay")).to_be_visible()
    page.get_by_label("Overlay opacity").fill("40")
    expect(page.locator("#chart .uplot")).to_have_count(1)  # the per-frame chart drew
    page.screenshot(path=str(shots / "result-echo.png"), full_page=True)
    page.get_by_role("radio", name="Disagree").check()
    page.get_by_label("Correct label (when you disagree)").select_option("normal")
    page.get_by_role("button", name="Save verdict").click()
    expect(page.get_by_text("Saved: you disagreed")).to_be_visible()
    clinician.go("/history", "history")
    expect(page.locator(f"a[href='{result_url.removeprefix(base)}']")).to_have_count(1)

    # A real DICOM 12-lead ECG: the picture and the intervals.
    clinician.go("/studies/new")
    page.get_by_label("Study file(s)").set_input_files(get_testdata_file("waveform_ecg.dcm"))
    page.get_by_label("Explain the answer (saliency map; takes longer)").uncheck()
    page.get_by_role("button", name="Diagnose").click()
    page.wait_for_url("**/diagnoses/*", timeout=60_000)
    expect(page.get_by_role("heading", name="Intervals")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile(r"^qrs \d+(\.\d)? ms$"))).to_be_visible()
    assert page.locator("img.ecg").evaluate("img => img.complete && img.naturalWidth > 0")
    page.screenshot(path=str(shots / "result-ecg.png"), full_page=True)

    # A clinical note, pasted: de-identified, its entities marked, its codes listed.
    clinician.go("/notes/new", "new-note")
    page.get_by_label("Note").fill(
        "Patient: Ozric Vantablack  MRN: 55501234\nNo chest pain. Possible pneumonia.\n"
        "Medications:\n- apixaban 5 mg PO twice daily\n"
    )
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_url("**/notes/*", timeout=60_000)
    note_url = page.url
    expect(page.locator("mark.entity.problem.negated")).to_have_text("chest pain")
    expect(page.get_by_role("cell", name="J18.9")).to_be_visible()
    expect(page.get_by_text("Ozric")).to_have_count(0)
    page.screenshot(path=str(shots / "note.png"), full_page=True)

    # The clinician may not open the console; another tenant gets a 404 page.
    assert clinician.go("/admin/keys").status == 403
    stranger = Visit(chromium, base, shots)
    stranger.sign_in(server["other"])
    response = stranger.go(result_url.removeprefix(base), "not-found")
    assert response.status == 404
    expect(stranger.page.get_by_text("no such diagnosis")).to_be_visible()

    # Usage: the chart, and the invoice as CSV.
    admin.go("/admin/usage", "admin-usage")
    expect(admin.page.locator("#usage-chart .uplot")).to_have_count(1)
    with admin.page.expect_download() as download:
        admin.page.get_by_role("link", name="Download the invoice (CSV)").click()
    assert Path(download.value.path()).read_text().startswith("tenant,month,description")
    admin.go("/admin/audit", "admin-audit")
    admin.page.get_by_role("button", name="Verify the chain").click()
    expect(admin.page.get_by_text("The chain is intact")).to_be_visible()
    admin.go("/admin/models", "admin-models")

    # A page on another site posting to the console: the session cookie is not sent.
    admin.go("/admin/keys")
    keys_before = admin.page.locator("tbody tr").count()
    attack = tmp_path / "attack"
    attack.mkdir()
    (attack / "index.html").write_text(
        f'<form method="post" action="{base}/admin/keys"><input name="role" value="admin">'
        '<input name="name" value="attacker"></form><script src="go.js"></script>'
    )
    (attack / "go.js").write_text("document.forms[0].submit();")
    port = free_port()
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(attack))  # noqa: E731
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        admin.page.goto(f"http://localhost:{port}/index.html")  # another site than 127.0.0.1
        admin.page.wait_for_load_state()
        assert "attacker" not in admin.page.content()
    finally:
        evil.shutdown()
        evil.server_close()
    admin.go("/admin/keys")
    assert admin.page.locator("tbody tr").count() == keys_before
    assert admin.page.get_by_text("attacker").count() == 0

    # A tablet: nothing wider than the screen.
    tablet = Visit(chromium, base, shots, width=768)
    tablet.sign_in(clinician_token)
    tablet.go(result_url.removeprefix(base), "result-tablet")
    assert tablet.page.evaluate("document.documentElement.scrollWidth") <= 768

    # A platform admin: tenants and plans, and the alias form on the models page.
    platform = Visit(chromium, base, shots)
    platform.sign_in(server["platform"])
    platform.go("/admin/tenants", "platform-tenants")
    platform.page.get_by_label("Name").fill("st-luke")
    platform.page.get_by_role("button", name="Create tenant").click()
    expect(platform.page.get_by_text("Tenant st-luke created.")).to_be_visible()
    platform.go("/admin/models", "platform-models")

    visits = (admin, clinician, stranger, tablet, platform)
    problems = [p for visit in visits for p in visit.problems if "404" not in p and "403" not in p]
    assert problems == []  # no CSP violation, no script error
    found = axe_violations(
        chromium,
        base,
        clinician.context.cookies(),
        [
            "/studies/new",
            "/history",
            result_url.removeprefix(base),
            "/notes/new",
            note_url.removeprefix(base),
        ],
    )
    found |= axe_violations(
        chromium,
        base,
        admin.context.cookies(),
        ["/admin/keys", "/admin/usage", "/admin/audit", "/admin/models"],
    )
    found |= axe_violations(
        chromium, base, platform.context.cookies(), ["/admin/tenants", "/admin/models"]
    )
    found |= axe_violations(chromium, base, [], ["/sign-in"])
    assert found == {}
    for visit in visits:
        visit.close()
