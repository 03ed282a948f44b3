"""Clinical notes of a tenant: each analysis written with the request's other writes (the
ledger); the original text sealed under the master key ring, bound (AES-GCM associated data) to
its tenant and note, so only the owner's reads open it and a copied row fails to.

Every read takes the caller's tenant id: isolation is enforced here, not in the routes.
"""

import json
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from dxserve.core.security.envelope import KeyRing
from dxserve.store.accounts import NotFound
from dxserve.store.ledger import Unit
from dxserve.store.tables import NoteRow, utcnow


def _aad(tenant_id: str, note_id: str) -> bytes:
    return f"note\0{tenant_id}\0{note_id}".encode()


class Notes:
    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self.engine = engine
        self.keys = keys

    def add(
        self,
        unit: Unit,
        tenant_id: str,
        key_id: str,
        note_id: str,
        result: dict[str, Any],
        original: str,
    ) -> dict[str, Any]:
        """Add a note's analysis (and its sealed original) to ``unit``; the record returned."""
        created = utcnow()
        record = {"id": note_id, "created": created.isoformat(), **result}
        unit.insert(
            NoteRow.__table__,  # type: ignore[arg-type]
            {
                "id": note_id,
                "tenant_id": tenant_id,
                "key_id": key_id,
                "patient": result["patient"],
                "result": json.dumps(record),
                "sealed": self.keys.seal(original.encode("utf-8"), _aad(tenant_id, note_id)),
                "created_at": created,
            },
        )
        return record

    def _row(self, tenant_id: str, note_id: str) -> NoteRow:
        with Session(self.engine) as session:
            row = session.scalar(
                select(NoteRow).where(NoteRow.id == note_id, NoteRow.tenant_id == tenant_id)
            )
        if row is None:
            raise NotFound("no such note")
        return row

    def get(self, tenant_id: str, note_id: str) -> dict[str, Any]:
        return dict(json.loads(self._row(tenant_id, note_id).result))

    def original(self, tenant_id: str, note_id: str) -> str:
        """The note as it was received (its owner's read)."""
        row = self._row(tenant_id, note_id)
        return self.keys.open(row.sealed, _aad(tenant_id, note_id)).decode("utf-8")

    def page(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """The tenant's newest ``limit`` notes, newest first."""
        query = (
            select(NoteRow.result)
            .where(NoteRow.tenant_id == tenant_id)
            .order_by(NoteRow.created_at.desc(), NoteRow.id.desc())
            .limit(limit)
        )
        with Session(self.engine) as session:
            return [json.loads(result) for result in session.scalars(query)]
