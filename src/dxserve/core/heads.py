"""What a model's outputs mean for its task: binary, multi-class or multi-label.

Every model has a ``logit`` (or only a ``probability``) output of shape ``(N, K)``: K = 1 for a
binary task (the score of its positive label), one column a class otherwise. A :class:`Head`,
built from the manifest, turns those into calibrated class probabilities — temperature scaling:
``sigmoid(z / T)`` for binary, ``sigmoid(z_c / T_c)`` per class for multi-label, ``softmax(z / T)``
for multi-class — and a study's mean probabilities into its :class:`Answer`: a finding a class,
the study's label and probability, and whether to refer it to a clinician (a binary or
multi-label probability inside its abstention band, a multi-class answer below its confidence).
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from dxserve.core.abstention import INDETERMINATE

BINARY = "binary"
MULTICLASS = "multiclass"
MULTILABEL = "multilabel"
TASKS = (BINARY, MULTICLASS, MULTILABEL)
JOINER = " + "  # a multi-label answer names every finding present


@dataclass(frozen=True)
class Finding:
    """One class of the answer: its calibrated probability, its threshold (none for a
    multi-class argmax), whether it is present, and whether it is too close to call."""

    label: str
    probability: float
    threshold: float | None
    present: bool
    refer_to_clinician: bool = False


@dataclass(frozen=True)
class Answer:
    label: str
    probability: float
    refer_to_clinician: bool
    findings: list[Finding]


@dataclass(frozen=True)
class Head:
    task: str
    labels: tuple[str, ...]
    threshold: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    abstention: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        """The label of each output column: a binary task's positive label, else every label."""
        return (self.labels[-1],) if self.task == BINARY else self.labels

    def threshold_of(self, label: str) -> float:
        return float(self.thresholds.get(label, self.threshold))

    def band_of(self, label: str) -> tuple[float, float] | None:
        """The abstention band ``[low, high)`` of a binary or multi-label class."""
        band = self.abstention.get("bands", {}).get(label) if self.task == MULTILABEL else None
        band = band or (self.abstention if self.task == BINARY else {})
        if "low" not in band:
            return None
        return float(band["low"]), float(band["high"])

    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """``(N, K)`` scores before calibration (logits): what explanations attribute."""
        if "logit" in outputs:
            return outputs["logit"].reshape(len(outputs["logit"]), -1).astype(np.float64)
        p = outputs["probability"]
        p = np.clip(p.reshape(len(p), -1).astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p) if self.task == MULTICLASS else np.log(p / (1 - p))

    def probabilities(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """``(N, K)`` calibrated probabilities; the model's own ``probability`` output when the
        manifest has no calibration."""
        temperatures = self.calibration.get("temperatures") or self.calibration.get("temperature")
        if not temperatures or "logit" not in outputs:
            p = outputs["probability"]
            return p.reshape(len(p), -1).astype(np.float64)
        z = self.scores(outputs) / np.asarray(temperatures, dtype=np.float64)
        return softmax(z, axis=1) if self.task == MULTICLASS else expit(z)

    def row_label(self, p: np.ndarray) -> str:
        """The label of one frame or window (no abstention: that is for the study)."""
        if self.task == BINARY:
            return self.labels[-1] if p[0] >= self.threshold else self.labels[0]
        if self.task == MULTICLASS:
            return self.labels[int(np.argmax(p))]
        present = [c for c, q in zip(self.classes, p, strict=True) if q >= self.threshold_of(c)]
        return JOINER.join(present) or "none"

    def answer(self, p: np.ndarray) -> Answer:
        """The study's answer from its (mean) class probabilities ``p`` ``(K,)``."""
        if self.task == MULTICLASS:
            top = int(np.argmax(p))
            refer = float(p[top]) < float(self.abstention.get("min_confidence", 0.0))
            findings = [
                Finding(
                    label, float(q), None, bool(i == top and not refer), bool(refer and i == top)
                )
                for i, (label, q) in enumerate(zip(self.labels, p, strict=True))
            ]
            return Answer(
                INDETERMINATE if refer else self.labels[top], float(p[top]), refer, findings
            )
        findings = []
        for label, q in zip(self.classes, p, strict=True):
            band = self.band_of(label)
            unsure = bool(band is not None and band[0] <= q < band[1])
            found = bool(not unsure and q >= self.threshold_of(label))
            findings.append(Finding(label, float(q), self.threshold_of(label), found, unsure))
        refer = any(f.refer_to_clinician for f in findings)
        if self.task == BINARY:
            (finding,) = findings
            label = self.labels[-1] if finding.present else self.labels[0]
            return Answer(INDETERMINATE if refer else label, finding.probability, refer, findings)
        present = sorted((f for f in findings if f.present), key=lambda f: -f.probability)
        if not present:
            likeliest = max(findings, key=lambda f: f.probability)
            return Answer(INDETERMINATE, likeliest.probability, True, findings)
        label = JOINER.join(f.label for f in present)
        return Answer(label, present[0].probability, refer, findings)
