"""Identifiers found by their format: the rules of ``rules/phi_patterns.json`` (rules as data),
each a regular expression with the PHI type it marks and, for numbers that are identifiers only
after a label ("MRN", "DL", "fax"), the context that must come just before.

Rules catch the formats; names in running text need a model (only names after a title or a
label are here). Overlapping matches keep the longest, then the rule listed first.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

RULES = Path(__file__).with_name("rules") / "phi_patterns.json"


@dataclass(frozen=True)
class PhiSpan:
    start: int
    end: int
    type: str


@dataclass(frozen=True)
class Rule:
    type: str
    pattern: re.Pattern[str]
    context: re.Pattern[str] | None  # what must come just before a match, read forwards


@cache
def load_rules(path: Path = RULES) -> tuple[Rule, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    macros = {
        **data["macros"],
        "street_suffixes": "|".join(map(re.escape, data["street_suffixes"])),
    }

    def compile_(text: str) -> re.Pattern[str]:
        for _ in range(3):  # a macro may use another
            for name, value in macros.items():
                text = text.replace("{" + name + "}", value)
        return re.compile(text)

    return tuple(
        Rule(
            r["type"],
            compile_(r["pattern"]),
            compile_(r["context"].removesuffix("$")) if "context" in r else None,
        )
        for r in data["rules"]
    )


def _matches(rule: Rule, text: str) -> Iterator[tuple[int, int]]:
    """Where ``rule`` marks ``text``: anywhere its pattern matches, or, with a context, where
    the pattern matches right after the context (found first: labels are rare, and in
    "Wife Ann" the name pattern alone would take "Wife Ann" and miss "Ann")."""
    if rule.context is None:
        spans = (m.span() for m in rule.pattern.finditer(text))
    else:
        found = (rule.pattern.match(text, c.end()) for c in rule.context.finditer(text))
        spans = (m.span() for m in found if m is not None)
    yield from ((start, end) for start, end in spans if end > start)


def find_phi(text: str, rules: tuple[Rule, ...] | None = None) -> list[PhiSpan]:
    """Every identifier the rules find in ``text``, in order, none overlapping."""
    found: list[tuple[int, int, PhiSpan]] = []
    for priority, rule in enumerate(rules or load_rules()):
        for start, end in _matches(rule, text):
            found.append((-(end - start), priority, PhiSpan(start, end, rule.type)))
    kept: list[PhiSpan] = []
    for _, _, span in sorted(found, key=lambda f: (f[0], f[1])):
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
