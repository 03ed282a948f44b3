"""Token-level de-identification scores: recall whatever type removed a token, precision by the
type predicted; over phantom notes, their own truth scores perfectly."""

import pytest

from dxserve.core.text.phi_score import score
from dxserve.core.text.tokens import tokens
from dxserve.phantoms.notes.generate import notes

TEXT = "Seen by Dr. Anna Berg on 03/14/2024, MRN 1234567."


def span(words: str, label: str) -> tuple[int, int, str]:
    start = TEXT.index(words)
    return start, start + len(words), label


def test_tokens_carry_offsets() -> None:
    words = [TEXT[a:b] for a, b in tokens(TEXT)]
    assert words[:5] == ["Seen", "by", "Dr", ".", "Anna"] and words[-2:] == ["1234567", "."]


def test_recall_counts_any_type_and_precision_the_type_predicted() -> None:
    gold = [span("Anna Berg", "NAME"), span("03/14/2024", "DATE"), span("1234567", "MRN")]
    predicted = [span("Anna", "NAME"), span("03/14/2024", "MRN"), span("MRN 1234567", "MRN")]
    scores = score([(TEXT, gold, predicted)])
    assert scores["NAME"].recall == pytest.approx(1 / 2)  # "Berg" left in the text
    assert scores["DATE"].recall == 1.0  # removed, though called an MRN
    assert scores["MRN"].recall == 1.0
    assert scores["MRN"].precision == pytest.approx(6 / 7)  # the word "MRN" is not PHI
    assert scores["ALL"].gold == 8 and scores["ALL"].recalled == 7


def test_the_truth_of_phantom_notes_scores_perfectly() -> None:
    corpus = list(notes(12, seed=5))
    gold = [(n.text, [(s.start, s.end, s.label) for s in n.phi]) for n in corpus]
    scores = score((text, spans, spans) for text, spans in gold)
    assert scores["ALL"].recall == 1.0 and scores["ALL"].precision == 1.0
    assert scores["ALL"].gold > 12 * 10
