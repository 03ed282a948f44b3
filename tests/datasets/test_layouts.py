"""Every layout a user can bring: class folders, CSV manifests, DICOM, EchoNet-Dynamic."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dxserve.core.preprocess import get_recipe
from dxserve.datasets import open_dataset
from dxserve.errors import DatasetError
from dxserve.phantoms.generate import generate

RECIPE = get_recipe("rgb-128")


def test_phantom_manifest(phantom_dir: Path) -> None:
    dataset = open_dataset(phantom_dir)
    assert dataset.layout == "csv" and len(dataset) == 64
    assert dataset.labels == ("normal", "abnormal")
    assert set(dataset.splits) == {"train", "val", "test"}
    test = dataset.subset("test")
    arrays = test.materialize(RECIPE)
    assert arrays.x.shape == (len(test), 3, 128, 128) and arrays.x.dtype == np.uint8
    assert list(arrays.y) == [i.label for i in test.items]
    summary = dataset.summary()
    assert summary["files"] == 64 and set(summary["findings"]) >= {"effusion", "normal"}


def test_class_folders_with_png_jpeg_and_dicom(tmp_path: Path, phantom_dir: Path) -> None:
    generate(tmp_path / "dcm", n=4, seed=2, size=96, fmt="dicom", frames=3, workers=1)
    for label in ("healthy", "disease"):
        (tmp_path / "data" / label).mkdir(parents=True)
    rgb = np.full((40, 50, 3), 120, dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "data" / "healthy" / "a.jpg")
    Image.fromarray(rgb).save(tmp_path / "data" / "healthy" / "b.png")
    for i, dcm in enumerate(sorted((tmp_path / "dcm").rglob("*.dcm"))):
        shutil.copy(dcm, tmp_path / "data" / "disease" / f"{i}.dcm")
    dataset = open_dataset(tmp_path / "data")
    assert dataset.layout == "class-folders"
    assert dataset.labels == ("healthy", "disease")
    assert sorted(i.label for i in dataset.items) == [0, 0, 1, 1, 1, 1]
    assert set(dataset.splits) <= {"train", "val"}
    one = dataset.materialize(RECIPE, frames=1)
    every = dataset.materialize(RECIPE, frames=None)
    assert len(one) == 6 and len(every) == 2 + 4 * 3
    assert list(np.bincount(every.item)) == [1, 1, 3, 3, 3, 3]


def test_csv_with_numeric_labels_and_no_split(tmp_path: Path) -> None:
    for i in range(6):
        Image.fromarray(np.full((20, 20), i * 30, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    with (tmp_path / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([f"{i}.png", i % 2] for i in range(6))
    dataset = open_dataset(tmp_path / "labels.csv")
    assert dataset.labels == ("0", "1")
    assert [i.label for i in dataset.items] == [0, 1, 0, 1, 0, 1]
    assert set(dataset.splits) <= {"train", "val"}


def write_echonet(root: Path) -> None:
    """A tiny dataset in EchoNet-Dynamic's exact layout: FileList.csv + Videos/*.avi (112×112)."""
    cv2 = pytest.importorskip("cv2")
    (root / "Videos").mkdir(parents=True)
    rows = [
        ("0X1A2B", 62.1, "TRAIN"),
        ("0X3C4D", 35.4, "TRAIN"),
        ("0X5E6F", 55.0, "VAL"),
        ("0X7A8B", 41.2, "TEST"),
    ]
    with (root / "FileList.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "FileName",
                "EF",
                "ESV",
                "EDV",
                "FrameHeight",
                "FrameWidth",
                "FPS",
                "NumberOfFrames",
                "Split",
            ]
        )
        for name, ef, split in rows:
            writer.writerow([name, ef, 40.0, 100.0, 112, 112, 50, 10, split])
            video = cv2.VideoWriter(
                str(root / "Videos" / f"{name}.avi"),
                cv2.VideoWriter_fourcc(*"MJPG"),
                50,
                (112, 112),
            )
            for k in range(10):
                frame = np.full((112, 112, 3), 20 * k, dtype=np.uint8)
                frame[40:70, 40:70] = 200
                video.write(frame)
            video.release()


def test_echonet_dynamic_layout(tmp_path: Path) -> None:
    write_echonet(tmp_path)
    dataset = open_dataset(tmp_path)
    assert dataset.layout == "echonet-dynamic"
    assert [i.label for i in dataset.items] == [0, 1, 0, 1]  # EF < 50 % is abnormal
    assert [i.split for i in dataset.items] == ["train", "train", "val", "test"]
    arrays = dataset.subset("train").materialize(RECIPE, frames=4)
    assert arrays.x.shape == (8, 3, 128, 128)
    # Evenly spaced frames 0, 3, 6, 9 of a video whose brightness rises frame by frame.
    corner = arrays.x[:4, 0, 5, 5].astype(int)
    assert list(np.diff(corner) > 30) == [True, True, True]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"a": 1, "b": 1}, "negative class"),
        ({"normal": 1}, "exactly two labels"),
        ({"normal": 1, "x": 1, "y": 1}, "exactly two labels"),
    ],
)
def test_unusable_class_folders(tmp_path: Path, layout: dict[str, int], message: str) -> None:
    for label, count in layout.items():
        (tmp_path / label).mkdir()
        for i in range(count):
            Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path)


def test_csv_naming_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("path,label\nnot-there.png,normal\nx.png,abnormal\n")
    with pytest.raises(DatasetError, match="missing file"):
        open_dataset(tmp_path)


def test_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
