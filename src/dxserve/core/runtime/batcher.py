"""Dynamic batching: concurrent requests for one model version merged into one session run.

Each request brings ``n ≥ 1`` rows; the batcher waits for the first, gathers more until
``preferred_batch_size`` rows or ``max_queue_delay`` has passed, takes what is pending up to
``max_batch_size`` rows, runs them in one call in a worker
thread (ONNX Runtime releases the GIL) and hands each caller its own rows back. Up to
``instances`` batches run at once (Triton's instance count); while they run, the next batch
fills — so under load batches grow by themselves, and the model is not left idle while answers
travel back to the clients.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

Outputs = dict[str, np.ndarray]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[tuple[Outputs, float, float]]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    """Merge concurrent calls of ``run`` (a batch → named outputs function) into batches."""

    def __init__(
        self,
        run: Callable[[np.ndarray], Outputs],
        max_batch_size: int,
        max_queue_delay_s: float,
        on_batch: Callable[[int, float, float], None] | None = None,
        instances: int = 1,
        preferred_batch_size: int | None = None,
    ) -> None:
        self._run = run
        self.instances = max(1, instances)
        self._slots = asyncio.Semaphore(self.instances)
        self._running: set[asyncio.Task[None]] = set()
        self.max_batch_size = max(1, max_batch_size)
        self.preferred_batch_size = min(preferred_batch_size or max_batch_size, self.max_batch_size)
        self.max_queue_delay_s = max(0.0, max_queue_delay_s)
        self._on_batch = on_batch
        self._pending: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=self.instances, thread_name_prefix="dxserve-batch"
        )

    async def infer(self, rows: np.ndarray) -> tuple[Outputs, float, float]:
        """This call's outputs, its queue time and the compute time of its batch (seconds)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        future: asyncio.Future[tuple[Outputs, float, float]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append(_Pending(rows, future))
        self._arrived.set()
        return await future

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()  # collect the next batch while the others run
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._pending[0].enqueued + self.max_queue_delay_s
            while sum(len(p.rows) for p in self._pending) < self.preferred_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            batch = [self._pending.popleft()]
            size = len(batch[0].rows)
            while self._pending and size + len(self._pending[0].rows) <= self.max_batch_size:
                size += len(self._pending[0].rows)
                batch.append(self._pending.popleft())
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            await self._execute_batch(batch)
        finally:
            self._slots.release()

    async def _execute_batch(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, inputs
            )
        except Exception as exc:  # the model failed: every caller in the batch hears why
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        compute = time.perf_counter() - started
        offset = 0
        queued_total = 0.0
        for pending in batch:
            n = len(pending.rows)
            mine = {name: value[offset : offset + n] for name, value in outputs.items()}
            offset += n
            queued = started - pending.enqueued
            queued_total += queued
            if not pending.future.done():
                pending.future.set_result((mine, queued, compute))
        if self._on_batch:
            self._on_batch(len(inputs), queued_total, compute)

    async def close(self) -> None:
        """Stop the batching task and its worker thread."""
        for running in list(self._running):
            with contextlib.suppress(Exception):
                await running
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False)
