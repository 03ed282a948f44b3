"""Group commit: what many concurrent requests write, in one transaction.

Each caller awaits its own item's durability, so a response never points at a row that is not
yet committed; but one commit (one fsync) serves every request that arrived meanwhile.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")
Writer = Callable[[Connection, list[T]], None]

MAX_ITEMS = 512
# Items nobody awaits are retried this often while the database is unavailable.
RETRY_S = 1.0
log = logging.getLogger("dxserve.store")

_STOP = object()


class GroupCommitter(Generic[T]):
    """Hand queued items to ``write`` from a single writer thread, many items a transaction."""

    def __init__(
        self,
        engine: Engine,
        write: Writer[T],
        name: str,
        max_items: int = MAX_ITEMS,
        linger_s: float = 0.0,
    ) -> None:
        self.engine = engine
        self.name = name
        self.max_items = max_items
        # How long a transaction waits for more items after its first: fewer, larger
        # transactions for items nobody waits on (``submit``); 0 for items a request awaits.
        self.linger_s = linger_s
        self._write = write
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._failing = False  # logged once an outage, not once a transaction
        self._thread = threading.Thread(target=self._run, name=f"dxserve-{name}", daemon=True)
        self._thread.start()
        self.transactions = 0
        self.items = 0

    def submit(self, item: T) -> None:
        """Queue ``item`` without waiting for its commit (it commits within milliseconds, and
        ``close`` commits whatever is queued). While the database is unavailable it is
        retried every ``RETRY_S``, until ``close``."""
        self._queue.put((item, None, None))

    async def commit(self, item: T) -> None:
        """Write ``item``; returns once its transaction has committed, and raises what the
        transaction raised if it failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((item, future, loop))
        await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            if self.linger_s:
                # Sleep, then take what came: one wake-up a transaction, not one an item (each
                # wake-up contends for the GIL with the event loop).
                time.sleep(self.linger_s)
            while len(batch) < self.max_items:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._commit(batch)
                    return
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[tuple[T, asyncio.Future[None] | None, Any]]) -> None:
        awaited = any(future is not None for _, future, _ in batch)
        while True:
            error = self._try(batch)
            if error is None or awaited or self._stopping.is_set():
                break
            time.sleep(RETRY_S)  # nobody waits: keep the items until the database is back
        if error is not None and awaited and len(batch) > 1:
            for one in batch:  # one item a transaction: a bad item fails its own request only
                self._commit([one])
            return
        if error is not None and not awaited:
            log.error("%d items for %s were not written: %s", len(batch), self.name, _reason(error))
        for _, future, loop in batch:
            if future is not None:
                loop.call_soon_threadsafe(_settle, future, error)

    def _try(self, batch: list[tuple[T, Any, Any]]) -> BaseException | None:
        try:
            with self.engine.begin() as connection:
                self._write(connection, [item for item, _, _ in batch])
        except Exception as exc:
            if not self._failing:
                log.error("%s: the database refused a transaction: %s", self.name, _reason(exc))
            self._failing = True
            return exc
        if self._failing:
            log.warning("%s: the database accepts transactions again", self.name)
        self._failing = False
        self.transactions += 1
        self.items += len(batch)
        return None

    def close(self) -> None:
        """Commit what is queued (one try each) and stop the writer."""
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(timeout=10)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def _reason(error: BaseException) -> str:
    """The driver's message, without SQLAlchemy's rendering of the statement's parameters
    (they may hold results)."""
    return str(getattr(error, "orig", None) or type(error).__name__).strip()
