"""A cine as one image for a browser's player: its frames stacked top to bottom (at most
``MAX_FRAMES``, at most ``MAX_WIDTH`` pixels wide), so a study plays after one request."""

import io

import numpy as np
from PIL import Image

MAX_FRAMES = 128
MAX_WIDTH = 512


def film_strip(frames: np.ndarray) -> tuple[bytes, int]:
    """PNG of ``frames`` (T, H, W[, 3]) uint8 stacked vertically, and the number of frames."""
    shown = frames[:MAX_FRAMES]
    height, width = shown.shape[1:3]
    scale = min(1.0, MAX_WIDTH / width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    strip = Image.new("RGB", (size[0], size[1] * len(shown)))
    for index, frame in enumerate(shown):
        image = Image.fromarray(frame).convert("RGB")
        strip.paste(image.resize(size) if scale < 1 else image, (0, index * size[1]))
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), len(shown)
