"""The sections of a clinical note (chief complaint, history, medications, assessment and plan …)
found by their headers (``rules/sections.json``): a header opens a line and ends with ``:``,
`` -`` or is a Markdown heading; its section runs to the next header."""

import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from pathlib import Path

HEADERS = Path(__file__).with_name("rules") / "sections.json"
UNSECTIONED = "unsectioned"  # text before the first header


@dataclass(frozen=True)
class Section:
    name: str
    start: int  # where its header starts
    body: int  # where its text starts, after the header
    end: int


@cache
def section_headers(path: Path = HEADERS) -> dict[str, list[str]]:
    """Each section's headers, as the rules list them."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["sections"])


@cache
def _header_pattern(path: Path = HEADERS) -> tuple[re.Pattern[str], dict[str, str]]:
    sections = section_headers(path)
    names = {header: name for name, headers in sections.items() for header in headers}
    body = "|".join(re.escape(h) for h in sorted(names, key=len, reverse=True))
    pattern = rf"^[ \t]*(?:#+[ \t]*(?P<md>{body})[ \t]*$|(?P<label>{body})[ \t]*(?::|[ \t]-(?=\s)))"
    return re.compile(pattern, re.IGNORECASE | re.MULTILINE), names


def find_sections(text: str) -> list[Section]:
    """The sections of ``text`` in order; text before the first header is ``UNSECTIONED``."""
    pattern, names = _header_pattern()
    heads = [
        (m.start(), m.end(), names[(m.group("md") or m.group("label")).lower()])
        for m in pattern.finditer(text)
    ]
    sections = []
    if not heads or heads[0][0] > 0:
        sections.append(Section(UNSECTIONED, 0, 0, heads[0][0] if heads else len(text)))
    for k, (start, body, name) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(text)
        sections.append(Section(name, start, body, end))
    return sections


def section_at(sections: list[Section], offset: int) -> str:
    """The name of the section that holds ``offset``."""
    k = bisect_right([s.start for s in sections], offset) - 1
    return sections[max(k, 0)].name
