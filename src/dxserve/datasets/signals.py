"""Labelled signal datasets (ECGs) for training and evaluation.

A CSV manifest (``manifest.csv``, as ``dxserve phantoms ecg`` writes it) with columns
``path,label[,split][,truth]``: ``label`` lists the record's statements separated by ``;`` (a
multi-label record), ``truth`` optionally points at a JSON file of exact intervals. Records are
read by the serving decoders — DICOM waveform, WFDB (``.hea``), CSV, JSON — or from NumPy
``.npz`` files (``signal`` samples × leads, ``rate``, ``leads``, ``units``), and prepared with
the model's signal recipe, so training sees what serving will see. Without a ``split`` column,
15 % of records go to validation by a stable hash of their path.
"""

import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dxserve.core.intake.decode import read_dicom
from dxserve.core.intake.signal import Signal
from dxserve.core.intake.signal_table import decode_csv, decode_json
from dxserve.core.intake.waveform import decode_waveform
from dxserve.core.intake.wfdb_record import decode_wfdb
from dxserve.core.preprocess import SignalRecipe
from dxserve.datasets.layouts import hashed_split
from dxserve.errors import DatasetError, InvalidInput

SEPARATOR = ";"


def read_signal(path: Path) -> Signal:
    """The signal in the file at ``path`` (by its suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            units = str(data["units"]) if "units" in data else "mV"
            return Signal.of(data["signal"], float(data["rate"]), list(data["leads"]), units)
    if suffix == ".hea":
        files = {p.name: p.read_bytes() for p in path.parent.glob(f"{path.stem}.*")}
        return decode_wfdb(files)
    data = path.read_bytes()
    if suffix == ".csv":
        return decode_csv(data)
    if suffix == ".json":
        return decode_json(data)
    dataset = read_dicom(data)
    if dataset is None:
        raise DatasetError(f"{path.name} is not a signal file dxserve reads")
    return decode_waveform(dataset)


@dataclass(frozen=True)
class SignalItem:
    path: Path
    labels: tuple[str, ...]
    split: str
    truth: Path | None = None

    def intervals(self) -> dict[str, Any] | None:
        """The exact intervals of a phantom (None without a truth file)."""
        if self.truth is None:
            return None
        return dict(json.loads(self.truth.read_text())["intervals"])


@dataclass(frozen=True)
class SignalArrays:
    """Windows ``x`` (N, leads, samples), multi-hot labels ``y`` (N, K), ``item`` of each."""

    x: np.ndarray
    y: np.ndarray
    item: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class SignalDataset:
    root: Path
    items: tuple[SignalItem, ...]
    labels: tuple[str, ...]
    layout: str = "csv-signals"

    def __len__(self) -> int:
        return len(self.items)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({i.split for i in self.items}))

    def subset(self, *splits: str) -> "SignalDataset":
        if "all" in splits:
            return self
        return replace(self, items=tuple(i for i in self.items if i.split in splits))

    def targets(self) -> np.ndarray:
        """Multi-hot labels ``(items, K)``."""
        y = np.zeros((len(self.items), len(self.labels)), dtype=np.float32)
        for row, item in enumerate(self.items):
            for label in item.labels:
                y[row, self.labels.index(label)] = 1
        return y

    def materialize(
        self, recipe: SignalRecipe, on_progress: Callable[[int], None] | None = None
    ) -> SignalArrays:
        """Every record through the recipe: all its windows, each with the record's labels."""
        xs, owners = [], []
        targets = self.targets()
        for index, item in enumerate(self.items):
            try:
                windows = recipe.apply(read_signal(item.path))
            except InvalidInput as exc:
                raise DatasetError(f"{item.path.name}: {exc.detail}") from None
            xs.append(windows)
            owners.append(np.full(len(windows), index, dtype=np.int64))
            if on_progress:
                on_progress(1)
        owner = np.concatenate(owners)
        return SignalArrays(np.concatenate(xs), targets[owner], owner)

    def summary(self) -> dict[str, object]:
        """Counts per split and statement: what a model card reports about its data."""
        counts: Counter[tuple[str, str]] = Counter(
            (i.split, label) for i in self.items for label in i.labels
        )
        return {
            "root": str(self.root),
            "layout": self.layout,
            "files": len(self.items),
            "labels": list(self.labels),
            "per_split": {
                split: {
                    "records": sum(1 for i in self.items if i.split == split),
                    **{label: counts[(split, label)] for label in self.labels},
                }
                for split in self.splits
            },
        }


def open_signal_dataset(root: Path) -> SignalDataset:
    """The dataset described by ``root/manifest.csv`` (or the CSV file ``root``)."""
    root = Path(root)
    manifest = root if root.suffix.lower() == ".csv" else root / "manifest.csv"
    if not manifest.is_file():
        raise DatasetError(f"no manifest.csv in {root}")
    base = manifest.parent
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"{manifest.name} needs columns path and label")
    items = tuple(
        SignalItem(
            base / row["path"],
            tuple(label for label in row["label"].split(SEPARATOR) if label),
            row.get("split") or hashed_split(row["path"]),
            base / row["truth"] if row.get("truth") else None,
        )
        for row in rows
    )
    described = base / "phantoms.json"
    known = json.loads(described.read_text()).get("labels") if described.is_file() else None
    labels = tuple(known or sorted({label for item in items for label in item.labels}))
    return SignalDataset(base, items, labels)
