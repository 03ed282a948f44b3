import numpy as np
import pytest

from dxserve.core.metrics import binary_metrics


def test_metrics_and_confusion_matrix() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.2, 0.9, 0.4, 0.8, 0.7])
    m = binary_metrics(y, p, threshold=0.5)
    assert (m.tn, m.fp, m.fn, m.tp) == (2, 1, 1, 3)
    assert m.sensitivity == 3 / 4 and m.specificity == 2 / 3
    assert m.accuracy == 5 / 7
    assert m.auc == pytest.approx(11 / 12)
    assert m.to_dict()["confusion_matrix"]["rows_true_cols_pred"] == [[2, 1], [1, 3]]


def test_single_class_has_no_auc() -> None:
    m = binary_metrics(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.9]))
    assert m.auc is None and m.sensitivity is None and m.specificity == 0.75
