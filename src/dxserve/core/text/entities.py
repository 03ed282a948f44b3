"""The clinical facts of a note: problems, medications with their strength, dose, route and
frequency, tests and procedures, anatomy — each with its assertion (ConText) and the section it
is written in. A problem carries its ranked ICD-10-CM candidates."""

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dxserve.core.text.context import assertion
from dxserve.core.text.medications import TERMS, find_medications
from dxserve.core.text.problems import Candidate, find_problems
from dxserve.core.text.sections import find_sections, section_at

ASSERTED_TYPES = frozenset({"problem", "medication", "test"})  # anatomy and attributes: none


@dataclass(frozen=True)
class Entity:
    type: str  # problem, medication, strength, dosage, route, frequency, test, anatomy
    start: int
    end: int
    text: str
    section: str
    assertion: str | None = None
    normalized: str | None = None  # a medication's generic name
    candidates: tuple[Candidate, ...] = ()  # a problem's ICD-10-CM codes, best first


@cache
def _phrases(path: Path = TERMS) -> tuple[tuple[str, re.Pattern[str]], ...]:
    rules = json.loads(path.read_text(encoding="utf-8"))

    def pattern(phrases: list[str]) -> re.Pattern[str]:
        body = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
        return re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)

    return (
        ("test", pattern(rules["tests_and_procedures"])),
        ("anatomy", pattern(rules["anatomy"])),
    )


def find_entities(text: str) -> list[Entity]:
    """Every entity of ``text`` in order, none overlapping (problems, then medications, then
    tests and anatomy, win where they overlap)."""
    sections = find_sections(text)
    headers = [(s.start, s.body) for s in sections if s.body > s.start]
    found: list[Entity] = []

    def add(
        kind: str,
        start: int,
        end: int,
        normalized: str | None = None,
        candidates: tuple[Candidate, ...] = (),
    ) -> None:
        if any(a < end and start < b for a, b in headers):
            return  # a section's header is not a finding
        if any(e.start < end and start < e.end for e in found):
            return
        asserted = assertion(text, start, end) if kind in ASSERTED_TYPES else None
        section = section_at(sections, start)
        found.append(
            Entity(kind, start, end, text[start:end], section, asserted, normalized, candidates)
        )

    for p in find_problems(text):
        add("problem", p.start, p.end, candidates=p.candidates)
    for m in find_medications(text):
        add(m.type, m.start, m.end, normalized=m.normalized)
    for kind, pattern in _phrases():
        for match in pattern.finditer(text):
            add(kind, match.start(), match.end())
    return sorted(found, key=lambda e: e.start)
