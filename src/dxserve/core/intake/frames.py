"""Choosing which frames of a cine or video a model sees."""

import numpy as np

from dxserve.errors import InvalidInput


def sample_frames(frames: np.ndarray, count: int | None) -> np.ndarray:
    """``count`` evenly spaced frames (all of them when ``count`` is None or ≥ their number)."""
    if count is None or count >= len(frames):
        return frames
    if count < 1:
        raise InvalidInput("frames per file must be at least 1")
    return frames[np.linspace(0, len(frames) - 1, count).round().astype(int)]
