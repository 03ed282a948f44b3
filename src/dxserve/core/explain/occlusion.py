"""Occlusion sensitivity (Zeiler & Fergus, 2014): the model-agnostic explainer.

Each patch of the input in turn is replaced by the image's mean colour; the drop in the model's
score for the positive class is that patch's relevance. Works for any image model; costs one
model run per patch position (225 for a 128 × 128 input with the defaults), which callers batch.
"""

import numpy as np

PATCH = 16
STRIDE = 8


def positions(size: int, patch: int = PATCH, stride: int = STRIDE) -> list[int]:
    return list(range(0, max(size - patch, 0) + 1, stride))


def occlusion_inputs(x: np.ndarray, patch: int = PATCH, stride: int = STRIDE) -> np.ndarray:
    """``(K, C, h, w)`` copies of one input ``(C, h, w)``, each with one patch occluded,
    row-major over the patch grid."""
    _, height, width = x.shape
    fill = x.mean(axis=(1, 2), keepdims=True)
    rows, cols = positions(height, patch, stride), positions(width, patch, stride)
    out = np.repeat(x[None], len(rows) * len(cols), axis=0)
    for k, (r, c) in enumerate((r, c) for r in rows for c in cols):
        out[k, :, r : r + patch, c : c + patch] = fill
    return out


def occlusion_map(
    base_score: float,
    scores: np.ndarray,
    shape: tuple[int, int],
    patch: int = PATCH,
    stride: int = STRIDE,
) -> tuple[np.ndarray, float, float]:
    """The relevance grid (score drop per patch), its stride and the offset of its first
    centre, for scores of :func:`occlusion_inputs` on an input of ``shape`` (h, w)."""
    rows, cols = positions(shape[0], patch, stride), positions(shape[1], patch, stride)
    grid = (base_score - np.asarray(scores, dtype=np.float64)).reshape(len(rows), len(cols))
    return grid, float(stride), (patch - 1) / 2
