"""The dynamic batcher merges concurrent calls and hands each caller its own rows."""

import asyncio
import threading
import time

import numpy as np
import pytest

from dxserve.core.runtime.batcher import DynamicBatcher


def doubling(calls: list[int], seconds: float = 0.005):  # type: ignore[no-untyped-def]
    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(x))
        time.sleep(seconds)
        return {"y": x * 2, "n": np.full((len(x), 1), len(x))}

    return run


def test_concurrent_calls_are_merged_and_split_back() -> None:
    calls: list[int] = []

    async def main() -> list:  # type: ignore[type-arg]
        batcher = DynamicBatcher(doubling(calls), max_batch_size=8, max_queue_delay_s=0.01)
        sizes = [1 if i % 3 else 2 for i in range(20)]
        inputs = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate(sizes)]
        results = await asyncio.gather(*(batcher.infer(x) for x in inputs))
        await batcher.close()
        return list(zip(inputs, results, strict=True))

    pairs = asyncio.run(main())
    for x, (outputs, queued, compute) in pairs:
        assert np.array_equal(outputs["y"], x * 2)
        assert queued >= 0 and compute > 0
    assert sum(calls) == 27 and max(calls) <= 8 and len(calls) < 20


def test_a_lone_request_waits_at_most_the_queue_delay() -> None:
    async def main() -> float:
        batcher = DynamicBatcher(doubling([], 0), max_batch_size=32, max_queue_delay_s=0.02)
        started = time.perf_counter()
        await batcher.infer(np.ones((1, 2), dtype=np.float32))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 0.5


def test_model_errors_reach_every_caller_in_the_batch() -> None:
    def broken(x: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("model failed")

    async def main() -> list:  # type: ignore[type-arg]
        batcher = DynamicBatcher(broken, max_batch_size=4, max_queue_delay_s=0.01)
        results = await asyncio.gather(
            *(batcher.infer(np.ones((1, 1))) for _ in range(3)), return_exceptions=True
        )
        # The batcher keeps serving after a failure.
        with pytest.raises(RuntimeError):
            await batcher.infer(np.ones((1, 1)))
        await batcher.close()
        return results

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(main()))


def test_an_oversized_request_runs_alone() -> None:
    calls: list[int] = []

    async def main() -> None:
        batcher = DynamicBatcher(doubling(calls), max_batch_size=4, max_queue_delay_s=0.005)
        outputs, _, _ = await batcher.infer(np.ones((10, 1), dtype=np.float32))
        assert outputs["y"].shape == (10, 1)
        await batcher.close()

    asyncio.run(main())
    assert calls == [10]


def test_instances_run_batches_side_by_side() -> None:
    active, peak = 0, 0

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        time.sleep(0.03)
        active -= 1
        return {"y": x}

    async def main() -> None:
        batcher = DynamicBatcher(run, max_batch_size=2, max_queue_delay_s=0.0, instances=2)
        await asyncio.gather(*(batcher.infer(np.ones((1, 1))) for _ in range(8)))
        await batcher.close()

    asyncio.run(main())
    assert peak == 2


def test_a_preferred_batch_goes_without_waiting_for_the_delay() -> None:
    calls: list[int] = []

    async def main() -> float:
        batcher = DynamicBatcher(
            doubling(calls, 0.001), max_batch_size=32, max_queue_delay_s=5.0, preferred_batch_size=4
        )
        started = time.perf_counter()
        await asyncio.gather(*(batcher.infer(np.ones((1, 1))) for _ in range(8)))
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert asyncio.run(main()) < 1.0
    assert calls == [8] or all(n >= 4 for n in calls)


def test_the_next_batch_starts_before_the_last_ones_callers_resume() -> None:
    """The model must not wait while the event loop answers the previous batch's callers."""
    first_may_finish, second_started = threading.Event(), threading.Event()

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        if x[0, 0] == 0:
            first_may_finish.wait(5)
        else:
            second_started.set()
        return {"y": x}

    async def main() -> bool:
        batcher = DynamicBatcher(run, max_batch_size=1, max_queue_delay_s=0.0)

        async def first() -> bool:
            await batcher.infer(np.zeros((1, 1)))
            # Blocks the event loop: only a batch submitted before this caller resumed runs.
            return second_started.wait(2)

        started = asyncio.ensure_future(first())
        second = asyncio.ensure_future(batcher.infer(np.ones((1, 1))))
        await asyncio.sleep(0.05)  # the first batch runs, the second waits for the instance
        first_may_finish.set()
        ran_early = await started
        await second
        await batcher.close()
        return ran_early

    assert asyncio.run(main())
