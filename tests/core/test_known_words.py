"""The PHI tagger's second opinion: a marked span made only of words known not to be names
(drugs, ICD-10-CM words, common English words, headers, acronyms) is dropped; a span with a
name Faker knows, or with a word nobody listed, is kept."""

import numpy as np
import pytest

from dxserve.core.text.known_words import is_not_a_name, names
from dxserve.core.text.phi_tagger import TaggedNames


@pytest.mark.parametrize(
    "text",
    ["Prednisone", "Enalapril Maleate", "Hydrochlorothiazide", "Neck", "Allergies", "CABG",
     "M.D", "g"],
)  # fmt: skip
def test_words_that_are_not_names(text: str) -> None:
    assert is_not_a_name(text)


@pytest.mark.parametrize("text", ["Maria Lopez", "Villegas, Yosef", "Tavares", "Lee", "KIM"])
def test_names_and_unknown_words_are_kept(text: str) -> None:
    assert not is_not_a_name(text)


def test_a_name_that_is_also_a_word_is_kept_when_faker_knows_it() -> None:
    assert {"grace", "rose", "mark"} <= names()
    assert not is_not_a_name("Grace") and not is_not_a_name("ROSE")


def test_tagged_spans_drop_what_is_surely_no_name() -> None:
    text = "Prednisone stopped by Maria Lopez today CABG x4."
    tokens = [(0, 10), (11, 18), (19, 21), (22, 27), (28, 33), (34, 39), (40, 44), (45, 47)]
    probabilities = np.array([0.9, 0.1, 0.1, 0.95, 0.95, 0.0, 0.9, 0.0])
    spans = TaggedNames(text, tokens, probabilities).spans(0.5)
    assert [text[a:b] for a, b in spans] == ["Maria Lopez"]
