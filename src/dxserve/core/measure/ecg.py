"""ECG measurements a clinician expects beside the rhythm: heart rate, RR variability, PR, QRS,
QT and QTc (Bazett and Fridericia), from the median beat across leads.

1. Every lead is band-passed for delineation (0.5–100 Hz, zero phase) with mains notches.
2. R peaks: wfdb's XQRS detector on lead II (the lead rhythm is read on), else the first lead.
3. Beats are cut around each R peak and aligned on it; a beat unlike the others (correlation
   with their median below 0.9 across leads: an ectopic beat) is set aside; the median of the
   rest, lead by lead, is the median beat (noise and the odd beat cancel).
4. Global delineation on every lead's median beat at once, as interpretive electrocardiographs
   do: QRS onset and offset where the spatial velocity (the root sum of squared slopes over
   the leads) falls to a fraction of its QRS peak; P onset where the spatial magnitude above
   the level before the P wave falls to a fraction of its peak; T offset by the tangent
   method (the T wave's steepest fall, extended to the level after it).
5. Intervals from those points; heart rate and RR variability from every R-R interval.

A measurement that cannot be made is absent with its reason (no P wave, as in atrial
fibrillation; too few beats; a beat too unlike the others), never estimated.
"""

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from dxserve.core.intake.signal import Signal

METHOD = (
    "median beat across leads (0.5–100 Hz); R peaks by wfdb XQRS; global delineation: "
    "spatial velocity (QRS), spatial magnitude (P onset), tangent method (T offset)"
)
MIN_BEATS = 3
DETECTION_RATE = 250.0  # R peaks are detected at this rate or below (XQRS loops in Python)
SIMILAR = 0.9  # correlation with the median beat below which a beat is set aside as ectopic
BEFORE_S, AFTER_S = 0.45, 0.7  # the window cut round each R peak
QRS_FRACTION = 0.06  # of the QRS's peak spatial velocity
P_FRACTION = 0.03  # of the P wave's peak spatial magnitude
P_MIN_SNR = 4.0  # a P wave's peak over the isoelectric noise, else there is no P wave
P_MIN_SHARE = 0.05  # … and over this share of the QRS's peak magnitude
P_RISE_MS = 90.0  # a P wave rises from its onset to its peak within this
P_RECURS = 0.5  # median correlation of the beats' P windows with the median beat's
NOISE_MULTIPLE = 2.0  # an edge is never placed in the noise: its level is at least this × floor
SMOOTH_MS = 8.0  # moving average over the slopes and magnitudes
HOLD_MS = 8.0  # how long a wave's edge must stay below its level


@dataclass(frozen=True)
class Fiducials:
    """Points of the median beat, in seconds from its R peak (None: not found)."""

    qrs_on: float
    qrs_off: float
    t_off: float | None
    p_on: float | None
    p_reason: str | None = None
    t_reason: str | None = None


def _value(value: float | None, unit: str, reason: str | None = None) -> dict[str, Any]:
    if value is None:
        return {"value": None, "unit": unit, "absent_reason": reason or "not measurable"}
    return {"value": round(float(value), 1), "unit": unit}


def condition(signal: Signal) -> np.ndarray:
    """Leads ``(n, L)`` band-passed for delineation."""
    from scipy.signal import (  # here, not at the top: scipy.signal is 65 MiB and 1.3 s of the server's start
        butter,
        filtfilt,
        iirnotch,
        sosfiltfilt,
    )

    rate = signal.rate
    high = min(100.0, 0.45 * rate)
    sos = butter(2, [0.5, high], btype="bandpass", fs=rate, output="sos")
    x = sosfiltfilt(sos, signal.samples, axis=0)
    for mains in (50.0, 60.0):
        if mains < 0.45 * rate:
            b, a = iirnotch(mains, 30.0, fs=rate)
            x = filtfilt(b, a, x, axis=0)
    return np.asarray(x)


def r_peaks(x: np.ndarray, rate: float, lead: int) -> np.ndarray:
    """R-peak sample indices on one lead (wfdb's XQRS), moved to the nearest extremum."""
    import wfdb.processing

    factor = max(1, int(rate // DETECTION_RATE))  # XQRS finds nothing in some 1 kHz records
    found = wfdb.processing.xqrs_detect(x[::factor, lead], fs=rate / factor, verbose=False)
    found = np.asarray(found, dtype=int) * factor
    reach = int(0.05 * rate)
    peaks = []
    for q in found:
        lo, hi = max(int(q) - reach, 0), min(int(q) + reach + 1, len(x))
        peaks.append(lo + int(np.argmax(np.abs(x[lo:hi, lead]))))
    return np.unique(np.asarray(peaks, dtype=int))


def median_beat(
    x: np.ndarray, peaks: np.ndarray, rate: float
) -> tuple[np.ndarray | None, np.ndarray, int]:
    """The median beat ``(samples, L)`` of the beats like the others, those beats, and how
    many were set aside."""
    before, after = int(BEFORE_S * rate), int(AFTER_S * rate)
    inside = [p for p in peaks if p - before >= 0 and p + after <= len(x)]
    if len(inside) < MIN_BEATS:
        return None, np.zeros((0, 0, 0)), 0
    beats = np.stack([x[p - before : p + after] for p in inside])  # (B, samples, L)
    beats = beats - np.median(beats, axis=1, keepdims=True)
    template = np.median(beats, axis=0)
    qrs = slice(before - int(0.08 * rate), before + int(0.08 * rate))
    flat_t = template[qrs].ravel()
    like = [np.corrcoef(b[qrs].ravel(), flat_t)[0, 1] >= SIMILAR for b in beats]
    kept = beats[np.asarray(like)]
    if len(kept) < MIN_BEATS:
        return None, kept, len(beats) - len(kept)
    return np.median(kept, axis=0), kept, len(beats) - len(kept)


def _cross(values: np.ndarray, start: int, stop: int, level: float, hold: int) -> int | None:
    """Walking from ``start`` towards ``stop`` (either direction), the first index where
    ``values`` falls below ``level`` and stays below for ``hold`` samples more: a wave's edge,
    not a dip inside it."""
    step = 1 if stop > start else -1
    below = 0
    for i in range(start, stop, step):
        below = below + 1 if values[i] < level else 0
        if below > hold:
            return i - step * hold
    return None


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    kernel = np.ones(max(width, 1)) / max(width, 1)
    return np.convolve(values, kernel, mode="same")


def _flattest(beat: np.ndarray, start: int, stop: int, width: int) -> tuple[np.ndarray, float]:
    """The mean of each lead over the flattest ``width`` samples in ``[start, stop)``, and the
    noise there (RMS over the leads of the deviations from that mean)."""
    starts = range(start, max(stop - width, start + 1))
    best = min(starts, key=lambda i: float(np.ptp(beat[i : i + width], axis=0).sum()))
    segment = beat[best : best + width]
    level = segment.mean(axis=0)
    return level, float(np.sqrt(((segment - level) ** 2).sum(axis=1).mean())) + 1e-6


def delineate(beat: np.ndarray, rate: float, rr: float) -> Fiducials | None:
    """Fiducial points of a median beat ``(samples, L)`` whose R peak is at ``BEFORE_S``."""
    r = int(BEFORE_S * rate)
    ms = rate / 1000
    slopes = np.gradient(beat, axis=0) * rate
    velocity = _smooth(np.sqrt((slopes**2).sum(axis=1)), round(SMOOTH_MS * ms))
    floor = float(np.quantile(velocity, 0.2))
    search = round(120 * ms)
    peak = r - search + int(np.argmax(velocity[r - search : r + search]))
    level = max(QRS_FRACTION * velocity[peak], NOISE_MULTIPLE * floor)
    hold = round(HOLD_MS * ms)
    on = _cross(velocity, peak, max(r - round(200 * ms), 0), level, hold)
    off = _cross(velocity, peak, min(r + round(250 * ms), len(beat)), level, hold)
    if on is None or off is None:
        return None
    # The isoelectric level of each lead: the flattest 20 ms before the QRS (PR segment).
    width = max(round(20 * ms), 2)
    baseline, noise = _flattest(beat, max(on - round(120 * ms), 0), on, width)
    magnitude = _smooth(np.sqrt(((beat - baseline) ** 2).sum(axis=1)), round(SMOOTH_MS * ms))
    wave_hold = round(2 * HOLD_MS * ms)

    t_off, t_reason = None, None
    end = min(r + round(min(rr - 0.05, AFTER_S) * rate), len(beat) - 1)
    start_t = off + round(60 * ms)
    if end - start_t > round(80 * ms):
        t_peak = start_t + int(np.argmax(magnitude[start_t:end]))
        # The tangent method against the level after the T wave (the TP segment, which may sit
        # off the PR segment's): the steepest fall of the T wave, extended to that level.
        after, _ = _flattest(beat, min(t_peak + round(80 * ms), end - width), end, width)
        falling = _smooth(np.sqrt(((beat - after) ** 2).sum(axis=1)), round(SMOOTH_MS * ms))
        slope = np.gradient(falling)
        limb = _cross(falling, t_peak, end, 0.2 * falling[t_peak], 0) or end  # its falling limb
        steepest = t_peak + int(np.argmin(slope[t_peak : max(limb, t_peak + 1)]))
        if slope[steepest] >= 0 or falling[t_peak] < NOISE_MULTIPLE * noise:
            t_reason = "no T wave found"
        else:
            t_off = (steepest - falling[steepest] / slope[steepest] - r) / rate
    else:
        t_reason = "no room for a T wave"

    p_on, p_reason = None, None
    # After the previous beat's T wave: its offset lies one RR before this beat's.
    previous_t = r - round(rr * rate) + (round(t_off * rate) if t_off is not None else 0)
    first = max(on - round(400 * ms), previous_t + round(40 * ms), 0)
    last = on - round(30 * ms)
    if last - first > round(60 * ms):
        # Against the level between the previous T wave and this QRS: each lead's median
        # there (a P wave fills less than half of it; the flattest stretch may be its top).
        level_before = np.median(beat[first : on - round(10 * ms)], axis=0)
        rising = _smooth(np.sqrt(((beat - level_before) ** 2).sum(axis=1)), round(SMOOTH_MS * ms))
        p_peak = first + int(np.argmax(rising[first:last]))
        if rising[p_peak] < max(P_MIN_SNR * noise, P_MIN_SHARE * magnitude[peak]):
            p_reason = "no P wave (as in atrial fibrillation or a junctional rhythm)"
        else:
            p_level = max(P_FRACTION * rising[p_peak], NOISE_MULTIPLE * noise)
            crossing = _cross(rising, p_peak, max(first - round(60 * ms), 0), p_level, wave_hold)
            if crossing is None or p_peak - crossing > round(P_RISE_MS * ms):
                p_reason = "the P wave's onset is not clear (it may merge with the T wave)"
            else:
                p_on = (crossing - r) / rate
    else:
        p_reason = "no room for a P wave before the QRS"
    return Fiducials((on - r) / rate, (off - r) / rate, t_off, p_on, p_reason, t_reason)


def _p_recurs(points: Fiducials, beat: np.ndarray, kept: np.ndarray, rate: float) -> Fiducials:
    """``points`` without their P onset unless the P wave recurs before each QRS (its window
    correlates with the median beat's in most beats): a median of fibrillatory waves is not
    a P wave."""
    r = int(BEFORE_S * rate)
    assert points.p_on is not None
    window = slice(r + round(points.p_on * rate), r + round(points.qrs_on * rate))
    template = beat[window].ravel()
    similar = [np.corrcoef(b[window].ravel(), template)[0, 1] for b in kept]
    if float(np.median(similar)) >= P_RECURS:
        return points
    return replace(
        points,
        p_on=None,
        p_reason="no P wave recurring before each QRS (as in atrial fibrillation)",
    )


def ecg_intervals(sample: object) -> dict[str, Any]:
    """Heart rate, RR variability and the intervals of ``sample`` (a :class:`Signal`)."""
    assert isinstance(sample, Signal)
    signal = sample
    rate = signal.rate
    x = condition(signal)
    lead = next((i for i, n in enumerate(signal.leads) if n == "II"), 0)
    peaks = r_peaks(x, rate, lead)
    out: dict[str, Any] = {"method": METHOD, "r_peak_lead": signal.leads[lead]}
    if len(peaks) < MIN_BEATS:
        reason = f"fewer than {MIN_BEATS} beats found"
        for key, unit in _KEYS:
            out[key] = _value(None, unit, reason)
        out["beats"] = {"detected": len(peaks)}
        return out
    rr = np.diff(peaks) / rate
    out["heart_rate"] = _value(60.0 / rr.mean(), "/min")
    out["rr_ms"] = _value(1000 * rr.mean(), "ms")
    out["rr_sdnn_ms"] = _value(
        1000 * rr.std(ddof=1) if len(rr) > 1 else None, "ms", "one R-R interval only"
    )
    out["rr_rmssd_ms"] = _value(
        1000 * float(np.sqrt(np.mean(np.diff(rr) ** 2))) if len(rr) > 1 else None,
        "ms",
        "one R-R interval only",
    )
    beat, kept, ectopic = median_beat(x, peaks, rate)
    out["beats"] = {"detected": len(peaks), "in_median_beat": len(kept), "set_aside": ectopic}
    points = delineate(beat, rate, float(np.median(rr))) if beat is not None else None
    if beat is not None and points is not None and points.p_on is not None:
        points = _p_recurs(points, beat, kept, rate)
    if points is None:
        reason = "the beats are too unlike one another for a median beat"
        for key, unit in _KEYS[4:]:
            out[key] = _value(None, unit, reason)
        return out
    rr_s = float(np.median(rr))
    qt = None if points.t_off is None else 1000 * (points.t_off - points.qrs_on)
    pr = None if points.p_on is None else 1000 * (points.qrs_on - points.p_on)
    out["pr_ms"] = _value(pr, "ms", points.p_reason)
    out["qrs_ms"] = _value(1000 * (points.qrs_off - points.qrs_on), "ms")
    out["qt_ms"] = _value(qt, "ms", points.t_reason)
    out["qtc_bazett_ms"] = _value(None if qt is None else qt / np.sqrt(rr_s), "ms", points.t_reason)
    out["qtc_fridericia_ms"] = _value(
        None if qt is None else qt / np.cbrt(rr_s), "ms", points.t_reason
    )
    out["formulas"] = {"qtc_bazett_ms": "QT / √RR (s)", "qtc_fridericia_ms": "QT / ∛RR (s)"}
    return out


_KEYS = (
    ("heart_rate", "/min"),
    ("rr_ms", "ms"),
    ("rr_sdnn_ms", "ms"),
    ("rr_rmssd_ms", "ms"),
    ("pr_ms", "ms"),
    ("qrs_ms", "ms"),
    ("qt_ms", "ms"),
    ("qtc_bazett_ms", "ms"),
    ("qtc_fridericia_ms", "ms"),
)
