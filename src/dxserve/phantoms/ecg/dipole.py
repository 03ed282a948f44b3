"""The heart as a dipole: each wave of each beat a Gaussian event in time (as in ECGSYN,
McSharry et al. 2003, whose P, Q, R, S and T are Gaussians on a limit cycle) along its own
direction in the body, projected onto the leads.

Axes: x towards the patient's left, y towards the feet, z anterior. Leads I and II are the
dipole's projections on the frontal plane; III, aVR, aVL and aVF follow from them exactly
(Einthoven, Goldberger); V1–V6 project it on directions round the horizontal plane.

A wave's onset and offset are where its Gaussian is 2 % of its peak (centre ∓ 2.8 σ); the
T wave's offset is where the tangent method puts it on the noise-free wave (the tangent at its
steepest fall, centre + σ, meets the baseline at centre + 2 σ), the definition QT studies use.
So every fiducial point — P on and off, QRS on and off, T off — is known exactly.
"""

from dataclasses import dataclass

import numpy as np

from dxserve.phantoms.ecg.rhythm import AF, Plan

EDGE = 2.8  # σ from centre to onset/offset: exp(−2.8²/2) ≈ 2 % of the peak
TANGENT = 2.0  # σ from centre to where the tangent at the steepest fall meets the baseline
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL = ("V1", "V2", "V3", "V4", "V5", "V6")
LEADS = LIMB + PRECORDIAL
# Horizontal-plane angle of each chest lead from +x (left) towards +z (anterior), and its gain
# (the electrodes nearest the heart record the largest complexes).
CHEST_ANGLES = np.radians([115.0, 95.0, 78.0, 60.0, 35.0, 5.0])
CHEST_GAINS = np.array([1.0, 1.5, 1.6, 1.5, 1.2, 1.0])


def _unit(x: float, y: float, z: float) -> np.ndarray:
    v = np.array([x, y, z], dtype=np.float64)
    return v / np.linalg.norm(v)


def _frontal(angle_deg: float, z: float = 0.0) -> np.ndarray:
    a = np.radians(angle_deg)
    return _unit(np.cos(a), np.sin(a), z)


@dataclass(frozen=True)
class Heart:
    """One patient's wave directions (unit vectors) and amplitudes (mV), drawn once a record."""

    vectors: dict[str, np.ndarray]  # wave name → amplitude × direction
    p_ms: float  # P wave duration
    t_ms: float  # T wave duration
    pvc_qrs_ms: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Heart":
        axis = rng.uniform(-10.0, 85.0)  # the QRS axis in the frontal plane
        vectors = {
            "P": rng.uniform(0.12, 0.25) * _frontal(rng.uniform(35, 70), 0.1),
            "Q": rng.uniform(0.10, 0.22) * _unit(-0.6, 0.1, 0.8),  # septal: right, anterior
            "R": rng.uniform(1.0, 1.8) * _frontal(axis, -0.35),
            "S": rng.uniform(0.35, 0.7) * _unit(-0.35, -0.4, -0.85),  # posterior, superior
            "T": rng.uniform(0.22, 0.45) * _frontal(axis + rng.uniform(-25, 25), 0.35),
            # An ectopic ventricular focus: a wide complex along another axis, T discordant.
            "V": rng.uniform(1.4, 2.4)
            * _frontal(rng.choice([-90.0, 150.0]) + rng.uniform(-25, 25), rng.uniform(-0.6, 0.6)),
            "F": rng.uniform(0.05, 0.12) * _unit(-0.35, 0.55, 0.75),  # AF's f-waves: V1, inferior
        }
        vectors["VT"] = -0.35 * vectors["V"]
        return cls(vectors, rng.uniform(85, 110), rng.uniform(150, 210), rng.uniform(130, 170))


@dataclass(frozen=True)
class Beat:
    """One beat's type (N: conducted, V: ventricular ectopic) and fiducial points (s)."""

    kind: str
    qrs_on: float
    qrs_off: float
    t_off: float
    p_on: float | None = None
    p_off: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in vars(self).items()}


class Dipole:
    """The dipole ``(n, 3)`` of a record, built wave by wave."""

    def __init__(self, n: int, rate: float) -> None:
        self.rate = rate
        self.d = np.zeros((n, 3))

    def wave(self, vector: np.ndarray, on: float, off: float) -> None:
        """A Gaussian event spanning ``[on, off]`` (2 % of its peak at each end)."""
        centre, sigma = (on + off) / 2, (off - on) / (2 * EDGE)
        lo = max(int((centre - 4 * sigma) * self.rate), 0)
        hi = min(int((centre + 4 * sigma) * self.rate) + 2, len(self.d))
        if hi <= lo:
            return
        t = np.arange(lo, hi) / self.rate
        self.d[lo:hi] += np.exp(-0.5 * ((t - centre) / sigma) ** 2)[:, None] * vector

    def beat(self, heart: Heart, plan: Plan, q: float, rr_before: float, ectopic: bool) -> Beat:
        """Add one beat whose QRS starts at ``q``; its fiducial points."""
        v = heart.vectors
        qt = plan.qtc_ms / 1000 * np.sqrt(rr_before)  # Bazett, inverted
        t_dur = heart.t_ms / 1000  # between the 2 % points
        t_tail = (EDGE - TANGENT) * t_dur / (2 * EDGE)  # the T offset to the 2 % point
        if ectopic:
            width = heart.pvc_qrs_ms / 1000
            self.wave(v["V"], q, q + 0.75 * width)
            self.wave(0.6 * v["V"], q + 0.3 * width, q + width)  # a notched, slurred complex
            t_off = q + qt + 0.5 * (width - plan.qrs_ms / 1000)
            self.wave(v["VT"], t_off + t_tail - t_dur * 1.2, t_off + t_tail)
            return Beat("V", q, q + width, t_off)
        width = plan.qrs_ms / 1000
        self.wave(v["Q"], q, q + 0.3 * width)
        self.wave(v["R"], q + 0.15 * width, q + 0.75 * width)
        self.wave(v["S"], q + 0.6 * width, q + width)
        t_off = q + qt
        self.wave(v["T"], t_off + t_tail - t_dur, t_off + t_tail)
        if plan.pr_ms is None:
            return Beat("N", q, q + width, t_off)
        p_on = q - plan.pr_ms / 1000
        p_off = p_on + heart.p_ms / 1000
        self.wave(v["P"], p_on, p_off)
        return Beat("N", q, q + width, t_off, p_on, p_off)

    def fibrillation(self, heart: Heart, rng: np.random.Generator) -> None:
        """AF's f-waves: 4–9 Hz, their rate wandering slowly, their size varying."""
        t = np.arange(len(self.d)) / self.rate
        base = rng.uniform(4.5, 8.5)
        rate = base + 0.6 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6))
        phase = 2 * np.pi * np.cumsum(rate) / self.rate
        envelope = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t)
        self.d += (np.sin(phase) * envelope)[:, None] * heart.vectors["F"]


def leads_from(d: np.ndarray) -> np.ndarray:
    """The 12 leads ``(n, 12)`` of a dipole ``(n, 3)`` (electrode potentials, not the dipole, for
    noise: see :func:`limb_and_chest`)."""
    lead_i = d[:, 0]
    lead_ii = d @ _frontal(60.0)
    chest = np.stack([np.cos(CHEST_ANGLES), np.full(6, 0.15), np.sin(CHEST_ANGLES)], axis=1)
    return limb_and_chest(lead_i, lead_ii, (d @ chest.T) * CHEST_GAINS)


def limb_and_chest(lead_i: np.ndarray, lead_ii: np.ndarray, chest: np.ndarray) -> np.ndarray:
    """All 12 leads from I, II and V1–V6: III, aVR, aVL and aVF by Einthoven's and Goldberger's
    relations, exactly."""
    return np.column_stack(
        [
            lead_i,
            lead_ii,
            lead_ii - lead_i,
            -(lead_i + lead_ii) / 2,
            lead_i - lead_ii / 2,
            lead_ii - lead_i / 2,
            chest,
        ]
    )


def synthesise(
    rng: np.random.Generator, plan: Plan, rr: np.ndarray, seconds: float, rate: float
) -> tuple[np.ndarray, list[Beat], Heart]:
    """The clean 12 leads ``(n, 12)`` in mV, the beats inside the record, and the heart."""
    n = round(seconds * rate)
    heart = Heart.draw(rng)
    dipole = Dipole(n, rate)
    onsets = rng.uniform(0.05, 0.9) * rr[0] + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    beats = []
    for i, q in enumerate(onsets):
        rr_before = rr[i - 1] if i > 0 else rr[0]
        ectopic = i in plan.pvc_beats
        if ectopic:
            coupling = rng.uniform(0.55, 0.7)
            q, rr_before = onsets[i - 1] + coupling * rr[i - 1], coupling * rr[i - 1]
        beat = dipole.beat(heart, plan, float(q), float(rr_before), ectopic)
        first = beat.p_on if beat.p_on is not None else beat.qrs_on
        if first >= 0 and beat.t_off < seconds:
            beats.append(beat)
    if plan.rhythm == AF:
        dipole.fibrillation(heart, rng)
    return leads_from(dipole.d), beats, heart
