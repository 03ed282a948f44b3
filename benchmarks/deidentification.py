"""What de-identification costs at intake: decoding a DICOM object alone (the baseline) against
decoding it the way dxserve receives it — PS3.15 de-identification (with clean pixel data for
ultrasound), the de-identified Part 10 object written for storage, then decoded.

    python benchmarks/deidentification.py [--repeat 5]

Prints the median time of each per object and their ratio.
"""

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
from pydicom.data import get_testdata_file
from rich.console import Console
from rich.table import Table

from dxserve.core.intake.decode import decode_dicom, read_dicom
from dxserve.core.intake.deidentify import Options, Pseudonyms, deidentify
from dxserve.intake import part10
from dxserve.phantoms.dicom import HEADER_ROWS, FakePatient, burn_in, us_dataset
from dxserve.phantoms.study import make_study

PSEUDONYMS = Pseudonyms(b"benchmark key of thirty-two byte")


def phantom_cine(frames: int) -> bytes:
    """A 256-px phantom echo cine with its label band and ultrasound region."""
    rng = np.random.default_rng(0)
    patient = FakePatient.random(rng)
    screen = burn_in(make_study(0, 0, size=256, frames=frames).frames, patient)
    out = io.BytesIO()
    us_dataset(screen, patient, rng, image_top=HEADER_ROWS).save_as(out, enforce_file_format=True)
    return out.getvalue()


def decode_only(data: bytes) -> None:
    dataset = read_dicom(data)
    assert dataset is not None
    decode_dicom(dataset)


def as_received(data: bytes) -> None:
    dataset = read_dicom(data)
    assert dataset is not None
    deidentify(dataset, PSEUDONYMS, Options())
    part10(dataset)
    decode_dicom(dataset)


def median_ms(work: Callable[[bytes], None], data: bytes, repeat: int) -> float:
    work(data)  # warm: codecs loaded, caches filled
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    objects = {
        "phantom US cine, 16 × 300 × 256, uncompressed (cleaned)": phantom_cine(16),
        "pydicom US cine, 30 × 240 × 320 YBR JPEG": _bundled("examples_ybr_color.dcm"),
        "pydicom CT, 128 × 128, 16 bit": _bundled("CT_small.dcm"),
        "pydicom MR, 64 × 64, JPEG 2000": _bundled("MR_small_jp2klossless.dcm"),
    }
    table = Table("object", "decode only ms", "de-identify + store + decode ms", "ratio")
    for name, data in objects.items():
        base = median_ms(decode_only, data, args.repeat)
        received = median_ms(as_received, data, args.repeat)
        table.add_row(name, f"{base:.1f}", f"{received:.1f}", f"{received / base:.2f}")
    Console(width=140).print(table)


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        raise SystemExit(f"{name} is not bundled with this pydicom")
    with open(path, "rb") as file:
        return file.read()


if __name__ == "__main__":
    main()
