"""Clinical notes, end to end, against issue 14's targets: assertion accuracy (≥ 0.95), the right
ICD-10-CM code in the top five (≥ 0.8 of coded conditions), never a code from a negated or a
relative's finding, the calibration of code scores (ECE), and the speed of a 2,000-word note
with where its time goes. On phantom notes of the training kinds and the held-out kinds.

The lexicons and cues were written by the people who wrote the phantoms' vocabulary: these
numbers measure the machinery (matching, assertion scope, ranking), not coverage of how real
clinicians write.

With ``--repository`` (one holding the PHI tagger, as ``make serve`` prepares) it also POSTs
the 2,000-word note to ``dxserve serve`` with wrk at c=1 and c=16, one and two worker
processes: the whole service (tagger, storage, audit, metering), not the analysis alone.

    python benchmarks/notes.py [--n 300] [--repository var/models]
"""

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dxserve.core.calibration import expected_calibration_error
from dxserve.core.intake.deidentify import Pseudonyms
from dxserve.core.text import context, medications, problems
from dxserve.core.text.analysis import analyse_note
from dxserve.core.text.coding import probability, suggest_codes
from dxserve.core.text.entities import find_entities
from dxserve.core.text.finding_score import FindingScore, calibration_rows
from dxserve.core.text.phi_rules import find_phi
from dxserve.phantoms.notes.generate import notes


def accuracy(n: int, seed: int, held_out: bool) -> tuple[FindingScore, float]:
    score, probabilities, truth = FindingScore(), [], []
    for note in notes(n, seed, held_out):
        entities = find_entities(note.text)
        score.add(note.findings, entities, suggest_codes(entities))
        for x, right in calibration_rows(note.findings, entities):
            probabilities.append(probability(x))
            truth.append(right)
    ece = expected_calibration_error(np.asarray(probabilities), np.asarray(truth, dtype=float))
    return score, ece


def long_note(words: int) -> str:
    parts, count = [], 0
    for note in notes(200, 99, held_out=True):
        parts.append(note.text)
        count += len(note.text.split())
        if count >= words:
            break
    return "\n\n".join(parts)


def where_time_goes(text: str, rounds: int) -> dict[str, float]:
    """Milliseconds per note in each stage (its own loop, so a stage's cost is its own)."""
    stages = {
        "identifiers (rules)": lambda: find_phi(text),
        "problems (ICD-10-CM lexicon)": lambda: problems.find_problems(text),
        "medications (drug lexicon)": lambda: medications.find_medications(text),
        "assertions (ConText) of problems": lambda: [
            context.assertion(text, p.start, p.end) for p in problems.find_problems(text)
        ],
        "whole analysis": lambda: analyse_note(text, Pseudonyms(b"k" * 32)),
    }
    spent = {}
    for name, stage in stages.items():
        stage()
        started = time.perf_counter()
        for _ in range(rounds):
            stage()
        spent[name] = (time.perf_counter() - started) * 1000 / rounds
    return spent


def throughput(text: str, concurrency: int, seconds: float) -> float:
    pseudonyms = Pseudonyms(b"k" * 32)
    deadline = time.perf_counter() + seconds
    done = [0] * concurrency

    def worker(k: int) -> None:
        while time.perf_counter() < deadline:
            analyse_note(text, pseudonyms)
            done[k] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return sum(done) / (time.perf_counter() - started)


def over_http(repository: Path, text: str, seconds: int) -> Table:
    sys.path.insert(0, str(Path(__file__).parent))
    import serve  # benchmarks/serve.py: its server start and wrk driver

    table = Table("workers", "concurrency", "notes/s", "p50 ms", "p99 ms", "errors",
                  title="POST /v1/notes over HTTP (dxserve serve, wrk)")  # fmt: skip
    for workers in (1, 2):
        os.environ["DXSERVE_WORKERS"] = str(workers)
        with tempfile.TemporaryDirectory() as folder:
            port = serve.free_port()
            process, token, _ = serve.start_server(repository, Path(folder), port)
            try:
                for concurrency in (1, 16):
                    r = serve.wrk(f"http://127.0.0.1:{port}/v1/notes", text.encode(),
                                  "text/plain; charset=utf-8", token, concurrency, seconds)  # fmt: skip
                    table.add_row(str(workers), str(concurrency), f"{r['rps']:.2f}",
                                  f"{r['p50_us'] / 1000:.0f}", f"{r['p99_us'] / 1000:.0f}",
                                  str(int(r["errors"] + r["non2xx"])))  # fmt: skip
            finally:
                process.terminate()
                process.wait()
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repository", type=Path, default=None, help="measure over HTTP too")
    args = parser.parse_args()
    console = Console(width=120)
    table = Table("notes", "findings", "found", "assertion acc.", "coded", "top-1", "top-5",
                  "negated/relative's coded", "code ECE",
                  title=f"findings in {args.n} phantom notes (targets: acc. ≥ 0.95, top-5 ≥ 0.80, 0 coded)")  # fmt: skip
    for title, seed, held_out in (("training kinds", 12, False), ("held-out kinds", 11, True)):
        s, ece = accuracy(args.n, seed, held_out)
        table.add_row(
            title,
            str(s.findings),
            f"{s.found / s.findings:.3f}",
            f"{s.assertion_right / s.found:.3f}",
            str(s.coded),
            f"{s.top1 / s.coded:.3f}",
            f"{s.top5 / s.coded:.3f}",
            f"{s.wrongly_coded} of {s.uncoded}",
            f"{ece:.3f}",
        )
        for assertion, (right, found) in sorted(s.by_assertion.items()):
            console.print(f"  {title}: {assertion} {right}/{found}")
    console.print(table)

    text = long_note(2000)
    console.print(f"\na note of {len(text.split())} words, {len(text)} characters")
    timing = Table("stage", "ms per note", title="where the time goes (one thread)")
    for name, ms in where_time_goes(text, 5).items():
        timing.add_row(name, f"{ms:.1f}")
    console.print(timing)
    speed = Table("concurrency", "notes/s", title="analyse_note in process (threads)")
    for concurrency in (1, 16):
        speed.add_row(str(concurrency), f"{throughput(text, concurrency, args.seconds):.2f}")
    console.print(speed)
    if args.repository is not None:
        console.print(over_http(args.repository, text, max(2, round(args.seconds))))


if __name__ == "__main__":
    main()
