"""The shared token bucket: several limiters (as several server processes) on one database."""

import threading
import time

from dxserve.store.database import make_engine, migrate
from dxserve.store.ratelimit import RateLimiter, lease_size


def test_processes_together_never_exceed_the_plan(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    processes = [RateLimiter(engine) for _ in range(3)]
    rate, burst = 20.0, 40
    granted = [0] * len(processes)

    def hammer(i: int) -> None:
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop:
            if processes[i].take("key-1", rate, burst) is None:
                granted[i] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(len(processes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(granted)
    assert total <= burst + rate * elapsed + 1, granted
    # together they used what the bucket allowed, less at most one unspent lease each
    unspent = len(processes) * lease_size(rate, burst)
    assert total >= burst + rate * 1.0 - unspent - 1, granted
    slow = [processes[0].take("key-3", 0.1, 2) for _ in range(3)]
    assert slow[:2] == [None, None] and slow[2] is not None and 9 < slow[2] <= 10
    assert processes[0].take("key-2", rate, burst) is None  # buckets are per key
    engine.dispose()
