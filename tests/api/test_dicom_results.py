"""…/sr.dcm (TID 1500 Comprehensive 3D SR) and …/heatmap.dcm (Secondary Capture), re-read with
highdicom and pydicom, for a PNG input and for a real multi-frame ultrasound DICOM."""

import io
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.sr.codedict import codes
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from dxserve.phantoms.dicom import FakePatient, us_dataset
from dxserve.services import part10
from tests.api.conftest import auth
from tests.api.test_v1 import png, post_png


def fetch(client: TestClient, token: str, url: str) -> pydicom.Dataset:
    response = client.get(url, headers=auth(token))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    return pydicom.dcmread(io.BytesIO(response.content))


def texts(dataset: pydicom.Dataset, meaning: str) -> set[str]:
    """The values of every TEXT content item named ``meaning``, anywhere in the SR tree."""
    found = set()
    for item in dataset.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "TEXT" and name == meaning:
            found.add(str(item.TextValue))
        found |= texts(item, meaning)
    return found


def coded(dataset: pydicom.Dataset, meaning: str) -> set[str]:
    """The values of every CODE content item named ``meaning``."""
    found = set()
    for item in dataset.get("ContentSequence", []):
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        if item.ValueType == "CODE" and name == meaning:
            found.add(str(item.ConceptCodeSequence[0].CodeMeaning))
        found |= coded(item, meaning)
    return found


def check_report(
    sr_dataset: pydicom.Dataset, made: dict
) -> hd.sr.MeasurementsAndQualitativeEvaluations:  # type: ignore[type-arg]
    sr = hd.sr.Comprehensive3DSR.from_dataset(sr_dataset)
    assert sr.SOPClassUID != ComprehensiveSRStorage  # the 3D variant
    assert sr.VerificationFlag == "UNVERIFIED" and sr.CompletionFlag == "COMPLETE"
    assert "not for clinical use" in sr.SeriesDescription
    (group,) = sr.content.get_image_measurement_groups()
    (probability,) = group.get_measurements(name=codes.DCM.Probability)
    assert probability.value == round(made["probability"], 6)
    assert probability.unit == codes.UCUM.NoUnits
    assert texts(sr_dataset, "Algorithm Name") == {"echo-cnn"}
    assert texts(sr_dataset, "Algorithm Version") == {"1"}
    assert group.finding_type == codes.SCT.HeartDisease
    expected = {"abnormal": "Present", "normal": "Absent"}.get(made["label"], "Indeterminate")
    assert coded(sr_dataset, "heart disease") == {expected}
    return group


def test_sr_and_heatmap_of_a_png(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    token = keys["clinician"]
    made = post_png(client, token, png(phantom_dir), "?explain=true").json()
    sr = fetch(client, token, f"/v1/diagnoses/{made['id']}/sr.dcm")
    group = check_report(sr, made)
    (source,) = group.source_images
    heatmap = fetch(client, token, f"/v1/diagnoses/{made['id']}/heatmap.dcm")
    assert heatmap.SOPClassUID == SecondaryCaptureImageStorage
    assert heatmap.StudyInstanceUID == sr.StudyInstanceUID
    assert heatmap.pixel_array.ndim == 3 and heatmap.pixel_array.shape[-1] == 3
    assert source.referenced_sop_class_uid == SecondaryCaptureImageStorage  # the PNG, wrapped
    again = fetch(client, token, f"/v1/diagnoses/{made['id']}/sr.dcm")
    assert again.SOPInstanceUID == sr.SOPInstanceUID  # stable UIDs
    other = client.get(f"/v1/diagnoses/{made['id']}/sr.dcm", headers=auth(keys["other"]))
    assert other.status_code == 404
    plain = post_png(client, token, png(phantom_dir)).json()
    missing = client.get(f"/v1/diagnoses/{plain['id']}/heatmap.dcm", headers=auth(token))
    assert missing.status_code == 404


def test_sr_in_the_study_of_a_real_ultrasound(client: TestClient, keys: dict[str, str]) -> None:
    path = Path(str(get_testdata_file("examples_ybr_color.dcm", download=False)))
    original = pydicom.dcmread(path)
    token = keys["clinician"]
    response = client.post(
        "/v1/diagnoses?explain=true",
        content=path.read_bytes(),
        headers={**auth(token), "Content-Type": "application/dicom"},
    )
    made = response.json()
    assert response.status_code == 201, response.text
    if made["probability"] is None:  # refused as out of distribution: the SR says so
        sr = fetch(client, token, f"/v1/diagnoses/{made['id']}/sr.dcm")
        report = hd.sr.Comprehensive3DSR.from_dataset(sr)
        (group,) = report.content.get_image_measurement_groups()
        assert group.get_measurements(name=codes.DCM.Probability) == []
        assert coded(sr, "heart disease") == {"Indeterminate"}
    else:
        sr = fetch(client, token, f"/v1/diagnoses/{made['id']}/sr.dcm")
        group = check_report(sr, made)
    assert sr.StudyInstanceUID == original.StudyInstanceUID
    assert sr.PatientID == original.PatientID  # the owner's own study
    (source,) = (
        hd.sr.Comprehensive3DSR.from_dataset(sr)
        .content.get_image_measurement_groups()[0]
        .source_images
    )
    assert source.referenced_sop_instance_uid == original.SOPInstanceUID
    assert source.referenced_frame_numbers == [f["index"] + 1 for f in made["frames"]]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == original.StudyInstanceUID
    assert made["explanation"] is None  # refused: no map to show


def test_heatmap_in_the_study_of_a_dicom_image(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    """A phantom (one the small test model accepts: no text burned in) as an ultrasound DICOM
    of an invented patient."""
    frame = np.asarray(Image.open(io.BytesIO(png(phantom_dir))).convert("L"))
    rng = np.random.default_rng(4)
    original = us_dataset(frame[None], FakePatient.random(rng), rng)
    token = keys["clinician"]
    response = client.post(
        "/v1/diagnoses?explain=true",
        content=part10(original),
        headers={**auth(token), "Content-Type": "application/dicom"},
    )
    made = response.json()
    assert made["assessed"], made["out_of_distribution"]
    sr = fetch(client, token, f"/v1/diagnoses/{made['id']}/sr.dcm")
    check_report(sr, made)
    heatmap = fetch(client, token, f"/v1/diagnoses/{made['id']}/heatmap.dcm")
    assert heatmap.StudyInstanceUID == sr.StudyInstanceUID == original.StudyInstanceUID
    assert heatmap.PatientName == original.PatientName and heatmap.PatientID == original.PatientID
    assert heatmap.SeriesInstanceUID != sr.SeriesInstanceUID != original.SeriesInstanceUID
