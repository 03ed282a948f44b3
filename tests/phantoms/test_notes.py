"""Phantom clinical notes: their truth is complete and exact (every mention of an identifier
marked, every span where it says), every PHI type and assertion occurs, held-out families are
other kinds of note, and every code is a billable ICD-10-CM leaf."""

import itertools
import re
from pathlib import Path

import pytest

from dxserve.phantoms.notes.families import HELD_OUT_FAMILIES, TRAIN_FAMILIES, VOCABULARY
from dxserve.phantoms.notes.generate import notes, read_notes, write_notes
from dxserve.phantoms.notes.writer import ASSERTIONS, PHI_TYPES, PhantomNote


@pytest.fixture(scope="module")
def corpus() -> list[PhantomNote]:
    return [*notes(60, seed=3), *notes(60, seed=4, held_out=True)]


def test_spans_are_exact_and_apart(corpus: list[PhantomNote]) -> None:
    for note in corpus:
        spans = sorted([*note.phi, *note.findings], key=lambda s: s.start)
        for span in spans:
            words = note.text[span.start : span.end]
            assert words and words == words.strip(), (note.family, words)
        for before, after in itertools.pairwise(spans):
            assert before.end <= after.start, (note.family, before, after)


def test_every_mention_of_an_identifier_is_marked(corpus: list[PhantomNote]) -> None:
    """What is marked once is marked wherever it occurs again (as a whole word)."""
    for note in corpus:
        marked = {(s.start, s.end) for s in note.phi}
        for span in note.phi:
            value = note.text[span.start : span.end]
            if span.label == "AGE":
                continue  # "101" may recur in a measurement; only the age is PHI
            for match in re.finditer(rf"(?<!\w){re.escape(value)}(?!\w)", note.text):
                inside = any(a <= match.start() and match.end() <= b for a, b in marked)
                assert inside, (note.family, value, note.text)


def test_every_type_and_assertion_occurs(corpus: list[PhantomNote]) -> None:
    assert {s.label for n in corpus for s in n.phi} == set(PHI_TYPES)
    assert {s.assertion for n in corpus for s in n.findings} == set(ASSERTIONS)
    assert {n.family for n in corpus} == set(TRAIN_FAMILIES) | set(HELD_OUT_FAMILIES)
    assert not set(TRAIN_FAMILIES) & set(HELD_OUT_FAMILIES)


def test_only_ages_over_89_are_identifiers(corpus: list[PhantomNote]) -> None:
    ages = [
        int(re.sub(r"\D", "", n.text[s.start : s.end]))
        for n in corpus
        for s in n.phi
        if s.label == "AGE"
    ]
    assert ages and min(ages) > 89
    for note in corpus:
        for match in re.finditer(r"\b(\d{2,3})(?:-year-old| yo| y/o)", note.text):
            marked = any(s.start <= match.start(1) < s.end for s in note.phi)
            assert marked == (int(match.group(1)) > 89), match.group(0)


def test_codes_are_billable_icd_10_cm_leaves() -> None:
    icd = pytest.importorskip("simple_icd_10_cm", reason="needs the dev extra")
    for condition in VOCABULARY["conditions"]:
        code = condition["code"]
        assert icd.is_valid_item(code) and icd.is_leaf(code), code


def test_notes_are_reproducible_and_round_trip(tmp_path: Path) -> None:
    first, again = list(notes(5, seed=9)), list(notes(5, seed=9))
    assert [n.text for n in first] == [n.text for n in again]
    assert [n.text for n in notes(5, seed=10)] != [n.text for n in first]
    write_notes(tmp_path / "notes.jsonl", 5, seed=9)
    assert read_notes(tmp_path / "notes.jsonl") == first
