"""Kinds of clinical note, each a template family written in several writers' styles.

``TRAIN_FAMILIES`` are what models are fitted and tuned on; ``HELD_OUT_FAMILIES`` are kinds of
note (and layouts) they never see, for an honest measure of how they generalise.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dxserve.phantoms.notes.people import Cast, written_date
from dxserve.phantoms.notes.writer import ASSERTIONS, Writer

VOCABULARY: dict[str, Any] = json.loads(
    (Path(__file__).with_name("vocabulary.json")).read_text(encoding="utf-8")
)
# How often a finding carries each assertion in a note.
ASSERTION_WEIGHTS = (0.4, 0.2, 0.12, 0.06, 0.12, 0.1)


def _header(title: str, style: int) -> str:
    return (f"{title.upper()}:", f"{title}:", f"## {title}", f"{title} -")[style % 4]


def _findings(w: Writer, rng: np.random.Generator, count: int) -> None:
    """``count`` sentences, each a condition with an assertion cue."""
    conditions = VOCABULARY["conditions"]
    for k in rng.choice(len(conditions), size=count, replace=False):
        condition = conditions[int(k)]
        assertion = str(rng.choice(ASSERTIONS, p=ASSERTION_WEIGHTS))
        cue = str(rng.choice(VOCABULARY["cues"][assertion]))
        w.finding(cue, str(rng.choice(condition["names"])), condition["code"], assertion)
        w.add(" ")


def _medications(w: Writer, rng: np.random.Generator, style: int) -> None:
    meds = VOCABULARY["medications"]
    for k in rng.choice(len(meds), size=int(rng.integers(2, 5)), replace=False):
        name, dose, route, frequency = meds[int(k)]
        line = f"{name} {dose} {route} {frequency}"
        w.add(("- ", "* ", "", "• ")[style % 4] + line + "\n")


def _patient_line(w: Writer, c: Cast, style: int) -> None:
    w.add("Patient: ").identifier(f"{c.given} {c.family}", "NAME")
    w.add("   DOB: ").identifier(written_date(c.birth, style), "DATE")
    w.add("   MRN: ").identifier(c.mrn, "MRN").add("\n")


def _age(w: Writer, c: Cast, style: int) -> None:
    """The age as written; over 89 its number is an identifier (not the words around it)."""
    before, after = (("", "-year-old"), ("", " yo"), ("aged ", ""), ("", " y/o"))[style % 4]
    w.add(before)
    if c.age > 89:
        w.identifier(str(c.age), "AGE")
    else:
        w.add(str(c.age))
    w.add(after)


def discharge_summary(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.add("DISCHARGE SUMMARY\n").identifier(c.hospital, "ORGANIZATION").add("\n")
    _patient_line(w, c, style)
    w.add("Account: ").identifier(c.account, "ACCOUNT").add("\n")
    w.add("Admitted: ").identifier(written_date(c.visit, style), "DATE")
    w.add("  Attending: Dr. ").identifier(c.clinician, "NAME").add("\n\n")
    w.add(_header("History of present illness", style) + " ")
    w.add("Mr. " if c.sex == "M" else "Ms. ").identifier(c.family, "NAME").add(", a ")
    _age(w, c, style)
    w.add(f" {'man' if c.sex == 'M' else 'woman'}, presented with dyspnoea. ")
    _findings(w, rng, 3)
    w.add("\n\n" + _header("Discharge medications", style) + "\n")
    _medications(w, rng, style)
    w.add("\n" + _header("Follow-up", style) + " Call ").identifier(c.phone, "PHONE")
    w.add(" or fax ").identifier(c.fax, "FAX").add(". ")
    _findings(w, rng, 1)
    w.add("\nElectronically signed by ").identifier(c.clinician, "NAME").add(" on ")
    w.identifier(written_date(c.visit, style + 1), "DATE").add(".\n")


def clinic_letter(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.identifier(c.hospital, "ORGANIZATION").add(", ").identifier(c.street, "ADDRESS")
    w.add(", ").identifier(c.city, "LOCATION").add(" ").identifier(c.zip, "ZIP").add("\n")
    w.identifier(written_date(c.visit, style), "DATE").add("\n\nDear Dr. ")
    w.identifier(c.colleague.split()[-1], "NAME").add(",\n\nThank you for referring ")
    w.identifier(f"{c.given} {c.family}", "NAME").add(" (MRN ").identifier(c.mrn, "MRN")
    w.add("), whom I saw today in clinic. ")
    _findings(w, rng, 4)
    w.add("\n\nHer" if c.sex == "F" else "\n\nHis")
    w.add(" daughter, ").identifier(c.relative, "NAME").add(", can be reached at ")
    w.identifier(c.phone, "PHONE").add(" or ").identifier(c.email, "EMAIL").add(".\n")
    w.add("Current medicines:\n")
    _medications(w, rng, style)
    w.add("\nYours sincerely,\n").identifier(c.clinician, "NAME").add(", MD\n")


def emergency_note(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.add("ED NOTE  ").identifier(written_date(c.visit, style), "DATE").add("  ")
    w.add(("22:41", "03:15", "14:07")[style % 3] + "\n")
    _patient_line(w, c, style)
    w.add("SSN ").identifier(c.ssn, "SSN").add("  DL ").identifier(c.licence, "LICENSE")
    w.add("\n" + _header("Chief complaint", style) + " ")
    _findings(w, rng, 1)
    w.add("\n" + _header("HPI", style) + " Pt is a ")
    _age(w, c, style)
    w.add(f" {c.sex} brought in by EMS from ").identifier(c.street, "ADDRESS").add(". ")
    _findings(w, rng, 3)
    w.add("\nPacemaker interrogation: device ").identifier(c.device, "DEVICE")
    w.add(" (telemetry host ").identifier(c.ip, "IP").add(").\n")
    w.add(_header("Plan", style) + " Admit under Dr. ").identifier(c.clinician, "NAME").add(".\n")


def progress_note(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.add("Progress note — ").identifier(written_date(c.visit, style), "DATE").add("\n")
    w.add("Pt: ").identifier(f"{c.family}, {c.given}", "NAME").add(" #")
    w.identifier(c.mrn, "MRN").add("\nS: ")
    _findings(w, rng, 2)
    w.add("Wife ").identifier(c.relative.split()[0], "NAME").add(" at bedside.\nO: ")
    w.add("BP 138/84, HR 92, afebrile. ")
    _findings(w, rng, 1)
    w.add("\nA/P: ")
    _findings(w, rng, 2)
    w.add("Continue home meds:\n")
    _medications(w, rng, style)
    w.add("-- ").identifier(c.clinician, "NAME").add(", pager ").identifier(c.phone, "PHONE")
    w.add("\n")


def echo_report(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.add("TRANSTHORACIC ECHOCARDIOGRAM\n").identifier(c.hospital, "ORGANIZATION").add("\n")
    w.add("Name: ").identifier(f"{c.family.upper()}^{c.given.upper()}", "NAME")
    w.add("  ID ").identifier(c.mrn, "MRN").add("  Age: ")
    if c.age > 89:
        w.identifier(str(c.age), "AGE")
    else:
        w.add(str(c.age))
    w.add("  Study date: ").identifier(written_date(c.visit, style), "DATE").add("\n")
    w.add("Indication: ")
    _findings(w, rng, 1)
    w.add("\nFindings: LVEF 35-40%. ")
    _findings(w, rng, 3)
    w.add("\nImages archived at ").identifier(c.portal, "URL").add("\nReported by ")
    w.identifier(c.clinician, "NAME").add(".\n")


def referral_email(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    w.add("From: ").identifier(c.email, "EMAIL").add("\nSent: ")
    w.identifier(written_date(c.visit, style), "DATE").add("\nSubject: referral\n\nHi ")
    w.identifier(c.colleague.split()[0], "NAME").add(",\ncould you see ")
    w.identifier(f"{c.given} {c.family}", "NAME").add(", DOB ")
    w.identifier(written_date(c.birth, style + 2), "DATE").add(", who lives at ")
    w.identifier(c.street, "ADDRESS").add(", ").identifier(c.city, "LOCATION").add(" ")
    w.identifier(c.zip, "ZIP").add("? ")
    _findings(w, rng, 3)
    w.add("Her" if c.sex == "F" else "His")
    w.add(" number is ").identifier(c.phone, "PHONE").add(".\nThanks, ")
    w.identifier(c.clinician.split()[0], "NAME").add("\n")


def _phrase(w: Writer, template: str, person: str, words: dict[str, str]) -> None:
    """``template`` written out: ``{given}``, ``{family}`` and ``{initial}`` are ``person``'s
    (identifiers; adjacent ones one name), other fields plain ``words`` (capitalised as the
    field is)."""
    given, family = person.split(" ", 1)
    parts = {"given": given, "family": family, "initial": family[0]}
    own = r"\{(?:given|family|initial)\}"
    pieces = re.split(rf"({own}(?:(?:, | ){own})*|\{{\w+\}})", template)
    for k, piece in enumerate(pieces):
        if k % 2 == 0:
            w.add(piece)
        elif re.match(own, piece):
            w.identifier(re.sub(r"\{(\w+)\}", lambda m: parts[m[1]], piece), "NAME")
        else:
            field = piece[1:-1]
            word = words[field.lower()]
            w.add(word[:1].upper() + word[1:] if field[0].isupper() else word)


def nursing_handover(w: Writer, c: Cast, rng: np.random.Generator, style: int) -> None:
    """A shift handover: people by first name, relatives, colleagues and sign-offs in free
    text, where labelled fields do not announce them."""
    phrases = VOCABULARY["handover"]
    pick = lambda key: str(rng.choice(phrases[key]))  # noqa: E731
    words = {"kin": pick("kin"), "his": "her" if c.sex == "F" else "his"}
    words["him"] = "her" if c.sex == "F" else "him"
    _phrase(w, pick("greetings"), c.colleague, words)
    w.add(("Bed ", "Rm ", "Bay ")[style % 3] + str(int(rng.integers(1, 40))) + ": ")
    w.identifier(c.family, "NAME").add(", ")
    _age(w, c, style)
    w.add(", admitted ").identifier(written_date(c.visit, style), "DATE").add(". ")
    _findings(w, rng, 2)
    _phrase(w, pick("relatives"), c.relative, words)
    w.add("\n")
    _findings(w, rng, 2)
    _phrase(w, pick("colleagues"), c.colleague if rng.random() < 0.5 else c.relative, words)
    w.add("\n")
    _phrase(w, pick("signoffs"), c.clinician, words)


Family = Callable[[Writer, Cast, np.random.Generator, int], None]
TRAIN_FAMILIES: dict[str, Family] = {
    "discharge summary": discharge_summary,
    "clinic letter": clinic_letter,
    "emergency note": emergency_note,
    "nursing handover": nursing_handover,
}
HELD_OUT_FAMILIES: dict[str, Family] = {
    "progress note": progress_note,
    "echo report": echo_report,
    "referral e-mail": referral_email,
}
