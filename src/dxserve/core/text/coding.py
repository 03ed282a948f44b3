"""ICD-10-CM codes suggested for a note, each with its evidence and a calibrated score.

Only problems the note asserts of the patient are coded — present, possible or historical;
never a negated one, a relative's, or a hypothetical ("if chest pain recurs"). A code's score is
the probability that it is the right code for its best evidence, from a logistic model of how
the words matched (``rules/code_calibration.json``, fitted on phantom notes of the training
families by :func:`fit_calibration`).
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dxserve.core.text.entities import Entity
from dxserve.core.text.problems import TOP, Candidate

CALIBRATION = Path(__file__).with_name("rules") / "code_calibration.json"
CODED = frozenset({"present", "possible", "historical"})
FEATURES = ("quality", "first", "one_of", "possible")


@dataclass(frozen=True)
class CodeSuggestion:
    code: str
    description: str
    score: float
    evidence: tuple[tuple[int, int], ...]  # the problems' offsets in the text


def features(candidate: Candidate, rank: int, count: int, assertion: str | None) -> list[float]:
    return [candidate.quality, float(rank == 0), 1.0 / count, float(assertion == "possible")]


@cache
def _weights(path: Path = CALIBRATION) -> tuple[np.ndarray, float]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert tuple(data["features"]) == FEATURES, "code calibration fitted on other features"
    return np.asarray(data["coef"], dtype=np.float64), float(data["intercept"])


def probability(x: list[float]) -> float:
    coef, intercept = _weights()
    return float(1.0 / (1.0 + np.exp(-(np.dot(coef, x) + intercept))))


def suggest_codes(entities: Iterable[Entity]) -> list[CodeSuggestion]:
    """Codes for the coded problems of a note, best first; evidence merged per code."""
    best: dict[str, tuple[float, str]] = {}
    evidence: dict[str, list[tuple[int, int]]] = {}
    for entity in entities:
        if entity.type != "problem" or entity.assertion not in CODED:
            continue
        for rank, candidate in enumerate(entity.candidates[:TOP]):
            x = features(candidate, rank, len(entity.candidates), entity.assertion)
            score = probability(x)
            if score > best.get(candidate.code, (-1.0, ""))[0]:
                best[candidate.code] = (score, candidate.description)
            evidence.setdefault(candidate.code, []).append((entity.start, entity.end))
    return sorted(
        (
            CodeSuggestion(code, description, round(score, 4), tuple(evidence[code]))
            for code, (score, description) in best.items()
        ),
        key=lambda s: (-s.score, s.code),
    )


def fit_calibration(
    rows: list[tuple[list[float], bool]], fitted_on: str, path: Path = CALIBRATION
) -> dict[str, object]:
    """Fit the logistic model on (features, was it the right code) and write it to ``path``."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray([r[0] for r in rows])
    y = np.asarray([r[1] for r in rows])
    model = LogisticRegression(C=10.0).fit(x, y)
    data: dict[str, object] = {
        "about": "Logistic calibration of ICD-10-CM suggestions; written by dxserve notes calibrate",
        "fitted_on": fitted_on,
        "features": list(FEATURES),
        "coef": [round(float(c), 6) for c in model.coef_[0]],
        "intercept": round(float(model.intercept_[0]), 6),
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    _weights.cache_clear()
    return data
