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
            # Submitted here, not in the task below: a new task's first step would wait behind
            # every callback already queued on the loop, and the model with it.
            started = time.perf_counter()
            running = asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_parts, [p.rows for p in batch]
            )
            task = asyncio.get_running_loop().create_task(self._deliver(batch, running, started))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _deliver(
        self, batch: list[_Pending], running: asyncio.Future[Outputs], started: float
    ) -> None:
        """Hand each caller its rows once the batch ran (or every caller the model's error)."""
        try:
            outputs = await running
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        finally:
            # Released before the callers resume, so the next batch starts while the loop
            # answers this one's callers; otherwise the model would wait for those answers.
            self._slots.release()
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
            self._on_batch(offset, queued_total, compute)

    def _run_parts(self, parts: list[np.ndarray]) -> Outputs:
        """Runs in the worker thread, which also joins the rows: copying a batch of images is
        not work for the event loop."""
        return self._run(parts[0] if len(parts) == 1 else np.concatenate(parts))

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
