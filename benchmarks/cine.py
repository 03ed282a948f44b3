"""A real-sized echo cine through /v1 against the in-process floor, measured in one run.

The cine: 120 frames of 480 × 640, JPEG Baseline YBR_FULL_422, as echo scanners export them
(phantom frames under a burned-in label band, generated here; nothing is downloaded). The
server reads ``DXSERVE_MAX_FRAMES=32`` of them.

(1) floor, pydicom: ``pydicom.pixels.pixel_array(path, index=i)`` for the 32 frames the model
    reads, each cropped to the ultrasound region, the model's recipe, one ONNX Runtime batch —
    the floor issue 17 names;
(2) floor, dxserve's decoder: the same with :func:`dxserve.core.intake.decode.dicom_frames`;
(3) what Clean Pixel Data (de-identification) costs alone: the object de-identified and written;
(4) /v1 at c=1: POST /v1/diagnoses of the cine (intake, de-identification, the model, storage,
    audit, metering), the median of ``--requests``;
(5) with ``--baseline DIR``: (4) against the server of another checkout's ``src/``.

    python benchmarks/cine.py [--requests 8] [--baseline /tmp/old-checkout]
"""

import argparse
import io
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime as ort
from pydicom.pixels import pixel_array
from rich.console import Console
from rich.table import Table

from dxserve.core.intake.decode import dicom_frames, imaging_region, read_dicom
from dxserve.core.intake.deidentify import Options, Pseudonyms, deidentify
from dxserve.core.intake.frames import frame_indices
from dxserve.core.runtime.manifest import Manifest
from dxserve.intake import part10
from dxserve.phantoms.dicom import FakePatient, jpeg_cine
from dxserve.phantoms.study import make_study
from serve import build_repository, free_port, median_ms, start_server

FRAMES, READ = 120, 32
PSEUDONYMS = Pseudonyms(b"benchmark key of thirty-two byte")


def cine_bytes() -> bytes:
    """120 frames: a 30-frame heart cycle of a 436-px phantom, four beats."""
    rng = np.random.default_rng(0)
    cycle = make_study(0, 1, size=436, frames=FRAMES // 4).frames
    dataset = jpeg_cine(np.concatenate([cycle] * 4), FakePatient.random(rng), rng)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def floor_pydicom(path: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
    dataset = read_dicom(path.read_bytes())
    assert dataset is not None
    x0, y0, x1, y1 = imaging_region(dataset) or (0, 0, dataset.Columns - 1, dataset.Rows - 1)
    indices = frame_indices(FRAMES, READ)
    frames = np.stack([pixel_array(path, index=int(i)) for i in indices])
    x = manifest.image_recipe.apply(frames[:, y0 : y1 + 1, x0 : x1 + 1])
    session.run(None, {session.get_inputs()[0].name: x})


def floor_dxserve(path: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
    dataset = read_dicom(path.read_bytes())
    assert dataset is not None
    frames = dicom_frames(dataset).read(frame_indices(FRAMES, READ))
    x = manifest.image_recipe.apply(frames)
    session.run(None, {session.get_inputs()[0].name: x})


def deidentified(data: bytes) -> bytes:
    dataset = read_dicom(data)
    assert dataset is not None
    deidentify(dataset, PSEUDONYMS, Options())
    return part10(dataset)


def v1_ms(port: int, token: str, body: bytes, requests: int) -> tuple[float, float]:
    """Median and worst /v1 latency (ms) of ``requests`` sequential posts of ``body``."""
    times = []
    for _ in range(requests + 1):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/diagnoses",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/dicom"},
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            result = json.loads(response.read())
        times.append(time.perf_counter() - started)
        assert len(result["frames"]) == READ, result["frames"]
    return median(times[1:]) * 1000, max(times[1:]) * 1000


def serve_and_measure(
    repository: Path, data: Path, body: bytes, requests: int, source: Path | None = None
) -> tuple[float, float]:
    data.mkdir()
    process, token, _ = start_server(repository, data, port := free_port(), source)
    try:
        return v1_ms(port, token, body, requests)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5, help="of each in-process step")
    parser.add_argument("--baseline", type=Path, help="another checkout, whose server is timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        manifest = Manifest.load(repository / "echo-cnn" / "1")
        model = repository / "echo-cnn" / "1" / "model.onnx"
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        body = cine_bytes()
        path = root / "cine.dcm"
        path.write_bytes(body)
        stored = deidentified(body)

        pydicom_floor = median_ms(lambda: floor_pydicom(path, manifest, session), args.repeat)
        dxserve_floor = median_ms(lambda: floor_dxserve(path, manifest, session), args.repeat)
        cleaning = median_ms(lambda: deidentified(body), args.repeat)
        v1, v1_worst = serve_and_measure(repository, root / "data", body, args.requests)
        baseline = None
        if args.baseline:
            baseline = serve_and_measure(
                repository, root / "baseline", body, args.requests, args.baseline
            )

    table = Table("step", "ms", "× floor (pydicom)", "× floor (dxserve decoder)")
    rows = [
        ("floor: pydicom decode of 32 frames, crop, recipe, one ORT batch", pydicom_floor),
        ("floor: dxserve decoder, the same", dxserve_floor),
        ("de-identification alone (Clean Pixel Data, written)", cleaning),
        (f"/v1 c=1, median of {args.requests} (worst {v1_worst:.0f} ms)", v1),
    ]
    if baseline is not None:
        rows.append((f"/v1 c=1 of {args.baseline} (worst {baseline[1]:.0f} ms)", baseline[0]))
    for name, ms in rows:
        table.add_row(name, f"{ms:.0f}", f"{ms / pydicom_floor:.2f}", f"{ms / dxserve_floor:.2f}")
    console = Console(width=150)
    console.print(
        f"cine: {FRAMES} frames 480 × 640 JPEG Baseline, {len(body) / 1e6:.1f} MB sent, "
        f"{len(stored) / 1e6:.1f} MB stored de-identified; the model reads {READ}"
    )
    console.print(table)
    if baseline is not None:
        console.print(f"/v1 against the baseline: {baseline[0] / v1:.2f}× faster")


if __name__ == "__main__":
    main()
