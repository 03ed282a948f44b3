"""The audit trail's hash chain: each event carries a keyed hash of itself and its predecessor.

``hash_n = HMAC-SHA256(key, hash_{n−1} ‖ canonical JSON of event n)``. Editing, deleting or
reordering any stored event breaks the chain from that event on; without the key, nobody can
forge a consistent replacement. Pure functions: storage is :mod:`dxserve.store.audit`.
"""

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> bytes:
    """The bytes an event's hash covers: its fields as sorted, compact JSON."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), default=str).encode()


def link(key: bytes, previous: str, event: dict[str, Any]) -> str:
    """The hash of ``event`` following an event whose hash is ``previous``."""
    return hmac.new(key, previous.encode() + canonical(event), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """The result of checking a chain: where it first breaks, if it does, and why."""

    checked: int
    broken_at: int | None = None  # sequence number of the first bad event
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(
    key: bytes,
    events: Iterable[tuple[int, str, str, dict[str, Any]]],
    head: tuple[int, str] | None,
) -> Verdict:
    """Check ``(seq, prev_hash, hash, fields)`` in sequence order against ``key`` and the
    chain head ``(last seq, last hash)`` kept beside it (which catches deleted tail events)."""
    previous, last_seq, checked = GENESIS, 0, 0
    for seq, prev_hash, stored, fields in events:
        if prev_hash != previous:
            return Verdict(checked, seq, "its predecessor is missing or was moved or edited")
        if not hmac.compare_digest(link(key, previous, fields), stored):
            return Verdict(checked, seq, "its content was edited")
        previous, last_seq, checked = stored, seq, checked + 1
    if head is not None and (head[0], head[1]) != (last_seq, previous):
        return Verdict(checked, last_seq + 1, f"events after {last_seq} were deleted")
    return Verdict(checked)
