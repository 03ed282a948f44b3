"""The invented people, places and numbers of one phantom note (Faker, seeded), and the ways
writers put them on the page. None of it belongs to a real person."""

import datetime as dt
from dataclasses import dataclass

import numpy as np
from faker import Faker

from dxserve.core.text.known_words import LOCALES

DATE_FORMATS = ("%m/%d/%Y", "%d %b %Y", "%B %d, %Y", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%y")


@dataclass(frozen=True)
class Cast:
    """Everyone and everything identifying in one note."""

    given: str
    family: str
    sex: str
    birth: dt.date
    visit: dt.date
    mrn: str
    account: str
    ssn: str
    phone: str
    fax: str
    email: str
    portal: str
    ip: str
    licence: str
    device: str
    street: str
    city: str
    zip: str
    hospital: str
    clinician: str
    colleague: str
    relative: str

    @property
    def age(self) -> int:
        return (self.visit - self.birth).days // 365


def cast(rng: np.random.Generator) -> Cast:
    fake = Faker(list(LOCALES))
    fake.seed_instance(int(rng.integers(2**31)))
    us = Faker("en_US")
    us.seed_instance(int(rng.integers(2**31)))
    sex = str(rng.choice(["F", "M"]))
    given = fake.first_name_female() if sex == "F" else fake.first_name_male()
    visit = dt.date(2023, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1000)))
    # Mostly adults of 30 to 89; one in six over 89, whose age is itself an identifier.
    years = int(rng.integers(90, 104)) if rng.random() < 1 / 6 else int(rng.integers(30, 90))
    birth = visit - dt.timedelta(days=365 * years + int(rng.integers(1, 360)))
    mrn_digits = int(rng.integers(10**6, 10**8))
    return Cast(
        given=given,
        family=fake.last_name(),
        sex=sex,
        birth=birth,
        visit=visit,
        mrn=str(rng.choice([f"{mrn_digits}", f"MRN{mrn_digits}", f"{mrn_digits:08d}-{sex}"])),
        account=f"{int(rng.integers(10**8, 10**9))}",
        ssn=us.ssn(),
        phone=us.phone_number(),
        fax=us.phone_number(),
        email=us.email(),
        portal=f"https://portal.{us.domain_name()}/p/{int(rng.integers(10**5, 10**6))}",
        ip=us.ipv4_private(),
        licence=f"{us.random_uppercase_letter()}{int(rng.integers(10**6, 10**7))}",
        device=f"{us.random_uppercase_letter()}{us.random_uppercase_letter()}-{int(rng.integers(10**5, 10**6))}",
        street=us.street_address(),
        city=f"{us.city()}, {us.state_abbr()}",
        zip=us.zipcode(),
        hospital=f"{us.last_name()} {rng.choice(['Memorial Hospital', 'Medical Center', 'General Hospital', 'Heart Institute'])}",
        clinician=f"{fake.first_name()} {fake.last_name()}",
        colleague=f"{fake.first_name()} {fake.last_name()}",
        relative=f"{fake.first_name()} {fake.last_name()}",
    )


def written_date(day: dt.date, style: int) -> str:
    return day.strftime(DATE_FORMATS[style % len(DATE_FORMATS)])
