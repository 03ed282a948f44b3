"""Named image recipes, saved in each model's manifest and replayed unchanged at serving.

A recipe turns decoded frames (``(T, H, W, 3)`` uint8 RGB, see :mod:`dxserve.core.intake.decode`)
into the model's input tensor. It runs in two steps so that datasets can cache the compact
uint8 result of the first: :meth:`Recipe.resize` (geometry, uint8) then :meth:`Recipe.normalize`
(dtype and scaling, float32).
"""

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from dxserve.errors import InvalidInput

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Recipe:
    """Resize to ``size`` (height, width) with ``resample``, keep 3 channels, multiply by ``scale``.

    The output layout is NCHW float32, the layout of the exported ONNX models.
    """

    name: str
    size: tuple[int, int]
    scale: float = 1 / 255
    resample: str = "bilinear"
    layout: str = "NCHW"
    kind: str = "image"

    def resize(self, frames: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 → ``(T, 3, h, w)`` uint8 at the recipe's size."""
        frames = _as_rgb_frames(frames)
        height, width = self.size
        resample = _RESAMPLE[self.resample]
        out = np.empty((frames.shape[0], 3, height, width), dtype=np.uint8)
        for i, frame in enumerate(frames):
            if frame.shape[:2] == (height, width):
                resized = frame
            else:
                image = Image.fromarray(frame, mode="RGB")
                resized = np.asarray(image.resize((width, height), resample=resample))
            out[i] = resized.transpose(2, 0, 1)
        return out

    def normalize(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, h, w)`` uint8 → float32 scaled model input."""
        return batch.astype(np.float32) * np.float32(self.scale)

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """Both steps: decoded frames → model input ``(T, 3, h, w)`` float32."""
        return self.normalize(self.resize(frames))

    def to_dict(self) -> dict[str, Any]:
        """The form stored in a model manifest."""
        data = asdict(self)
        data["size"] = list(self.size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Recipe":
        """Rebuild a recipe from a manifest entry."""
        return cls(
            name=data["name"],
            size=(int(data["size"][0]), int(data["size"][1])),
            scale=float(data.get("scale", 1 / 255)),
            resample=data.get("resample", "bilinear"),
            layout=data.get("layout", "NCHW"),
        )


def _as_rgb_frames(frames: np.ndarray) -> np.ndarray:
    if frames.dtype != np.uint8:
        raise InvalidInput(f"recipes take uint8 frames, got {frames.dtype}")
    if frames.ndim == 2:  # a single grey image
        frames = frames[None]
    if frames.ndim == 3:  # (T, H, W) grey frames
        frames = frames[..., None]
    if frames.ndim != 4:
        raise InvalidInput(f"expected frames of shape (T, H, W, C), got {frames.shape}")
    channels = frames.shape[-1]
    if channels == 1:
        return np.repeat(frames, 3, axis=-1)
    if channels == 4:
        return np.ascontiguousarray(frames[..., :3])
    if channels == 3:
        return frames
    raise InvalidInput(f"expected 1, 3 or 4 channels, got {channels}")


RECIPES: dict[str, Recipe] = {
    # The seed CNN's input: 128×128×3, pixel values scaled to [0, 1].
    "rgb-128": Recipe(name="rgb-128", size=(128, 128)),
}


def get_recipe(name: str) -> Recipe:
    """The named recipe; raises :class:`InvalidInput` for an unknown name."""
    try:
        return RECIPES[name]
    except KeyError:
        raise InvalidInput(
            f"unknown preprocessing recipe {name!r}; known: {sorted(RECIPES)}"
        ) from None
