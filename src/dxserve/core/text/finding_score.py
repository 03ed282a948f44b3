"""Scoring what a note's analysis found against annotated findings (a span, its assertion and
its ICD-10-CM code): assertion accuracy, the right code in the top five of its problem, and
codes suggested from evidence that is negated or a relative's (which must never happen)."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dxserve.core.text.coding import CODED, CodeSuggestion, features
from dxserve.core.text.entities import Entity
from dxserve.core.text.problems import TOP


class Finding(Protocol):
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def label(self) -> str: ...  # its ICD-10-CM code
    @property
    def assertion(self) -> str | None: ...


@dataclass
class FindingScore:
    findings: int = 0
    found: int = 0  # findings a problem entity overlaps
    assertion_right: int = 0  # of those found
    coded: int = 0  # found findings whose assertion is coded
    top1: int = 0
    top5: int = 0
    uncoded: int = 0  # found negated/relative's/hypothetical findings
    wrongly_coded: int = 0  # of those, ones that are evidence of a suggested code
    by_assertion: dict[str, list[int]] = field(default_factory=dict)  # [right, found]

    def add(
        self,
        findings: Iterable[Finding],
        entities: Sequence[Entity],
        codes: Sequence[CodeSuggestion],
    ) -> None:
        evidence = {span for code in codes for span in code.evidence}
        problems = [e for e in entities if e.type == "problem"]
        for finding in findings:
            self.findings += 1
            hit = next(
                (e for e in problems if e.start < finding.end and finding.start < e.end), None
            )
            if hit is None:
                continue
            self.found += 1
            truth = finding.assertion or "present"
            right = hit.assertion == truth
            self.assertion_right += right
            tally = self.by_assertion.setdefault(truth, [0, 0])
            tally[0] += right
            tally[1] += 1
            if truth in CODED:
                ranked = [c.code for c in hit.candidates[:TOP]]
                self.coded += 1
                self.top1 += ranked[:1] == [finding.label]
                self.top5 += finding.label in ranked
            else:
                self.uncoded += 1
                self.wrongly_coded += (hit.start, hit.end) in evidence


def calibration_rows(
    findings: Sequence[Finding], entities: Sequence[Entity]
) -> list[tuple[list[float], bool]]:
    """(features, is it the right code) for each candidate of each coded problem; a problem no
    finding is annotated at has no right code."""
    rows = []
    for problem in (e for e in entities if e.type == "problem" and e.assertion in CODED):
        truth = next((f for f in findings if problem.start < f.end and f.start < problem.end), None)
        for rank, candidate in enumerate(problem.candidates[:TOP]):
            x = features(candidate, rank, len(problem.candidates), problem.assertion)
            rows.append((x, truth is not None and candidate.code == truth.label))
    return rows
