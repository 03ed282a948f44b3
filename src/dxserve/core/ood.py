"""Out-of-distribution guard: inputs unlike the training data are refused, not diagnosed.

Two layers, both fitted on the model's own training data and stored in its manifest:

- cheap input checks on the model input — for images, a blank or saturated frame or a colour
  image where the model only saw greyscale; for signals, flat leads or excursions far beyond
  any training window — with bounds taken from the training data;
- the Mahalanobis distance of the penultimate-layer features (an ONNX output) to the nearest
  class mean under a shared, Ledoit–Wolf-shrunk covariance (Lee et al., 2018). The threshold is a
  high quantile of the distances on the validation split, so its false-refusal rate on
  in-distribution data is about ``1 − quantile`` by construction (measured by ``evaluate``).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

NOT_ASSESSED = "not assessed: out of distribution"
QUANTILE = 0.995
BRIGHT = 0.98  # a pixel at least this bright (inputs scaled to [0, 1]) counts as saturated


def image_stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame statistics of input ``(N, 3, h, w)`` (uint8, or float in [0, 1]): contrast
    (std), colour (mean spread between channels) and the share of saturated pixels."""
    if x.dtype == np.uint8:
        chunks = [
            image_stats(x[i : i + 256].astype(np.float32) / 255) for i in range(0, len(x), 256)
        ]
        return {k: np.concatenate([c[k] for c in chunks]) for k in ("std", "chroma", "saturated")}
    x = np.asarray(x, dtype=np.float32)
    return {
        "std": x.std(axis=(1, 2, 3)),
        "chroma": (x.max(axis=1) - x.min(axis=1)).mean(axis=(1, 2)),
        "saturated": (x.min(axis=1) >= BRIGHT).mean(axis=(1, 2)),
    }


@dataclass(frozen=True)
class ImageBounds:
    """Bounds on :func:`image_stats` beyond anything in the training images."""

    min_std: float
    max_chroma: float
    max_saturated: float

    @classmethod
    def fit(cls, x: np.ndarray) -> "ImageBounds":
        stats = image_stats(x)
        return cls(
            min_std=float(0.5 * np.quantile(stats["std"], 0.001)),
            max_chroma=float(max(0.02, 2 * np.quantile(stats["chroma"], 0.999))),
            max_saturated=float(max(0.05, 2 * np.quantile(stats["saturated"], 0.999))),
        )

    def problems(self, x: np.ndarray) -> list[str | None]:
        """For each frame, why it fails the checks (or None)."""
        stats = image_stats(x)
        reasons: list[str | None] = []
        for std, chroma, saturated in zip(
            stats["std"], stats["chroma"], stats["saturated"], strict=True
        ):
            if std < self.min_std:
                reasons.append("blank frame (no contrast)")
            elif saturated > self.max_saturated:
                reasons.append(f"saturated frame ({saturated:.0%} of pixels at full brightness)")
            elif chroma > self.max_chroma:
                reasons.append("colour image; the model was trained on greyscale images")
            else:
                reasons.append(None)
        return reasons


@dataclass(frozen=True)
class SignalBounds:
    """Bounds on scaled signal windows ``(N, leads, samples)``: a lead whose scaled spread is
    below ``min_std`` is flat (all-zero leads are absent, as in a single-lead record), and a
    window whose largest excursion passes ``max_abs`` is beyond any training window."""

    min_std: float
    max_abs: float

    @classmethod
    def fit(cls, x: np.ndarray) -> "SignalBounds":
        present = np.abs(x).max(axis=2) > 0
        spread = x.std(axis=2)[present]
        peaks = np.abs(x).max(axis=(1, 2))
        return cls(
            min_std=float(0.2 * np.quantile(spread, 0.001)),
            max_abs=float(2 * np.quantile(peaks, 0.999)),
        )

    def problems(self, x: np.ndarray) -> list[str | None]:
        reasons: list[str | None] = []
        for window in np.asarray(x, dtype=np.float32):
            present = np.abs(window).max(axis=1) > 0
            flat = int((window.std(axis=1)[present] < self.min_std).sum())
            if not present.any() or flat * 2 > present.sum():
                reasons.append(f"flat signal (no activity on {flat} of {int(present.sum())} leads)")
            elif np.abs(window).max() > self.max_abs:
                reasons.append("excursions far beyond any training signal (artefact or not an ECG)")
            else:
                reasons.append(None)
        return reasons


@dataclass(frozen=True)
class OodGuard:
    """Input bounds plus a Mahalanobis threshold on the features output ``output``."""

    bounds: ImageBounds | SignalBounds
    means: np.ndarray  # (classes, features)
    precision: np.ndarray  # (features, features)
    threshold: float  # on the squared distance
    quantile: float
    output: str = "features"

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each row to its nearest class mean."""
        f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        diff = f[:, None, :] - self.means[None, :, :]  # (N, C, F)
        d2 = ((diff @ self.precision) * diff).sum(axis=-1)  # a BLAS product, not einsum's loop
        return np.asarray(d2.min(axis=1))

    def problems(self, x: np.ndarray, outputs: dict[str, np.ndarray]) -> list[str | None]:
        """For each frame, why it is out of distribution (or None)."""
        return self.feature_problems(self.bounds.problems(x), outputs)

    def feature_problems(
        self, image_problems: list[str | None], outputs: dict[str, np.ndarray]
    ) -> list[str | None]:
        """``image_problems`` (of :meth:`ImageBounds.problems`) with the frames whose features
        lie too far from the training images' added."""
        reasons = list(image_problems)
        if self.output in outputs:
            for i, d2 in enumerate(self.distances(outputs[self.output])):
                if reasons[i] is None and d2 > self.threshold:
                    reasons[i] = (
                        f"unlike the training images (feature distance {np.sqrt(d2):.1f} > "
                        f"{np.sqrt(self.threshold):.1f})"
                    )
        return reasons

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "input checks + Mahalanobis distance on penultimate features",
            "output": self.output,
            ("signal_bounds" if isinstance(self.bounds, SignalBounds) else "image_bounds"): vars(
                self.bounds
            ),
            "means": np.round(self.means, 6).tolist(),
            "precision": np.round(self.precision, 8).tolist(),
            "threshold": self.threshold,
            "quantile": self.quantile,
            "fitted_on": "train (means, covariance, input bounds); val (threshold)",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "OodGuard":
        bounds: ImageBounds | SignalBounds = (
            SignalBounds(**data["signal_bounds"])
            if "signal_bounds" in data
            else ImageBounds(**data["image_bounds"])
        )
        return cls(
            bounds=bounds,
            means=np.asarray(data["means"], dtype=np.float64),
            precision=np.asarray(data["precision"], dtype=np.float64),
            threshold=float(data["threshold"]),
            quantile=float(data["quantile"]),
            output=data.get("output", "features"),
        )


def fit_guard(
    train_x: np.ndarray,
    train_features: np.ndarray,
    train_y: np.ndarray,
    val_features: np.ndarray,
    quantile: float = QUANTILE,
    bounds: ImageBounds | SignalBounds | None = None,
) -> OodGuard:
    """Class means and shared covariance on training features; threshold on validation.
    ``bounds``: the input checks (default: image bounds fitted on ``train_x``)."""
    from sklearn.covariance import LedoitWolf

    f = np.asarray(train_features, dtype=np.float64)
    y = np.asarray(train_y).astype(int)
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    centred = f - means[np.searchsorted(classes, y)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    guard = OodGuard(bounds or ImageBounds.fit(train_x), means, precision, 0.0, quantile)
    threshold = float(np.quantile(guard.distances(val_features), quantile))
    return OodGuard(guard.bounds, means, precision, threshold, quantile)
