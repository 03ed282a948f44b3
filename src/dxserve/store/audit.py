"""The audit trail: chained with a keyed hash, verified on demand.

Appends from every server process go through one row (``audit_head``) that each transaction
updates first: the database's write lock (SQLite) or row lock (PostgreSQL) serialises them,
so the chain stays linear however many processes write.
"""

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.orm import Session

from dxserve.core.security.audit_chain import Verdict, link, verify
from dxserve.store.tables import AuditEventRow, AuditHead

FIELDS = (
    "id",
    "recorded",
    "tenant_id",
    "key_id",
    "role",
    "action",
    "resource_id",
    "status",
    "source",
    "request_id",
)
HEAD_ID = 1


def load_key(value: str | None, data_dir: Path) -> bytes:
    """The chain's key: ``value`` (DXSERVE_AUDIT_KEY) when set, else ``DATA_DIR/audit.key``,
    created once with owner-only permissions."""
    if value:
        return value.encode()
    path = Path(data_dir) / "audit.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class AuditTrail:
    """The chain: appended by the :class:`~dxserve.store.ledger.Ledger` in the transaction
    of the writes an event records, or by ``record_now``."""

    def __init__(self, engine: Engine, key: bytes) -> None:
        self.engine = engine
        self.key = key

    def record_now(self, event: dict[str, Any]) -> None:
        """Append one event in its own transaction (for the CLI)."""
        with self.engine.begin() as connection:
            self.append(connection, [event])

    def append(self, connection: Connection, events: list[dict[str, Any]]) -> None:
        """Chain ``events`` onto the head in ``connection``'s transaction."""
        # Write to the head first: this takes the lock that orders appends across processes.
        connection.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=AuditHead.seq)
        )
        seq, previous = connection.execute(
            select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
        ).one()
        rows = []
        for event in events:
            seq += 1
            fields = {**{k: event.get(k) for k in FIELDS}, "seq": seq}
            digest = link(self.key, previous, fields)
            rows.append({**fields, "prev_hash": previous, "hash": digest})
            previous = digest
        connection.execute(insert(AuditEventRow), rows)
        connection.execute(
            update(AuditHead).where(AuditHead.id == HEAD_ID).values(seq=seq, hash=previous)
        )

    def verify(self) -> Verdict:
        """Check the whole chain; the verdict names the first broken event."""
        with Session(self.engine) as session:
            head = session.execute(
                select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID)
            ).one()
        links = ((r.seq, r.prev_hash, r.hash, {**_fields(r), "seq": r.seq}) for r in self._rows())
        return verify(self.key, links, (head.seq, head.hash))

    def events(self, tenant_id: str | None = None, after: int = 0) -> Iterator[dict[str, Any]]:
        """Stored events in order (one tenant's, or all) after sequence number ``after``,
        without their chain fields."""
        for row in self._rows(tenant_id, after):
            yield {**_fields(row), "seq": row.seq}

    def _rows(self, tenant_id: str | None = None, after: int = 0) -> Iterator[AuditEventRow]:
        """Rows in sequence order, fetched in chunks (a server-side cursor, closed however the
        caller stops)."""
        query = select(AuditEventRow).where(AuditEventRow.seq > after).order_by(AuditEventRow.seq)
        if tenant_id is not None:
            query = query.where(AuditEventRow.tenant_id == tenant_id)
        with Session(self.engine) as session:
            result = session.execute(query.execution_options(yield_per=1000))
            try:
                yield from result.scalars()
            finally:
                result.close()


def _fields(row: AuditEventRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in FIELDS}
