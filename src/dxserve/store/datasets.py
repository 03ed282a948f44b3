"""A tenant's labelled datasets: each a sealed blob (the de-identified archive) and a row.
Deleting one deletes its blob, unless another live dataset holds the same bytes.

Every read takes the caller's tenant id: another tenant's dataset is not found.
"""

import json
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from dxserve.core.ids import record_id
from dxserve.store.accounts import NotFound
from dxserve.store.ledger import Unit
from dxserve.store.tables import DatasetRow, utcnow


def _view(row: DatasetRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "bytes": row.bytes,
        "sha256": row.blob_sha256,
        "summary": json.loads(row.summary),
        "created": row.created_at.isoformat(),
    }


class Datasets:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self, unit: Unit, tenant_id: str, name: str, digest: str, size: int, summary: dict[str, Any]
    ) -> dict[str, Any]:
        row = {
            "id": record_id(),
            "tenant_id": tenant_id,
            "name": name,
            "blob_sha256": digest,
            "bytes": size,
            "summary": json.dumps(summary),
            "created_at": utcnow(),
        }
        unit.insert(DatasetRow.__table__, row)  # type: ignore[arg-type]
        return _view(DatasetRow(**row))

    def _live(self, session: Session, tenant_id: str, dataset_id: str) -> DatasetRow:
        row = session.get(DatasetRow, dataset_id)
        if row is None or row.tenant_id != tenant_id or row.deleted_at is not None:
            raise NotFound("no such dataset")
        return row

    def get(self, tenant_id: str, dataset_id: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            return _view(self._live(session, tenant_id, dataset_id))

    def list(self, tenant_id: str) -> list[dict[str, Any]]:
        query = (
            select(DatasetRow)
            .where(DatasetRow.tenant_id == tenant_id, DatasetRow.deleted_at.is_(None))
            .order_by(DatasetRow.created_at.desc())
        )
        with Session(self.engine) as session:
            return [_view(row) for row in session.scalars(query)]

    def bytes_held(self, tenant_id: str) -> int:
        query = select(func.coalesce(func.sum(DatasetRow.bytes), 0)).where(
            DatasetRow.tenant_id == tenant_id, DatasetRow.deleted_at.is_(None)
        )
        with Session(self.engine) as session:
            return int(session.scalar(query) or 0)

    def delete(self, unit: Unit, tenant_id: str, dataset_id: str) -> str | None:
        """Mark a dataset deleted with ``unit``; the digest of its blob when no other live
        dataset holds the same bytes (the caller deletes it once ``unit`` committed)."""
        with Session(self.engine) as session:
            row = self._live(session, tenant_id, dataset_id)
            shared = session.scalar(
                select(func.count()).where(
                    DatasetRow.blob_sha256 == row.blob_sha256,
                    DatasetRow.deleted_at.is_(None),
                    DatasetRow.id != dataset_id,
                )
            )
            digest = row.blob_sha256
        deleted = update(DatasetRow).where(DatasetRow.id == dataset_id)
        unit.execute(deleted.values(deleted_at=utcnow()))
        return None if shared else digest
