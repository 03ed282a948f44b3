"""A signal as intake hands it on: samples × leads with their rate, lead names and units.

The samples never travel without their metadata (as in wfdb's ``Record`` and pydicom's
``waveform_array``). Lead names are matched case-insensitively and with the vendor's decoration
("Lead I (Einthoven)", "lead ii") stripped, so every decoder yields the standard spellings.
"""

import re
from dataclasses import dataclass

import numpy as np

from dxserve.errors import InvalidInput

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
_BY_KEY = {name.lower(): name for name in STANDARD_LEADS}
# Units to millivolts: what every recipe, measurement and picture works in.
TO_MILLIVOLTS = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}
MAX_RATE = 20_000.0  # Hz: above anything an electrocardiograph records
MAX_SAMPLES = 10_000_000  # per lead: over two hours at 1 kHz
MAX_LEADS = 64


def lead_name(raw: str) -> str:
    """The standard spelling of a lead name (``"Lead I (Einthoven)"`` → ``"I"``, ``"aVR,
    augmented voltage, right"`` → ``"aVR"``); other names are returned stripped."""
    text = re.sub(r"\(.*?\)", "", str(raw)).strip()
    text = re.sub(r"^lead\s+", "", text, flags=re.IGNORECASE).strip()
    text = text.split(",")[0].strip()  # "aVR, augmented voltage, right" (DICOM's meaning)
    return _BY_KEY.get(text.lower(), text)


def millivolts(units: str) -> float:
    """The factor that turns ``units`` into millivolts; :class:`InvalidInput` for units that
    are not a voltage."""
    factor = TO_MILLIVOLTS.get(units.strip().lower())
    if factor is None:
        raise InvalidInput(f"signal units {units!r} are not a voltage (mV, uV or V)")
    return factor


@dataclass(frozen=True)
class Signal:
    """``samples`` ``(n, leads)`` in millivolts at ``rate`` Hz, one named column a lead."""

    samples: np.ndarray
    rate: float
    leads: tuple[str, ...]

    def __post_init__(self) -> None:
        samples = self.samples
        if samples.ndim != 2 or samples.shape[1] != len(self.leads):
            raise InvalidInput(
                f"a signal needs one column per lead: {samples.shape} for {len(self.leads)} leads"
            )
        if not 0 < self.rate <= MAX_RATE:
            raise InvalidInput(f"sampling rate must be between 0 and {MAX_RATE:g} Hz")
        if not 0 < len(self.leads) <= MAX_LEADS or samples.shape[0] > MAX_SAMPLES:
            raise InvalidInput(
                f"a signal may have 1–{MAX_LEADS} leads and {MAX_SAMPLES:,} samples a lead"
            )
        if len(set(self.leads)) != len(self.leads):
            raise InvalidInput(f"lead names repeat: {', '.join(self.leads)}")
        if not np.isfinite(samples).all():
            raise InvalidInput("the signal has samples that are not finite numbers")

    @classmethod
    def of(cls, samples: np.ndarray, rate: float, leads: list[str], units: str = "mV") -> "Signal":
        """A signal from any decoder: names standardised, samples converted to millivolts."""
        try:
            values = np.asarray(samples, dtype=np.float64)
            rate = float(rate)
        except (TypeError, ValueError):
            raise InvalidInput("signal samples and rate must be numbers") from None
        if values.ndim == 1:
            values = values[:, None]
        return cls(values * millivolts(units), rate, tuple(lead_name(n) for n in leads))

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / self.rate

    def lead(self, name: str) -> np.ndarray:
        """One lead's samples by name (case-insensitive)."""
        wanted = lead_name(name).lower()
        for i, lead in enumerate(self.leads):
            if lead.lower() == wanted:
                return self.samples[:, i]
        raise KeyError(name)
