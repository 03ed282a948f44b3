"""One study through a model: frames → recipe → batched inference → guard → aggregate → diagnosis.

Decoding happens before (``core.intake``), storage and auditing after (``store``); this is the
part every front end (REST, OIP, DICOMweb, Ray Serve) shares.
"""

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from dxserve.core.abstention import INDETERMINATE
from dxserve.core.explain import SaliencyMap, occlusion_inputs, occlusion_map
from dxserve.core.intake.frames import frame_indices
from dxserve.core.offload import is_small, run_cpu
from dxserve.core.ood import NOT_ASSESSED
from dxserve.core.results.finding import Diagnosis, FrameResult, ShadowResult
from dxserve.core.runtime.batcher import Outputs
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.registry import LoadedModel, Selection


@dataclass(frozen=True)
class Outcome:
    """A diagnosis and, when asked for and the study was assessed, its saliency map."""

    diagnosis: Diagnosis
    saliency: SaliencyMap | None = None


def _prepare(manifest: Manifest, frames: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """The model's input and the guard's image checks of each frame, off the event loop."""
    x = manifest.recipe.apply(frames)
    guard = manifest.guard
    return x, guard.bounds.problems(x) if guard else [None] * len(x)


async def diagnose(
    selection: Selection, frames: np.ndarray, max_frames: int | None, explain: bool = False
) -> Outcome:
    """Run the selected model (and its shadow) on up to ``max_frames`` evenly spaced frames.

    Frames the out-of-distribution guard refuses are left out of the study's aggregate; when
    more than half are refused, the study is not assessed at all."""
    started = time.perf_counter()
    indices = frame_indices(len(frames), max_frames)
    chosen = frames[indices]
    primary = selection.primary
    manifest = primary.manifest
    guard = manifest.guard
    small = is_small(len(chosen) * chosen.shape[1] * chosen.shape[2], manifest.recipe.size)
    x, image_problems = await run_cpu(small, _prepare, manifest, chosen)
    preprocessed = time.perf_counter()
    runs = [primary.batcher.infer(x)]
    if selection.shadow is not None:
        shadow_x = x
        if selection.shadow.manifest.recipe != manifest.recipe:
            shadow_x = await asyncio.to_thread(selection.shadow.manifest.recipe.apply, chosen)
        runs.append(selection.shadow.batcher.infer(shadow_x))
    results = await asyncio.gather(*runs)
    outputs, queued, compute = results[0]
    probabilities = manifest.probabilities(outputs)
    reasons = guard.feature_problems(image_problems, outputs) if guard else image_problems
    accepted = [i for i, reason in enumerate(reasons) if reason is None]
    assessed = 2 * len(accepted) >= len(x)
    probability = float(probabilities[accepted].mean()) if assessed else None
    shadow = None
    if selection.shadow is not None:
        shadow_p = float(selection.shadow.manifest.probabilities(results[1][0]).mean())
        shadow = ShadowResult(
            selection.shadow.ref.version, shadow_p, _label(selection.shadow, shadow_p)
        )
    saliency = None
    if explain and probability is not None:
        best = max(accepted, key=lambda i: probabilities[i])
        saliency = await _explain(primary, x[best], outputs, best, int(indices[best]))
    done = time.perf_counter()
    band = manifest.indeterminate_band
    if probability is None:
        label, refer = NOT_ASSESSED, True
    else:
        refer = band is not None and band[0] <= probability < band[1]
        label = INDETERMINATE if refer else _label(primary, probability)
    diagnosis = Diagnosis(
        model=primary.ref.name,
        version=primary.ref.version,
        alias=selection.alias,
        label=label,
        refer_to_clinician=refer,
        assessed=probability is not None,
        indeterminate_band=band,
        probability=probability,
        threshold=manifest.threshold,
        labels=list(manifest.labels),
        frames=[
            FrameResult(int(index), float(p), _label(primary, float(p)), reason)
            for index, p, reason in zip(indices, probabilities, reasons, strict=True)
        ],
        out_of_distribution=_refusals(reasons),
        intended_use=manifest.intended_use,
        not_for_clinical_use=manifest.not_for_clinical_use,
        warning=manifest.clinical_use_warning,
        explanation=saliency.describe() if saliency else None,
        timings_ms={
            "preprocess": round((preprocessed - started) * 1000, 3),
            "queue": round(queued * 1000, 3),
            "inference": round(compute * 1000, 3),
            "total": round((done - started) * 1000, 3),
        },
        shadow=shadow,
    )
    return Outcome(diagnosis, saliency)


async def _explain(
    model: LoadedModel, x: np.ndarray, outputs: Outputs, row: int, frame: int
) -> SaliencyMap:
    """Grad-CAM from the model's own output where it has one; occlusion otherwise."""
    manifest = model.manifest
    size = manifest.recipe.size
    target = manifest.labels[1]
    spec = manifest.explanation
    if spec and spec["output"] in outputs:
        values = outputs[spec["output"]][row]
        return SaliencyMap(
            values,
            float(spec["stride"]),
            float(spec["offset"]),
            size,
            spec["method"],
            target,
            frame,
        )
    occluded = occlusion_inputs(x)
    step = model.batcher.max_batch_size
    runs = [model.batcher.infer(occluded[i : i + step]) for i in range(0, len(occluded), step)]
    scores = np.concatenate([manifest.scores(out) for out, _, _ in await asyncio.gather(*runs)])
    base = float(manifest.scores({k: v[row : row + 1] for k, v in outputs.items()})[0])
    grid, stride, offset = occlusion_map(base, scores, size)
    return SaliencyMap(grid, stride, offset, size, "occlusion", target, frame)


def _refusals(reasons: list[str | None]) -> dict[str, object] | None:
    refused = [r for r in reasons if r is not None]
    if not refused:
        return None
    return {"frames_refused": len(refused), "frames": len(reasons), "reasons": sorted(set(refused))}


def _label(model: LoadedModel, probability: float) -> str:
    manifest = model.manifest
    return manifest.labels[1] if probability >= manifest.threshold else manifest.labels[0]
