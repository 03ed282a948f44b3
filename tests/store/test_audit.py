"""The audit trail on SQLite and PostgreSQL: appends chain, tampering is found and named."""

import asyncio
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, select, text, update

from dxserve.core.security.audit_chain import GENESIS
from dxserve.core.security.audit_event import audit_event, to_fhir_bundle
from dxserve.store.audit import AuditTrail
from dxserve.store.database import make_engine, migrate
from dxserve.store.ledger import Ledger, Unit
from dxserve.store.tables import AuditEventRow, AuditHead

KEY = b"test-key-not-a-secret"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    migrate(engine)
    with engine.begin() as connection:  # PostgreSQL keeps one database for the session
        connection.execute(delete(AuditEventRow))
        connection.execute(update(AuditHead).values(seq=0, hash=GENESIS))
    yield engine
    engine.dispose()


def fill(trail: AuditTrail | Ledger, n: int) -> None:
    """``n`` events, each committed by the ledger as a request's (or one by one)."""
    events = [audit_event("GET /v1/diagnoses/{id}", 200, resource_id=str(i)) for i in range(n)]
    if isinstance(trail, AuditTrail):
        for event in events:
            trail.record_now(event)
        return

    async def many(ledger: Ledger) -> None:
        await asyncio.gather(*(ledger.commit(Unit(events=[e])) for e in events))

    asyncio.run(many(trail))


def test_concurrent_appends_form_one_intact_chain(engine: Engine) -> None:
    trail = AuditTrail(engine, KEY)
    ledger = Ledger(engine, trail)
    fill(ledger, 50)
    assert ledger.awaited.transactions < 50  # group commit: fewer transactions than events
    # A second "process" (another ledger over its own engine) appending at the same time.
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    other = Ledger(other_engine, AuditTrail(other_engine, KEY))
    threads = [threading.Thread(target=fill, args=(t, 30)) for t in (ledger, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = trail.verify()
    assert verdict.ok and verdict.checked == 110, verdict
    with engine.connect() as connection:
        seqs = (
            connection.execute(select(AuditEventRow.seq).order_by(AuditEventRow.seq))
            .scalars()
            .all()
        )
    assert seqs == list(range(1, 111))
    ledger.close()
    other.close()
    other_engine.dispose()


@pytest.mark.parametrize(
    ("tamper", "broken_at", "reason"),
    [
        ("edit", 5, "edited"),
        ("delete", 6, "missing"),  # the event after the gap has lost its predecessor
        ("delete-last", 11, "deleted"),
        ("swap", 4, "missing"),
    ],
)
def test_tampering_is_found_and_named(
    engine: Engine, tamper: str, broken_at: int, reason: str
) -> None:
    trail = AuditTrail(engine, KEY)
    fill(trail, 10)
    events = AuditEventRow.__table__
    with engine.begin() as connection:
        if tamper == "edit":
            connection.execute(update(events).where(events.c.seq == 5).values(status=403))
        elif tamper == "delete":
            connection.execute(delete(events).where(events.c.seq == 5))
        elif tamper == "delete-last":
            connection.execute(delete(events).where(events.c.seq == 10))
            broken_at = 10
        else:  # swap the contents (and links) of events 4 and 6
            rows = {
                r.seq: r._asdict()
                for r in connection.execute(select(events).where(events.c.seq.in_([4, 6])))
            }
            for seq, source in ((4, rows[6]), (6, rows[4])):
                values = {k: v for k, v in source.items() if k not in ("seq", "id")}
                connection.execute(update(events).where(events.c.seq == seq).values(**values))
    verdict = trail.verify()
    assert not verdict.ok and verdict.broken_at == broken_at and reason in verdict.reason, verdict


def test_another_key_cannot_verify_or_forge(engine: Engine) -> None:
    trail = AuditTrail(engine, KEY)
    fill(trail, 3)
    assert trail.verify().ok
    forger = AuditTrail(engine, b"another key")
    verdict = forger.verify()
    assert verdict.broken_at == 1 and "edited" in verdict.reason


def test_events_export_as_fhir_audit_events(engine: Engine) -> None:
    trail = AuditTrail(engine, KEY)
    trail.record_now(
        audit_event(
            "POST /v1/diagnoses",
            201,
            tenant_id="t1",
            key_id="k1",
            role="clinician",
            resource_id="d1",
            source="127.0.0.1",
        )
    )
    trail.record_now(audit_event("GET /v1/diagnoses", 401, source="127.0.0.1"))
    bundle = to_fhir_bundle(list(trail.events()))
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 2
    created, refused = (e["resource"] for e in bundle["entry"])
    assert created["resourceType"] == "AuditEvent" and created["action"] == "C"
    assert created["type"]["code"] == "110110" and created["outcome"] == "0"
    assert created["agent"][0]["who"]["identifier"]["value"] == "k1"
    assert created["agent"][0]["network"] == {"address": "127.0.0.1", "type": "2"}
    assert created["entity"][0]["what"]["identifier"]["value"] == "d1"
    assert refused["type"]["code"] == "110114" and refused["outcome"] == "4"
    assert [e["id"] for e in trail.events("t1")] == [created["id"]]
    assert [e["seq"] for e in trail.events(after=1)] == [2]
    with engine.connect() as connection:
        assert connection.execute(text("select count(*) from audit_events")).scalar() == 2
