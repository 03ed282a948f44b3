"""Labelled datasets as zip archives: read one a tenant uploads (safely), write the canonical
form dxserve keeps (``manifest.csv`` with path, label, split, finding, and ``files/NNNNNN.ext``:
no name of the uploader's files, which can carry a patient's, survives)."""

import csv
import io
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from dxserve.datasets.base import VIDEO_SUFFIXES, Dataset
from dxserve.datasets.layouts import open_dataset
from dxserve.errors import DatasetError

MAX_MEMBERS = 20_000
EXPANSION_LIMIT = 4  # a member may expand to this times the archive's size, in all


def extract(data: bytes, out: Path) -> Dataset:
    """Unpack a zip ``data`` into ``out`` and open the dataset in it (at its root, or in its
    single top folder). :class:`DatasetError` for what is not a safe zip of a known layout."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("the dataset is not a zip archive") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_MEMBERS:
            raise DatasetError(f"the archive has {len(members)} files, over {MAX_MEMBERS}")
        expanded = sum(m.file_size for m in members)
        if expanded > EXPANSION_LIMIT * max(len(data), 1 << 20):
            raise DatasetError("the archive expands to far more than its size (a zip bomb?)")
        for member in members:
            name = PurePosixPath(member.filename)
            if name.is_absolute() or ".." in name.parts or "\\" in member.filename:
                raise DatasetError(f"the archive names a path outside itself: {member.filename!r}")
            target = out.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source:
                target.write_bytes(source.read())
    entries = [p for p in out.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    root = entries[0] if len(entries) == 1 and entries[0].is_dir() else out
    dataset = open_dataset(root)
    if any(item.path.suffix.lower() in VIDEO_SUFFIXES for item in dataset.items):
        raise DatasetError("upload images or DICOM objects; videos are not taken here")
    return dataset


def package(dataset: Dataset, clean: Callable[[Path], tuple[bytes, str]]) -> bytes:
    """The dataset as dxserve keeps it: each file through ``clean`` (its bytes de-identified,
    and the suffix to keep them under), renamed by its index; a new ``manifest.csv``."""
    out = io.BytesIO()
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, item in enumerate(dataset.items):
            data, suffix = clean(item.path)
            path = f"files/{index:06d}{suffix}"
            archive.writestr(path, data)
            label = dataset.labels[item.label]
            rows.append(
                {"path": path, "label": label, "split": item.split, "finding": item.finding}
            )
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["path", "label", "split", "finding"])
        writer.writeheader()
        writer.writerows(rows)
        archive.writestr("manifest.csv", table.getvalue())
    return out.getvalue()
