"""Writing phantom datasets: layout, manifest, determinism across workers, DICOM output."""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dxserve.core.intake.decode import decode_path
from dxserve.phantoms.dicom import HEADER_ROWS
from dxserve.phantoms.generate import generate


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in [*sorted(folder.rglob("*.png")), folder / "manifest.csv"]:
        h.update(path.relative_to(folder).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_and_manifest(phantom_dir: Path) -> None:
    rows = list(csv.DictReader((phantom_dir / "manifest.csv").read_text().splitlines()))
    assert len(rows) == 64
    assert set(rows[0]) == {"path", "label", "finding", "split", "mask"}
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for row in rows:
        image = np.asarray(Image.open(phantom_dir / row["path"]))
        mask = np.asarray(Image.open(phantom_dir / row["mask"]))
        assert image.shape == mask.shape == (128, 128)
        assert row["path"].startswith(row["label"] + "/")
        assert (row["finding"] == "normal") == (row["label"] == "normal") == (mask.max() == 0)
    assert (phantom_dir / "phantoms.json").is_file()


def test_output_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    generate(tmp_path / "one", n=40, seed=3, size=96, workers=1)
    generate(tmp_path / "two", n=40, seed=3, size=96, workers=2)
    assert digest(tmp_path / "one") == digest(tmp_path / "two")


def test_dicom_cine_of_a_fake_patient(tmp_path: Path) -> None:
    generate(tmp_path, n=2, seed=5, size=128, fmt="dicom", frames=5, workers=1)
    path = next((tmp_path / "abnormal").glob("*.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"  # US Multi-frame Image Storage
    assert ds.Modality == "US" and int(ds.NumberOfFrames) == 5
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "AccessionNumber",
        "InstitutionName",
        "ReferringPhysicianName",
        "StudyInstanceUID",
    ):
        assert str(ds.data_element(keyword).value)
    assert ds.BurnedInAnnotation == "YES"
    # The name is burned into a label band above the imaging region, as scanners do …
    region = ds.SequenceOfUltrasoundRegions[0]
    assert (region.RegionLocationMinY0, region.RegionLocationMaxY1) == (HEADER_ROWS, ds.Rows - 1)
    assert ds.pixel_array[0, :HEADER_ROWS].max() > 200
    # … which decoding crops away: the model sees the 128 × 128 frames it would as PNG.
    frames = decode_path(path)
    assert frames.shape == (5, 128, 128, 3)
    np.testing.assert_array_equal(frames[..., 0], ds.pixel_array[:, HEADER_ROWS:])


def test_cine_needs_dicom(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dicom"):
        generate(tmp_path, n=2, seed=1, frames=3)
