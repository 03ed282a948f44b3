"""What the PHI tagger reads: each token of a note as integers, in windows of fixed length.

A token is its word (lower-cased, hashed into ``WORD_BUCKETS``), its shape ("Xx", "X.", "dd-d":
capitals, lower case, digits and punctuation, runs shortened; hashed into ``SHAPE_BUCKETS``) and
up to ``NGRAMS`` character trigrams of ``<word>`` (hashed into ``NGRAM_BUCKETS``), so a name never
seen still looks like a name. 0 is padding everywhere. Windows of ``WINDOW`` tokens overlap by
``OVERLAP``; each token is judged in the window where it is furthest from an edge.
Hashes are CRC-32: the same on every machine and Python (``hash()`` is salted per process).
"""

import re
import zlib
from functools import lru_cache

import numpy as np

from dxserve.core.text.tokens import tokens

WORD_BUCKETS = 1 << 15
SHAPE_BUCKETS = 1 << 10
NGRAM_BUCKETS = 1 << 15
NGRAMS = 12
FEATURES = 2 + NGRAMS  # word, shape, trigrams
WINDOW = 128
OVERLAP = 32
RUNS = re.compile(r"(.)\1{2,}")


def _bucket(text: str, buckets: int) -> int:
    return 1 + zlib.crc32(text.encode("utf-8")) % (buckets - 1)


def shape(word: str) -> str:
    classes = "".join(
        "X" if c.isupper() else "x" if c.islower() else "d" if c.isdigit() else c for c in word
    )
    return RUNS.sub(r"\1\1", classes)[:8]


@lru_cache(maxsize=1 << 16)
def token_row(word: str) -> tuple[int, ...]:
    lowered = f"<{word.lower()}>"
    grams = [lowered[i : i + 3] for i in range(len(lowered) - 2)][:NGRAMS]
    row = [_bucket(word.lower(), WORD_BUCKETS), _bucket(shape(word), SHAPE_BUCKETS)]
    row += [_bucket(g, NGRAM_BUCKETS) for g in grams]
    return (*row, *[0] * (FEATURES - len(row)))


def featurize(text: str) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The tokens' ``(start, end)`` and their windows ``(W, WINDOW, FEATURES)`` (int64)."""
    spans = list(tokens(text))
    rows = [token_row(text[a:b]) for a, b in spans]
    starts = window_starts(len(rows))
    windows = np.zeros((len(starts), WINDOW, FEATURES), dtype=np.int64)
    for w, start in enumerate(starts):
        chunk = rows[start : start + WINDOW]
        if chunk:
            windows[w, : len(chunk)] = chunk
    return spans, windows


def window_starts(count: int) -> list[int]:
    step = WINDOW - OVERLAP
    return list(range(0, max(count - OVERLAP, 1), step)) or [0]


def per_token(values: np.ndarray, count: int) -> np.ndarray:
    """A value per token from per-window values ``(W, WINDOW)``: each token's from the window
    where it sits furthest from an edge."""
    out = np.zeros(count, dtype=values.dtype)
    best = np.full(count, -1)
    for w, start in enumerate(window_starts(count)):
        for i in range(min(WINDOW, count - start)):
            margin = min(i, WINDOW - 1 - i)
            if margin > best[start + i]:
                best[start + i] = margin
                out[start + i] = values[w, i]
    return out
