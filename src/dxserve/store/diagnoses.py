"""Diagnoses of a tenant: written with the request's other writes (the ledger), read newest
first with cursor pagination.

Every read takes the caller's tenant id: isolation is enforced here, not in the routes.
"""

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.orm import Session

from dxserve.errors import InvalidInput
from dxserve.store.accounts import NotFound, as_utc
from dxserve.store.ledger import Unit
from dxserve.store.tables import DiagnosisRow, utcnow


@dataclass(frozen=True)
class Filters:
    """What a list of diagnoses is narrowed to (each None: any)."""

    model: str | None = None
    label: str | None = None
    refer: bool | None = None
    since: dt.datetime | None = None  # created at or after
    before: dt.datetime | None = None  # created before

    def conditions(self) -> list[Any]:
        row = DiagnosisRow
        found: list[Any] = []
        if self.model:
            found.append(row.model == self.model)
        if self.label:
            found.append(row.label == self.label)
        if self.refer is not None:
            found.append(row.refer.is_(self.refer))
        if self.since:
            found.append(row.created_at >= self.since)
        if self.before:
            found.append(row.created_at < self.before)
        return found


@dataclass(frozen=True)
class StoredInput:
    sha256: str
    media_type: str
    size: int


class Diagnoses:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        unit: Unit,
        tenant_id: str,
        key_id: str,
        result: dict[str, Any],
        stored: StoredInput,
        diagnosis_id: str | None = None,
        study_uid: str | None = None,
    ) -> dict[str, Any]:
        """Add a diagnosis to ``unit``; returns it with its ``id`` and ``created`` time."""
        created = utcnow()
        diagnosis_id = diagnosis_id or uuid.uuid4().hex
        record = {
            "id": diagnosis_id,
            "created": created.isoformat(),
            **result,
            "input": {
                "media_type": stored.media_type,
                "sha256": stored.sha256,
                "bytes": stored.size,
            },
        }
        unit.insert(
            DiagnosisRow.__table__,  # type: ignore[arg-type]
            {
                "id": diagnosis_id,
                "tenant_id": tenant_id,
                "key_id": key_id,
                "model": result["model"],
                "version": result["version"],
                "label": result["label"],
                "probability": result["probability"],
                "input_sha256": stored.sha256,
                "input_media_type": stored.media_type,
                "input_bytes": stored.size,
                "result": json.dumps(record),
                "created_at": created,
                "study_uid": study_uid,
                "refer": bool(result.get("refer_to_clinician", False)),
            },
        )
        return record

    def get(self, tenant_id: str, diagnosis_id: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            row = session.scalar(
                select(DiagnosisRow).where(
                    DiagnosisRow.id == diagnosis_id, DiagnosisRow.tenant_id == tenant_id
                )
            )
        if row is None:
            raise NotFound("no such diagnosis")
        return json.loads(row.result)

    def page(
        self,
        tenant_id: str,
        limit: int,
        cursor: str | None,
        where: "Filters | None" = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` diagnoses, newest first, after ``cursor``, narrowed by ``where``;
        and the next cursor."""
        query = select(DiagnosisRow).where(DiagnosisRow.tenant_id == tenant_id)
        if where is not None:
            query = query.where(*where.conditions())
        if cursor:
            created, last_id = _decode_cursor(cursor)
            query = query.where(
                or_(
                    DiagnosisRow.created_at < created,
                    and_(DiagnosisRow.created_at == created, DiagnosisRow.id < last_id),
                )
            )
        query = query.order_by(DiagnosisRow.created_at.desc(), DiagnosisRow.id.desc())
        with Session(self.engine) as session:
            rows = list(session.scalars(query.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
        return [json.loads(r.result) for r in rows], next_cursor

    def models(self, tenant_id: str) -> list[str]:
        """The models the tenant's diagnoses came from."""
        query = select(DiagnosisRow.model).where(DiagnosisRow.tenant_id == tenant_id).distinct()
        with Session(self.engine) as session:
            return sorted(session.scalars(query))

    def studies(self, tenant_id: str, limit: int, offset: int) -> list[str]:
        """The studies the tenant's diagnoses belong to, most recently diagnosed first."""
        latest = func.max(DiagnosisRow.created_at)
        query = (
            select(DiagnosisRow.study_uid)
            .where(DiagnosisRow.tenant_id == tenant_id, DiagnosisRow.study_uid.is_not(None))
            .group_by(DiagnosisRow.study_uid)
            .order_by(latest.desc(), DiagnosisRow.study_uid)
            .limit(limit)
            .offset(offset)
        )
        with Session(self.engine) as session:
            return [uid for uid in session.scalars(query) if uid]

    def in_study(self, tenant_id: str, study_uids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The tenant's diagnoses of each study in ``study_uids`` (oldest first)."""
        query = (
            select(DiagnosisRow.study_uid, DiagnosisRow.result)
            .where(DiagnosisRow.tenant_id == tenant_id, DiagnosisRow.study_uid.in_(study_uids))
            .order_by(DiagnosisRow.created_at, DiagnosisRow.id)
        )
        found: dict[str, list[dict[str, Any]]] = {}
        with Session(self.engine) as session:
            for study_uid, result in session.execute(query):
                found.setdefault(str(study_uid), []).append(json.loads(result))
        return found


def _encode_cursor(created: dt.datetime, diagnosis_id: str) -> str:
    raw = json.dumps([as_utc(created).isoformat(), diagnosis_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, diagnosis_id = json.loads(raw)
        return dt.datetime.fromisoformat(created), str(diagnosis_id)
    except (ValueError, TypeError):
        raise InvalidInput("invalid cursor") from None
