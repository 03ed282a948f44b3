"""Write a phantom dataset: images by class, exact masks and a CSV manifest."""

import csv
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from dxserve import __version__
from dxserve.phantoms import FINDINGS
from dxserve.phantoms.dicom import write_study
from dxserve.phantoms.study import make_study

MANIFEST_COLUMNS = ("path", "label", "finding", "split", "mask")
FORMATS = ("png", "dicom")
_CHUNK = 32
T = TypeVar("T")
R = TypeVar("R")


def generate(
    out: Path,
    n: int,
    seed: int,
    size: int = 256,
    fmt: str = "png",
    frames: int = 1,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    findings: tuple[str, ...] = FINDINGS,
) -> Path:
    """Write ``n`` phantom studies under ``out`` and return the path of ``manifest.csv``;
    abnormal ones cycle through ``findings``.

    Layout: ``normal/``, ``abnormal/`` (``.png`` or ``.dcm``), ``masks/`` (PNG, 255 inside the
    finding of the first frame, empty for normal studies) and ``manifest.csv``. The output depends
    only on ``seed``, ``n``, ``size``, ``fmt`` and ``frames``, not on ``workers``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if frames > 1 and fmt != "dicom":
        raise ValueError("cine (frames > 1) needs --format dicom")
    out = Path(out)
    for folder in ("normal", "abnormal", "masks"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    chunks = [
        (out, seed, size, fmt, frames, range(i, min(i + _CHUNK, n)), findings)
        for i in range(0, n, _CHUNK)
    ]
    description = {
        "generator": f"dxserve {__version__} phantoms",
        "synthetic": True,
        "note": "Synthetic echocardiography phantoms. Not patient data.",
        "n": n,
        "seed": seed,
        "size": size,
        "format": fmt,
        "frames": frames,
        "findings": list(findings),
    }
    return write_dataset(
        out, _write_chunk, chunks, workers, on_progress, description, MANIFEST_COLUMNS
    )


def write_dataset(
    out: Path,
    write_chunk: Callable[[T], list[dict[str, str]]],
    chunks: list[T],
    workers: int | None,
    on_progress: Callable[[int], None] | None,
    description: dict[str, object],
    columns: tuple[str, ...],
) -> Path:
    """Write every chunk (in ``workers`` processes), then ``phantoms.json`` (``description``)
    and ``manifest.csv`` (one row a study, ``columns``); the manifest's path."""
    rows: list[dict[str, str]] = []
    for chunk_rows in parallel_map(write_chunk, chunks, workers):
        rows.extend(chunk_rows)
        if on_progress:
            on_progress(len(chunk_rows))
    (out / "phantoms.json").write_text(json.dumps(description, indent=2))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def parallel_map(fn: Callable[[T], R], chunks: list[T], workers: int | None) -> Iterator[R]:
    """``map(fn, chunks)`` in order, over ``workers`` processes (default: every core)."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        yield from map(fn, chunks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, chunks)


def _write_chunk(
    job: tuple[Path, int, int, str, int, range, tuple[str, ...]],
) -> list[dict[str, str]]:
    out, seed, size, fmt, frames, indices, findings = job
    return [_write_one(out, seed, index, size, fmt, frames, findings) for index in indices]


def _write_one(
    out: Path, seed: int, index: int, size: int, fmt: str, frames: int, findings: tuple[str, ...]
) -> dict[str, str]:
    study = make_study(seed, index, size, frames, findings)
    stem = f"{study.label}/{index:06d}"
    if fmt == "png":
        path = f"{stem}.png"
        Image.fromarray(study.frames[0]).save(out / path, compress_level=1)
    else:
        path = f"{stem}.dcm"
        write_study(out / path, study.frames, np.random.default_rng([seed, index, 7]))
    mask = f"masks/{index:06d}.png"
    Image.fromarray(study.mask.astype(np.uint8) * 255).save(out / mask, compress_level=1)
    return {
        "path": path,
        "label": study.label,
        "finding": study.finding,
        "split": study.split,
        "mask": mask,
    }
