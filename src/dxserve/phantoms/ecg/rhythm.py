"""Rhythms as per-beat RR series, and the statements (labels) each record carries.

A record has one rhythm — sinus at a normal rate, sinus bradycardia (< 60 bpm), sinus
tachycardia (> 100 bpm) or atrial fibrillation — and may add premature ventricular complexes
or first-degree AV block (PR > 200 ms; never with AF, which has no PR). The rates, PRs and QRS
durations drawn keep a margin from each class boundary (a phantom is labelled without doubt;
real borderline ECGs are not, and the model card says so).
"""

from dataclasses import dataclass, field

import numpy as np

SINUS = "sinus_rhythm"
BRADY = "sinus_bradycardia"
TACHY = "sinus_tachycardia"
AF = "atrial_fibrillation"
PVC = "premature_ventricular_complexes"
AVB1 = "first_degree_av_block"
LABELS = (SINUS, BRADY, TACHY, AF, PVC, AVB1)
# The class a record is drawn as (each equally often), and the statements it then carries.
CLASSES = ("normal", "af", "brady", "tachy", "pvc", "avb1")
COMBINED = 0.15  # share of brady, tachy and AF records that also carry PVCs or AV block

HR_RANGES = {SINUS: (62.0, 97.0), BRADY: (40.0, 56.0), TACHY: (105.0, 150.0), AF: (65.0, 150.0)}
PR_NORMAL_MS = (125.0, 185.0)
PR_BLOCK_MS = (225.0, 340.0)


@dataclass
class Plan:
    """What one record will be: its statements and the numbers that make them true."""

    kind: str
    labels: list[str]
    heart_rate: float
    pr_ms: float | None  # None in AF
    qrs_ms: float
    qtc_ms: float
    pvc_beats: set[int] = field(default_factory=set)

    @property
    def rhythm(self) -> str:
        return self.labels[0]


def plan_record(rng: np.random.Generator, kind: str) -> Plan:
    """Draw a record of class ``kind`` (one of :data:`CLASSES`)."""
    rhythm = {"af": AF, "brady": BRADY, "tachy": TACHY}.get(kind, SINUS)
    labels = [rhythm]
    pvc = kind == "pvc"
    block = kind == "avb1"
    if kind in ("af", "brady", "tachy") and rng.random() < COMBINED:
        if rhythm != AF and rng.random() < 0.5:
            block = True
        else:
            pvc = True
    if pvc:
        labels.append(PVC)
    if block:
        labels.append(AVB1)
    rate = float(rng.uniform(*HR_RANGES[rhythm]))
    pr = None if rhythm == AF else float(rng.uniform(*(PR_BLOCK_MS if block else PR_NORMAL_MS)))
    return Plan(
        kind=kind,
        labels=labels,
        heart_rate=rate,
        pr_ms=pr,
        qrs_ms=float(rng.uniform(80.0, 104.0)),
        qtc_ms=float(rng.uniform(385.0, 445.0)),
    )


def rr_series(rng: np.random.Generator, plan: Plan, seconds: float) -> np.ndarray:
    """RR intervals (s) of the beats of ``seconds`` (and a little beyond), with the record's
    rhythm: sinus beats vary smoothly (respiratory sinus arrhythmia plus a slow AR(1)
    drift); AF is irregularly irregular (independent draws, coefficient of variation 15–30 %)."""
    mean = 60.0 / plan.heart_rate
    count = int(seconds / mean) + 4
    if plan.rhythm == AF:
        cv = rng.uniform(0.15, 0.30)
        rr = mean * (1 + cv * rng.standard_normal(count))
        return np.clip(rr, 0.28, 2.0)
    breath = rng.uniform(0.15, 0.35)  # Hz
    phase = rng.uniform(0, 2 * np.pi)
    drift = np.zeros(count)
    for i in range(1, count):
        drift[i] = 0.8 * drift[i - 1] + rng.normal(0, 0.012)
    times = np.cumsum(np.full(count, mean))
    rr = mean * (1 + rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * breath * times + phase) + drift)
    low, high = {BRADY: (1.03, 1.6), TACHY: (0.4, 0.58), SINUS: (0.6, 0.98)}[plan.rhythm]
    return np.clip(rr, low, high)


def place_pvcs(rng: np.random.Generator, plan: Plan, beats: int) -> None:
    """Choose which beats are premature ventricular complexes (one to three, never the first
    two or the last, never two in a row), or every other beat (bigeminy) one time in five."""
    if PVC not in plan.labels:
        return
    candidates = list(range(2, beats - 1))
    if rng.random() < 0.2:
        plan.pvc_beats = set(candidates[::2])
        return
    chosen: set[int] = set()
    wanted = int(rng.integers(1, 4))
    for beat in rng.permutation(candidates):
        if len(chosen) == wanted:
            break
        if beat - 1 not in chosen and beat + 1 not in chosen:
            chosen.add(int(beat))
    plan.pvc_beats = chosen or {candidates[len(candidates) // 2]}
