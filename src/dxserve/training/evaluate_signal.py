"""Evaluate a signal model version (the ECG RNN) on a labelled signal dataset, with ONNX
Runtime as served: per-statement AUC and F1 and their macro averages, per-statement confusion
counts and a confusion table of true against predicted statements, calibration (ECE, Brier:
served against uncalibrated), abstention coverage, out-of-distribution false refusals, the
same on lead II alone, and — where the dataset carries exact intervals — the errors of the
measurements served beside the model."""

from collections.abc import Callable
from typing import Any

import numpy as np

from dxserve.core.calibration import brier, expected_calibration_error
from dxserve.core.measure import measure
from dxserve.core.metrics import multilabel_metrics
from dxserve.core.preprocess import SignalRecipe
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRef
from dxserve.datasets.signals import SignalDataset, read_signal

INTERVALS = ("heart_rate", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms")


def per_record(values: np.ndarray, owner: np.ndarray, records: int) -> np.ndarray:
    """The mean of each record's windows: ``(windows, …)`` → ``(records, …)``."""
    counts = np.maximum(np.bincount(owner, minlength=records), 1)
    flat = values.reshape(len(values), -1)
    sums = np.stack(
        [np.bincount(owner, weights=flat[:, k], minlength=records) for k in range(flat.shape[1])],
        axis=1,
    )
    return (sums / counts[:, None]).reshape(records, *values.shape[1:])


def evaluate_signal(
    ref: ModelRef,
    dataset: SignalDataset,
    split: str,
    on_progress: Callable[[int], None] | None = None,
    intervals: bool = True,
) -> dict[str, Any]:
    """Every metric of the module docstring on ``split`` of ``dataset``, as plain data."""
    part = dataset.subset(split)
    model = OnnxModel(ref)
    manifest = model.manifest
    recipe = manifest.recipe
    assert isinstance(recipe, SignalRecipe)
    head = manifest.head
    labels = list(head.classes)
    arrays = part.materialize(recipe, on_progress)
    y = part.targets()[:, [dataset.labels.index(label) for label in labels]]
    thresholds = [head.threshold_of(label) for label in labels]

    def assess(x: np.ndarray) -> dict[str, Any]:
        outputs = model.run_batches(x)
        prob = per_record(head.probabilities(outputs), arrays.item, len(part))
        raw = per_record(outputs["probability"].astype(np.float64), arrays.item, len(part))
        guard = manifest.guard
        reasons = guard.problems(x, outputs) if guard else [None] * len(x)
        refused = per_record(
            np.array([r is not None for r in reasons], float), arrays.item, len(part)
        )
        metrics = multilabel_metrics(y, prob, labels, thresholds)
        answers = [head.answer(p) for p in prob]
        answered = np.array([not a.refer_to_clinician for a in answers])
        exact = ((prob >= np.asarray(thresholds)) == y.astype(bool)).all(axis=1)
        return {
            **metrics,
            "ece": expected_calibration_error(prob.ravel(), y.ravel()),
            "ece_uncalibrated": expected_calibration_error(raw.ravel(), y.ravel()),
            "brier": brier(prob.ravel(), y.ravel()),
            "brier_uncalibrated": brier(raw.ravel(), y.ravel()),
            "abstention": {
                "coverage": float(answered.mean()),
                "exact_match_answered": float(exact[answered].mean()) if answered.any() else None,
            },
            "ood": {"false_refusal_rate": float((refused > 0.5).mean())},
            "confusion": confusion(y, prob >= np.asarray(thresholds), labels),
        }

    result: dict[str, Any] = {
        "model": ref.name,
        "version": ref.version,
        "data": str(dataset.root),
        "split": split,
        "records": len(part),
        "windows": len(arrays),
        **assess(arrays.x),
    }
    single = np.zeros_like(arrays.x)
    lead = recipe.leads.index(recipe.single_lead) if recipe.single_lead else 0
    single[:, lead] = arrays.x[:, lead]
    alone = assess(single)
    result["single_lead"] = {
        "lead": recipe.single_lead,
        **{k: alone[k] for k in ("auc", "f1", "accuracy", "ece", "per_class")},
    }
    if intervals and manifest.measurements:
        result["measurements"] = interval_errors(part, manifest.measurements)
    return result


def confusion(y: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """For the records of each true statement (rows), how often each statement was called."""
    rows = [
        [int((predicted[y[:, i] == 1, j]).sum()) for j in range(len(labels))]
        for i in range(len(labels))
    ]
    return {
        "labels": labels,
        "rows_true_cols_predicted": rows,
        "records": y.sum(axis=0).astype(int).tolist(),
    }


def interval_errors(part: SignalDataset, names: list[str]) -> dict[str, Any]:
    """Mean absolute error of each measured interval against the exact truth, and how often a
    measurement was absent (with reasons), over the records that have truth."""
    errors: dict[str, list[float]] = {k: [] for k in INTERVALS}
    absent: dict[str, int] = dict.fromkeys(INTERVALS, 0)
    reasons: dict[str, int] = {}
    records = 0
    for item in part.items:
        truth = item.intervals()
        if truth is None:
            continue
        records += 1
        measured = (measure(names, read_signal(item.path)) or {}).get("ecg-intervals", {})
        for key in INTERVALS:
            want = truth.get(key)
            got = (measured.get(key) or {}).get("value")
            if want is None:
                continue
            if got is None:
                absent[key] += 1
                reason = (measured.get(key) or {}).get("absent_reason", "not measured")
                reasons[reason] = reasons.get(reason, 0) + 1
            else:
                errors[key].append(abs(float(got) - float(want)))
    return {
        "records": records,
        "mae": {k: (float(np.mean(v)) if v else None) for k, v in errors.items()},
        "p90_abs_error": {
            k: (float(np.quantile(v, 0.9)) if v else None) for k, v in errors.items()
        },
        "measured": {k: len(v) for k, v in errors.items()},
        "absent": absent,
        "absent_reasons": reasons,
    }
