"""Assertions of findings in sentences users write, the hard ones included."""

import pytest

from dxserve.core.text.context import ASSERTIONS, assertion
from dxserve.phantoms.notes.families import VOCABULARY

SENTENCES = [
    ("Denies chest pain.", "chest pain", "negated"),
    ("Fever: none.", "Fever", "negated"),
    ("Negative for pneumonia.", "pneumonia", "negated"),
    ("No evidence of pericardial effusion.", "pericardial effusion", "negated"),
    ("Pneumonia was ruled out.", "Pneumonia", "negated"),
    ("Chest X-ray free of consolidation.", "consolidation", "negated"),
    ("Denies fever but reports chest pain.", "fever", "negated"),
    ("Denies fever but reports chest pain.", "chest pain", "present"),
    ("Chest pain, no fever.", "Chest pain", "present"),
    ("Chest pain, no fever.", "fever", "negated"),
    ("Edema: absent.", "Edema", "negated"),
    ("Without syncope or palpitations.", "palpitations", "negated"),
    ("No increase in dyspnea.", "dyspnea", "present"),
    ("Not only hypertension but also diabetes.", "hypertension", "present"),
    ("Rule out myocardial infarction.", "myocardial infarction", "possible"),
    ("R/O pulmonary embolism.", "pulmonary embolism", "possible"),
    ("Concern for endocarditis.", "endocarditis", "possible"),
    ("Cannot exclude LV thrombus.", "LV thrombus", "possible"),
    ("Heart failure is suspected.", "Heart failure", "possible"),
    ("Likely viral pneumonia.", "viral pneumonia", "possible"),
    ("Pneumonia versus atelectasis.", "atelectasis", "possible"),
    ("Return if shortness of breath develops.", "shortness of breath", "hypothetical"),
    ("Should chest pain occur, call the clinic.", "chest pain", "hypothetical"),
    ("History of stroke.", "stroke", "historical"),
    ("Hx of MI in 2015.", "MI", "historical"),
    ("Status post CABG.", "CABG", "historical"),
    ("Past medical history significant for COPD.", "COPD", "historical"),
    ("Mother had breast cancer.", "breast cancer", "family"),
    ("Family history of CAD.", "CAD", "family"),
    ("No family history of sudden death.", "sudden death", "family"),
    ("Father with hypertension.", "hypertension", "family"),
    ("The patient has atrial fibrillation.", "atrial fibrillation", "present"),
    ("Assessment: community-acquired pneumonia.", "community-acquired pneumonia", "present"),
    ("Presents with chest pain and dyspnea.", "dyspnea", "present"),
    ("No fever. Now has a productive cough.", "productive cough", "present"),
    ("Denies fever.\nCough for three days.", "Cough", "present"),
]


@pytest.mark.parametrize(("sentence", "finding", "expected"), SENTENCES)
def test_assertion_of_a_finding(sentence: str, finding: str, expected: str) -> None:
    start = sentence.index(finding)
    assert assertion(sentence, start, start + len(finding)) == expected


def test_every_phantom_cue_is_read_as_written() -> None:
    """The cues the phantom writers use: each read as the assertion it was written for."""
    for expected, templates in VOCABULARY["cues"].items():
        assert expected in ASSERTIONS
        for template in templates:
            for name in ("heart failure", "pneumonia"):
                sentence = template.replace("{x}", name).replace("{X}", name.capitalize())
                start = sentence.lower().index(name)
                got = assertion(sentence, start, start + len(name))
                assert got == expected, sentence
