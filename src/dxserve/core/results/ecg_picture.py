"""An ECG on standard paper: 25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, the 12 leads in the
usual 3 × 4 layout (2.5 s each: I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6) and a 10 s rhythm
strip of lead II; where the diagnosis was explained, each lead's relevant segments are shaded
(an explanation of the model's answer, not a detection); the answer, the measurements and the
not-for-clinical-use warning above it."""

import io
from typing import Any

import numpy as np

from dxserve import NOT_FOR_CLINICAL_USE
from dxserve.core.explain.overlay import relative
from dxserve.core.explain.saliency import SaliencyMap
from dxserve.core.intake.signal import Signal

LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
COLUMN_S = 2.5
ROW_MV = 3.0  # height of a row of the grid
MM_PER_S, MM_PER_MV = 25.0, 10.0
DPI = 100
HEADER_IN = 0.55


def _summary(record: dict[str, Any]) -> str:
    measured = (record.get("measurements") or {}).get("ecg-intervals") or {}
    parts = []
    for key, name in (
        ("heart_rate", "HR"),
        ("pr_ms", "PR"),
        ("qrs_ms", "QRS"),
        ("qt_ms", "QT"),
        ("qtc_bazett_ms", "QTc (Bazett)"),
    ):
        value = (measured.get(key) or {}).get("value")
        unit = "/min" if key == "heart_rate" else " ms"
        parts.append(f"{name} {value:.0f}{unit}" if value is not None else f"{name} –")
    refer = " — refer to a clinician" if record.get("refer_to_clinician") else ""
    return f"{record['label']}{refer}    " + "   ".join(parts)


def render_ecg(
    signal: Signal, record: dict[str, Any], saliency: SaliencyMap | None = None
) -> bytes:
    """PNG of ``signal`` on standard ECG paper, with ``record``'s answer and measurements;
    ``saliency`` (rows: leads, columns: segments of ``stride`` s from ``offset`` s) shades the
    segments that raised the answer's score."""
    from matplotlib.figure import (
        Figure,  # here, not at the top: 29 MiB and 0.5 s of the server's start
    )

    rows = len(LAYOUT) + 1
    width_s = COLUMN_S * len(LAYOUT[0])
    height_mv = ROW_MV * rows
    grid_in = height_mv * MM_PER_MV / 25.4
    figure = Figure(figsize=(width_s * MM_PER_S / 25.4, grid_in + HEADER_IN), dpi=DPI)
    axes = figure.add_axes((0.0, 0.0, 1.0, grid_in / (grid_in + HEADER_IN)))
    axes.set_xlim(0, width_s)
    axes.set_ylim(-height_mv, 0)
    for x in np.arange(0, width_s + 1e-9, 0.04):
        major = round(x / 0.2, 6).is_integer()
        axes.axvline(x, color="#f4a6a6" if major else "#fbdada", lw=0.8 if major else 0.4, zorder=0)
    for y in np.arange(-height_mv, 1e-9, 0.1):
        major = round(y / 0.5, 6).is_integer()
        axes.axhline(y, color="#f4a6a6" if major else "#fbdada", lw=0.8 if major else 0.4, zorder=0)
    t = np.arange(signal.samples.shape[0]) / signal.rate
    leads = {name.lower(): i for i, name in enumerate(signal.leads)}
    relevance = _relevance(saliency)

    def trace(name: str, start_s: float, stop_s: float, x0: float, baseline: float) -> None:
        index = leads.get(name.lower())
        if index is None:
            axes.text(x0 + 0.05, baseline + 0.9, f"{name} (not recorded)", fontsize=7, color="grey")
            return
        shown = (t >= start_s) & (t < stop_s)
        values = signal.samples[shown, index] - np.median(signal.samples[:, index])
        axes.plot(
            x0 + t[shown] - start_s,
            baseline + np.clip(values, -1.4, 1.4),
            color="black",
            lw=0.7,
            zorder=3,
        )
        axes.text(x0 + 0.05, baseline + 0.9, name, fontsize=8, zorder=4)
        if relevance is not None and name in relevance:
            for s0, s1, weight in relevance[name]:
                lo, hi = max(s0, start_s), min(s1, stop_s)
                if hi > lo and weight > 0.2:
                    axes.axvspan(
                        x0 + lo - start_s,
                        x0 + hi - start_s,
                        ymin=(baseline - 1.5 + height_mv) / height_mv,
                        ymax=(baseline + 1.5 + height_mv) / height_mv,
                        color="#ff9900",
                        alpha=0.35 * weight,
                        lw=0,
                        zorder=1,
                    )

    for row, names in enumerate(LAYOUT):
        baseline = -ROW_MV * (row + 0.5)
        for col, name in enumerate(names):
            trace(name, col * COLUMN_S, (col + 1) * COLUMN_S, col * COLUMN_S, baseline)
    trace(RHYTHM_LEAD, 0.0, width_s, 0.0, -ROW_MV * (rows - 0.5))
    axes.set_axis_off()
    top = 1 - 0.08 / (grid_in + HEADER_IN)
    line = 0.17 / (grid_in + HEADER_IN)
    figure.text(0.005, top, _summary(record), fontsize=9, va="top", weight="bold")
    explained = (
        "   shaded: the segments that most raised the answer's score (occlusion; an "
        "explanation, not a detection)"
        if relevance
        else ""
    )
    figure.text(
        0.005,
        top - line,
        f"{record['model']} v{record['version']}   25 mm/s, 10 mm/mV{explained}",
        fontsize=7,
        va="top",
    )
    figure.text(
        0.005,
        top - 2 * line,
        record.get("warning") or NOT_FOR_CLINICAL_USE,
        fontsize=7,
        va="top",
        color="#a00000",
    )
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _relevance(
    saliency: SaliencyMap | None,
) -> dict[str, list[tuple[float, float, float]]] | None:
    """Per lead name, ``(start s, stop s, relative weight)`` of each segment of the window."""
    if saliency is None:
        return None
    weights = relative(saliency.values)
    step = saliency.stride
    return {
        lead: [
            (saliency.offset + j * step, saliency.offset + (j + 1) * step, float(w))
            for j, w in enumerate(weights[i])
        ]
        for i, lead in enumerate(saliency.rows)
    }
