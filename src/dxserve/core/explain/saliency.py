"""A saliency map on a grid over the model input, and its placement on the original image."""

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates


@dataclass(frozen=True)
class SaliencyMap:
    """``values[i, j]`` is the relevance at model-input pixel ``(offset + stride·i,
    offset + stride·j)`` (pixel indices of the ``input_size`` tensor); positive values are
    evidence for ``target`` (the positive label)."""

    values: np.ndarray
    stride: float
    offset: float
    input_size: tuple[int, int]
    method: str
    target: str
    frame: int = 0
    rows: tuple[str, ...] = ()  # what each row is, where rows are not pixels (a signal's leads)

    def on_image(self, height: int, width: int) -> np.ndarray:
        """The map resampled (bilinear) onto a ``height × width`` image that the recipe resized
        to ``input_size`` — pixel centres aligned as the resize aligns them."""
        rows = self._grid_coordinates(height, self.input_size[0])
        cols = self._grid_coordinates(width, self.input_size[1])
        grid = np.meshgrid(rows, cols, indexing="ij")
        values = self.values.astype(np.float64)
        return np.asarray(map_coordinates(values, grid, order=1, mode="nearest"))

    def _grid_coordinates(self, image: int, model: int) -> np.ndarray:
        model_pixel = (np.arange(image) + 0.5) * model / image - 0.5
        return (model_pixel - self.offset) / self.stride

    def describe(self) -> dict[str, Any]:
        """Everything but the values: what a diagnosis records about its explanation."""
        return {
            "method": self.method,
            "target": self.target,
            "frame": self.frame,
            "grid": list(self.values.shape),
            "stride": self.stride,
            "offset": self.offset,
            "input_size": list(self.input_size),
            **({"rows": list(self.rows)} if self.rows else {}),
        }

    def to_bytes(self) -> bytes:
        """The values as a ``.npy`` file (float32)."""
        buffer = io.BytesIO()
        np.save(buffer, self.values.astype(np.float32), allow_pickle=False)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, description: dict[str, Any]) -> "SaliencyMap":
        values = np.load(io.BytesIO(data), allow_pickle=False)
        return cls(
            values=values,
            stride=float(description["stride"]),
            offset=float(description["offset"]),
            input_size=(int(description["input_size"][0]), int(description["input_size"][1])),
            method=description["method"],
            target=description["target"],
            frame=int(description.get("frame", 0)),
            rows=tuple(description.get("rows", ())),
        )
