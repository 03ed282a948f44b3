"""Binary classification metrics, as reported by training, evaluation and model cards."""

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of probabilities against 0/1 labels at a decision threshold."""

    n: int
    positives: int
    threshold: float
    accuracy: float
    auc: float | None  # None when only one class is present
    sensitivity: float | None
    specificity: float | None
    tn: int
    fp: int
    fn: int
    tp: int

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["confusion_matrix"] = {
            "labels": ["negative", "positive"],
            "rows_true_cols_pred": [[self.tn, self.fp], [self.fn, self.tp]],
        }
        return data


def binary_metrics(y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> BinaryMetrics:
    """Accuracy, ROC AUC, sensitivity, specificity and the confusion matrix."""
    y = np.asarray(y_true).astype(int).reshape(-1)
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    predicted = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    both = 0 < y.sum() < len(y)
    return BinaryMetrics(
        n=len(y),
        positives=int(y.sum()),
        threshold=float(threshold),
        accuracy=float((predicted == y).mean()) if len(y) else float("nan"),
        auc=float(roc_auc_score(y, p)) if both else None,
        sensitivity=tp / (tp + fn) if tp + fn else None,
        specificity=tn / (tn + fp) if tn + fp else None,
        tn=tn,
        fp=fp,
        fn=fn,
        tp=tp,
    )


def roc_points(y_true: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve."""
    fpr, tpr, _ = roc_curve(np.asarray(y_true).astype(int), np.asarray(prob))
    return fpr, tpr


def multilabel_metrics(
    y_true: np.ndarray, prob: np.ndarray, labels: list[str], thresholds: list[float]
) -> dict[str, object]:
    """Per-class AUC, F1, sensitivity, specificity and confusion counts of ``(N, K)``
    probabilities against multi-hot labels, and their macro averages (over the classes that
    have both positives and negatives); ``accuracy`` is the exact-match share."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob, dtype=np.float64)
    predicted = (p >= np.asarray(thresholds)).astype(int)
    per_class: dict[str, dict[str, object]] = {}
    for k, label in enumerate(labels):
        m = binary_metrics(y[:, k], p[:, k], thresholds[k])
        f1 = 2 * m.tp / (2 * m.tp + m.fp + m.fn) if m.tp + m.fp + m.fn else None
        per_class[label] = {**m.to_dict(), "f1": f1}

    def macro(key: str) -> float | None:
        values = [float(c[key]) for c in per_class.values() if c[key] is not None]  # type: ignore[arg-type]
        return float(np.mean(values)) if values else None

    return {
        "n": len(y),
        "accuracy": float((predicted == y).all(axis=1).mean()) if len(y) else float("nan"),
        "auc": macro("auc"),
        "f1": macro("f1"),
        "sensitivity": macro("sensitivity"),
        "specificity": macro("specificity"),
        "per_class": per_class,
    }
