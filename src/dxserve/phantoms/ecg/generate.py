"""Write an ECG phantom dataset: records, their exact ground truth and a CSV manifest.

Layout: ``records/NNNNNN.npz`` (or ``.hea`` + ``.dat`` for WFDB, ``.dcm`` for DICOM),
``truth/NNNNNN.json`` (class, statements, RR series, every beat's fiducial points, intervals,
signal-to-noise ratio and noise mix), ``manifest.csv`` (one row a record: path, statements,
split, intervals) and ``phantoms.json``. The output depends only on the arguments, not on the
number of worker processes.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dxserve import __version__
from dxserve.phantoms.ecg.dicom import write_ecg
from dxserve.phantoms.ecg.dipole import LEADS, Beat, synthesise
from dxserve.phantoms.ecg.noise import add_noise
from dxserve.phantoms.ecg.rhythm import CLASSES, LABELS, Plan, place_pvcs, plan_record, rr_series
from dxserve.phantoms.generate import write_dataset

FORMATS = ("npz", "wfdb", "dicom")
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
SNR_DB = (12.0, 30.0)
MANIFEST_COLUMNS = (
    "path",
    "label",
    "class",
    "split",
    "heart_rate",
    "pr_ms",
    "qrs_ms",
    "qt_ms",
    "qtc_bazett_ms",
    "snr_db",
    "truth",
)
_CHUNK = 64


@dataclass
class EcgRecord:
    """One synthetic ECG with everything that is true of it."""

    index: int
    plan: Plan
    samples: np.ndarray  # (n, leads) mV
    rate: float
    leads: tuple[str, ...]
    beats: list[Beat]
    snr_db: float
    noise: dict[str, Any]
    split: str

    def intervals(self) -> dict[str, float | None]:
        """Heart rate, RR and the intervals of the conducted beats (medians), exactly."""
        onsets = np.array([b.qrs_on for b in self.beats])
        rr = float(np.diff(onsets).mean())
        normal = [b for b in self.beats if b.kind == "N"]
        qt = float(np.median([b.t_off - b.qrs_on for b in normal]))
        pr = [b.qrs_on - b.p_on for b in normal if b.p_on is not None]
        return {
            "heart_rate": round(60 / rr, 2),
            "rr_ms": round(1000 * rr, 2),
            "pr_ms": round(1000 * float(np.median(pr)), 2) if pr else None,
            "qrs_ms": round(1000 * float(np.median([b.qrs_off - b.qrs_on for b in normal])), 2),
            "qt_ms": round(1000 * qt, 2),
            "qtc_bazett_ms": round(1000 * qt / float(np.sqrt(rr)), 2),
            "qtc_fridericia_ms": round(1000 * qt / float(np.cbrt(rr)), 2),
        }

    def truth(self) -> dict[str, Any]:
        onsets = [b.qrs_on for b in self.beats]
        return {
            "class": self.plan.kind,
            "labels": self.plan.labels,
            "rate": self.rate,
            "leads": list(self.leads),
            "intervals": self.intervals(),
            "rr_s": np.round(np.diff(onsets), 6).tolist(),
            "beats": [b.to_dict() for b in self.beats],
            "snr_db": round(self.snr_db, 2),
            "noise": self.noise,
            "synthetic": True,
        }


def make_record(
    seed: int, index: int, seconds: float = 10.0, rate: float = 500.0, leads: int = 12
) -> EcgRecord:
    """Record ``index`` of the dataset of ``seed``: its class is the index's turn in
    :data:`CLASSES`, everything else drawn from the seed and the index."""
    rng = np.random.default_rng([seed, index, 12])
    plan = plan_record(rng, CLASSES[index % len(CLASSES)])
    rr = rr_series(rng, plan, seconds)
    place_pvcs(rng, plan, int(np.searchsorted(np.cumsum(rr), seconds - 1.0)))  # inside
    clean, beats, _ = synthesise(rng, plan, rr, seconds, rate)
    snr = float(rng.uniform(*SNR_DB))
    noisy, noise = add_noise(rng, clean, rate, snr)
    names = LEADS if leads == 12 else ("II",)
    if leads != 12:
        noisy = noisy[:, [LEADS.index("II")]]
    split = _split(rng.random())
    return EcgRecord(index, plan, noisy.astype(np.float32), rate, names, beats, snr, noise, split)


def _split(draw: float) -> str:
    edges = np.cumsum([share for _, share in SPLITS])
    return next(
        (name for (name, _), edge in zip(SPLITS, edges, strict=True) if draw < edge), "test"
    )


def write_record(out: Path, record: EcgRecord, fmt: str) -> str:
    """Write the record's signal in ``fmt``; its path relative to ``out``."""
    stem = f"records/{record.index:06d}"
    if fmt == "npz":  # 16-bit samples at 1 µV, as an electrocardiograph stores them
        microvolts = np.clip(np.round(record.samples * 1000), -32768, 32767).astype(np.int16)
        np.savez_compressed(
            out / f"{stem}.npz",
            signal=microvolts,
            rate=record.rate,
            leads=np.array(record.leads),
            units="uV",
        )
        return f"{stem}.npz"
    if fmt == "wfdb":
        import wfdb

        count = len(record.leads)
        wfdb.wrsamp(
            f"{record.index:06d}",
            fs=record.rate,
            units=["mV"] * count,
            sig_name=list(record.leads),
            p_signal=record.samples.astype(np.float64),
            fmt=["16"] * count,
            adc_gain=[1000.0] * count,
            baseline=[0] * count,
            comments=["synthetic phantom, not patient data"],
            write_dir=str(out / "records"),
        )
        return f"{stem}.hea"
    write_ecg(
        out / f"{stem}.dcm",
        record.samples,
        record.rate,
        record.leads,
        np.random.default_rng([record.index, 7]),
    )
    return f"{stem}.dcm"


def _write_chunk(job: tuple[Path, int, float, float, int, str, range]) -> list[dict[str, str]]:
    out, seed, seconds, rate, leads, fmt, indices = job
    rows = []
    for index in indices:
        record = make_record(seed, index, seconds, rate, leads)
        path = write_record(out, record, fmt)
        truth_path = f"truth/{index:06d}.json"
        truth = record.truth()
        (out / truth_path).write_text(json.dumps(truth))
        intervals = truth["intervals"]
        rows.append(
            {
                "path": path,
                "label": ";".join(record.plan.labels),
                "class": record.plan.kind,
                "split": record.split,
                **{
                    k: "" if intervals[k] is None else str(intervals[k])
                    for k in ("heart_rate", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms")
                },
                "snr_db": f"{record.snr_db:.2f}",
                "truth": truth_path,
            }
        )
    return rows


def generate_ecg(
    out: Path,
    n: int,
    seed: int,
    leads: int = 12,
    seconds: float = 10.0,
    rate: float = 500.0,
    fmt: str = "npz",
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """Write ``n`` ECG phantoms under ``out``; the path of ``manifest.csv``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if leads not in (1, 12):
        raise ValueError("leads must be 12 or 1 (lead II)")
    out = Path(out)
    for folder in ("records", "truth"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    chunks = [
        (out, seed, seconds, rate, leads, fmt, range(i, min(i + _CHUNK, n)))
        for i in range(0, n, _CHUNK)
    ]
    description = {
        "generator": f"dxserve {__version__} phantoms ecg",
        "synthetic": True,
        "modality": "signal",
        "note": "Synthetic ECGs from a dipole model with exact fiducial points. Not patient data.",
        "n": n,
        "seed": seed,
        "leads": leads,
        "seconds": seconds,
        "rate": rate,
        "format": fmt,
        "classes": list(CLASSES),
        "labels": list(LABELS),
    }
    return write_dataset(
        out, _write_chunk, chunks, workers, on_progress, description, MANIFEST_COLUMNS
    )
