"""Phantom generation speed: images/s at 256 px, one process vs all cores.

Target (issue #2): 5,000 images at 256 px in under ~2 minutes on 2 cores. Prints a table and the
ratio of the all-cores run to the one-process baseline measured in the same run.

    python benchmarks/phantoms.py [--n 400] [--size 256]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dxserve.phantoms.generate import generate


def rate(n: int, size: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        generate(Path(folder), n=n, seed=0, size=size, workers=workers)
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    single = rate(args.n, args.size, 1)
    multi = rate(args.n, args.size, cores)
    table = Table("run", "images/s", "5,000 images (s)", "ratio to 1 process")
    table.add_row("1 process (baseline)", f"{single:.1f}", f"{5000 / single:.0f}", "1.00")
    table.add_row(
        f"{cores} processes", f"{multi:.1f}", f"{5000 / multi:.0f}", f"{multi / single:.2f}"
    )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
