"""What a note's analysis finds: sections by their headers, problems by the ICD-10-CM tabular
list (with clinicians' abbreviations and spellings), medications with their attributes, codes
only for what the note asserts of the patient, and notes read from text or FHIR."""

import base64
import json

import pytest

from dxserve.core.text.coding import suggest_codes
from dxserve.core.text.entities import find_entities
from dxserve.core.text.finding_score import FindingScore
from dxserve.core.text.medications import find_medications
from dxserve.core.text.note_body import read_note
from dxserve.core.text.problems import find_problems
from dxserve.core.text.sections import find_sections
from dxserve.errors import InvalidInput, UnsupportedMedia
from dxserve.phantoms.notes.generate import notes


def test_sections_by_their_headers() -> None:
    text = "Seen today.\nCC: chest pain\nHPI - worse on exertion\n## Medications\naspirin\nA/P: ECG"
    found = [(s.name, text[s.body : s.end].strip()) for s in find_sections(text)]
    assert found == [
        ("unsectioned", "Seen today."),
        ("chief_complaint", "chest pain"),
        ("history", "worse on exertion"),
        ("medications", "aspirin"),
        ("assessment_and_plan", "ECG"),
    ]
    assert [s.name for s in find_sections("Name: J. Doe. Plan to review.")] == ["unsectioned"]


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("atrial fibrillation", "I48.91"),
        ("AF", "I48.91"),
        ("essential hypertension", "I10"),
        ("HTN", "I10"),
        ("diabetes mellitus type 2", "E11.9"),  # word order does not matter
        ("T2DM", "E11.9"),
        ("CKD stage III", "N18.30"),
        ("anaemia", "D64.9"),  # British spelling
        ("heart attack", "I21.9"),  # lay term
        ("chest pain", "R07.9"),  # the general code before "other chest pain"
        ("pyrexia", "R50.9"),  # an inclusion term
        ("GERD", "K21.9"),  # written plainly: the code without complications
    ],
)
def test_problems_and_their_best_code(written: str, code: str) -> None:
    found = find_problems(f"Assessment: {written}.")
    assert [p.text for p in found] == [written]
    assert found[0].candidates[0].code == code
    assert 1 <= len(found[0].candidates) <= 5


def test_what_is_not_a_problem() -> None:
    assert find_problems("History of present illness: his wife and daughter visited.") == []
    assert find_problems("as he said, Mr. Smith") == []  # "as" and "Mr" are words here


def test_medications_with_strength_route_and_frequency() -> None:
    text = "- metoprolol succinate 50 mg PO daily\n- Lasix 40mg IV BID\nalbuterol 2 puffs prn"
    found = [(m.type, m.text, m.normalized) for m in find_medications(text)]
    assert found == [
        ("medication", "metoprolol succinate", "Metoprolol"),
        ("strength", "50 mg", None),
        ("route", "PO", None),
        ("frequency", "daily", None),
        ("medication", "Lasix", "Furosemide"),  # a brand, named by its generic
        ("strength", "40mg", None),
        ("route", "IV", None),
        ("frequency", "BID", None),
        ("medication", "albuterol", "Albuterol"),
        ("dosage", "2 puffs", None),
        ("frequency", "prn", None),
    ]


def test_codes_only_for_what_the_patient_has() -> None:
    text = (
        "No chest pain. Father with atrial fibrillation. If fever develops, call. "
        "Possible pneumonia. History of stroke. Hypertension."
    )
    entities = find_entities(text)
    assertions = {e.text: e.assertion for e in entities if e.type == "problem"}
    assert assertions == {
        "chest pain": "negated",
        "atrial fibrillation": "family",
        "fever": "hypothetical",
        "pneumonia": "possible",
        "stroke": "historical",
        "Hypertension": "present",
    }
    codes = suggest_codes(entities)
    assert {c.code for c in codes} >= {"J18.9", "I63.9", "I10"}
    assert not {c.code for c in codes} & {"R07.9", "I48.91", "R50.9"}
    evidence = {text[a:b] for c in codes for a, b in c.evidence}
    assert evidence == {"pneumonia", "stroke", "Hypertension"}
    assert all(0 < c.score < 1 for c in codes)
    assert codes == sorted(codes, key=lambda c: -c.score)


def test_phantom_findings_are_found_asserted_and_coded() -> None:
    score = FindingScore()
    for note in notes(30, 3, held_out=True):
        entities = find_entities(note.text)
        score.add(note.findings, entities, suggest_codes(entities))
    assert score.found / score.findings >= 0.95
    assert score.assertion_right / score.found >= 0.95
    assert score.top5 / score.coded >= 0.8
    assert score.wrongly_coded == 0


def test_notes_from_text_and_fhir() -> None:
    assert read_note(b"Seen.\r\nWell.", "text/plain").text == "Seen.\nWell."
    data = base64.b64encode(b"No fever.").decode()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/123"},
        "content": [
            {"attachment": {"contentType": "application/pdf", "data": data}},
            {"attachment": {"contentType": "text/plain", "data": data}},
        ],
    }
    note = read_note(json.dumps(document).encode(), "application/fhir+json")
    assert (note.text, note.patient) == ("No fever.", "Patient/123")
    with pytest.raises(UnsupportedMedia):
        read_note(b"x", "text/html")
    with pytest.raises(InvalidInput, match="not valid FHIR R4") as refused:
        read_note(
            b'{"resourceType": "DocumentReference", "status": "Jane Doe"}', "application/json"
        )
    assert "Jane" not in str(refused.value)  # what was sent is never echoed
