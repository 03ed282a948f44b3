"""How well a saliency map points at a known lesion (for phantoms, whose masks are exact).

- Pointing game (Zhang et al., 2018): a hit when the map's maximum lies inside the mask or within
  ``tolerance`` pixels of it (the original protocol allows 15 pixels on ~224-pixel images).
- Relevance mass accuracy (Arras et al., 2022): the share of positive relevance inside the mask.
"""

import numpy as np
from scipy.ndimage import distance_transform_edt

TOLERANCE_PX = 15  # Zhang et al.'s pointing-game tolerance


def pointing_hit(saliency: np.ndarray, mask: np.ndarray, tolerance: float = 0) -> bool:
    """Whether the maximum of ``saliency`` (same shape as ``mask``) lies within ``tolerance``
    pixels of the mask; a map with no positive value points nowhere and misses."""
    if saliency.shape != mask.shape:
        raise ValueError(f"map {saliency.shape} and mask {mask.shape} differ in shape")
    if not (saliency > 0).any() or not mask.any():
        return False
    row, col = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    if mask[row, col]:
        return True
    return bool(tolerance > 0 and distance_transform_edt(~mask.astype(bool))[row, col] <= tolerance)


def relevance_mass(saliency: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive relevance inside the mask (0 when there is none)."""
    positive = np.clip(saliency, 0, None)
    total = float(positive.sum())
    return float(positive[mask.astype(bool)].sum()) / total if total > 0 else 0.0
