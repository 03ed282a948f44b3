"""The shared token bucket: several limiters (as several server processes) on one database, or
on one Redis."""

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from dxserve.store.database import make_engine, migrate
from dxserve.store.ratelimit import (
    Bucket,
    DatabaseBucket,
    RateLimiter,
    RedisBucket,
    lease_size,
    refill,
)

REDIS = "redis://127.0.0.1:6379/15"


def check_processes_never_exceed_the_plan(bucket: Callable[[], Bucket]) -> None:
    processes = [RateLimiter(bucket()) for _ in range(3)]
    key, rate, burst = uuid.uuid4().hex, 20.0, 40
    granted = [0] * len(processes)

    def hammer(i: int) -> None:
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop:
            if processes[i].take(key, rate, burst) is None:
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
    slow_key = uuid.uuid4().hex
    slow = [processes[0].take(slow_key, 0.1, 2) for _ in range(3)]
    assert slow[:2] == [None, None] and slow[2] is not None and 9 < slow[2] <= 10


def test_database_buckets(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    check_processes_never_exceed_the_plan(lambda: DatabaseBucket(engine))
    engine.dispose()


def test_redis_buckets() -> None:
    redis = pytest.importorskip("redis", reason="Redis buckets need the redis extra")
    try:
        redis.Redis.from_url(REDIS).ping()
    except redis.ConnectionError:
        pytest.skip(f"Redis is not reachable at {REDIS}")
    check_processes_never_exceed_the_plan(lambda: RedisBucket(REDIS))


def test_refill() -> None:
    assert refill(0.0, 0.5, rate=10, burst=40, want=3) == (3, 2.0)
    assert refill(39.0, 100, rate=10, burst=40, want=100) == (40, 0.0)
    assert refill(0.5, 0.0, rate=10, burst=40, want=1) == (0, 0.5)
