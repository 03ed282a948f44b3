"""The ledger on SQLite and PostgreSQL: a request's writes and audit event commit together or
not at all, many requests a transaction; what nobody awaits outlives an outage."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from dxserve.core.security.audit_event import audit_event
from dxserve.store.accounts import Accounts
from dxserve.store.audit import AuditTrail
from dxserve.store.database import make_engine, migrate
from dxserve.store.diagnoses import Diagnoses, StoredInput
from dxserve.store.feedback import Feedback
from dxserve.store.ledger import Ledger, Unit
from dxserve.store.tables import AuditEventRow, FeedbackRow, UsageEventRow
from dxserve.store.usage import Usage

KEY = b"test-key-not-a-secret"


@pytest.fixture
def engine(own_database_url: str) -> Iterator[Engine]:
    engine = make_engine(own_database_url)
    migrate(engine)
    yield engine
    engine.dispose()


def request_unit(usage: Usage, tenant: str, n: int) -> Unit:
    """What a metered request writes: its usage event and its audit event."""
    unit = Unit()
    usage.stage(unit, tenant, "k", "echo-cnn", 1, "inference", 1, 1, 1.0, 10, "ok")
    unit.audit(
        audit_event("POST /v2/models/{name}/infer", 200, tenant_id=tenant, request_id=str(n))
    )
    return unit


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        return (
            connection.scalar(select(func.count()).select_from(UsageEventRow)) or 0,
            connection.scalar(select(func.count()).select_from(AuditEventRow)) or 0,
        )


def test_a_bad_unit_fails_alone_and_leaves_nothing(engine: Engine) -> None:
    tenant = Accounts(engine).create_tenant("ledger")
    usage, trail = Usage(engine), AuditTrail(engine, KEY)
    ledger = Ledger(engine, trail)
    units = [request_unit(usage, tenant, n) for n in range(40)]
    bad = units[17]
    bad.insert(UsageEventRow.__table__, dict(units[3].rows[0][1]))  # type: ignore[arg-type]

    async def commit_all() -> list[BaseException | None]:
        return await asyncio.gather(*(ledger.commit(u) for u in units), return_exceptions=True)

    outcomes = asyncio.run(commit_all())
    ledger.close()
    assert isinstance(outcomes[17], IntegrityError)  # a duplicate id: the one bad request
    assert [o for i, o in enumerate(outcomes) if i != 17] == [None] * 39
    assert ledger.awaited.transactions < 40 + 40  # shared, even counting the retries one by one
    assert counts(engine) == (39, 39)  # nothing of the bad unit: not its usage, not its event
    assert trail.verify().ok


def test_statements_run_in_request_order(engine: Engine) -> None:
    """Two verdicts of one key on one diagnosis, committed in one transaction: the second
    replaces the first (its delete runs after the first's insert)."""
    tenant = Accounts(engine).create_tenant("feedback")
    ledger = Ledger(engine, AuditTrail(engine, KEY))
    diagnoses, feedback = Diagnoses(engine), Feedback(engine)
    made = Unit()
    result = {"model": "echo-cnn", "version": 1, "label": "normal", "probability": 0.2}
    record = diagnoses.add(made, tenant, "k", result, StoredInput("ab" * 32, "image/png", 1))
    asyncio.run(ledger.commit(made))
    units = [Unit(), Unit()]
    feedback.record(units[0], tenant, "k", record, True, "normal", "first")
    feedback.record(units[1], tenant, "k", record, False, "abnormal", "second")
    for unit in units:  # queued together: the lingering writer commits them in one transaction
        ledger.submit(unit)
    ledger.close()
    assert ledger.deferred.transactions == 1
    with engine.connect() as connection:
        comments = connection.scalars(select(FeedbackRow.comment)).all()
    assert comments == ["second"]


def test_units_nobody_awaits_outlive_an_outage(tmp_path: Path) -> None:
    """Deferred units (refusals' audit events) are retried until the database is back."""
    path = tmp_path / "later" / "dxserve.db"
    url = f"sqlite:///{path}"
    down = create_engine(url)  # its folder does not exist yet: every connection fails
    ledger = Ledger(down, AuditTrail(down, KEY))
    for n in range(5):
        ledger.submit(Unit(events=[audit_event("GET /v1/diagnoses", 401, request_id=str(n))]))
    time.sleep(1.5)  # a few refused transactions
    up = make_engine(url)  # creates the folder
    migrate(up)
    deadline = time.monotonic() + 10
    while counts(up)[1] < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    ledger.close()
    assert counts(up)[1] == 5
    assert AuditTrail(up, KEY).verify().ok
    up.dispose()
    down.dispose()


def test_an_awaited_unit_hears_of_the_outage(tmp_path: Path) -> None:
    down = create_engine(f"sqlite:///{tmp_path / 'missing' / uuid.uuid4().hex}.db")
    ledger = Ledger(down, AuditTrail(down, KEY))
    unit = Unit()
    unit.execute(insert(UsageEventRow).values(id="x"))
    started = time.monotonic()
    with pytest.raises(Exception, match="unable to open database file"):
        asyncio.run(ledger.commit(unit))
    assert time.monotonic() - started < 5  # no retries for a request that waits
    ledger.close()
