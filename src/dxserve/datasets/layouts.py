"""The on-disk layouts a dataset can come in, and :func:`open_dataset` that recognises them."""

import csv
import zlib
from pathlib import Path

from dxserve.datasets.base import VIDEO_SUFFIXES, Dataset, Item
from dxserve.errors import DatasetError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
NEGATIVE_NAMES = ("normal", "negative", "healthy", "0", "no", "false")
VALIDATION_SHARE = 0.15
ECHONET_EF_THRESHOLD = 50.0


def open_dataset(path: Path) -> Dataset:
    """Open a dataset, recognising its layout.

    - a CSV file, or a folder with ``manifest.csv`` (columns ``path``, ``label`` and optionally
      ``split``, ``finding``, ``mask``; paths relative to the CSV);
    - the EchoNet-Dynamic layout: ``FileList.csv`` and ``Videos/*.avi`` (abnormal when EF < 50 %);
    - class folders: ``path/<label>/*.png|jpg|dcm`` with exactly two labels, one of them
      named normal/negative/healthy/0.
    """
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return from_csv(path)
    if not path.is_dir():
        raise DatasetError(f"dataset path does not exist: {path}")
    if (path / "manifest.csv").is_file():
        return from_csv(path / "manifest.csv")
    if (path / "FileList.csv").is_file() and (path / "Videos").is_dir():
        return from_echonet(path)
    return from_class_folders(path)


def binary_labels(names: set[str]) -> tuple[str, str]:
    """Order two label names as (negative, positive)."""
    if len(names) != 2:
        raise DatasetError(f"expected exactly two labels, found {sorted(names) or 'none'}")
    negatives = [n for n in names if n.lower() in NEGATIVE_NAMES]
    if len(negatives) != 1:
        raise DatasetError(
            f"cannot tell the negative class among {sorted(names)}: name it one of {NEGATIVE_NAMES}"
        )
    (positive,) = names - set(negatives)
    return negatives[0], positive


def hashed_split(key: str) -> str:
    """A stable train/val split for datasets that do not define one."""
    return "val" if zlib.crc32(key.encode()) % 1000 < VALIDATION_SHARE * 1000 else "train"


def from_class_folders(root: Path) -> Dataset:
    folders = {
        d.name: d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")
    }
    files = {
        name: sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        for name, d in folders.items()
    }
    labels = binary_labels({name for name, found in files.items() if found})
    items = tuple(
        Item(f, labels.index(name), hashed_split(str(f.relative_to(root))))
        for name in labels
        for f in files[name]
    )
    return Dataset(root, "class-folders", items, labels).require("labelled images")


def from_csv(manifest: Path) -> Dataset:
    root = manifest.parent
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"{manifest.name} needs at least the columns 'path' and 'label'")
    labels = binary_labels({r["label"] for r in rows})
    items = []
    for row in rows:
        file = root / row["path"]
        if not file.is_file():
            raise DatasetError(f"{manifest.name} lists a missing file: {row['path']}")
        mask = root / row["mask"] if row.get("mask") else None
        split = (row.get("split") or "").strip().lower() or hashed_split(row["path"])
        items.append(Item(file, labels.index(row["label"]), split, row.get("finding", ""), mask))
    return Dataset(root, "csv", tuple(items), labels).require("labelled files")


def from_echonet(root: Path) -> Dataset:
    with (root / "FileList.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"FileName", "EF", "Split"} <= set(rows[0]):
        raise DatasetError("FileList.csv needs the columns FileName, EF and Split")
    items = []
    for row in rows:
        name = row["FileName"]
        if Path(name).suffix.lower() not in VIDEO_SUFFIXES:
            name += ".avi"
        video = root / "Videos" / name
        if not video.is_file():
            continue  # EchoNet's FileList names a few videos that were never released
        ef = float(row["EF"])
        label = int(ef < ECHONET_EF_THRESHOLD)
        finding = "reduced_ef" if label else ""
        items.append(Item(video, label, row["Split"].strip().lower(), finding))
    return Dataset(root, "echonet-dynamic", tuple(items), ("normal_ef", "reduced_ef")).require(
        "videos listed in FileList.csv"
    )
