"""Fine-tune a model on a tenant's labelled data: a new version in the tenant's namespace, judged
against its base on the same held-out split.

The data is split by label (stratified): a held-out part neither model trains or calibrates on,
a validation part that picks the best epoch and fits the temperature, band and guard, the rest
to train on. Training starts from the base's weights with the base's architecture and recipe.
The first fine-tune of a base copies it into the namespace as version 1 with a ``production``
alias on it, so the tenant's traffic keeps the base until a promotion moves it.
"""

import datetime as dt
import shutil
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dxserve.core.calibration import expected_calibration_error
from dxserve.core.modality import IMAGE
from dxserve.core.results.card import COMPARISON
from dxserve.core.runtime.aliases import set_alias
from dxserve.core.runtime.manifest import sha256_file
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.datasets import Dataset
from dxserve.errors import DatasetError
from dxserve.models.echo_cnn import ARCHITECTURE
from dxserve.training.evaluate import Evaluation, evaluate
from dxserve.training.export import export_onnx
from dxserve.training.loop import Observer, TrainConfig, fit, fit_checks, head_outputs

HELD_OUT, VALIDATION = 0.2, 0.2
MIN_PER_LABEL = 10
HELD_OUT_SPLIT = "held_out"
CHECKPOINT = "checkpoint.pt"


def stratified(dataset: Dataset, seed: int) -> Dataset:
    """``dataset`` with every item's split chosen anew, per label: held-out, val, train."""
    rng = np.random.default_rng(seed)
    items = list(dataset.items)
    for label, name in enumerate(dataset.labels):
        members = [i for i, item in enumerate(items) if item.label == label]
        if len(members) < MIN_PER_LABEL:
            raise DatasetError(
                f"fine-tuning needs at least {MIN_PER_LABEL} examples of each label; "
                f"{name!r} has {len(members)}"
            )
        order = rng.permutation(members)
        held, val = round(len(order) * HELD_OUT), round(len(order) * VALIDATION)
        for rank, index in enumerate(order):
            split = HELD_OUT_SPLIT if rank < held else "val" if rank < held + val else "train"
            items[index] = replace(items[index], split=split)
    return replace(dataset, items=tuple(items))


def check_base(base: ModelRef, dataset: Dataset) -> None:
    manifest = base.manifest()
    if manifest.modality != IMAGE or manifest.architecture != ARCHITECTURE:
        raise DatasetError(f"{base} is not the seed CNN; only it is fine-tuned here")
    if not (base.path / CHECKPOINT).is_file():
        raise DatasetError(f"{base} has no {CHECKPOINT} (its training weights) to start from")
    if tuple(manifest.labels) != tuple(dataset.labels):
        raise DatasetError(
            f"the data's labels {list(dataset.labels)} are not {base}'s {manifest.labels}"
        )


def copy_base(base: ModelRef, namespace: ModelRepository, name: str) -> ModelRef:
    """The base as the next version of the tenant's ``name`` (the first gets ``production``),
    so a canary can split traffic between the base and its fine-tuned version."""
    version, folder = namespace.new_version_dir(name)
    for file in base.path.iterdir():
        if file.is_file():
            shutil.copy2(file, folder / file.name)
    manifest = base.manifest()
    owner = "platform" if base.owner is None else "tenant"
    copied = replace(
        manifest,
        name=name,
        version=version,
        training={**manifest.training, "copied_from": f"{owner} model {base}"},
    )
    copied.save(folder)
    if version == 1:  # the tenant's traffic stays on the base until a promotion
        set_alias(namespace.root / name, [version], "production", [str(version)], None)
    return ModelRef(name, version, folder, namespace.owner)


def fine_tune(
    base: ModelRef,
    dataset: Dataset,
    namespace: ModelRepository,
    name: str,
    config: TrainConfig,
    observer: Observer | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base`` on ``dataset`` into the next version of the tenant's ``name``; the
    new version, its base's version in the namespace and their held-out comparison."""
    started = time.perf_counter()
    observer = observer or Observer()
    check_base(base, dataset)
    split = stratified(dataset, config.seed)
    manifest = base.manifest()
    recipe = manifest.image_recipe
    arrays = []
    for part in ("train", "val"):
        subset = split.subset(part)
        observer.on_data(part, len(subset))
        arrays.append(subset.materialize(recipe, 1, observer.on_data_step))
    train_arrays, val_arrays = arrays
    initial = torch.load(base.path / CHECKPOINT, weights_only=True)
    model, history, best_epoch = fit(train_arrays, val_arrays, recipe, config, observer, initial)
    checks = fit_checks(
        train_arrays,
        val_arrays,
        head_outputs(model, train_arrays, recipe),
        head_outputs(model, val_arrays, recipe),
        manifest.threshold,
    )
    in_place = (base.owner, base.name) == (namespace.owner, name)
    base_ref = base if in_place else copy_base(base, namespace, name)
    version, folder = namespace.new_version_dir(name)
    try:
        delta = export_onnx(model, folder / manifest.model_file)
        torch.save(model.state_dict(), folder / CHECKPOINT)
        tuned = replace(
            manifest,
            name=name,
            version=version,
            sha256=sha256_file(folder / manifest.model_file),
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            metrics={"validation": history[best_epoch - 1].val},
            evaluations={},
            training={
                "fine_tuned_from": str(base) + (" (platform)" if base.owner is None else ""),
                "data": split.summary(),
                "images": {"train": len(train_arrays), "val": len(val_arrays)},
                "config": asdict(config),
                "best_epoch": best_epoch,
                "history": [asdict(h) for h in history],
                "export_max_abs_diff": delta,
                "base_training": manifest.training.get("data"),
                # Weights that started on dxserve's phantoms stay "not for clinical use".
                "synthetic_phantoms": bool(manifest.training.get("synthetic_phantoms")),
            },
            **checks,
        )
        tuned.save(folder)
        new_ref = ModelRef(name, version, folder, namespace.owner)
        comparison = compare(
            evaluate(base_ref, split, HELD_OUT_SPLIT), evaluate(new_ref, split, HELD_OUT_SPLIT)
        )
        comparison["base"]["version"] = base_ref.version
        tuned.evaluations[COMPARISON] = comparison
        tuned.training["seconds"] = round(time.perf_counter() - started, 1)
        tuned.save(folder)
        namespace.write_triton_config(tuned)
        return {"model": name, "version": version, "base": str(base), "comparison": comparison}
    except BaseException:  # a half-written version (cancelled, failed) is not left behind
        shutil.rmtree(folder, ignore_errors=True)
        raise


def compare(base: Evaluation, new: Evaluation, replicates: int = 1000) -> dict[str, Any]:
    """Both versions on the same held-out files: AUC and ECE of each with 95 % bootstrap
    intervals, and the interval of the AUC difference over the same resampled files."""
    y = base.y.astype(int)
    rng = np.random.default_rng(0)
    deltas, base_aucs, new_aucs = [], [], []
    for _ in range(replicates):
        sample = rng.integers(0, len(y), len(y))
        if len(set(y[sample])) < 2:
            continue
        a, b = (
            roc_auc_score(y[sample], base.prob[sample]),
            roc_auc_score(y[sample], new.prob[sample]),
        )
        base_aucs.append(a)
        new_aucs.append(b)
        deltas.append(b - a)

    def interval(values: list[float]) -> list[float]:
        return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]

    def side(e: Evaluation, aucs: list[float]) -> dict[str, Any]:
        return {
            "model": f"{e.model}:{e.version}",
            "auc": round(float(e.metrics.auc or 0.0), 4),
            "auc_95": interval(aucs),
            "ece": round(expected_calibration_error(e.prob, e.y), 4),
            "accuracy": round(e.metrics.accuracy, 4),
            "sensitivity": round(float(e.metrics.sensitivity or 0.0), 4),
            "specificity": round(float(e.metrics.specificity or 0.0), 4),
        }

    return {
        "held_out": {"files": base.files, "positives": int(y.sum())},
        "base": side(base, base_aucs),
        "new": side(new, new_aucs),
        "auc_delta_95": interval(deltas),
    }
