"""Problems in a note and the ICD-10-CM codes they suggest.

The lexicon is the tabular list itself (``simple-icd-10-cm``, the April 2026 release): every
billable leaf's description and inclusion terms, with generic qualifiers ("unspecified", "NOS",
"other", laterality) and parenthesised words optional. A term is a bag of normalised words, so
word order does not matter ("diabetes mellitus type 2"). ``rules/problem_terms.json`` says how
clinicians write what the list words otherwise: abbreviations, British spellings, lay terms.

A problem is the longest run of words in a sentence whose bag is a term. Its codes are ranked:
the terms it equals first (a description before an inclusion term, the general code before the
specific), then the codes whose terms hold all its words.
"""

import json
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

from dxserve.core.text.context import SENTENCE_END

TERMS = Path(__file__).with_name("rules") / "problem_terms.json"
ICD_RELEASE = "ICD-10-CM April 2026"
MAX_WORDS = 8  # the longest run of source words a problem is looked for in
TOP = 5
MEMO_SIZE = 1 << 18  # tokens whose words are remembered (the tabular list has ~20,000)
WORD = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
STOPWORDS = frozenset(
    [
        "of",
        "the",
        "a",
        "an",
        "and",
        "or",
        "in",
        "on",
        "to",
        "for",
        "with",
        "by",
        "at",
        "is",
        "was",
        "are",
        "nos",
    ]
)
# Words that qualify a term without changing what it is: optional on both sides.
QUALIFIERS = frozenset(
    [
        "unspecified",
        "other",
        "left",
        "right",
        "bilateral",
        "mild",
        "moderate",
        "severe",
        "small",
        "large",
        "calcific",
        "nonrheumatic",
        "essential",
        "primary",
        "noninflammatory",
        "adult",
        "pediatric",
        "native",
        "organism",
        "uncomplicated",
        "elsewhere",
        "classified",
        "stage",
    ]
)
# Terms with these words ("Family history of stroke") would swallow the cue that says whose
# problem it is; the problem inside them is found and asserted instead.
CUE_WORDS = frozenset({"family", "history", "personal"})
ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}
JOINERS = frozenset("-/")
WITHOUT = re.compile(r"\s+without\b.*$", re.IGNORECASE)
EXTERNAL_CAUSES = frozenset("VWXY")  # chapter 20 codes how an injury happened, not a problem
# Among codes a problem's words equal, the general one first, "other …" last.
GENERALITY = (
    (re.compile(r"\bunspecified\b|\bNOS\b", re.I), -1),
    (re.compile(r"^Other\b"), 1),
)  # punctuation a problem may span


@dataclass(frozen=True)
class Candidate:
    code: str
    description: str
    quality: float  # how closely the words matched: 1 for a leaf's own description


@dataclass(frozen=True)
class Problem:
    start: int
    end: int
    text: str
    candidates: tuple[Candidate, ...]  # best first, at most TOP


@dataclass
class Lexicon:
    abbreviations: dict[str, tuple[str, ...]]
    spellings: dict[str, str]
    terms: dict[frozenset[str], list[Candidate]]
    by_word: dict[str, set[frozenset[str]]]
    vague: set[frozenset[str]]  # terms too vague to be a problem alone ("illness")
    seen: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def words(self, token: str) -> tuple[str, ...]:
        """The normalised words one source token stands for (none for stopwords)."""
        found = self.seen.get(token)
        if found is None:
            if len(self.seen) >= MEMO_SIZE:  # a server reads unboundedly many distinct tokens
                self.seen.clear()
            found = self.seen[token] = self._words(token)
        return found

    def _words(self, token: str) -> tuple[str, ...]:
        if token in self.abbreviations:
            return self.abbreviations[token]
        word = token.lower()
        word = self.spellings.get(word, word)
        word = ROMAN.get(word, word)
        if word in STOPWORDS or word in QUALIFIERS or not word[0].isalnum():
            return ()
        if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "is", "us")):
            word = word[:-1]
        return (word,)

    def bag(self, text: str) -> frozenset[str]:
        return frozenset(w for token in WORD.findall(text) for w in self.words(token))


def _variants(term: str) -> set[str]:
    """A term without its parenthesised or bracketed words, and with them; without the
    qualifying tail after its first comma ("Chest pain, unspecified" → "Chest pain") or from
    "without" on (a problem written plainly is coded as the one without complications)."""
    bare = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]", "", term)
    kept = re.sub(r"[\(\)\[\]]", "", term)
    out = {bare, kept}
    out |= {v.split(",")[0] for v in out}
    out |= {WITHOUT.sub("", v) for v in out}
    return {v for v in out if v.strip()}


def _icd() -> Any:
    """The tabular list (imported on first use: it parses the whole release, about 1 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # it reads with importlib's legacy API
        import simple_icd_10_cm

    return simple_icd_10_cm


@cache
def lexicon(path: Path = TERMS) -> Lexicon:
    icd = _icd()
    rules = json.loads(path.read_text(encoding="utf-8"))
    spellings = rules["spellings"]
    abbreviations = {k: tuple(v.split()) for k, v in rules["abbreviations"].items()}
    lex = Lexicon({}, spellings, defaultdict(list), defaultdict(set), set())
    # Normalise the expansions themselves (they are written as words, not as source tokens).
    for key, words in abbreviations.items():
        lex.abbreviations[key] = tuple(w for word in words for w in lex.words(word))
    best: dict[frozenset[str], dict[str, Candidate]] = defaultdict(dict)

    def add(term: str, code: str, description: str, quality: float) -> None:
        key = lex.bag(term)
        if not key or key & CUE_WORDS:
            return
        held = best[key].get(code)
        if held is None or held.quality < quality:
            best[key][code] = Candidate(code, description, quality)

    for code in icd.get_all_codes(True):
        if not icd.is_leaf(code) or code[0] in EXTERNAL_CAUSES:
            continue
        description = icd.get_description(code)
        for k, variant in enumerate(sorted(_variants(description), key=len, reverse=True)):
            add(variant, code, description, 1.0 if k == 0 else 0.9)
        for term in icd.get_inclusion_term(code):
            for variant in _variants(term):
                add(variant, code, description, 0.85)
    for key, codes in best.items():
        ranked = sorted(codes.values(), key=_order)
        lex.terms[key] = ranked
        for word in key:
            lex.by_word[word].add(key)
    lex.vague = {lex.bag(term) for term in rules["vague"]}
    for phrase, target in rules["phrases"].items():
        key, target_key = lex.bag(phrase), lex.bag(target)
        if target_key in lex.terms and key != target_key:
            lex.terms[key] = [
                Candidate(c.code, c.description, c.quality * 0.95) for c in lex.terms[target_key]
            ]
            for word in key:
                lex.by_word[word].add(key)
    return lex


def _order(c: Candidate) -> tuple[float, int, int, str]:
    generality = sum(weight for pattern, weight in GENERALITY if pattern.search(c.description))
    return (-c.quality, generality, len(c.description), c.code)


def rank_codes(lex: Lexicon, bag: frozenset[str]) -> tuple[Candidate, ...]:
    """The ``TOP`` codes for a problem's words: terms it equals, then terms that hold it."""
    ranked = list(lex.terms.get(bag, ()))
    seen = {c.code for c in ranked}
    holders = set.intersection(*(lex.by_word.get(w, set()) for w in bag)) if bag else set()
    wider: list[Candidate] = []
    for key in holders - {bag}:
        share = len(bag) / len(key)
        wider.extend(
            Candidate(c.code, c.description, c.quality * share * 0.6) for c in lex.terms[key]
        )
    for candidate in sorted(wider, key=_order):
        if len(ranked) >= TOP:
            break
        if candidate.code not in seen:
            seen.add(candidate.code)
            ranked.append(candidate)
    return tuple(ranked[:TOP])


def find_problems(text: str) -> list[Problem]:
    """The problems of ``text``, in order, none overlapping (the longest wins)."""
    lex = lexicon()
    found: list[Problem] = []
    bounds = [0, *(m.end() for m in SENTENCE_END.finditer(text)), len(text)]
    for left, right in pairwise(bounds):
        tokens = [
            (m.start() + left, m.end() + left, m.group()) for m in WORD.finditer(text[left:right])
        ]
        k = 0
        while k < len(tokens):
            match = _longest_term(lex, tokens, k)
            if match is None:
                k += 1
                continue
            end_k, bag = match
            start, end = tokens[k][0], tokens[end_k][1]
            found.append(Problem(start, end, text[start:end], rank_codes(lex, bag)))
            k = end_k + 1
    return found


def _longest_term(
    lex: Lexicon, tokens: list[tuple[int, int, str]], k: int
) -> tuple[int, frozenset[str]] | None:
    """The last token index and bag of the longest term starting at token ``k``."""
    first = tokens[k][2]
    if not first[0].isalnum() or first.lower() in STOPWORDS:
        return None  # a problem may start with a qualifier ("essential hypertension")
    words: set[str] = set()
    longest = None
    for j in range(k, min(k + MAX_WORDS, len(tokens))):
        token = tokens[j][2]
        if not token[0].isalnum() and token not in JOINERS:
            break
        here = lex.words(token)
        words.update(here)
        if here and frozenset(words) in lex.terms and frozenset(words) not in lex.vague:
            longest = (j, frozenset(words))
    return longest
