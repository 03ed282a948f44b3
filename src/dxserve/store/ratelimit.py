"""Per-key rate limits: a token bucket shared by every server process — in the database, or in
Redis when ``DXSERVE_REDIS_URL`` is set (and in the database while Redis is unreachable).

A process does not touch the shared bucket per request: it leases a few tokens at a time and
spends them locally. The bucket never grants more than its rate allows, so across all
processes a key never exceeds its plan; a process may hold at most one unspent lease
(``lease_size`` tokens) that others cannot use until the bucket refills.
"""

import logging
import math
import threading
import time
from typing import Protocol

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from dxserve.store.tables import RateBucket

log = logging.getLogger("dxserve.store")
# While Redis is unreachable, it is tried again this often (a refused connection on the same
# network costs about a millisecond; a silent one up to REDIS_TIMEOUT_S).
REDIS_RETRY_S = 5.0
REDIS_TIMEOUT_S = 0.5


class Bucket(Protocol):
    def lease(self, key_id: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        """Take up to ``want`` whole tokens: (granted, seconds to wait for one if none)."""
        ...


def lease_size(rate: float, burst: int) -> int:
    """Tokens a process takes at once: a tenth of a second's worth (at most ~10 leases a
    second per key and process at full rate), at most a quarter of the burst."""
    return max(1, min(burst // 4, math.ceil(rate / 10)))


def refill(tokens: float, elapsed: float, rate: float, burst: int, want: int) -> tuple[int, float]:
    """The bucket after ``elapsed`` seconds: (tokens granted of ``want``, tokens left)."""
    available = min(float(burst), tokens + max(0.0, elapsed) * rate)
    granted = min(want, math.floor(available))
    return granted, available - granted


class RateLimiter:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket
        self._leased: dict[str, int] = {}
        self._lock = threading.Lock()

    def take_local(self, key_id: str) -> bool:
        """Spend a leased token of ``key_id`` if this process holds one (no I/O)."""
        with self._lock:
            left = self._leased.get(key_id, 0)
            if left:
                self._leased[key_id] = left - 1
            return bool(left)

    def take(self, key_id: str, rate: float, burst: int) -> float | None:
        """Spend one token of ``key_id``: None when granted, else the seconds until one is."""
        if self.take_local(key_id):
            return None
        granted, wait = self.bucket.lease(key_id, rate, burst, lease_size(rate, burst))
        if not granted:
            return wait
        with self._lock:
            self._leased[key_id] = self._leased.get(key_id, 0) + granted - 1
        return None


class DatabaseBucket:
    """Buckets as rows of ``rate_buckets``, each lease one short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lease(self, key_id: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        with self.engine.begin() as connection:
            # Writing the row first takes its lock (the database's, on SQLite): concurrent
            # leases of the same key from other processes queue here.
            lock = update(RateBucket).where(RateBucket.key_id == key_id)
            if not connection.execute(lock.values(tokens=RateBucket.tokens)).rowcount:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(RateBucket).values(
                                key_id=key_id, tokens=burst, updated=time.time()
                            )
                        )
                except IntegrityError:  # another process created it first: wait for its lock
                    connection.execute(lock.values(tokens=RateBucket.tokens))
            tokens, updated = connection.execute(
                select(RateBucket.tokens, RateBucket.updated).where(RateBucket.key_id == key_id)
            ).one()
            now = max(time.time(), updated)  # read under the lock: time never runs backwards
            granted, left = refill(tokens, now - updated, rate, burst, want)
            connection.execute(lock.values(tokens=left, updated=now))
        return granted, 0.0 if granted else (1.0 - left) / rate


# One atomic step in Redis, on Redis's clock: refill, grant whole tokens, store, expire idle keys.
_LEASE = """
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
local available = math.min(burst, tokens + math.max(0, now - updated) * rate)
local granted = math.min(want, math.floor(available))
redis.call('HSET', KEYS[1], 'tokens', tostring(available - granted), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {granted, tostring(available - granted)}
"""


class RedisBucket:
    """Buckets as Redis hashes ``dxserve:rate:<key id>``, each lease one Lua script call."""

    def __init__(self, url: str) -> None:
        import redis  # the `redis` extra

        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
        self.script = self.client.register_script(_LEASE)
        self.unreachable = (redis.ConnectionError, redis.TimeoutError)

    def lease(self, key_id: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        granted, left = self.script(keys=[f"dxserve:rate:{key_id}"], args=[rate, burst, want])
        return int(granted), 0.0 if granted else (1.0 - float(left)) / rate


class FallbackBucket:
    """Redis, and the database while Redis is unreachable: rate limits stay enforced (fail
    closed would refuse every request) at the cost of a second, separate bucket per key
    during the outage — a key may get up to twice its rate across the two. Each outage is
    logged once when it starts and once when it ends, never per request."""

    def __init__(self, redis: RedisBucket, database: DatabaseBucket) -> None:
        self.redis = redis
        self.database = database
        self._down_since: float | None = None
        self._lock = threading.Lock()

    def lease(self, key_id: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        with self._lock:
            down = self._down_since
        if down is None or time.monotonic() - down >= REDIS_RETRY_S:
            try:
                granted = self.redis.lease(key_id, rate, burst, want)
            except self.redis.unreachable as exc:
                with self._lock:
                    if self._down_since is None:
                        log.warning(
                            "Redis is unreachable (%s): rate limits use the database until it "
                            "is back",
                            type(exc).__name__,
                        )
                    self._down_since = time.monotonic()
            else:
                with self._lock:
                    if self._down_since is not None:
                        log.warning("Redis is reachable again: rate limits use it again")
                    self._down_since = None
                return granted
        return self.database.lease(key_id, rate, burst, want)
