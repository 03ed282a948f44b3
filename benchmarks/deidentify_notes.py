"""De-identification of clinical notes, scored token by token (i2b2 2014 style) on phantom
notes: the training kinds of note (what the rules were written looking at) and the held-out
kinds (never looked at). Prints recall and precision per PHI type and overall, against issue
14's targets (recall ≥ 0.98 overall, ≥ 0.99 for names, dates and IDs; precision ≥ 0.85).

The format rules (core/text/phi_rules.py) run alone, and with the repository's PHI tagger
(`phi-tagger`, prepared by `make serve` or `dxserve notes train`) beside them when there is one.

    python benchmarks/deidentify_notes.py [--n 300] [--repository DIR]
"""

import argparse
import itertools
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.text import known_words
from dxserve.core.text.analysis import merge_phi
from dxserve.core.text.phi_rules import find_phi
from dxserve.core.text.phi_score import TypeScore, score
from dxserve.core.text.phi_tagger import NAME_MODEL, TaggedNames
from dxserve.errors import ModelNotFound
from dxserve.phantoms.notes.generate import notes
from dxserve.settings import Settings

TARGET_RECALL = {"ALL": 0.98, "NAME": 0.99, "DATE": 0.99, "MRN": 0.99, "ACCOUNT": 0.99, "SSN": 0.99}
TARGET_PRECISION = 0.85


def measure(
    n: int, seed: int, held_out: bool, tagger: OnnxModel | None
) -> tuple[dict[str, TypeScore], float]:
    documents = []
    corpus = list(notes(n, seed, held_out))
    started = time.perf_counter()
    for note in corpus:
        names = []
        if tagger is not None:
            run = lambda w: tagger.run_batches(w)["probability"]  # noqa: E731
            names = TaggedNames.of(note.text, run).phi(tagger.manifest.threshold)
        found = merge_phi(find_phi(note.text), names)
        predicted = [(s.start, s.end, s.type) for s in found]
        documents.append((note.text, [(s.start, s.end, s.label) for s in note.phi], predicted))
    rate = n / (time.perf_counter() - started)
    return score(documents), rate


def fmt(value: float | None, target: float | None = None) -> str:
    if value is None:
        return "–"
    mark = "" if target is None else (" ✓" if value >= target else " ✗")
    return f"{value:.3f}{mark}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--repository", type=Path, default=None, help="default: settings'")
    args = parser.parse_args()
    console = Console(width=120)
    known_words.not_names()  # built once, before any timing
    try:
        ref = ModelRepository(args.repository or Settings().repository).resolve(NAME_MODEL)
        taggers: list[OnnxModel | None] = [None, OnnxModel(ref)]
    except ModelNotFound:
        console.print(f"no {NAME_MODEL} in the repository: the rules alone")
        taggers = [None]
    for tagger, (title, seed, held_out) in itertools.product(
        taggers,
        (
            ("training kinds of note (in sample for the rules)", 12, False),
            ("held-out kinds of note", 11, True),
        ),
    ):
        scores, rate = measure(args.n, seed, held_out, tagger)
        who = "rules" if tagger is None else f"rules + {tagger.ref.name}:{tagger.ref.version}"
        title = f"{who}, {title}"
        table = Table(
            "type", "gold tokens", "recall", "precision", title=f"{title}: {args.n} notes"
        )
        for label, s in scores.items():
            table.add_row(
                label,
                str(s.gold),
                fmt(s.recall, TARGET_RECALL.get(label, 0.98)),
                fmt(s.precision, TARGET_PRECISION),
            )
        console.print(table)
        console.print(f"{who}: {rate:.0f} notes/s\n")


if __name__ == "__main__":
    main()
