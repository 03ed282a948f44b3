"""Words that are not names, and names: the PHI tagger's second opinion.

A tagger trained on phantom notes has seen few capitalised words that are not names, so on a
real note it marks drug names, headings and acronyms too ("Prednisone", "Neck", "CABG"). A span
it marks is dropped when every word of it is a word known not to be a name — a drug of the
drug lexicon, a word of ICD-10-CM's descriptions, a common English word, a section header —
or an acronym of up to five capitals, unless some word of it is a name Faker knows (its person
providers of many countries). A name that is also such a word and that Faker does not know is
lost: the price of precision, measured by ``benchmarks/philter_i2b2.py``.
"""

import importlib
import re
from functools import cache

from dxserve.core.text import problems
from dxserve.core.text.sections import section_headers

# Names from several locales: a recogniser trained on one country's names misses the rest.
LOCALES = ("en_US", "en_GB", "en_IE", "es_ES", "fr_FR", "de_DE", "it_IT", "pl_PL", "nl_NL")
WORD = re.compile(r"[^\W\d_]+")
ACRONYM = re.compile(r"[A-Z]{1,5}|[a-z]")  # or a letter alone


@cache
def names() -> frozenset[str]:
    """Every given and family name of Faker's person providers for ``LOCALES``, lower case."""
    found: set[str] = set()
    for locale in LOCALES:
        person = importlib.import_module(f"faker.providers.person.{locale}").Provider
        for attribute in ("first_names", "first_names_female", "first_names_male", "last_names"):
            found.update(n.lower() for n in getattr(person, attribute, ()))
    return frozenset(found)


@cache
def not_names() -> frozenset[str]:
    """Lower-case words that are not names (none that Faker knows as a name)."""
    from drug_named_entity_recognition.drugs_finder import drug_variant_to_canonical
    from faker.providers.lorem.en_US import Provider as English

    words = {
        *(w for drug in drug_variant_to_canonical for w in WORD.findall(drug)),
        *problems.lexicon().by_word,
        *English.word_list,
        *(w for headers in section_headers().values() for h in headers for w in h.split()),
    }
    return frozenset(w.lower() for w in words if len(w) > 1 and w.lower() not in names())


def is_not_a_name(text: str) -> bool:
    """Whether a marked span is surely no name: each of its words a known non-name word or an
    acronym, none a known name."""
    words = WORD.findall(text)
    if any(w.lower() in names() for w in words):
        return False
    known = not_names()
    return all(
        w.lower() in known or w.lower().removesuffix("s") in known or ACRONYM.fullmatch(w)
        for w in words
    )
