"""One study through one model, whatever the model reads.

```
input     ─► recipe               ─► runtime             ─► head            ─► guard
Frames       image: resize, scale    dynamic batcher →      calibrated         image or signal
Signal       signal: leads, band,    ONNX Runtime           class              checks, feature
             resample, windows       (rows: frames or       probabilities      distance to the
                                     signal windows)        (N, K)             training data
          ─► aggregate             ─► answer              ─► Diagnosis
             mean over the rows       findings, label,       + measurements (ECG intervals),
             the guard accepted       refer to a clinician   saliency when asked
```

Intake (:mod:`dxserve.intake`) makes the typed input before; storage, audit and metering come
after (:mod:`dxserve.services`). Nothing here asks which model it is: the manifest says what it
reads (``modality``), how to prepare it (``preprocessing``), what its outputs mean (``task``) and
what to measure beside it (``measurements``). Every front end (REST, DICOMweb, Ray Serve) shares
this; the OIP runs models on raw tensors and skips it.
"""

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from dxserve.core.explain import SaliencyMap, occlusion_inputs, occlusion_map
from dxserve.core.explain.signal_occlusion import (
    SEGMENT_S,
    signal_occlusion_inputs,
    signal_occlusion_map,
)
from dxserve.core.heads import Finding
from dxserve.core.intake.frames import Frames, frame_indices
from dxserve.core.intake.signal import Signal
from dxserve.core.measure import measure
from dxserve.core.modality import IMAGE, SIGNAL, describe
from dxserve.core.offload import is_small, run_cpu
from dxserve.core.ood import NOT_ASSESSED
from dxserve.core.preprocess import Recipe, SignalRecipe
from dxserve.core.results.finding import Diagnosis, FrameResult, ShadowResult
from dxserve.core.runtime.batcher import Outputs
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.registry import LoadedModel, Selection
from dxserve.errors import WrongModality

Input = Frames | Signal


@dataclass(frozen=True)
class Outcome:
    """A diagnosis and, when asked for and the study was assessed, its saliency map."""

    diagnosis: Diagnosis
    saliency: SaliencyMap | None = None


@dataclass(frozen=True)
class Prepared:
    """The model's input rows, where each came from, and the guard's input checks of each."""

    x: np.ndarray
    indices: np.ndarray  # frame of the cine, or window of the signal
    starts: np.ndarray | None  # a signal window's start (s)
    problems: list[str | None]


def modality_of(sample: Input) -> str:
    return IMAGE if isinstance(sample, Frames) else SIGNAL


def prepare(manifest: Manifest, sample: Input, max_frames: int | None) -> Prepared:
    """The recipe and the guard's input checks, off the event loop for anything large."""
    recipe = manifest.recipe
    if manifest.modality != modality_of(sample):
        raise WrongModality(
            f"this is {describe(modality_of(sample))}; {manifest.name} reads "
            f"{describe(manifest.modality)}"
        )
    starts = None
    if isinstance(sample, Frames):
        assert isinstance(recipe, Recipe)
        indices = frame_indices(sample.count, max_frames)
        x = recipe.apply(sample.read(indices))
    else:
        assert isinstance(recipe, SignalRecipe)
        x, starts = recipe.windows(recipe.condition(sample))
        indices = np.arange(len(x))
    guard = manifest.guard
    return Prepared(x, indices, starts, guard.bounds.problems(x) if guard else [None] * len(x))


def _small(manifest: Manifest, sample: Input, max_frames: int | None) -> bool:
    """Work small enough to run on the event loop (see :mod:`dxserve.core.offload`)."""
    if not isinstance(sample, Frames) or not isinstance(manifest.recipe, Recipe):
        return False
    height, width = sample.size
    count = len(frame_indices(sample.count, max_frames))
    return is_small(count * height * width, manifest.recipe.size)


async def diagnose(
    selection: Selection, sample: Input, max_frames: int | None, explain: bool = False
) -> Outcome:
    """Run the selected model (and its shadow) on ``sample``: up to ``max_frames`` evenly
    spaced frames of a cine, or every window of a signal.

    Rows the out-of-distribution guard refuses are left out of the study's aggregate; when
    more than half are refused, the study is not assessed at all."""
    started = time.perf_counter()
    primary = selection.primary
    manifest = primary.manifest
    head, guard = manifest.head, manifest.guard
    small = _small(manifest, sample, max_frames)
    prepared = await run_cpu(small, prepare, manifest, sample, max_frames)
    x = prepared.x
    preprocessed = time.perf_counter()
    runs = [primary.batcher.infer(x)]
    shadow_model = selection.shadow
    if shadow_model is not None:
        shadow_x = x
        if shadow_model.manifest.recipe != manifest.recipe:
            shadow_prepared = await asyncio.to_thread(
                prepare, shadow_model.manifest, sample, max_frames
            )
            shadow_x = shadow_prepared.x
        runs.append(shadow_model.batcher.infer(shadow_x))
    measurements = None
    if manifest.measurements:  # beside the model, in a thread while it runs
        measuring = asyncio.to_thread(measure, manifest.measurements, sample)
        results, measurements = await asyncio.gather(asyncio.gather(*runs), measuring)
    else:
        results = await asyncio.gather(*runs)
    outputs, queued, compute = results[0]
    probabilities = head.probabilities(outputs)
    reasons = guard.feature_problems(prepared.problems, outputs) if guard else prepared.problems
    accepted = [i for i, reason in enumerate(reasons) if reason is None]
    assessed = 2 * len(accepted) >= len(x)
    answer = head.answer(probabilities[accepted].mean(axis=0)) if assessed else None
    column = _column(manifest, answer.findings if answer else None)
    shadow = None
    if shadow_model is not None:
        shadow_head = shadow_model.manifest.head
        shadow_answer = shadow_head.answer(shadow_head.probabilities(results[1][0]).mean(axis=0))
        shadow = ShadowResult(
            shadow_model.ref.version, shadow_answer.probability, shadow_answer.label
        )
    saliency = None
    if explain and answer is not None:
        best = max(accepted, key=lambda i: probabilities[i, column])
        start = 0.0 if prepared.starts is None else float(prepared.starts[best])
        saliency = await _explain(
            primary, x[best], outputs, best, int(prepared.indices[best]), column, start
        )
    done = time.perf_counter()
    multiclass = manifest.task != "binary"
    diagnosis = Diagnosis(
        model=primary.ref.name,
        version=primary.ref.version,
        alias=selection.alias,
        label=answer.label if answer else NOT_ASSESSED,
        refer_to_clinician=answer.refer_to_clinician if answer else True,
        assessed=answer is not None,
        indeterminate_band=manifest.indeterminate_band,
        probability=answer.probability if answer else None,
        threshold=manifest.threshold,
        labels=list(manifest.labels),
        frames=[
            FrameResult(
                int(index),
                float(p[column]),
                head.row_label(p),
                reason,
                dict(zip(head.classes, map(float, p), strict=True)) if multiclass else None,
                None if prepared.starts is None else float(prepared.starts[i]),
            )
            for i, (index, p, reason) in enumerate(
                zip(prepared.indices, probabilities, reasons, strict=True)
            )
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
        modality=manifest.modality,
        task=manifest.task,
        findings=answer.findings if answer else [],
        measurements=measurements,
    )
    return Outcome(diagnosis, saliency)


def _column(manifest: Manifest, findings: list[Finding] | None) -> int:
    """The output column a study's rows are reported and explained by: a binary task's one
    column, else the most probable finding present (or the most probable class)."""
    if manifest.task == "binary" or not findings:
        return 0
    present = [f for f in findings if f.present] or findings
    best = max(present, key=lambda f: f.probability)
    return manifest.head.classes.index(best.label)


async def _occluded_scores(model: LoadedModel, copies: np.ndarray, column: int) -> np.ndarray:
    """The explained column's score of every occluded copy, through the batcher."""
    step = model.batcher.max_batch_size
    runs = [model.batcher.infer(copies[i : i + step]) for i in range(0, len(copies), step)]
    outs = await asyncio.gather(*runs)
    return np.concatenate([model.manifest.scores(out)[:, column] for out, _, _ in outs])


async def _explain_signal(
    model: LoadedModel,
    x: np.ndarray,
    outputs: Outputs,
    row: int,
    window: int,
    column: int,
    start: float,
) -> SaliencyMap:
    """Occlusion over time, lead by lead: ``values`` (leads, segments) of ``SEGMENT_S`` each
    from the window's ``start`` (s)."""
    manifest = model.manifest
    recipe = manifest.recipe
    assert isinstance(recipe, SignalRecipe)
    segment = round(SEGMENT_S * recipe.rate)
    scores = await _occluded_scores(model, signal_occlusion_inputs(x, segment), column)
    base = float(manifest.scores({k: v[row : row + 1] for k, v in outputs.items()})[0, column])
    grid = signal_occlusion_map(base, scores, x.shape[0])
    target = manifest.head.classes[column]
    shape = (int(x.shape[0]), int(x.shape[1]))
    return SaliencyMap(grid, SEGMENT_S, start, shape, "occlusion", target, window, recipe.leads)


async def _explain(
    model: LoadedModel,
    x: np.ndarray,
    outputs: Outputs,
    row: int,
    frame: int,
    column: int,
    start: float = 0.0,
) -> SaliencyMap:
    """Grad-CAM from the model's own output where it has one; occlusion otherwise (over
    patches of an image, or segments of each lead of a signal)."""
    manifest = model.manifest
    recipe = manifest.recipe
    target = manifest.head.classes[column]
    if isinstance(recipe, SignalRecipe):
        return await _explain_signal(model, x, outputs, row, frame, column, start)
    size = recipe.size
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
    scores = await _occluded_scores(model, occlusion_inputs(x), column)
    base = float(manifest.scores({k: v[row : row + 1] for k, v in outputs.items()})[0, column])
    grid, stride, offset = occlusion_map(base, scores, size)
    return SaliencyMap(grid, stride, offset, size, "occlusion", target, frame)


def _refusals(reasons: list[str | None]) -> dict[str, object] | None:
    refused = [r for r in reasons if r is not None]
    if not refused:
        return None
    return {"frames_refused": len(refused), "frames": len(reasons), "reasons": sorted(set(refused))}
