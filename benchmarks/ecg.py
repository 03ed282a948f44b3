"""ECG serving throughput against raw in-process ONNX Runtime, in one run, and where the time
of one ECG goes.

(1) raw: the ECG RNN in ONNX Runtime in this process, at batch 1 and batch 32 (ECGs/s, one
    10 s 12-lead window an ECG);
(2) /v1: POST /v1/diagnoses with pydicom's real 12-lead ECG (DICOM, 10 s at 1 kHz: read,
    de-identify, decode, filter, resample, model, measure the intervals, store, record),
    driven by wrk at concurrency 1 and 16 against `dxserve serve` in its own process;
(3) stages: the same ECG's steps timed one by one in this process (medians).

The machine is shared and noisy, so raw batch 32 is measured again between every two /v1
measurements and each /v1 ratio is to the mean of the raw runs just before and after it.

    python benchmarks/ecg.py [--rounds 2] [--seconds 5]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime as ort
from pydicom.data import get_testdata_file
from rich.console import Console
from rich.table import Table

from dxserve.core.intake.decode import read_dicom
from dxserve.core.intake.deidentify import Options, Pseudonyms, deidentify
from dxserve.core.intake.waveform import decode_waveform
from dxserve.core.measure.ecg import ecg_intervals
from dxserve.core.runtime.manifest import Manifest
from dxserve.intake import part10
from serve import free_port, median_ms, rss_mb, start_server, wrk

ECG = Path(str(get_testdata_file("waveform_ecg.dcm", download=False))).read_bytes()
PSEUDONYMS = Pseudonyms(b"benchmark key of thirty-two byte")


def build_repository(root: Path) -> Path:
    """A repository with the ECG RNN (one quick epoch on phantoms: speed, not accuracy)."""
    from dxserve.datasets.signals import open_signal_dataset
    from dxserve.phantoms.ecg.generate import generate_ecg
    from dxserve.training.ecg import EcgTrainConfig, train_ecg

    generate_ecg(root / "phantoms", n=96, seed=0)
    config = EcgTrainConfig(epochs=1)
    train_ecg(open_signal_dataset(root / "phantoms"), root / "models", config=config)
    return root / "models"


def raw(session: ort.InferenceSession, batch: int, seconds: float) -> float:
    """ECGs/s of ``session`` on random windows at ``batch``."""
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 12, 1000)).astype(np.float32)
    session.run(None, {name: x})
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, {name: x})
        count += batch
    return count / (time.perf_counter() - started)


def stages(repository: Path, session: ort.InferenceSession) -> list[tuple[str, float]]:
    """Median milliseconds of each step one ECG goes through at intake and in the pipeline."""
    manifest = Manifest.load(repository / "ecg-rnn" / "1")
    recipe = manifest.recipe
    dataset = read_dicom(ECG)
    assert dataset is not None
    signal = decode_waveform(dataset)
    conditioned = recipe.condition(signal)  # type: ignore[union-attr]
    windows = recipe.windows(conditioned)[0]  # type: ignore[union-attr]
    name = session.get_inputs()[0].name

    def deidentified() -> None:
        copy = read_dicom(ECG)
        assert copy is not None
        deidentify(copy, PSEUDONYMS, Options())
        part10(copy)

    return [
        ("read DICOM (pydicom)", median_ms(lambda: read_dicom(ECG))),
        ("read + de-identify + write Part 10", median_ms(deidentified)),
        ("decode waveform (rhythm group → mV)", median_ms(lambda: decode_waveform(dataset))),
        ("recipe: band-pass, notches, resample", median_ms(lambda: recipe.condition(signal))),  # type: ignore[union-attr]
        ("recipe: windows, per-lead scale", median_ms(lambda: recipe.windows(conditioned))),  # type: ignore[union-attr]
        ("model (ONNX Runtime, batch 1)", median_ms(lambda: session.run(None, {name: windows}))),
        (
            "guard (input checks + distance)",
            median_ms(
                lambda: manifest.guard.problems(  # type: ignore[union-attr]
                    windows,
                    dict(
                        zip(
                            [o.name for o in session.get_outputs()],
                            session.run(None, {name: windows}),
                            strict=True,
                        )
                    ),
                )
            ),
        ),
        (
            "intervals (filter, XQRS, median beat, delineation)",
            median_ms(lambda: ecg_intervals(signal), repeat=10),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="dxserve-bench-ecg-"))
    try:
        repository = build_repository(work)
        session = ort.InferenceSession(
            str(repository / "ecg-rnn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        raw1 = raw(session, 1, args.seconds)
        port = free_port()
        (work / "data").mkdir()
        process, token, cold = start_server(repository, work / "data", port)
        url = f"http://127.0.0.1:{port}/v1/diagnoses"
        rows: dict[int, list[tuple[float, float, float, float]]] = {1: [], 16: []}
        raw_runs = []
        try:
            before = raw(session, 32, args.seconds)
            raw_runs.append(before)
            for _ in range(args.rounds):
                for connections in (1, 16):
                    result = wrk(url, ECG, "application/dicom", token, connections, args.seconds)
                    if result["errors"] or result["non2xx"]:
                        raise SystemExit(f"/v1 errors at c={connections}: {result}")
                    after = raw(session, 32, args.seconds)
                    raw_runs.append(after)
                    ratio = result["rps"] / ((before + after) / 2)
                    rows[connections].append(
                        (result["rps"], result["p50_us"] / 1000, result["p99_us"] / 1000, ratio)
                    )
                    before = after
            memory = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=30)
        table = Table(
            "path",
            "concurrency",
            "ECGs/s",
            "p50 ms",
            "p99 ms",
            "ratio to raw b32",
            title="ECG RNN (12 leads × 10 s), 2 cores",
        )
        raw32 = median(raw_runs)
        table.add_row(
            "raw ORT in-process, batch 1", "–", f"{raw1:.0f}", "", "", f"{raw1 / raw32:.2f}"
        )
        table.add_row("raw ORT in-process, batch 32", "–", f"{raw32:.0f}", "", "", "1.00")
        for connections, measured in rows.items():
            rps, p50, p99, ratio = (median(v) for v in zip(*measured, strict=True))
            table.add_row(
                "/v1/diagnoses, real 12-lead DICOM ECG",
                str(connections),
                f"{rps:.1f}",
                f"{p50:.1f}",
                f"{p99:.1f}",
                f"{ratio:.3f} (" + ", ".join(f"{m[3]:.3f}" for m in measured) + ")",
            )
        console.print(table)
        console.print(f"server: cold start {cold:.1f} s, RSS {memory:.0f} MiB after the runs")
        where = Table("stage of one ECG (in-process)", "median ms", title="where the time goes")
        for name, ms in stages(repository, session):
            where.add_row(name, f"{ms:.2f}")
        console.print(where)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
