"""PostgreSQL stopped for 10 s under load, then started again: `dxserve serve` answers 503 with
Retry-After meanwhile (never a 500, never past the request timeout), recovers by itself, and
loses nothing it answered 201 — nor the audit events of what it refused."""

import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from dxserve.store.audit import AuditTrail, load_key
from dxserve.store.database import make_engine
from dxserve.store.tables import UsageEventRow
from tests.api.test_durability import start
from tests.api.test_v1 import png
from tests.processes import PrivatePostgres

CLIENTS = 8
BEFORE_S, STOPPED_S, AFTER_S = 2.0, 10.0, 4.0
TIMEOUT_S = 10.0  # the server's request timeout in this test


@dataclass
class Outcome:
    sent: float
    took: float
    status: int
    retry_after: str | None
    diagnosis: str | None


@pytest.mark.postgres
def test_postgresql_stopped_under_load(
    tmp_path: Path, trained_repo: Path, phantom_dir: Path
) -> None:
    with PrivatePostgres() as postgres:
        data = tmp_path / "data"
        timeout = {"DXSERVE_REQUEST_TIMEOUT_S": str(TIMEOUT_S)}
        process, url, token, _ = start(data, trained_repo, postgres.url, **timeout)
        try:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}
            image = png(phantom_dir)
            outcomes: list[Outcome] = []
            until = time.monotonic() + BEFORE_S + STOPPED_S + AFTER_S

            def client() -> None:
                with requests.Session() as session:
                    while time.monotonic() < until:
                        sent = time.monotonic()
                        response = session.post(
                            f"http://{url}/v1/diagnoses",
                            data=image,
                            headers=headers,
                            timeout=TIMEOUT_S + 5,
                        )
                        created = response.status_code == 201
                        outcomes.append(
                            Outcome(
                                sent,
                                time.monotonic() - sent,
                                response.status_code,
                                response.headers.get("Retry-After"),
                                response.json()["id"] if created else None,
                            )
                        )
                        if response.status_code == 503:
                            time.sleep(0.2)  # as a client honouring Retry-After would, briefly

            threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
            for thread in threads:
                thread.start()
            time.sleep(BEFORE_S)
            postgres.stop()
            stopped = time.monotonic()
            time.sleep(STOPPED_S)
            postgres.start()
            restarted = time.monotonic()
            for thread in threads:
                thread.join(timeout=TIMEOUT_S + 30)

            statuses = Counter(o.status for o in outcomes)
            slowest = max(o.took for o in outcomes)
            print(f"PostgreSQL stopped {STOPPED_S:g} s: {dict(statuses)}, slowest {slowest:.2f} s")
            assert set(statuses) <= {201, 503}, statuses  # never a 500
            assert all(o.retry_after for o in outcomes if o.status == 503)
            assert slowest < TIMEOUT_S + 1  # nothing hung
            during = [o for o in outcomes if stopped + 0.5 < o.sent < restarted - 0.5]
            assert during and all(o.status == 503 for o in during)
            recovered = [o for o in outcomes if o.sent > restarted + 1.0]
            assert recovered and all(o.status == 201 for o in recovered), statuses

            answered = [o.diagnosis for o in outcomes if o.diagnosis]
            auth = {"Authorization": f"Bearer {token}"}
            for diagnosis in answered:
                got = requests.get(
                    f"http://{url}/v1/diagnoses/{diagnosis}", headers=auth, timeout=10
                )
                assert got.status_code == 200, diagnosis
            engine = make_engine(postgres.url)
            trail = AuditTrail(engine, load_key(None, data))
            refused = statuses[503]
            deadline = time.monotonic() + 15  # refusals' events wait for the database, retried
            while time.monotonic() < deadline:
                events = [e for e in trail.events() if e["action"] == "POST /v1/diagnoses"]
                if sum(e["status"] == 503 for e in events) >= refused:
                    break
                time.sleep(0.5)
            created = Counter(e["resource_id"] for e in events if e["status"] == 201)
            assert all(created[d] == 1 for d in answered) and sum(created.values()) == len(answered)
            assert sum(e["status"] == 503 for e in events) == refused
            with engine.connect() as connection:
                usage = connection.scalar(
                    select(func.count()).where(UsageEventRow.kind == "diagnosis")
                )
            assert usage == len(answered)
            assert trail.verify().ok
            engine.dispose()
        finally:
            process.terminate()
            process.wait(timeout=30)
