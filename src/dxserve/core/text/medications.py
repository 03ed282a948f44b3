"""Medications in a note with their strength, dose, route and frequency: drug names from a
lexicon shipped in a wheel (``drug-named-entity-recognition``: DrugBank, MeSH and NHS names,
brands mapped to the generic), attributes by their format just after the name
(``rules/clinical_terms.json``)."""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TERMS = Path(__file__).with_name("rules") / "clinical_terms.json"
TOKEN = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
LINE_END = re.compile(r"\n|[.;](?:\s|$)")


@dataclass(frozen=True)
class Mention:
    type: str  # medication, strength, dosage, route or frequency
    start: int
    end: int
    text: str
    normalized: str | None = None  # the generic name of a medication


@cache
def _attributes(path: Path = TERMS) -> tuple[int, dict[str, re.Pattern[str]]]:
    rules = json.loads(path.read_text(encoding="utf-8"))
    patterns = {
        kind: re.compile(rf"(?<![\w.])(?:{body})(?![\w])", re.IGNORECASE)
        for kind, body in rules["medication_attributes"].items()
    }
    return int(rules["window"]), patterns


@cache
def drug_finder() -> Any:
    # Imported on first use: it unpacks its 1.6 MB dictionary (about 2 s).
    from drug_named_entity_recognition import find_drugs

    return find_drugs


def find_medications(text: str) -> list[Mention]:
    """Each drug named in ``text`` and the attributes written just after it, in order."""
    spans = [m.span() for m in TOKEN.finditer(text)]
    matches = drug_finder()([text[a:b] for a, b in spans], is_ignore_case=True)
    window, patterns = _attributes()
    found: list[Mention] = []
    for data, first, last in sorted(matches, key=lambda m: m[1]):
        start, end = spans[first][0], spans[last - 1][1]
        if any(m.start < end and start < m.end for m in found):
            continue  # a name the lexicon maps to two drugs
        found.append(Mention("medication", start, end, text[start:end], str(data.get("name"))))
        stop = LINE_END.search(text, end)
        limit = min(end + window, stop.start() if stop else len(text))
        for kind, pattern in patterns.items():
            for m in pattern.finditer(text, end, limit):
                found.append(Mention(kind, m.start(), m.end(), m.group()))
    return _without_overlaps(found)


def _without_overlaps(mentions: list[Mention]) -> list[Mention]:
    kept: list[Mention] = []
    for m in sorted(mentions, key=lambda m: (m.start, -(m.end - m.start))):
        if not kept or m.start >= kept[-1].end:
            kept.append(m)
    return kept
