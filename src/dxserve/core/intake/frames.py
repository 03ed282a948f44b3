"""An image or cine as intake hands it on, and choosing which of its frames a model sees."""

from dataclasses import dataclass

import numpy as np

from dxserve.errors import InvalidInput


@dataclass(frozen=True)
class Frames:
    """``pixels``: ``(T, H, W, 3)`` uint8 RGB, one frame for a still image."""

    pixels: np.ndarray


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
