"""Evaluate a model version from the repository on a labelled dataset, with ONNX Runtime.

This judges the exported artifact that serving loads, not the PyTorch weights, and needs no torch.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dxserve.core.abstention import coverage_and_accuracy
from dxserve.core.bootstrap import bootstrap_intervals
from dxserve.core.calibration import brier, expected_calibration_error, reliability_bins
from dxserve.core.metrics import BinaryMetrics, binary_metrics, roc_points
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRef
from dxserve.datasets import Dataset
from dxserve.training.localisation import measure_localisation
from dxserve.training.ood_sets import generated_sets, pydicom_sets, refusal_rates, wrong_view_sets


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one model version on one dataset split (per file: frames averaged)."""

    model: str
    version: int
    data: str
    split: str
    files: int
    frames: int
    metrics: BinaryMetrics
    y: np.ndarray
    prob: np.ndarray  # served (calibrated) probabilities
    uncalibrated: np.ndarray  # the network's own sigmoid output
    temperature: float | None
    band: tuple[float, float] | None
    refused: np.ndarray  # per file: the out-of-distribution guard refused it
    localisation: dict[str, object] | None = None  # with explain=True
    ood_sets: dict[str, dict[str, object]] | None = None  # with explain=True

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": self.version,
            "data": self.data,
            "split": self.split,
            "files": self.files,
            "frames": self.frames,
            **self.metrics.to_dict(),
            "temperature": self.temperature,
            "ece": expected_calibration_error(self.prob, self.y),
            "brier": brier(self.prob, self.y),
            "ece_uncalibrated": expected_calibration_error(self.uncalibrated, self.y),
            "brier_uncalibrated": brier(self.uncalibrated, self.y),
            "abstention": self.abstention(),
            "ood": {
                "false_refusal_rate": float(self.refused.mean()) if len(self.refused) else None,
                **({"refusal_rates": self.ood_sets} if self.ood_sets is not None else {}),
            },
            **({"explanation": self.localisation} if self.localisation is not None else {}),
            "intervals_95": {
                name: list(bounds)
                for name, bounds in bootstrap_intervals(
                    self.y, self.prob, self.metrics.threshold
                ).items()
            },
        }

    def abstention(self) -> dict[str, object] | None:
        """Coverage and accuracy on the answered cases with the manifest's indeterminate band."""
        if self.band is None:
            return None
        coverage, accuracy = coverage_and_accuracy(
            self.prob, self.y, self.metrics.threshold, *self.band
        )
        return {
            "low": self.band[0],
            "high": self.band[1],
            "coverage": coverage,
            "accuracy_answered": accuracy,
        }


def default_split(dataset: Dataset) -> str:
    """``test`` when the dataset has a test split, otherwise every item."""
    return "test" if "test" in dataset.splits else "all"


def evaluate(
    ref: ModelRef,
    dataset: Dataset,
    split: str | None = None,
    frames: int | None = 1,
    on_progress: Callable[[int], None] | None = None,
    explain: bool = False,
) -> Evaluation:
    """Run the model on ``split`` of ``dataset``; a file's probability is its frames' mean.

    Also measured: how many files the out-of-distribution guard would refuse (more than half
    their frames refused), and with ``explain``, the saliency maps' localisation on the
    split's lesion masks and the guard's refusal rates on images that are not echoes."""
    split = split or default_split(dataset)
    part = dataset.subset(split).require(
        f"items in split {split!r} (it has {list(dataset.splits)})"
    )
    model = OnnxModel(ref)
    arrays = part.materialize(model.manifest.image_recipe, frames, on_progress)
    outputs = model.predict(arrays.x)
    counts = np.maximum(np.bincount(arrays.item, minlength=len(part)), 1)

    def per_file(frame_values: np.ndarray) -> np.ndarray:
        return np.bincount(arrays.item, weights=frame_values, minlength=len(part)) / counts

    guard = model.manifest.guard
    reasons = guard.problems(arrays.x, outputs) if guard else [None] * len(arrays)
    refused = per_file(np.array([r is not None for r in reasons], dtype=np.float64)) > 0.5
    prob = per_file(model.manifest.probabilities(outputs)[:, 0])
    uncalibrated = per_file(outputs["probability"].reshape(-1).astype(np.float64))
    y = np.array([item.label for item in part.items], dtype=np.float32)
    metrics = binary_metrics(y, prob, model.manifest.threshold)
    temperature = model.manifest.calibration.get("temperature")
    evaluation = Evaluation(
        ref.name,
        ref.version,
        str(dataset.root),
        split,
        len(part),
        len(arrays),
        metrics,
        y,
        prob,
        uncalibrated,
        float(temperature) if temperature else None,
        model.manifest.indeterminate_band,
        refused,
    )
    if not explain:
        return evaluation
    first_frames = [
        arrays.x[arrays.item == i][0].transpose(1, 2, 0) for i in range(min(50, len(part)))
    ]
    sets = {**pydicom_sets(), **generated_sets(), **wrong_view_sets(first_frames)}
    return replace(
        evaluation,
        localisation=measure_localisation(model, part),
        ood_sets=refusal_rates(model, sets),
    )


def plot_roc(evaluation: Evaluation, path: Path) -> Path:
    """Write the ROC curve of an evaluation as a PNG."""
    fpr, tpr = roc_points(evaluation.y, evaluation.prob)
    auc = evaluation.metrics.auc
    return _square_plot(
        path,
        [(fpr, tpr, f"AUC = {auc:.3f}" if auc is not None else "ROC", {"lw": 2})],
        xlabel="1 − specificity (false-positive rate)",
        ylabel="sensitivity (true-positive rate)",
        title=f"{evaluation.model}:{evaluation.version} — {evaluation.split} (n={evaluation.files})",
        legend="lower right",
    )


def plot_reliability(evaluation: Evaluation, path: Path) -> Path:
    """Write the reliability diagram (served and uncalibrated probabilities) as a PNG."""
    curves = []
    for values, name in ((evaluation.uncalibrated, "uncalibrated"), (evaluation.prob, "served")):
        points = reliability_bins(values, evaluation.y)
        ece = expected_calibration_error(values, evaluation.y)
        curves.append(
            (
                [p for p, _, _ in points],
                [f for _, f, _ in points],
                f"{name} (ECE {ece:.3f})",
                {"marker": "o", "lw": 1.5},
            )
        )
    return _square_plot(
        path,
        curves,
        xlabel="predicted probability",
        ylabel="observed frequency of the positive class",
        title=f"{evaluation.model}:{evaluation.version} — reliability (15 bins)",
        legend="upper left",
    )


def _square_plot(
    path: Path,
    curves: list[tuple[Any, Any, str, dict[str, Any]]],
    xlabel: str,
    ylabel: str,
    title: str,
    legend: str,
) -> Path:
    """Curves on the unit square with its diagonal, and the not-for-clinical-use footer."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    for x, y, label, style in curves:
        ax.plot(x, y, label=label, **style)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc=legend, fontsize=8)  # type: ignore[call-overload]  # stubs miss loc= alone
    fig.text(0.5, 0.005, "Not for clinical use", ha="center", fontsize=7, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
