"""Group commit: rows from many concurrent requests written in one transaction.

Each caller awaits its own row's durability, so a response never points at a row that is not
yet committed; but one commit (one fsync) serves every request that arrived meanwhile.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert

Writer = Callable[[Connection, list[dict[str, Any]]], None]

MAX_ROWS = 512
log = logging.getLogger("dxserve.store")

_STOP = object()


class GroupCommitter:
    """Insert rows into ``table`` from a single writer thread, many rows per transaction
    (or hand each transaction's rows to ``write``, for rows that need more than an insert)."""

    def __init__(
        self,
        engine: Engine,
        table: Table,
        max_rows: int = MAX_ROWS,
        write: Writer | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.table = table
        self.max_rows = max_rows
        # How long a transaction waits for more rows after its first: fewer, larger
        # transactions for rows nobody waits on (``submit``); 0 for rows a request awaits.
        self.linger_s = linger_s
        self._write = write or (lambda connection, rows: connection.execute(insert(table), rows))
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dxserve-group-commit", daemon=True)
        self._thread.start()
        self.transactions = 0
        self.rows = 0

    def submit(self, row: dict[str, Any]) -> None:
        """Queue ``row`` without waiting for its commit (it commits within milliseconds, and
        ``close`` commits whatever is queued); a failed commit is logged."""
        self._queue.put((row, None, None))

    async def insert(self, row: dict[str, Any]) -> None:
        """Insert ``row``; returns once its transaction has committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((row, future, loop))
        await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            if self.linger_s:
                # Sleep, then take what came: one wake-up a transaction, not one a row (each
                # wake-up contends for the GIL with the event loop).
                time.sleep(self.linger_s)
            while len(batch) < self.max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._commit(batch)
                    return
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], asyncio.Future[None], Any]]) -> None:
        error: BaseException | None = None
        try:
            with self.engine.begin() as connection:
                self._write(connection, [row for row, _, _ in batch])
            self.transactions += 1
            self.rows += len(batch)
        except Exception as exc:  # every waiting request hears about the failure
            error = exc
            log.exception("group commit of %d rows into %s failed", len(batch), self.table.name)
        for _, future, loop in batch:
            if future is not None:
                loop.call_soon_threadsafe(_settle, future, error)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
