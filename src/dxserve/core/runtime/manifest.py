"""A model version's manifest: everything needed to serve, explain and judge it, in one JSON file.

Written by training (``dxserve train``) and updated by evaluation (``dxserve evaluate --record``),
never typed by hand. Datatypes use the Open Inference Protocol's names (``FP32`` …).
"""

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dxserve import NOT_FOR_CLINICAL_USE
from dxserve.core.heads import BINARY, Head
from dxserve.core.modality import IMAGE
from dxserve.core.ood import OodGuard
from dxserve.core.preprocess import AnyRecipe, Recipe, recipe_from_dict
from dxserve.errors import InvalidInput, ModelIntegrityError

MANIFEST_NAME = "manifest.json"
MODEL_FILE = "model.onnx"
SCHEMA = 1


@dataclass(frozen=True)
class TensorSpec:
    """A named input or output tensor; ``-1`` marks a variable (batch) dimension."""

    name: str
    datatype: str
    shape: list[int]


@dataclass
class Manifest:
    """The description of one model version, stored beside its ``model.onnx``.

    ``modality`` says what it reads (see :mod:`dxserve.core.modality`), ``preprocessing`` how
    that input becomes its tensor, ``task`` what its outputs mean (see :mod:`dxserve.core.heads`):
    a binary task's ``labels`` are ``[negative, positive]``; a multi-class or multi-label task's
    are its classes, each with its threshold in ``thresholds`` (default ``threshold``)."""

    name: str
    version: int
    architecture: str
    parameters: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: dict[str, Any]
    labels: list[str]
    threshold: float
    sha256: str
    intended_use: str
    not_for_clinical_use: bool = True
    clinical_use_warning: str | None = NOT_FOR_CLINICAL_USE
    max_batch_size: int = 32
    # Batches of this size go without waiting for the queue delay: small enough that one batch
    # computes while the next fills (ONNX Runtime's per-image rate is flat from batch 4 up here).
    preferred_batch_size: int = 8
    # Triton's default, and what measured best here: a request that finds the model idle runs
    # at once; requests arriving while a batch runs form the next batch (benchmarks/serve.py).
    max_queue_delay_ms: float = 0.0
    model_file: str = MODEL_FILE
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, Any] = field(default_factory=dict)
    # Temperature scaling fitted at training time (see dxserve.core.calibration); empty: none.
    calibration: dict[str, Any] = field(default_factory=dict)
    # The "indeterminate — refer to a clinician" band (see dxserve.core.abstention); empty: none.
    abstention: dict[str, Any] = field(default_factory=dict)
    # Saliency output of the network itself ({"method", "output", "stride", "offset"}); empty:
    # explanations use occlusion (see dxserve.core.explain).
    explanation: dict[str, Any] = field(default_factory=dict)
    # The out-of-distribution guard (see dxserve.core.ood); empty: none.
    ood: dict[str, Any] = field(default_factory=dict)
    # DICOM Modality values (e.g. "US") the model reads; an object of another is refused.
    # Empty: any (and PNG/JPEG, which carry no modality, always pass).
    modalities: list[str] = field(default_factory=list)
    modality: str = IMAGE
    task: str = BINARY
    thresholds: dict[str, float] = field(default_factory=dict)
    # Measurements made beside the model (e.g. "ecg-intervals"); empty: none.
    measurements: list[str] = field(default_factory=list)
    schema: int = SCHEMA

    @cached_property
    def recipe(self) -> AnyRecipe:
        return recipe_from_dict(self.preprocessing)

    @property
    def image_recipe(self) -> Recipe:
        """The recipe of a model that reads images; :class:`InvalidInput` for any other."""
        recipe = self.recipe
        if not isinstance(recipe, Recipe):
            raise InvalidInput(f"{self.name} reads {self.modality} input, not images")
        return recipe

    @cached_property
    def head(self) -> Head:
        return Head(
            self.task,
            tuple(self.labels),
            self.threshold,
            self.thresholds,
            self.calibration,
            self.abstention,
        )

    def probabilities(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The served probabilities ``(N, K)`` (see :meth:`Head.probabilities`): calibrated
        when the manifest has temperatures, else the model's own ``probability`` output."""
        return self.head.probabilities(outputs)

    def scores(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """Each class's score (logit) ``(N, K)``: what explanations attribute."""
        return self.head.scores(outputs)

    @property
    def indeterminate_band(self) -> tuple[float, float] | None:
        """A binary task's abstention band (see :meth:`Head.band_of` for each class's)."""
        return self.head.band_of(self.labels[-1]) if self.task == BINARY else None

    @cached_property
    def guard(self) -> OodGuard | None:
        return OodGuard.from_dict(self.ood) if self.ood else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, version_dir: Path) -> Path:
        path = Path(version_dir) / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, version_dir: Path) -> "Manifest":
        data = json.loads((Path(version_dir) / MANIFEST_NAME).read_text())
        data["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
        data["outputs"] = [TensorSpec(**t) for t in data["outputs"]]
        return cls(**data)

    def verify(self, version_dir: Path) -> Path:
        """The model file's path, after checking it against the manifest's sha256."""
        path = Path(version_dir) / self.model_file
        if not path.is_file():
            raise ModelIntegrityError(f"{self.name}:{self.version}: {self.model_file} is missing")
        if sha256_file(path) != self.sha256:
            raise ModelIntegrityError(
                f"{self.name}:{self.version}: {self.model_file} does not match its manifest's sha256"
            )
        return path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
