"""One study through a model: frames → recipe → batched inference → aggregate → diagnosis.

Decoding happens before (``core.intake``), storage and auditing after (``store``); this is the
part every front end (REST, OIP, DICOMweb, Ray Serve) shares.
"""

import asyncio
import time

import numpy as np

from dxserve.core.abstention import INDETERMINATE
from dxserve.core.intake.frames import sample_frames
from dxserve.core.results.finding import Diagnosis, FrameResult, ShadowResult
from dxserve.core.runtime.registry import LoadedModel, Selection


async def diagnose(selection: Selection, frames: np.ndarray, max_frames: int | None) -> Diagnosis:
    """Run the selected model (and its shadow) on up to ``max_frames`` evenly spaced frames."""
    started = time.perf_counter()
    chosen = sample_frames(frames, max_frames)
    primary = selection.primary
    x = await asyncio.to_thread(primary.manifest.recipe.apply, chosen)
    preprocessed = time.perf_counter()
    runs = [primary.batcher.infer(x)]
    if selection.shadow is not None:
        shadow_x = x
        if selection.shadow.manifest.recipe != primary.manifest.recipe:
            shadow_x = await asyncio.to_thread(selection.shadow.manifest.recipe.apply, chosen)
        runs.append(selection.shadow.batcher.infer(shadow_x))
    results = await asyncio.gather(*runs)
    outputs, queued, compute = results[0]
    manifest = primary.manifest
    probabilities = manifest.probabilities(outputs)
    probability = float(probabilities.mean())
    shadow = None
    if selection.shadow is not None:
        shadow_p = float(selection.shadow.manifest.probabilities(results[1][0]).mean())
        shadow = ShadowResult(
            selection.shadow.ref.version, shadow_p, _label(selection.shadow, shadow_p)
        )
    done = time.perf_counter()
    band = manifest.indeterminate_band
    refer = band is not None and band[0] <= probability < band[1]
    return Diagnosis(
        model=primary.ref.name,
        version=primary.ref.version,
        alias=selection.alias,
        label=INDETERMINATE if refer else _label(primary, probability),
        refer_to_clinician=refer,
        indeterminate_band=band,
        probability=probability,
        threshold=manifest.threshold,
        labels=list(manifest.labels),
        frames=[
            FrameResult(i, float(p), _label(primary, float(p))) for i, p in enumerate(probabilities)
        ],
        intended_use=manifest.intended_use,
        not_for_clinical_use=manifest.not_for_clinical_use,
        warning=manifest.clinical_use_warning,
        timings_ms={
            "preprocess": round((preprocessed - started) * 1000, 3),
            "queue": round(queued * 1000, 3),
            "inference": round(compute * 1000, 3),
            "total": round((done - started) * 1000, 3),
        },
        shadow=shadow,
    )


def _label(model: LoadedModel, probability: float) -> str:
    manifest = model.manifest
    return manifest.labels[1] if probability >= manifest.threshold else manifest.labels[0]
