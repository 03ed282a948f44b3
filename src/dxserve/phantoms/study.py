"""One phantom study: a normal or abnormal heart imaged over one or more frames."""

import math
from dataclasses import dataclass

import numpy as np

from dxserve.phantoms import FINDINGS
from dxserve.phantoms.anatomy import random_heart, random_lesion, render, tissue_texture
from dxserve.phantoms.speckle import Display, bmode, new_scatterers, sector_tables

SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
# Speckle decorrelation between consecutive cine frames (tissue moves through the beam).
FRAME_DECORRELATION = 0.35


@dataclass(frozen=True)
class PhantomStudy:
    """Frames ``(T, size, size)`` uint8, the exact finding mask of frame 0, label and split."""

    index: int
    frames: np.ndarray
    mask: np.ndarray
    finding: str
    split: str

    @property
    def label(self) -> str:
        return "normal" if self.finding == "normal" else "abnormal"


def finding_for(index: int, findings: tuple[str, ...] = FINDINGS) -> str:
    """Balanced classes: even indices normal, odd ones cycle through the findings."""
    return "normal" if index % 2 == 0 else findings[(index // 2) % len(findings)]


def make_study(
    seed: int, index: int, size: int = 256, frames: int = 1, findings: tuple[str, ...] = FINDINGS
) -> PhantomStudy:
    """The phantom study number ``index`` of the dataset ``seed``; the same arguments, the same pixels."""
    geometry_rng, lesion_rng, speckle_rng, display_rng, split_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(5)
    )
    finding = finding_for(index, findings)
    heart = random_heart(geometry_rng)
    texture = tissue_texture(size, geometry_rng)
    lesion = None if finding == "normal" else random_lesion(finding, lesion_rng)
    display = Display.random(display_rng)
    # Global statistics come from the same distribution whatever the class.
    target_mean, target_std = display_rng.uniform(55, 80), display_rng.uniform(38, 50)

    scatterers = new_scatterers(size, speckle_rng)
    keep = math.sqrt(1 - FRAME_DECORRELATION**2)
    images, first_mask = [], None
    for k in range(frames):
        systole = (1 - math.cos(2 * math.pi * k / max(frames, 2))) / 2 if frames > 1 else 0.0
        echo, mask = render(heart.at_phase(systole), lesion, size, texture)
        if k:
            fresh = new_scatterers(size, speckle_rng)
            scatterers = keep * scatterers + FRAME_DECORRELATION * fresh
        images.append(bmode(echo, scatterers, display))
        if first_mask is None:
            first_mask = mask
    assert first_mask is not None
    inside = sector_tables(size)[3]
    stack = np.stack(images)
    values = stack[:, inside]
    stack[:, inside] = (values - values.mean()) / (values.std() + 1e-9) * target_std + target_mean
    pixels = np.clip(np.round(stack), 0, 255).astype(np.uint8)
    pixels[:, ~inside] = 0
    return PhantomStudy(index, pixels, first_mask & inside, finding, _split(split_rng))


def _split(rng: np.random.Generator) -> str:
    draw, total = rng.random(), 0.0
    for name, share in SPLITS:
        total += share
        if draw < total:
            return name
    return SPLITS[-1][0]
