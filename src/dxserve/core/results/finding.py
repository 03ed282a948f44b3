"""A diagnosis: one model's answer for one study — its findings, frame by frame (or window by
window) and aggregated, with the measurements made beside the model."""

from dataclasses import dataclass, field, fields
from typing import Any

from dxserve.core.heads import Finding

AGGREGATION = (
    "mean of the probabilities of the frames (or signal windows) the out-of-distribution guard "
    "accepted, compared with the threshold"
)


@dataclass(frozen=True)
class FrameResult:
    """One row the model read: a frame of a cine, or a window of a signal (from ``start_s``)."""

    index: int
    probability: float  # of the study's answer's class (a binary task's positive label)
    label: str
    out_of_distribution: str | None = None  # why the guard refused this frame
    probabilities: dict[str, float] | None = None  # every class's, for a multi-class task
    start_s: float | None = None


@dataclass(frozen=True)
class ShadowResult:
    """What a shadow version said (recorded, never returned as the answer)."""

    version: int
    probability: float
    label: str


@dataclass(frozen=True)
class Diagnosis:
    """The answer for one study from one model version."""

    model: str
    version: int
    alias: str | None
    label: str
    probability: float | None  # None when the study was not assessed (out of distribution)
    threshold: float
    labels: list[str]
    frames: list[FrameResult]
    intended_use: str
    not_for_clinical_use: bool
    warning: str | None
    refer_to_clinician: bool = False
    assessed: bool = True
    out_of_distribution: dict[str, Any] | None = None
    explanation: dict[str, Any] | None = None
    indeterminate_band: tuple[float, float] | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    shadow: ShadowResult | None = None
    aggregation: str = AGGREGATION
    modality: str = "image"
    task: str = "binary"
    findings: list[Finding] = field(default_factory=list)
    measurements: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, as ``dataclasses.asdict`` gives but without its deep copies (the
        nested values were made for this diagnosis alone); this runs once a request."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["frames"] = [_shallow(frame) for frame in self.frames]
        data["shadow"] = _shallow(self.shadow) if self.shadow else None
        data["findings"] = [_shallow(finding) for finding in self.findings]
        return data


def _shallow(result: FrameResult | ShadowResult | Finding) -> dict[str, Any]:
    return {f.name: getattr(result, f.name) for f in fields(result)}
