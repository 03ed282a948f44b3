"""The training-job queue on SQLite and PostgreSQL: claimed once, oldest first; on PostgreSQL a
job another worker holds locked is skipped, not waited for; a lost worker's job is queued again
and failed after its attempts; every change of state is audited."""

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dxserve.core.security.principal import Role
from dxserve.store.accounts import Accounts, NotFound
from dxserve.store.audit import AuditTrail
from dxserve.store.database import make_engine, migrate
from dxserve.store.jobs import MAX_ATTEMPTS, JobCancelled, Jobs
from dxserve.store.ledger import Unit
from dxserve.store.tables import TrainingJobRow


@pytest.fixture
def queue(database_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(database_url)
    migrate(engine)
    with Session(engine) as session, session.begin():  # the session database is shared
        session.query(TrainingJobRow).delete()
    accounts = Accounts(engine)
    unique = f"jobs-{id(engine)}"
    tenant_id = accounts.create_tenant(unique)
    key_id, _ = accounts.create_key(unique, Role.admin)
    audit = AuditTrail(engine, b"test-key")
    yield Jobs(engine, audit), audit, tenant_id, key_id
    engine.dispose()


def submit(jobs: Jobs, tenant_id: str, key_id: str, n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        unit = Unit()
        ids.append(jobs.submit(unit, tenant_id, key_id, "fine-tune", {"base": "m:1", "i": i})["id"])
        with jobs.engine.begin() as connection:
            unit.apply(connection)
    return ids


def test_jobs_are_claimed_once_oldest_first_and_audited(queue) -> None:  # type: ignore[no-untyped-def]
    jobs, audit, tenant_id, key_id = queue
    first, second = submit(jobs, tenant_id, key_id, 2)
    assert jobs.claim("w1")["id"] == first  # type: ignore[index]
    assert jobs.claim("w2")["id"] == second  # type: ignore[index]
    assert jobs.claim("w3") is None
    jobs.heartbeat(first, {"epoch": 1, "loss": 0.5})
    assert jobs.get(tenant_id, first)["progress"] == {"epoch": 1, "loss": 0.5}
    jobs.finish(first, "succeeded", {"version": 2})
    done = jobs.get(tenant_id, first)
    assert done["status"] == "succeeded" and done["result"] == {"version": 2}
    with pytest.raises(NotFound):
        jobs.get("another-tenant", first)
    actions = [e["action"] for e in audit.events(tenant_id)]
    assert actions.count("job: started (fine-tune)") == 2
    assert "job: succeeded (fine-tune)" in actions


@pytest.mark.postgres
def test_a_job_another_worker_holds_is_skipped_not_waited_for(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    with Session(engine) as session, session.begin():
        session.query(TrainingJobRow).delete()
    accounts = Accounts(engine)
    tenant_id = accounts.create_tenant(f"skip-{id(engine)}")
    key_id, _ = accounts.create_key(f"skip-{id(engine)}", Role.admin)
    jobs = Jobs(engine, AuditTrail(engine, b"test-key"))
    first, second = submit(jobs, tenant_id, key_id, 2)
    with Session(engine) as holder, holder.begin():  # another worker, mid-claim of the first
        holder.scalar(select(TrainingJobRow).where(TrainingJobRow.id == first).with_for_update())
        claimed = jobs.claim("w2")  # does not block on the locked row
        assert claimed is not None and claimed["id"] == second
    engine.dispose()


def test_a_lost_workers_job_is_queued_again_then_failed(queue) -> None:  # type: ignore[no-untyped-def]
    jobs, _, tenant_id, key_id = queue
    (job_id,) = submit(jobs, tenant_id, key_id)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert jobs.claim(f"w{attempt}")["id"] == job_id  # type: ignore[index]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=attempt)
        assert jobs.requeue_stale(now=later) == 1
    failed = jobs.get(tenant_id, job_id)
    assert failed["status"] == "failed" and failed["attempts"] == MAX_ATTEMPTS
    assert "stopped 3 times" in failed["error"]
    with pytest.raises(JobCancelled):  # the lost worker, back, learns it no longer owns it
        jobs.heartbeat(job_id, {"epoch": 9})
