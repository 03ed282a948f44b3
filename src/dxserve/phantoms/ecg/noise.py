"""ECG noise where it arises, at the electrodes: baseline wander (breathing, drift), muscle
(EMG) noise, mains hum and electrode-motion steps. Leads are differences of electrode
potentials, so the limb-lead relations stay exact in the noisy record too."""

import numpy as np
from scipy.signal import butter, sosfiltfilt

from dxserve.phantoms.ecg.dipole import limb_and_chest

ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")


def electrode_noise(rng: np.random.Generator, n: int, rate: float) -> tuple[np.ndarray, dict]:
    """Noise ``(n, 9)`` at the nine electrodes (arbitrary scale) and what it is made of."""
    t = np.arange(n) / rate
    weights = rng.dirichlet([2.0, 2.0, 1.0, 0.7])  # wander, muscle, mains, motion
    breath = rng.uniform(0.15, 0.4)
    wander = np.sin(2 * np.pi * breath * t[:, None] + rng.uniform(0, 6, 9))
    drift = np.cumsum(rng.standard_normal((n, 9)), axis=0) / np.sqrt(rate)
    drift = sosfiltfilt(butter(2, 0.3, fs=rate, output="sos"), drift, axis=0)
    wander = wander * rng.uniform(0.3, 1.0, 9) + drift / (drift.std() + 1e-9)
    high = min(150.0, 0.45 * rate)
    emg = sosfiltfilt(
        butter(2, [20.0, high], btype="bandpass", fs=rate, output="sos"),
        rng.standard_normal((n, 9)),
        axis=0,
    )
    emg *= np.where(rng.random(9) < 0.5, rng.uniform(0.2, 0.6), 1.0)  # a tense limb or two
    mains_hz = float(rng.choice([50.0, 60.0]))
    mains = np.sin(2 * np.pi * mains_hz * t[:, None] + rng.uniform(0, 6)) * rng.uniform(0.5, 1, 9)
    motion = np.zeros((n, 9))
    for _ in range(int(rng.integers(0, 3))):
        start, electrode = int(rng.integers(0, n)), int(rng.integers(0, 9))
        tau = rng.uniform(0.2, 0.8) * rate
        motion[start:, electrode] += rng.choice([-1, 1]) * np.exp(-np.arange(n - start) / tau)
    parts = [wander, emg, mains, motion]
    noise = sum(w * p / (p.std() + 1e-9) for w, p in zip(weights, parts, strict=True))
    kinds = dict(
        zip(
            ("baseline_wander", "muscle", "mains", "electrode_motion"),
            weights.round(3).tolist(),
            strict=True,
        )
    )
    kinds["mains_hz"] = mains_hz
    return np.asarray(noise), kinds


def lead_noise(electrodes: np.ndarray) -> np.ndarray:
    """The 12 leads ``(n, 12)`` the electrode noise ``(n, 9)`` appears in."""
    ra, la, ll = electrodes[:, 0], electrodes[:, 1], electrodes[:, 2]
    wilson = (ra + la + ll) / 3
    return limb_and_chest(la - ra, ll - ra, electrodes[:, 3:] - wilson[:, None])


def add_noise(
    rng: np.random.Generator, clean: np.ndarray, rate: float, snr_db: float
) -> tuple[np.ndarray, dict]:
    """``clean`` leads with electrode noise at ``snr_db`` (signal power over noise power,
    averaged over the leads)."""
    electrodes, kinds = electrode_noise(rng, len(clean), rate)
    noise = lead_noise(electrodes)
    scale = np.sqrt(clean.var(axis=0).mean() / (noise.var(axis=0).mean() * 10 ** (snr_db / 10)))
    return clean + scale * noise, kinds
