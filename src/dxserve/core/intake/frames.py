"""An image or cine as intake hands it on, and choosing which of its frames a model sees."""

from collections.abc import Callable, Sequence

import numpy as np

from dxserve.errors import InvalidInput

Indices = Sequence[int] | np.ndarray
Reader = Callable[[Indices], np.ndarray]


class Frames:
    """``count`` frames of ``size`` (height, width), read as ``(n, H, W, 3)`` uint8 RGB; a
    cine's frames are decoded when read, so the frames a model skips cost nothing."""

    def __init__(self, count: int, size: tuple[int, int], read: Reader) -> None:
        self.count = count
        self.size = size
        self._read = read

    @classmethod
    def of(cls, pixels: np.ndarray) -> "Frames":
        """Frames already decoded: ``pixels`` ``(T, H, W, 3)``."""
        return cls(len(pixels), pixels.shape[1:3], lambda indices: pixels[np.asarray(indices)])

    def read(self, indices: Indices) -> np.ndarray:
        """The frames at ``indices``, ``(len(indices), H, W, 3)``."""
        return self._read(indices)

    @property
    def pixels(self) -> np.ndarray:
        """Every frame, ``(T, H, W, 3)``."""
        return self.read(range(self.count))


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
