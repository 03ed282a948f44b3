"""As durable as the answer: `dxserve serve` killed with SIGKILL in the middle of a load at
concurrency 16, then restarted on the same data — on SQLite and on PostgreSQL. Every diagnosis
answered 201 is readable, has exactly one audit event and one usage event (written in one
transaction with it), and the audit chain verifies."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests
from sqlalchemy import func, select

from dxserve.store.audit import AuditTrail, load_key
from dxserve.store.database import make_engine
from dxserve.store.tables import DiagnosisRow, UsageEventRow
from tests.api.test_tritonclient import run_server
from tests.api.test_v1 import png
from tests.processes import free_port

PLANS = "[plans.standard]\nrate_per_second = 1e9\nburst = 1000000000\n"
LOAD_S = 2.5
CLIENTS = 16


def start(
    data: Path, repository: Path, database_url: str, **extra: str
) -> tuple[subprocess.Popen[bytes], str, str, dict[str, str]]:
    """`dxserve serve` on a new data dir and ``database_url`` with no practical rate limit:
    the process, its address, the dev key it printed, and its environment."""
    data.mkdir()
    (data / "plans.toml").write_text(PLANS)
    env = {
        **os.environ,
        "DXSERVE_DATA_DIR": str(data),
        "DXSERVE_MODEL_REPOSITORY": str(repository),
        "DXSERVE_DATABASE_URL": database_url,
        "DXSERVE_PLANS_FILE": str(data / "plans.toml"),
        **extra,
    }
    port = free_port()
    with (data / "first.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dxserve", "serve", "--no-demo", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    token = re.search(r"dxs_[A-Za-z0-9_-]+", (data / "first.log").read_text())
    assert token, (data / "first.log").read_text()[-2000:]
    return process, f"127.0.0.1:{port}", token.group(0), env


def test_sigkill_under_load_loses_no_answered_record(
    own_database_url: str, tmp_path: Path, trained_repo: Path, phantom_dir: Path
) -> None:
    data = tmp_path / "data"
    process, url, token, env = start(data, trained_repo, own_database_url)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}
    image = png(phantom_dir)
    answered: list[str] = []
    until = time.monotonic() + LOAD_S

    def client() -> None:  # bounded by time; stops at the first refused connection
        with requests.Session() as session:
            while time.monotonic() < until + 5:
                try:
                    response = session.post(
                        f"http://{url}/v1/diagnoses", data=image, headers=headers, timeout=10
                    )
                except requests.RequestException:
                    return
                if response.status_code == 201:
                    answered.append(response.json()["id"])

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_S)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    for thread in threads:
        thread.join(timeout=30)
    assert len(answered) > 20, "the load never got going"
    print(f"SIGKILL after {LOAD_S:g} s of load: {len(answered)} diagnoses answered 201")

    for new_url, _ in run_server(
        data,
        trained_repo,
        expect_key=False,
        DXSERVE_DATABASE_URL=own_database_url,
        DXSERVE_PLANS_FILE=str(data / "plans.toml"),
    ):
        auth = {"Authorization": f"Bearer {token}"}
        for diagnosis in answered:
            response = requests.get(
                f"http://{new_url}/v1/diagnoses/{diagnosis}", headers=auth, timeout=30
            )
            assert response.status_code == 200, diagnosis
    engine = make_engine(own_database_url)
    try:
        trail = AuditTrail(engine, load_key(None, data))
        created = Counter(
            e["resource_id"]
            for e in trail.events()
            if e["action"] == "POST /v1/diagnoses" and e["status"] == 201
        )
        assert all(created[d] == 1 for d in answered), [d for d in answered if created[d] != 1]
        with engine.connect() as connection:
            usage = connection.execute(
                select(func.count()).where(UsageEventRow.kind == "diagnosis")
            ).scalar_one()
            stored = connection.execute(select(func.count()).select_from(DiagnosisRow)).scalar_one()
        # One transaction a request: every stored diagnosis (answered, or committed just before
        # the kill) has its usage event and its audit event; no row without the others.
        assert stored >= len(answered) and usage == stored and sum(created.values()) == stored
    finally:
        engine.dispose()
    verified = subprocess.run(
        [sys.executable, "-m", "dxserve", "audit", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
