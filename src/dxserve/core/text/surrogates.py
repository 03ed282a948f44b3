"""Stand-ins for the identifiers found in a note. The same original gets the same stand-in for
one tenant, in this note and the patient's others (seeded by the tenant's pseudonym key); dates
move by the patient's offset, the one DICOM de-identification uses, in the format they were
written in, so intervals survive; ages over 89 become "90+". With ``tags``, every identifier
becomes its type in brackets (``[NAME]``) instead."""

import datetime as dt
import re
import threading
from dataclasses import dataclass

from faker import Faker

from dxserve.core.intake.deidentify import Pseudonyms
from dxserve.core.text.phi_rules import PhiSpan

DATE_FORMATS = (
    "%m/%d/%Y",
    "%m/%d/%y",
    "%d.%m.%Y",
    "%Y-%m-%d",
    "%d %b %Y",
    "%d %B %Y",
    "%B %d, %Y",
    "%b %d, %Y",
    "%B %d %Y",
)


@dataclass(frozen=True)
class Replaced:
    text: str
    spans: list[PhiSpan]  # where the stand-ins are in ``text``


_local = threading.local()  # one Faker a thread (making one takes ~50 ms; seeding, ~0.2 ms)


def _fake(seed: int) -> Faker:
    fake = getattr(_local, "fake", None)
    if fake is None:
        fake = _local.fake = Faker("en_US")
    fake.seed_instance(seed)
    return fake


def _digits_like(original: str, seed: int) -> str:
    """``original`` with each digit replaced (letters and punctuation kept): same shape."""
    digits = iter(f"{seed:020d}" * 2)
    return "".join(next(digits) if c.isdigit() else c for c in original)


def shift_date(written: str, shift: dt.timedelta) -> str | None:
    """``written`` moved by ``shift`` in its own format; None when it is not a date we read."""
    for fmt in DATE_FORMATS:
        try:
            day = dt.datetime.strptime(written, fmt).date()
        except ValueError:
            continue
        return (day + shift).strftime(fmt)
    return None


class Surrogates:
    def __init__(self, pseudonyms: Pseudonyms, patient: str, tags: bool = False) -> None:
        """``patient``: what identifies the patient to the tenant (the note's MRN, as DICOM's
        PatientID), whose date offset the note's dates move by."""
        self.pseudonyms = pseudonyms
        self.shift = pseudonyms.date_shift(patient)
        self.tags = tags

    def stand_in(self, original: str, kind: str) -> str:
        if self.tags:
            return f"[{kind}]"
        if kind == "DATE":
            return shift_date(original, self.shift) or "[DATE]"
        if kind == "AGE":
            return "90+"
        key = re.sub(r"\s+", " ", original.strip().lower())
        seed = self.pseudonyms.seed(f"text:{kind}", key)
        fake = _fake(seed)
        if kind == "NAME":
            if "^" in original:
                return f"{fake.last_name()}^{fake.first_name()}".upper()
            words = len(original.split())
            return (
                fake.last_name()
                if words == 1
                else fake.name()
                if words == 2
                else (f"{fake.first_name()} {fake.first_name()} {fake.last_name()}")
            )
        makers = {
            "PHONE": fake.phone_number,
            "FAX": fake.phone_number,
            "EMAIL": fake.email,
            "URL": lambda: f"https://{fake.domain_name()}/",
            "IP": fake.ipv4_private,
            "ADDRESS": fake.street_address,
            "LOCATION": lambda: f"{fake.city()}, {fake.state_abbr()}",
            "ORGANIZATION": lambda: f"{fake.last_name()} Hospital",
        }
        if kind in makers:
            return str(makers[kind]())
        return _digits_like(original, seed)  # MRN, ACCOUNT, SSN, LICENSE, DEVICE, ZIP

    def replace(self, text: str, spans: list[PhiSpan]) -> Replaced:
        """``text`` with every span (in order, none overlapping) replaced by its stand-in."""
        parts, placed, at, moved = [], [], 0, 0
        for span in sorted(spans, key=lambda s: s.start):
            parts.append(text[at : span.start])
            stand_in = self.stand_in(text[span.start : span.end], span.type)
            start = span.start + moved
            placed.append(PhiSpan(start, start + len(stand_in), span.type))
            parts.append(stand_in)
            moved += len(stand_in) - (span.end - span.start)
            at = span.end
        parts.append(text[at:])
        return Replaced("".join(parts), placed)
