"""Stand-ins for identifiers: the same original, the same stand-in for one tenant (another
tenant's differ); dates keep their format and their intervals; nothing of a phantom note's
identifiers survives."""

import datetime as dt

from dxserve.core.intake.deidentify import Pseudonyms
from dxserve.core.text.phi_rules import PhiSpan, find_phi
from dxserve.core.text.surrogates import Surrogates, shift_date
from dxserve.phantoms.notes.generate import notes

TENANT, OTHER = Pseudonyms(b"tenant-a-key"), Pseudonyms(b"tenant-b-key")
NOTE = "Dr. Anna Berg saw the patient on 03/04/2024 and again on 03/14/2024; Dr. Anna Berg agreed."


def test_the_same_name_gets_the_same_stand_in_for_a_tenant_only() -> None:
    spans = find_phi(NOTE)
    out = Surrogates(TENANT, "MRN123").replace(NOTE, spans)
    names = [out.text[s.start : s.end] for s in out.spans if s.type == "NAME"]
    assert len(names) == 2 and names[0] == names[1] and "Berg" not in out.text
    again = Surrogates(TENANT, "MRN999").replace(
        "Seen by Dr. Anna Berg.", find_phi("Seen by Dr. Anna Berg.")
    )
    assert names[0] in again.text  # another note of the tenant: the same stand-in
    elsewhere = Surrogates(OTHER, "MRN123").replace(NOTE, spans)
    assert names[0] not in elsewhere.text


def test_dates_move_together_in_their_own_format() -> None:
    out = Surrogates(TENANT, "MRN123").replace(NOTE, find_phi(NOTE))
    first, second = (out.text[s.start : s.end] for s in out.spans if s.type == "DATE")
    days = [dt.datetime.strptime(d, "%m/%d/%Y").date() for d in (first, second)]
    assert days[1] - days[0] == dt.timedelta(days=10)
    assert days[0] - dt.date(2024, 3, 4) == TENANT.date_shift("MRN123")  # as DICOM's dates move
    assert shift_date("14 Mar 2024", dt.timedelta(days=-1)) == "13 Mar 2024"
    assert shift_date("not a date", dt.timedelta(days=-1)) is None


def test_tags_and_ages() -> None:
    text = "Ms. Doe, a 97-year-old, seen 2024-01-02."
    tagged = Surrogates(TENANT, "x", tags=True).replace(text, find_phi(text))
    assert tagged.text == "Ms. [NAME], a [AGE]-year-old, seen [DATE]."
    assert Surrogates(TENANT, "x").replace(text, find_phi(text)).text.startswith("Ms. ")
    assert "90+-year-old" in Surrogates(TENANT, "x").replace(text, find_phi(text)).text


def test_nothing_of_a_phantom_notes_identifiers_survives() -> None:
    for note in notes(30, seed=8, held_out=True):
        truth = [PhiSpan(s.start, s.end, s.label) for s in note.phi]
        out = Surrogates(TENANT, "patient").replace(note.text, truth)
        for span in truth:
            original = note.text[span.start : span.end]
            if len(original) >= 4 and span.type != "AGE":
                assert original not in out.text, (span.type, original)
        for span in out.spans:  # the spans point at the stand-ins
            assert out.text[span.start : span.end] == out.text[span.start : span.end].strip()
