"""Usage metering: one event per billable unit of work, committed with the request's writes, summed
per model version for usage reports, invoices and monthly quotas.

Every read takes the tenant id: one tenant's usage is never mixed with another's.
"""

import datetime as dt
import threading
import time
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dxserve.core.billing.invoice import UsageTotal
from dxserve.core.ids import record_id
from dxserve.errors import InvalidInput
from dxserve.store.ledger import Unit
from dxserve.store.tables import UsageEventRow, utcnow

# A tenant's month-to-date images are re-read this often; between reads, each process adds
# what it served itself. Several processes may overshoot a quota by what they serve meanwhile.
QUOTA_REFRESH_S = 2.0


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """``[first instant, first instant of the next month)`` of ``YYYY-MM`` (UTC)."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    except (ValueError, OverflowError):  # not YYYY-MM, year 0, or past 9999-11
        raise InvalidInput(f"month must be YYYY-MM (0001-01 to 9999-11), not {month!r}") from None
    return start, end


def current_month(now: dt.datetime | None = None) -> str:
    return (now or utcnow()).strftime("%Y-%m")


TRAINING = "training"  # a job's wall time, billed by the hour, not per image


class Usage:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._month_to_date: dict[str, tuple[str, int, float]] = {}  # tenant → month, n, read at

    def stage(self, unit: Unit, *args: Any, **kwargs: Any) -> None:
        """Add one event to ``unit`` (committed with the request's other writes, before it
        answers: no answer a client holds goes unbilled); the arguments are :meth:`event`'s."""
        unit.insert(UsageEventRow.__table__, self.event(*args, **kwargs))  # type: ignore[arg-type]

    def event(
        self,
        tenant_id: str,
        key_id: str,
        model: str,
        version: int,
        kind: str,
        images: int,
        frames: int,
        compute_ms: float,
        size: int,
        outcome: str,
    ) -> dict[str, Any]:
        """The row of one event (and the tenant's month-to-date count, updated for quotas)."""
        created = utcnow()
        with self._lock:
            entry = self._month_to_date.get(tenant_id)
            if entry and entry[0] == current_month(created):
                self._month_to_date[tenant_id] = (entry[0], entry[1] + images, entry[2])
        return {
            "id": record_id(),
            "tenant_id": tenant_id,
            "key_id": key_id,
            "model": model,
            "version": version,
            "kind": kind,
            "images": images,
            "frames": frames,
            "compute_ms": round(compute_ms, 3),
            "bytes": size,
            "outcome": outcome,
            "created_at": created,
        }

    def totals(self, tenant_id: str, start: dt.datetime, end: dt.datetime) -> list[UsageTotal]:
        """Usage of ``[start, end)`` per model version."""
        e = UsageEventRow
        query = (
            select(
                e.model,
                e.version,
                func.count(),
                func.sum(e.images),
                func.sum(e.frames),
                func.sum(e.compute_ms),
                func.sum(e.bytes),
            )
            .where(e.tenant_id == tenant_id, e.created_at >= start, e.created_at < end)
            .where(e.kind != TRAINING)
            .group_by(e.model, e.version)
            .order_by(e.model, e.version)
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [
            UsageTotal(m, v, n, int(i or 0), int(f or 0), round(float(c or 0), 3), int(b or 0))
            for m, v, n, i, f, c, b in rows
        ]

    def training_hours(self, tenant_id: str, start: dt.datetime, end: dt.datetime) -> float:
        """Hours the tenant's training and evaluation jobs ran in ``[start, end)``."""
        e = UsageEventRow
        query = select(func.coalesce(func.sum(e.compute_ms), 0.0)).where(
            e.tenant_id == tenant_id, e.created_at >= start, e.created_at < end, e.kind == TRAINING
        )
        with Session(self.engine) as session:
            return float(session.scalar(query) or 0.0) / 3_600_000

    def daily(
        self, tenant_id: str, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[str, str, int, int, int]]:
        """Per UTC day and model in ``[start, end)``: (day, model, requests, images, frames)."""
        e = UsageEventRow
        day = func.date(e.created_at)
        query = (
            select(day, e.model, func.count(), func.sum(e.images), func.sum(e.frames))
            .where(e.tenant_id == tenant_id, e.created_at >= start, e.created_at < end)
            .group_by(day, e.model)
            .order_by(day, e.model)
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [(str(d), m, n, int(i or 0), int(f or 0)) for d, m, n, i, f in rows]

    def cached_images_this_month(self, tenant_id: str) -> int | None:
        """Month-to-date images of ``tenant_id`` if read less than ``QUOTA_REFRESH_S`` ago."""
        with self._lock:
            entry = self._month_to_date.get(tenant_id)
        if entry and entry[0] == current_month() and time.monotonic() - entry[2] < QUOTA_REFRESH_S:
            return entry[1]
        return None

    def images_this_month(self, tenant_id: str) -> int:
        """Month-to-date images of ``tenant_id`` (re-read every ``QUOTA_REFRESH_S``)."""
        cached = self.cached_images_this_month(tenant_id)
        if cached is not None:
            return cached
        month = current_month()
        start, end = month_bounds(month)
        e = UsageEventRow
        with Session(self.engine) as session:
            count = session.scalar(
                select(func.coalesce(func.sum(e.images), 0)).where(
                    e.tenant_id == tenant_id, e.created_at >= start, e.created_at < end
                )
            )
        with self._lock:
            self._month_to_date[tenant_id] = (month, int(count or 0), time.monotonic())
        return int(count or 0)
