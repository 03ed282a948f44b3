"""A note as it is written, with its truth: text appended piece by piece, every identifier's
span and type, every finding's span, assertion and ICD-10-CM code."""

from dataclasses import asdict, dataclass, field
from typing import Any

# HIPAA Safe Harbor's identifiers as the phantoms mark them. Ages are PHI only over 89; a year
# alone is not.
PHI_TYPES = (
    "NAME",
    "DATE",
    "AGE",
    "PHONE",
    "FAX",
    "EMAIL",
    "URL",
    "IP",
    "MRN",
    "ACCOUNT",
    "SSN",
    "LICENSE",
    "DEVICE",
    "ADDRESS",
    "LOCATION",
    "ZIP",
    "ORGANIZATION",
)
ASSERTIONS = ("present", "negated", "possible", "hypothetical", "historical", "family")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str  # a PHI type, or a finding's ICD-10-CM code
    assertion: str | None = None  # findings only


@dataclass
class PhantomNote:
    text: str
    phi: list[Span]
    findings: list[Span]
    family: str  # the kind of note (template family) it was written as
    style: int  # which writer's habits

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PhantomNote":
        return cls(
            data["text"],
            [Span(**s) for s in data["phi"]],
            [Span(**s) for s in data["findings"]],
            data["family"],
            data["style"],
        )


@dataclass
class Writer:
    """Appends text and records where each identifier and finding lands."""

    parts: list[str] = field(default_factory=list)
    length: int = 0
    phi: list[Span] = field(default_factory=list)
    findings: list[Span] = field(default_factory=list)

    def add(self, text: str) -> "Writer":
        self.parts.append(text)
        self.length += len(text)
        return self

    def identifier(self, text: str, kind: str) -> "Writer":
        assert kind in PHI_TYPES, kind
        start = self.length
        self.add(text)
        self.phi.append(Span(start, self.length, kind))
        return self

    def finding(self, cue: str, name: str, code: str, assertion: str) -> "Writer":
        """``cue`` with ``{x}`` (or ``{X}``, capitalised) where the finding's words go."""
        assert assertion in ASSERTIONS, assertion
        marker = "{X}" if "{X}" in cue else "{x}"
        before, after = cue.split(marker, 1)
        words = name[:1].upper() + name[1:] if marker == "{X}" else name
        self.add(before)
        start = self.length
        self.add(words)
        self.findings.append(Span(start, self.length, code, assertion))
        return self.add(after)

    def note(self, family: str, style: int) -> PhantomNote:
        return PhantomNote("".join(self.parts), self.phi, self.findings, family, style)
