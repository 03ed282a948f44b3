"""A clinical note, analysed: its identifiers replaced, then the facts and codes found in what is
left. Only the de-identified text is read for entities and codes, so every offset points into
it and nothing downstream ever holds an identifier."""

from dataclasses import dataclass
from typing import Any

from dxserve.core.intake.deidentify import Pseudonyms
from dxserve.core.text import known_words
from dxserve.core.text.coding import CodeSuggestion, suggest_codes
from dxserve.core.text.entities import Entity, find_entities
from dxserve.core.text.phi_rules import PhiSpan, find_phi
from dxserve.core.text.problems import ICD_RELEASE
from dxserve.core.text.surrogates import Surrogates

ANALYSER = ("clinical-notes", 1)  # name and version of what analyses notes (rules, lexicons)
ICD_10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
NO_TAGGER = (
    "rules only: no PHI tagger in the model repository, so names in running text are not found"
)
NOT_FOR_CLINICAL_USE = (
    "Not for clinical use: the rules, lexicons and calibration were written and measured on "
    "synthetic phantom notes only."
)


@dataclass(frozen=True)
class NoteAnalysis:
    deidentified_text: str
    phi: list[PhiSpan]  # where the stand-ins are in the de-identified text
    entities: list[Entity]
    codes: list[CodeSuggestion]
    patient: str  # the pseudonymous patient id
    name_finder: str | None = None  # the PHI tagger's name:version; None: rules only

    def to_dict(self) -> dict[str, Any]:
        """The analysis as the API returns it (offsets into ``deidentified_text``)."""
        text = self.deidentified_text
        return {
            "model": ANALYSER[0],
            "version": ANALYSER[1],
            "warning": NOT_FOR_CLINICAL_USE,
            "patient": self.patient,
            "deidentified_text": text,
            "phi": [{"type": s.type, "start": s.start, "end": s.end} for s in self.phi],
            "entities": [_entity(e) for e in self.entities],
            "codes": [
                {
                    "system": ICD_10_CM,
                    "code": c.code,
                    "description": c.description,
                    "score": c.score,
                    "evidence": [{"start": a, "end": b, "text": text[a:b]} for a, b in c.evidence],
                }
                for c in self.codes
            ],
            "code_release": ICD_RELEASE,
            "name_finder": self.name_finder or NO_TAGGER,
        }


def _entity(entity: Entity) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": entity.type,
        "text": entity.text,
        "start": entity.start,
        "end": entity.end,
        "section": entity.section,
    }
    if entity.assertion is not None:
        found["assertion"] = entity.assertion
    if entity.normalized is not None:
        found["normalized"] = entity.normalized
    if entity.candidates:
        found["icd10cm"] = [c.code for c in entity.candidates]
    return found


def patient_of(text: str, phi: list[PhiSpan], given: str | None) -> str:
    """What identifies the patient to the tenant: ``given`` (a FHIR subject, a query), else the
    note's first medical record number, else nothing the note shares with others."""
    if given:
        return given
    mrn = next((text[s.start : s.end] for s in phi if s.type == "MRN"), None)
    return mrn or text


def merge_phi(rules: list[PhiSpan], tagged: list[PhiSpan]) -> list[PhiSpan]:
    """The rules' spans and every tagged span that overlaps none of them, in order."""
    extra = [t for t in tagged if all(t.end <= r.start or r.end <= t.start for r in rules)]
    return sorted([*rules, *extra], key=lambda s: s.start)


def analyse_note(
    text: str,
    pseudonyms: Pseudonyms,
    patient: str | None = None,
    tags: bool = False,
    names: list[PhiSpan] | None = None,
    name_finder: str | None = None,
) -> NoteAnalysis:
    """De-identify ``text`` (stand-ins, or ``[TYPE]`` tags), then find its entities and codes.
    ``names``: what the PHI tagger found, beside the rules (which win where both found one)."""
    found = merge_phi(find_phi(text), names or [])
    original_patient = patient_of(text, found, patient)
    replaced = Surrogates(pseudonyms, original_patient, tags).replace(text, found)
    entities = find_entities(replaced.text)
    return NoteAnalysis(
        replaced.text,
        replaced.spans,
        entities,
        suggest_codes(entities),
        pseudonyms.patient_id(original_patient),
        name_finder,
    )


def warm_up() -> None:
    """Build the lexicons now (the ICD-10-CM tabular list, the drug list, the known names and
    words: several seconds) rather than on the first note's time."""
    find_entities("Hypertension. Aspirin 81 mg daily.")
    known_words.not_names()
