"""Train the ECG RNN on a signal dataset and add it to the model repository as a new version.

Adam and binary cross-entropy over the statements (multi-label); each epoch is scored on the
validation split by macro ROC AUC (then loss) and the best is exported. With probability
``lead_dropout`` a training record is shown as lead II alone (the other leads zero), so the same
network reads a wearable's single lead. Then, on the validation split: a temperature a
statement (served probabilities are calibrated), an "indeterminate — refer" band a statement,
and the out-of-distribution guard (fitted on 12-lead and lead-II-only windows alike).
"""

import copy
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from dxserve import NOT_FOR_CLINICAL_USE
from dxserve.core.abstention import choose_band
from dxserve.core.calibration import fit_temperature
from dxserve.core.heads import MULTILABEL
from dxserve.core.intake.signal import STANDARD_LEADS
from dxserve.core.metrics import multilabel_metrics
from dxserve.core.modality import SIGNAL
from dxserve.core.ood import SignalBounds, fit_guard
from dxserve.core.preprocess import SignalRecipe
from dxserve.core.runtime.manifest import Manifest, TensorSpec, sha256_file
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.datasets.layouts import hashed_split
from dxserve.datasets.signals import SignalArrays, SignalDataset
from dxserve.errors import DatasetError
from dxserve.models.ecg_rnn import ARCHITECTURE, FEATURES, EcgExportHead, EcgRNN
from dxserve.training.export import export_head
from dxserve.training.loop import EpochStats, Observer, TrainResult

RECIPE = SignalRecipe("ecg-12lead-100hz-10s", rate=100.0, seconds=10.0, leads=STANDARD_LEADS)
INPUT_NAME = "ecg"
OUTPUTS: dict[str, list[int]] = {
    "probability": [-1, 0],
    "logit": [-1, 0],
    "features": [-1, FEATURES],
}
THRESHOLD = 0.5
SINGLE_LEAD = STANDARD_LEADS.index("II")
INTENDED_USE = (
    "Demonstration of the dxserve pipeline: names the rhythm of a 10 s resting ECG (sinus "
    "rhythm, sinus bradycardia, sinus tachycardia, atrial fibrillation) and flags premature "
    "ventricular complexes and first-degree AV block, from 12 leads or lead II alone. Research "
    "and software testing only."
)
UNVALIDATED_WARNING = "Not for clinical use: this model has not been clinically validated."
MEASUREMENTS = ["ecg-intervals"]


@dataclass(frozen=True)
class EcgTrainConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    lead_dropout: float = 0.3


def load_splits(dataset: SignalDataset, observer: Observer) -> tuple[SignalArrays, SignalArrays]:
    train, val = dataset.subset("train"), dataset.subset("val")
    if not val.items:
        keep = {i: hashed_split(str(i.path)) for i in train.items}
        val = replace(train, items=tuple(i for i in train.items if keep[i] == "val"))
        train = replace(train, items=tuple(i for i in train.items if keep[i] != "val"))
    if not train.items or not val.items:
        raise DatasetError("the dataset needs training and validation records")
    arrays = []
    for stage, part in (("train", train), ("val", val)):
        observer.on_data(stage, len(part))
        arrays.append(part.materialize(RECIPE, observer.on_data_step))
    return arrays[0], arrays[1]


def single_lead(x: np.ndarray) -> np.ndarray:
    """Windows as a lead-II recording gives them: every other lead zero."""
    out = np.zeros_like(x)
    out[:, SINGLE_LEAD] = x[:, SINGLE_LEAD]
    return out


def fit(
    train: SignalArrays,
    val: SignalArrays,
    labels: list[str],
    config: EcgTrainConfig,
    observer: Observer,
) -> tuple[EcgRNN, list[EpochStats], int]:
    """Train a fresh network; the best epoch's weights, the history and that epoch."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = EcgRNN(len(STANDARD_LEADS), len(labels))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss()
    history: list[EpochStats] = []
    best: tuple[float, float] | None = None
    best_state, best_epoch = copy.deepcopy(model.state_dict()), 0
    batches = (len(train) + config.batch_size - 1) // config.batch_size
    for epoch in range(1, config.epochs + 1):
        observer.on_epoch_start(epoch, batches)
        model.train()
        order = rng.permutation(len(train))
        total_loss, correct, started = 0.0, 0, time.perf_counter()
        for start in range(0, len(train), config.batch_size):
            index = np.sort(order[start : start + config.batch_size])
            x = train.x[index].copy()
            dropped = rng.random(len(index)) < config.lead_dropout
            x[dropped] = single_lead(x[dropped])
            y = torch.from_numpy(train.y[index])
            optimizer.zero_grad(set_to_none=True)
            logits = model(torch.from_numpy(x))
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(index)
            correct += int(((logits > 0).float() == y).all(dim=1).sum())
            observer.on_batch(loss.item())
        seconds = time.perf_counter() - started
        val_logits = predict(model, val.x)["logit"]
        val_loss = float(loss_fn(torch.from_numpy(val_logits), torch.from_numpy(val.y)))
        metrics = multilabel_metrics(val.y, expit(val_logits), labels, [THRESHOLD] * len(labels))
        stats = EpochStats(
            epoch=epoch,
            train_loss=total_loss / len(train),
            train_accuracy=correct / len(train),
            val_loss=val_loss,
            val={k: v for k, v in metrics.items() if k != "per_class"},
            seconds=seconds,
            images_per_second=len(train) / seconds,
        )
        history.append(stats)
        observer.on_epoch(stats)
        score = (float(metrics["auc"] or 0.0), -val_loss)  # type: ignore[arg-type]
        if best is None or score > best:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch
    model.load_state_dict(best_state)
    return model.eval(), history, best_epoch


@torch.no_grad()
def predict(model: EcgRNN, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every exported output of ``model`` on windows ``x``, from PyTorch."""
    head = EcgExportHead(model.eval())
    chunks = [head(torch.from_numpy(x[i : i + 256])) for i in range(0, len(x), 256)]
    return {name: torch.cat([c[k] for c in chunks]).numpy() for k, name in enumerate(OUTPUTS)}


def train_ecg(
    dataset: SignalDataset,
    repository: Path,
    name: str = "ecg-rnn",
    config: EcgTrainConfig = EcgTrainConfig(),
    observer: Observer | None = None,
) -> TrainResult:
    """Train on ``dataset`` and write the best network as a new version of ``name``."""
    observer = observer or Observer()
    labels = list(dataset.labels)
    started = time.perf_counter()
    train, val = load_splits(dataset, observer)
    model, history, best_epoch = fit(train, val, labels, config, observer)

    val_out = predict(model, val.x)
    calibrations = [
        fit_temperature(val_out["logit"][:, k], val.y[:, k]) for k in range(len(labels))
    ]
    temperatures = [c.temperature for c in calibrations]
    prob = expit(val_out["logit"] / np.asarray(temperatures))
    bands = {
        label: choose_band(prob[:, k], val.y[:, k], THRESHOLD).to_dict()
        for k, label in enumerate(labels)
    }
    both_train = np.concatenate([train.x, single_lead(train.x)])
    classes = np.unique(train.y, axis=0, return_inverse=True)[1].reshape(-1)
    guard = fit_guard(
        both_train,
        predict(model, both_train)["features"],
        np.concatenate([classes, classes]),
        np.concatenate([val_out["features"], predict(model, single_lead(val.x))["features"]]),
        bounds=SignalBounds.fit(both_train),
    )

    repo = ModelRepository(repository)
    version, folder = repo.new_version_dir(name)
    outputs = {k: [-1, len(labels)] if s[1] == 0 else s for k, s in OUTPUTS.items()}
    shape = (len(STANDARD_LEADS), RECIPE.length)
    delta = export_head(
        EcgExportHead(model), shape, folder / "model.onnx", INPUT_NAME, tuple(outputs)
    )
    torch.save(model.state_dict(), folder / "checkpoint.pt")
    synthetic = (dataset.root / "phantoms.json").is_file()
    manifest = Manifest(
        name=name,
        version=version,
        architecture=ARCHITECTURE,
        parameters=sum(p.numel() for p in model.parameters()),
        inputs=[TensorSpec(INPUT_NAME, "FP32", [-1, *shape])],
        outputs=[TensorSpec(k, "FP32", s) for k, s in outputs.items()],
        preprocessing=RECIPE.to_dict(),
        labels=labels,
        threshold=THRESHOLD,
        sha256=sha256_file(folder / "model.onnx"),
        intended_use=INTENDED_USE,
        clinical_use_warning=NOT_FOR_CLINICAL_USE if synthetic else UNVALIDATED_WARNING,
        training={
            "data": dataset.summary(),
            "synthetic_phantoms": synthetic,
            "windows": {"train": len(train), "val": len(val)},
            "config": asdict(config),
            "optimizer": "Adam",
            "loss": "binary cross-entropy per statement (multi-label)",
            "single_lead": "lead II alone is read with the other leads zero (trained with "
            f"lead dropout p={config.lead_dropout})",
            "best_epoch": best_epoch,
            "history": [asdict(h) for h in history],
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "export_max_abs_diff": delta,
        },
        metrics={"validation": history[best_epoch - 1].val},
        calibration={
            "method": "temperature per statement",
            "temperatures": temperatures,
            "per_class": {
                label: c.to_dict() for label, c in zip(labels, calibrations, strict=True)
            },
        },
        abstention={"bands": bands},
        ood=guard.to_dict(),
        modalities=["ECG"],
        modality=SIGNAL,
        task=MULTILABEL,
        measurements=MEASUREMENTS,
    )
    manifest.save(folder)
    repo.write_triton_config(manifest)
    return TrainResult(ModelRef(name, version, folder), history, best_epoch, delta)
