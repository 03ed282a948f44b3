"""The signal recipe: a :class:`~dxserve.core.intake.signal.Signal` of any rate, length and
lead set → fixed-length windows ``(W, leads, samples)`` float32 at the model's rate.

Steps, each the same at training, evaluation and serving: pick the model's leads by name
(a signal of the model's single lead alone is read with the other leads zero; any other
missing lead is refused); band-pass (zero-phase Butterworth, then 50 and 60 Hz notches:
baseline wander, muscle noise and mains out) at the signal's own rate;
resample to the model's rate (polyphase, which filters against aliasing); cut windows of
``seconds`` (a final partial window aligned to the end; a short record zero-padded); scale
each lead of each window by its own spread (robust: median absolute deviation).
"""

from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from dxserve.core.intake.signal import Signal
from dxserve.errors import InvalidInput, MissingLeads

FILTER_ORDER = 4  # per pass; filtfilt runs it forward and back
MAINS_HZ = (50.0, 60.0)  # notched where the rate allows: the band-pass alone leaves some hum
NOTCH_Q = 30.0
MIN_SECONDS = 2.5  # shorter than two or three beats: nothing to read
MAX_WINDOWS = 64
SPREAD_FLOOR_MV = 0.01  # a flat lead stays near zero instead of amplifying its noise


@dataclass(frozen=True)
class SignalRecipe:
    """Leads, band and rate of a signal model's input; ``single_lead`` names the one lead the
    model also reads alone (the others zero), as a wearable records it."""

    name: str
    rate: float
    seconds: float
    leads: tuple[str, ...]
    band: tuple[float, float] = (0.5, 40.0)
    single_lead: str | None = "II"
    kind: str = "signal"

    @property
    def length(self) -> int:
        return round(self.rate * self.seconds)

    def lead_matrix(self, signal: Signal) -> np.ndarray:
        """``(n, leads)`` in the model's lead order; :class:`InvalidInput` naming the missing
        leads unless the signal is the single lead the model also reads alone."""
        have = {lead.lower(): i for i, lead in enumerate(signal.leads)}
        missing = [lead for lead in self.leads if lead.lower() not in have]
        if not missing:
            return signal.samples[:, [have[lead.lower()] for lead in self.leads]]
        single = self.single_lead
        if single is None or list(have) != [single.lower()]:
            alone = f", or lead {single} alone" if single else ""
            raise MissingLeads(
                f"the signal lacks lead(s) {', '.join(missing)}; this model reads "
                f"{', '.join(self.leads)}{alone}"
            )
        out = np.zeros((signal.samples.shape[0], len(self.leads)))
        out[:, self.leads.index(single)] = signal.samples[:, 0]
        return out

    def condition(self, signal: Signal) -> np.ndarray:
        """Leads picked, band-passed and resampled: ``(n', leads)`` float32 at ``rate``."""
        from scipy.signal import (  # here, not at the top: scipy.signal is 65 MiB and 1.3 s of the server's start
            butter,
            filtfilt,
            iirnotch,
            resample_poly,
            sosfiltfilt,
        )

        if signal.seconds < MIN_SECONDS:
            raise InvalidInput(
                f"the signal is {signal.seconds:.2f} s long; at least {MIN_SECONDS:g} s are read"
            )
        x = self.lead_matrix(signal)
        low, high = self.band
        high = min(high, 0.45 * signal.rate)
        sos = butter(FILTER_ORDER, [low, high], btype="bandpass", fs=signal.rate, output="sos")
        x = sosfiltfilt(sos, x, axis=0)
        for mains in MAINS_HZ:
            if mains < 0.45 * signal.rate:
                b, a = iirnotch(mains, NOTCH_Q, fs=signal.rate)
                x = filtfilt(b, a, x, axis=0)
        ratio = Fraction(self.rate / signal.rate).limit_denominator(1000)
        if ratio != 1:
            x = resample_poly(x, ratio.numerator, ratio.denominator, axis=0)
        return np.ascontiguousarray(x, dtype=np.float32)

    def windows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Conditioned ``(n, leads)`` → scaled windows ``(W, leads, length)`` and each window's
        start in seconds."""
        length, n = self.length, x.shape[0]
        if n <= length:
            starts = [0]
            x = np.pad(x, ((0, length - n), (0, 0)))
        else:
            starts = list(range(0, n - length + 1, length))
            if n - (starts[-1] + length) >= length // 2:
                starts.append(n - length)
        starts = starts[:MAX_WINDOWS]
        out = np.stack([x[s : s + length].T for s in starts]).astype(np.float32)
        median = np.median(out, axis=2, keepdims=True)
        spread = 1.4826 * np.median(np.abs(out - median), axis=2, keepdims=True)
        out = (out - median) / np.maximum(spread, SPREAD_FLOOR_MV)
        return out.astype(np.float32), np.asarray(starts) / self.rate

    def apply(self, signal: Signal) -> np.ndarray:
        """Model input ``(W, leads, length)`` float32."""
        return self.windows(self.condition(signal))[0]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["leads"], data["band"] = list(self.leads), list(self.band)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SignalRecipe":
        return cls(
            name=data["name"],
            rate=float(data["rate"]),
            seconds=float(data["seconds"]),
            leads=tuple(data["leads"]),
            band=(float(data["band"][0]), float(data["band"][1])),
            single_lead=data.get("single_lead"),
        )
