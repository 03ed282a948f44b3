"""Whether a finding in a note is present, negated, possible, hypothetical, historical or about
a relative: ConText (Harkema et al., 2009), with its cues as data (``rules/context_cues.json``).

A cue reaches forward to the end of its sentence, backward to its start, or both, and stops at
a terminator ("but", "however") or the next cue of its direction. Phrases that look like cues
but are not ("no increase", "not only") are matched first and cover what they span. When cues
of several kinds reach a finding, the first of ``PRIORITY`` wins: a relative's condition is never
the patient's, whatever else is said of it.
"""

import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

CUES = Path(__file__).with_name("rules") / "context_cues.json"
PRESENT = "present"
PRIORITY = ("family", "negated", "hypothetical", "possible", "historical")
ASSERTIONS = (PRESENT, *PRIORITY)
SENTENCE_END = re.compile(r"[.!?;]\s|[.!?;]$|\n(?![ \t]*[a-z])")  # a wrapped line goes on


@dataclass(frozen=True)
class Cue:
    start: int
    end: int
    kind: str
    direction: str


@cache
def _cue_pattern(path: Path = CUES) -> tuple[re.Pattern[str], dict[str, tuple[str, str]]]:
    cues = json.loads(path.read_text(encoding="utf-8"))["cues"]
    kinds = {c["phrase"]: (c["kind"], c["direction"]) for c in cues}
    phrases = sorted(kinds, key=len, reverse=True)  # the longest phrase wins at a position
    body = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?<![\w/])(?:{body})(?![\w/])", re.IGNORECASE), kinds


def find_cues(sentence: str) -> list[Cue]:
    """The cues of ``sentence``, in order (pseudo-cues included, to be skipped)."""
    pattern, kinds = _cue_pattern()
    found = []
    for match in pattern.finditer(sentence):
        kind, direction = kinds[" ".join(match.group().lower().split())]
        found.append(Cue(match.start(), match.end(), kind, direction))
    return found


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence (or list line) of ``text`` that holds ``start:end``."""
    ends = _sentence_ends(text)
    k = bisect_right(ends, start)
    left = ends[k - 1] if k else 0
    after = SENTENCE_END.search(text, end)
    return left, after.start() + 1 if after else len(text)


@lru_cache(maxsize=16)
def _sentence_ends(text: str) -> list[int]:
    """Where each sentence of ``text`` ends (found once a text: a note has many findings)."""
    return [m.end() for m in SENTENCE_END.finditer(text)]


def _reaches(cue: Cue, cues: list[Cue], start: int, end: int) -> bool:
    """Whether ``cue`` reaches the finding at ``start:end`` (offsets within one sentence)."""
    if cue.direction in ("forward", "both") and cue.end <= start:
        between = [c for c in cues if cue.end <= c.start < start]
        if not any(c.kind == "terminate" for c in between):
            return True
    if cue.direction in ("backward", "both") and cue.start >= end:
        between = [c for c in cues if end <= c.start < cue.start]
        if not any(c.kind == "terminate" for c in between):
            return True
    return False


def assertion(text: str, start: int, end: int) -> str:
    """The assertion of the finding at ``text[start:end]``: one of ``ASSERTIONS``."""
    left, right = sentence_bounds(text, start, end)
    sentence = text[left:right]
    cues = [
        c
        for c in find_cues(sentence)
        if c.end <= start - left or c.start >= end - left  # a cue is not inside the finding
    ]
    kinds = {
        c.kind for c in cues if c.kind in PRIORITY and _reaches(c, cues, start - left, end - left)
    }
    return next((k for k in PRIORITY if k in kinds), PRESENT)
