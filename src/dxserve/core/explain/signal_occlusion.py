"""Occlusion sensitivity over time for signal models: each lead's each segment in turn is set
to the baseline (zero, in the recipe's scaled input); the drop in the model's score for the
explained statement is that segment's relevance. 12 leads × 20 half-second segments of a 10 s
window: 240 model runs, which callers batch."""

import numpy as np

SEGMENT_S = 0.5


def signal_occlusion_inputs(x: np.ndarray, segment: int) -> np.ndarray:
    """``(leads × segments, leads, samples)`` copies of one window ``(leads, samples)``, each
    with one lead's one segment zeroed, lead-major."""
    leads, samples = x.shape
    count = samples // segment
    out = np.repeat(x[None], leads * count, axis=0)
    for k in range(leads * count):
        lead, seg = divmod(k, count)
        out[k, lead, seg * segment : (seg + 1) * segment] = 0
    return out


def signal_occlusion_map(base_score: float, scores: np.ndarray, leads: int) -> np.ndarray:
    """Relevance ``(leads, segments)``: the score drop when each segment is occluded."""
    return (base_score - np.asarray(scores, dtype=np.float64)).reshape(leads, -1)
