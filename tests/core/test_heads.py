"""Task heads: calibrated probabilities and a study's answer for binary, multi-label and
multi-class models."""

import numpy as np
import pytest
from scipy.special import expit, softmax

from dxserve.core.abstention import INDETERMINATE
from dxserve.core.heads import BINARY, MULTICLASS, MULTILABEL, Head

RHYTHMS = ("normal_sinus_rhythm", "atrial_fibrillation", "pvc")


def test_binary_head_keeps_the_echo_models_answer_and_band() -> None:
    head = Head(
        BINARY,
        ("normal", "abnormal"),
        0.5,
        calibration={"temperature": 2.0},
        abstention={"low": 0.4, "high": 0.6},
    )
    logits = np.array([[4.0], [-4.0], [0.2]])
    p = head.probabilities({"logit": logits})
    assert p.shape == (3, 1) and np.allclose(p[:, 0], expit(logits[:, 0] / 2))
    assert head.answer(p[0]).label == "abnormal" and not head.answer(p[0]).refer_to_clinician
    assert head.answer(p[1]).label == "normal"
    unsure = head.answer(p[2])
    assert unsure.label == INDETERMINATE and unsure.refer_to_clinician
    (finding,) = unsure.findings
    assert finding.label == "abnormal" and finding.refer_to_clinician and not finding.present


def test_multilabel_head_names_every_finding_present_and_refers_the_unsure() -> None:
    head = Head(
        MULTILABEL,
        RHYTHMS,
        0.5,
        thresholds={"pvc": 0.3},
        calibration={"temperatures": [1.0, 2.0, 1.0]},
        abstention={"bands": {"pvc": {"low": 0.25, "high": 0.35}}},
    )
    logits = np.array([[-5.0, 6.0, 0.0]])
    p = head.probabilities({"logit": logits})
    assert np.allclose(p[0], expit(logits[0] / np.array([1.0, 2.0, 1.0])))
    answer = head.answer(p[0])
    assert answer.label == "atrial_fibrillation + pvc"  # the likeliest first
    assert answer.probability == pytest.approx(p[0, 1]) and not answer.refer_to_clinician
    unsure = head.answer(np.array([0.1, 0.9, 0.3]))
    assert unsure.label == "atrial_fibrillation" and unsure.refer_to_clinician
    assert [f.label for f in unsure.findings if f.refer_to_clinician] == ["pvc"]
    nothing = head.answer(np.array([0.1, 0.2, 0.05]))
    assert nothing.label == INDETERMINATE and nothing.refer_to_clinician
    assert head.row_label(np.array([0.9, 0.1, 0.4])) == "normal_sinus_rhythm + pvc"


def test_multiclass_head_is_a_calibrated_softmax_that_refers_below_its_confidence() -> None:
    head = Head(
        MULTICLASS, RHYTHMS, calibration={"temperature": 1.5}, abstention={"min_confidence": 0.6}
    )
    logits = np.array([[0.0, 3.0, 0.5], [1.0, 1.1, 0.9]])
    p = head.probabilities({"logit": logits})
    assert np.allclose(p, softmax(logits / 1.5, axis=1)) and np.allclose(p.sum(axis=1), 1)
    sure, unsure = head.answer(p[0]), head.answer(p[1])
    assert sure.label == "atrial_fibrillation" and not sure.refer_to_clinician
    assert [f.present for f in sure.findings] == [False, True, False]
    assert unsure.label == INDETERMINATE and unsure.refer_to_clinician
    assert head.row_label(p[1]) == "atrial_fibrillation"


def test_without_calibration_the_models_own_probabilities_are_served() -> None:
    head = Head(MULTILABEL, RHYTHMS)
    p = np.array([[0.2, 0.7, 0.1]])
    assert np.array_equal(
        head.probabilities({"probability": p.astype(np.float32)}), p.astype(np.float32)
    )
