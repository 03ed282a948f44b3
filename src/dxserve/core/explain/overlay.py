"""A saliency map drawn over the image it explains, with a colour bar: the clinician's view."""

import io

import numpy as np
from PIL import Image

from dxserve import NOT_FOR_CLINICAL_USE
from dxserve.core.explain.saliency import SaliencyMap


def relative(values: np.ndarray) -> np.ndarray:
    """Positive relevance scaled to [0, 1] by its maximum (all zeros when there is none)."""
    positive = np.clip(values, 0, None)
    peak = float(positive.max()) if positive.size else 0.0
    return positive / peak if peak > 0 else positive


def render_overlay(image: np.ndarray, saliency: SaliencyMap, title: str) -> bytes:
    """PNG of ``image`` (H, W, 3 uint8) with ``saliency`` placed on it as a translucent colour
    map, a colour bar and the not-for-clinical-use footer."""
    from matplotlib.figure import (
        Figure,  # here, not at the top: 29 MiB and 0.5 s of the server's start
    )

    height, width = image.shape[:2]
    heat = relative(saliency.on_image(height, width))
    figure = Figure(figsize=(6, 6 * height / width + 0.6), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(image)
    shown = axes.imshow(heat, cmap="jet", alpha=0.45 * (heat > 0.05), vmin=0, vmax=1)
    axes.set_axis_off()
    axes.set_title(title, fontsize=9)
    bar = figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.02)
    bar.solids.set_alpha(1)  # type: ignore[union-attr]
    bar.set_label(f"relative evidence for {saliency.target!r} ({saliency.method})", fontsize=8)
    figure.text(0.5, 0.01, NOT_FOR_CLINICAL_USE, ha="center", fontsize=7, color="grey")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def heat_layer(saliency: SaliencyMap, height: int, width: int) -> bytes:
    """The saliency map alone as an RGBA PNG of ``height`` × ``width``, transparent where there
    is no evidence: an overlay the web app's player lays over its frame."""
    from matplotlib import colormaps  # here, not at the top: 29 MiB and 0.5 s of the server's start

    heat = relative(saliency.on_image(height, width))
    rgba = colormaps["jet"](heat)
    rgba[..., 3] = np.where(heat > 0.05, 0.35 + 0.5 * heat, 0.0)
    buffer = io.BytesIO()
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()
