"""Choosing which frames of a cine or video a model sees."""

import numpy as np

from dxserve.errors import InvalidInput


def frame_indices(total: int, count: int | None) -> np.ndarray:
    """Indices of ``count`` evenly spaced frames out of ``total`` (all when ``count`` is None or
    ≥ ``total``)."""
    if count is None or count >= total:
        return np.arange(total)
    if count < 1:
        raise InvalidInput("frames per file must be at least 1")
    return np.linspace(0, total - 1, count).round().astype(int)


def sample_frames(frames: np.ndarray, count: int | None) -> np.ndarray:
    """``count`` evenly spaced frames (all of them when ``count`` is None or ≥ their number)."""
    if count is None or count >= len(frames):
        return frames
    return frames[frame_indices(len(frames), count)]
