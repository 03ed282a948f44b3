"""Writing phantom notes: ``notes(n, seed, held_out)`` in memory, ``write_notes`` as JSON lines
(one note a line: text, PHI spans, findings, family, style)."""

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dxserve.phantoms.notes.families import HELD_OUT_FAMILIES, TRAIN_FAMILIES
from dxserve.phantoms.notes.people import cast
from dxserve.phantoms.notes.writer import PhantomNote, Writer

STYLES = 6  # writers' habits: header style, date format, list bullets, age phrasing


def notes(n: int, seed: int, held_out: bool = False) -> Iterator[PhantomNote]:
    """``n`` notes of the training families (or of the held-out ones), reproducible by seed."""
    families = HELD_OUT_FAMILIES if held_out else TRAIN_FAMILIES
    names = sorted(families)
    rng = np.random.default_rng(seed)
    for index in range(n):
        family = names[index % len(names)]
        style = int(rng.integers(STYLES))
        writer = Writer()
        families[family](writer, cast(rng), rng, style)
        yield writer.note(family, style)


def write_notes(
    path: Path,
    n: int,
    seed: int,
    held_out: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write ``n`` notes to ``path`` (JSON lines); how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for note in notes(n, seed, held_out):
            out.write(json.dumps(note.to_dict(), ensure_ascii=False) + "\n")
            if on_progress is not None:
                on_progress(1)
    return n


def read_notes(path: Path) -> list[PhantomNote]:
    with path.open(encoding="utf-8") as lines:
        return [PhantomNote.from_dict(json.loads(line)) for line in lines if line.strip()]
