"""Measurements made beside a model, named in its manifest's ``measurements``: a clinician
expects an ECG's heart rate and intervals with its rhythm, whatever the model says."""

from collections.abc import Callable
from typing import Any

from dxserve.core.intake.frames import Frames
from dxserve.core.intake.signal import Signal
from dxserve.core.measure.ecg import ecg_intervals

Measure = Callable[[Frames | Signal], dict[str, Any]]
MEASURES: dict[str, Measure] = {"ecg-intervals": ecg_intervals}


def measure(names: list[str], sample: Frames | Signal) -> dict[str, Any] | None:
    """Every named measurement of ``sample`` (None when the model names none)."""
    if not names:
        return None
    return {name: MEASURES[name](sample) for name in names if name in MEASURES}
