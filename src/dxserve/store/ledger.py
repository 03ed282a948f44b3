"""The ledger: what a request writes — its result rows, its usage event, its audit event — in
one transaction, so that either all of it exists or none of it (and the client got an error).

A request gathers its writes in a :class:`Unit`; the API commits the unit, with the request's
audit event, before the response starts. Units from concurrent requests share transactions
(group commit): one commit, one fsync, for every request that answered meanwhile.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Table, insert

from dxserve.store.audit import AuditTrail
from dxserve.store.group_commit import GroupCommitter

# What nobody awaits — the audit events of refusals and errors — lingers 100 ms so that one
# transaction carries many.
LINGER_S = 0.1


@dataclass
class Unit:
    """The writes of one request, committed together or not at all.

    ``rows`` are inserts, gathered per table across the units of a transaction;
    ``statements`` run in order, before any unit's rows (a replacement, an update);
    ``events`` are audit events, appended to the chain last; ``after`` runs once the unit
    has committed (forgetting a revoked key's cached verification)."""

    rows: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)
    statements: list[Executable] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        self.rows.append((table, row))

    def execute(self, statement: Executable) -> None:
        self.statements.append(statement)

    def audit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def then(self, action: Callable[[], None]) -> None:
        self.after.append(action)

    def committed(self) -> None:
        for action in self.after:
            action()

    def __bool__(self) -> bool:
        return bool(self.rows or self.statements or self.events)

    def discard(self) -> None:
        """Forget the writes (the request failed); audit events stay."""
        self.rows.clear()
        self.statements.clear()
        self.after.clear()

    def apply(self, connection: Connection) -> None:
        """Run this unit's statements and inserts (not its audit events) in ``connection``'s
        transaction: for a caller outside a request, such as the CLI."""
        assert not self.events, "audit events are appended by a Ledger"
        for statement in self.statements:
            connection.execute(statement)
        for table, row in self.rows:
            connection.execute(insert(table), [row])


class Ledger:
    def __init__(self, engine: Engine, audit: AuditTrail) -> None:
        self.audit = audit
        self.awaited = GroupCommitter(engine, self._write, "ledger")
        self.deferred = GroupCommitter(engine, self._write, "ledger-deferred", linger_s=LINGER_S)

    async def commit(self, unit: Unit) -> None:
        """Write ``unit``; returns once it is committed (raises what the database raised)."""
        await self.awaited.commit(unit)
        unit.committed()

    def submit(self, unit: Unit) -> None:
        """Queue ``unit`` for a lingering transaction, without waiting for it."""
        self.deferred.submit(unit)

    def _write(self, connection: Connection, units: list[Unit]) -> None:
        rows: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        events = []
        for unit in units:
            for statement in unit.statements:
                connection.execute(statement)
            for table, row in unit.rows:
                rows[table].append(row)
            events.extend(unit.events)
        for table, batch in rows.items():
            connection.execute(insert(table), batch)
        if events:  # last: on PostgreSQL, the chain's head row stays locked the shortest time
            self.audit.append(connection, events)

    def close(self) -> None:
        self.awaited.close()
        self.deferred.close()
