"""Scoring de-identification as the i2b2 2014 track did, token by token.

A token of a gold identifier is *recalled* when any predicted span covers it, whatever type was
predicted (it is gone from the text either way); recall per type is over that type's gold
tokens. A predicted token is *correct* when it is a token of some gold identifier; precision
per type is over the tokens predicted as that type.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from dxserve.core.text.tokens import tokens

Spans = Iterable[tuple[int, int, str]]  # start, end, PHI type


@dataclass(frozen=True)
class TypeScore:
    label: str
    gold: int  # tokens of this type's identifiers
    recalled: int
    predicted: int  # tokens predicted as this type
    correct: int  # of those, tokens of any gold identifier

    @property
    def recall(self) -> float | None:
        return self.recalled / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None


def _label_of(token: tuple[int, int], spans: list[tuple[int, int, str]]) -> str | None:
    start, end = token
    for a, b, label in spans:
        if a <= start and end <= b:
            return label
    return None


def score(documents: Iterable[tuple[str, Spans, Spans]]) -> dict[str, TypeScore]:
    """Per PHI type and overall (``"ALL"``), over ``(text, gold, predicted)`` documents."""
    gold: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for text, gold_spans, predicted_spans in documents:
        truth, found = list(gold_spans), list(predicted_spans)
        for token in tokens(text):
            true_label, found_label = _label_of(token, truth), _label_of(token, found)
            if true_label is not None:
                gold[true_label] += 1
                recalled[true_label] += found_label is not None
            if found_label is not None:
                predicted[found_label] += 1
                correct[found_label] += true_label is not None
    labels = sorted(set(gold) | set(predicted))
    scores = {
        label: TypeScore(label, gold[label], recalled[label], predicted[label], correct[label])
        for label in labels
    }
    scores["ALL"] = TypeScore(
        "ALL",
        sum(gold.values()),
        sum(recalled.values()),
        sum(predicted.values()),
        sum(correct.values()),
    )
    return scores
