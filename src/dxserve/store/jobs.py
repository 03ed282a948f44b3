"""The training-job queue, in the database: jobs are submitted with a request's writes, claimed
by ``dxserve worker`` (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never take the same
job; SQLite: one worker), report progress through a heartbeat, and end succeeded, failed or
cancelled. A job whose worker stopped beating is queued again (or failed after ``MAX_ATTEMPTS``):
never lost. Every change of state is audited in the same transaction.

Reads for the API take the caller's tenant id: another tenant's job is not found.
"""

import datetime as dt
import json
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from dxserve.core.ids import record_id
from dxserve.core.security.audit_event import audit_event
from dxserve.store.accounts import NotFound
from dxserve.store.audit import AuditTrail
from dxserve.store.ledger import Unit
from dxserve.store.tables import TrainingJobRow, UsageEventRow, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "failed", "cancelled",
)  # fmt: skip
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
MAX_ATTEMPTS = 3
STALE_AFTER_S = 120.0  # a running job without a heartbeat this long lost its worker


class JobCancelled(Exception):
    """Raised inside a job when its cancellation was requested."""


def view(row: TrainingJobRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "status": row.status,
        "spec": json.loads(row.spec),
        "progress": json.loads(row.progress or "{}"),
        "result": json.loads(row.result) if row.result else None,
        "error": row.error,
        "attempts": row.attempts,
        "cancel_requested": row.cancel_requested,
        "created": row.created_at.isoformat(),
        "started": row.started_at.isoformat() if row.started_at else None,
        "finished": row.finished_at.isoformat() if row.finished_at else None,
    }


class Jobs:
    def __init__(self, engine: Engine, audit: AuditTrail) -> None:
        self.engine = engine
        self.audit = audit

    def submit(
        self, unit: Unit, tenant_id: str, key_id: str, kind: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        """Queue a job with ``unit``'s writes; its view."""
        job_id = record_id()
        row = {
            "id": job_id,
            "tenant_id": tenant_id,
            "key_id": key_id,
            "kind": kind,
            "spec": json.dumps(spec),
            "status": QUEUED,
            "progress": "{}",
            "attempts": 0,
            "cancel_requested": False,
            "created_at": utcnow(),
        }
        unit.insert(TrainingJobRow.__table__, row)  # type: ignore[arg-type]
        return view(TrainingJobRow(**row))

    def get(self, tenant_id: str | None, job_id: str) -> dict[str, Any]:
        """A job (of ``tenant_id``; any tenant's for None); :class:`NotFound` otherwise."""
        with Session(self.engine) as session:
            row = session.get(TrainingJobRow, job_id)
            if row is None or tenant_id not in (None, row.tenant_id):
                raise NotFound("no such training job")
            return view(row)

    def owner(self, job_id: str) -> tuple[str, str]:
        """The tenant and the API key that submitted a job."""
        with Session(self.engine) as session:
            row = session.get(TrainingJobRow, job_id)
            if row is None:
                raise NotFound("no such training job")
            return row.tenant_id, row.key_id

    def list(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        query = (
            select(TrainingJobRow)
            .where(TrainingJobRow.tenant_id == tenant_id)
            .order_by(TrainingJobRow.created_at.desc())
            .limit(limit)
        )
        with Session(self.engine) as session:
            return [view(row) for row in session.scalars(query)]

    def cancel(self, unit: Unit, tenant_id: str, job_id: str) -> dict[str, Any]:
        """Cancel a queued job at once; ask a running one's worker to stop at its next step."""
        job = self.get(tenant_id, job_id)
        if job["status"] in FINISHED:
            return job
        row = TrainingJobRow
        guarded = update(row).where(row.id == job_id, row.status == job["status"])
        if job["status"] == QUEUED:
            values = {"status": CANCELLED, "finished_at": utcnow(), "error": "cancelled"}
            unit.execute(guarded.values(**values))
            return {**job, "status": CANCELLED, "error": "cancelled"}
        unit.execute(guarded.values(cancel_requested=True))
        return {**job, "cancel_requested": True}

    def claim(self, worker: str) -> dict[str, Any] | None:
        """Take the oldest queued job for ``worker`` (after requeueing jobs whose worker is
        gone); None when there is none."""
        self.requeue_stale()
        with Session(self.engine) as session, session.begin():
            query = (
                select(TrainingJobRow)
                .where(TrainingJobRow.status == QUEUED)
                .order_by(TrainingJobRow.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            row = session.scalar(query)
            if row is None:
                return None
            now = utcnow()
            row.status, row.worker, row.attempts = RUNNING, worker, row.attempts + 1
            row.started_at = row.heartbeat_at = now
            session.flush()
            self._audit(session, row, "job: started")
            return view(row)

    def heartbeat(self, job_id: str, progress: dict[str, Any]) -> None:
        """Record progress; :class:`JobCancelled` when the job's cancellation was requested
        (or another worker took it over)."""
        with Session(self.engine) as session, session.begin():
            row = session.get(TrainingJobRow, job_id, with_for_update=True)
            if row is None or row.status != RUNNING or row.cancel_requested:
                raise JobCancelled
            row.progress = json.dumps(progress)
            row.heartbeat_at = utcnow()

    def finish(
        self,
        job_id: str,
        status: str,
        result: Any = None,
        error: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """End a running job: succeeded (with its result), failed or cancelled (with a reason),
        with its metered ``usage`` row in the same transaction."""
        with Session(self.engine) as session, session.begin():
            row = session.get(TrainingJobRow, job_id, with_for_update=True)
            if row is None or row.status != RUNNING:
                return  # taken over after a lost heartbeat: the other run reports
            if usage is not None:
                session.execute(insert(UsageEventRow), [usage])
            row.status, row.finished_at = status, utcnow()
            row.result = json.dumps(result) if result is not None else None
            row.error = error
            session.flush()
            self._audit(session, row, f"job: {status}")

    def requeue_stale(self, now: dt.datetime | None = None) -> int:
        """Queue again the running jobs whose worker stopped beating (fail them after
        ``MAX_ATTEMPTS``); how many."""
        cutoff = (now or utcnow()) - dt.timedelta(seconds=STALE_AFTER_S)
        with Session(self.engine) as session, session.begin():
            rows = session.scalars(
                select(TrainingJobRow)
                .where(TrainingJobRow.status == RUNNING, TrainingJobRow.heartbeat_at < cutoff)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                if row.cancel_requested:
                    row.status, row.error = CANCELLED, "cancelled (its worker stopped)"
                elif row.attempts >= MAX_ATTEMPTS:
                    row.status = FAILED
                    row.error = f"its worker stopped {row.attempts} times"
                else:
                    row.status, row.worker = QUEUED, None
                if row.status != QUEUED:
                    row.finished_at = utcnow()
                session.flush()
                self._audit(session, row, f"job: {row.status} after its worker stopped")
            return len(rows)

    def _audit(self, session: Session, row: TrainingJobRow, action: str) -> None:
        event = audit_event(
            f"{action} ({row.kind})",
            0,
            tenant_id=row.tenant_id,
            key_id=row.key_id,
            resource_id=row.id,
            source=row.worker,
        )
        self.audit.append(session.connection(), [event])
