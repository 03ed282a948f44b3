"""Measure how well a model's saliency maps point at the findings of a dataset with lesion masks."""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from PIL import Image

from dxserve.core.explain import (
    SaliencyMap,
    occlusion_inputs,
    occlusion_map,
    pointing_hit,
    relevance_mass,
)
from dxserve.core.explain.localisation import TOLERANCE_PX
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.datasets import Dataset

OCCLUSION_LIMIT = 60  # occlusion costs 225 runs an image: measure it on a bounded sample


def measure_localisation(
    model: OnnxModel, dataset: Dataset, on_progress: Callable[[int], None] | None = None
) -> dict[str, object] | None:
    """Pointing game (strict and with Zhang et al.'s 15-pixel tolerance) and relevance mass of
    every saliency method the model offers — its own map outputs, and occlusion on a sample —
    on the first frame of each positive item with a non-empty mask. None when there is none."""
    items, masks = [], []
    for item in dataset.items:
        if item.label == 1 and item.mask is not None:
            mask = np.asarray(Image.open(item.mask).convert("L")) > 0
            if mask.any():
                items.append(item)
                masks.append(mask)
    if not items:
        return None
    manifest = model.manifest
    recipe = manifest.image_recipe
    x = replace(dataset, items=tuple(items)).materialize(recipe, 1, on_progress).x
    outputs = model.predict(x)
    spec = manifest.explanation
    maps: dict[str, list[SaliencyMap]] = {}
    if spec:
        grids = {spec["method"]: spec["output"], **spec.get("alternatives", {})}
        for method, output in grids.items():
            maps[method] = [
                SaliencyMap(v, spec["stride"], spec["offset"], recipe.size, method, "")
                for v in outputs[output]
            ]
    maps["occlusion"] = [
        _occlusion(
            model, x[k], float(manifest.scores({n: o[k : k + 1] for n, o in outputs.items()})[0, 0])
        )
        for k in range(min(len(x), OCCLUSION_LIMIT))
    ]
    served = spec["method"] if spec else "occlusion"
    return {
        "served_method": served,
        "tolerance_px": TOLERANCE_PX,
        "methods": {
            method: _score(found, masks, [i.finding for i in items])
            for method, found in maps.items()
        },
    }


def _occlusion(model: OnnxModel, x: np.ndarray, base: float) -> SaliencyMap:
    manifest = model.manifest
    scores = manifest.scores(model.run(manifest.image_recipe.normalize(occlusion_inputs(x))))[:, 0]
    grid, stride, offset = occlusion_map(base, scores, manifest.image_recipe.size)
    return SaliencyMap(grid, stride, offset, manifest.image_recipe.size, "occlusion", "")


def _score(
    maps: list[SaliencyMap], masks: list[np.ndarray], findings: list[str]
) -> dict[str, object]:
    strict, tolerant, mass = [], [], []
    by_finding: dict[str, list[bool]] = defaultdict(list)
    for saliency, mask, finding in zip(maps, masks, findings, strict=False):
        values = saliency.on_image(*mask.shape)
        strict.append(pointing_hit(values, mask))
        tolerant.append(pointing_hit(values, mask, TOLERANCE_PX))
        mass.append(relevance_mass(values, mask))
        by_finding[finding or "positive"].append(tolerant[-1])
    return {
        "n": len(maps),
        "pointing_game": float(np.mean(tolerant)),
        "pointing_game_strict": float(np.mean(strict)),
        "relevance_mass": float(np.mean(mass)),
        "pointing_game_by_finding": {f: float(np.mean(h)) for f, h in sorted(by_finding.items())},
    }
