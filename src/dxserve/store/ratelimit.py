"""Per-key rate limits: a token bucket in the database, shared by every server process.

A process does not touch the database per request: it leases a few tokens at a time from the
key's shared bucket and spends them locally. The shared bucket never grants more than its rate
allows, so across all processes a key never exceeds its plan; a process may hold at most one
unspent lease (``lease_size`` tokens) that others cannot use until the bucket refills.
"""

import math
import threading
import time

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from dxserve.store.tables import RateBucket


def lease_size(rate: float, burst: int) -> int:
    """Tokens a process takes at once: a tenth of a second's worth (at most ~10 database
    writes a second per key and process at full rate), at most a quarter of the burst."""
    return max(1, min(burst // 4, math.ceil(rate / 10)))


class RateLimiter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
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
        granted, wait = self._lease(key_id, rate, burst, lease_size(rate, burst))
        if not granted:
            return wait
        with self._lock:
            self._leased[key_id] = self._leased.get(key_id, 0) + granted - 1
        return None

    def _lease(self, key_id: str, rate: float, burst: int, want: int) -> tuple[int, float]:
        """Take up to ``want`` whole tokens from the shared bucket: (granted, seconds to wait
        for one if none)."""
        with self.engine.begin() as connection:
            # Writing the row first takes its lock (the database's, on SQLite): concurrent
            # leases of the same key from other processes queue here.
            lock = update(RateBucket).where(RateBucket.key_id == key_id)
            now = time.time()
            if not connection.execute(lock.values(tokens=RateBucket.tokens)).rowcount:
                try:
                    with connection.begin_nested():
                        connection.execute(
                            insert(RateBucket).values(key_id=key_id, tokens=burst, updated=now)
                        )
                except IntegrityError:  # another process created it first: wait for its lock
                    connection.execute(lock.values(tokens=RateBucket.tokens))
            tokens, updated = connection.execute(
                select(RateBucket.tokens, RateBucket.updated).where(RateBucket.key_id == key_id)
            ).one()
            now = max(time.time(), updated)  # read under the lock: time never runs backwards
            available = min(float(burst), tokens + max(0.0, now - updated) * rate)
            granted = min(want, math.floor(available))
            connection.execute(
                update(RateBucket)
                .where(RateBucket.key_id == key_id)
                .values(tokens=available - granted, updated=now)
            )
        return granted, 0.0 if granted else (1.0 - available) / rate
