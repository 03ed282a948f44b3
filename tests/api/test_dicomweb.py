"""DICOMweb with the field's own client (dicomweb-client) against `dxserve serve` over HTTP:
STOW-RS a study (and what an echo model cannot read), QIDO-RS and WADO-RS its results as the
owner knows them, and nothing of it for another tenant."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from dxserve.phantoms.dicom import HEADER_ROWS, FakePatient, burn_in, us_dataset
from dxserve.phantoms.study import make_study

dicomweb_client = pytest.importorskip("dicomweb_client", reason="tests need the dev extra")


def echo_study(seed: int, instances: int) -> list[Dataset]:
    """``instances`` phantom echo cines of one fake patient's study (labels burned in)."""
    rng = np.random.default_rng(seed)
    patient = FakePatient.random(rng)
    study = []
    for index in range(instances):
        frames = burn_in(make_study(seed, index, size=128, frames=2).frames, patient)
        dataset = us_dataset(frames, patient, rng, image_top=HEADER_ROWS)
        if study:
            dataset.StudyInstanceUID = study[0].StudyInstanceUID
            dataset.SeriesInstanceUID = study[0].SeriesInstanceUID
            dataset.InstanceNumber = index + 1
        study.append(dataset)
    return study


def client(url: str, token: str) -> "dicomweb_client.DICOMwebClient":
    return dicomweb_client.DICOMwebClient(
        f"http://{url}/dicomweb", headers={"Authorization": f"Bearer {token}"}
    )


def other_tenant_key(data_dir: Path) -> str:
    """A clinician key of a second tenant, made with the operator's CLI."""
    env = {**os.environ, "DXSERVE_DATA_DIR": str(data_dir)}
    dxserve = [sys.executable, "-m", "dxserve"]
    subprocess.run([*dxserve, "tenants", "create", "b"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [*dxserve, "keys", "create", "--tenant", "b", "--role", "clinician"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip().splitlines()[-1]


def test_stow_qido_wado_round_trip(live_server: tuple[str, str], live_data_dir: Path) -> None:
    url, token = live_server
    web = client(url, token)
    study = echo_study(seed=21, instances=2)
    ecg = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm", download=False))
    answer = web.store_instances([*study, ecg])  # 202: stored some, failed one

    stored = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert stored == {d.SOPInstanceUID for d in study}
    assert all(
        item.RetrieveURL.endswith(study[0].StudyInstanceUID)
        for item in answer.ReferencedSOPSequence
    )
    (failed,) = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == ecg.SOPInstanceUID and failed.FailureReason == 0x0122

    uid = study[0].StudyInstanceUID
    (found,) = web.search_for_studies(search_filters={"StudyInstanceUID": uid})
    attributes = Dataset.from_json(found)
    assert attributes.PatientID == study[0].PatientID  # the owner's own identifiers
    assert attributes.PatientName == study[0].PatientName
    assert attributes.ModalitiesInStudy == ["OT", "SR"]
    assert attributes.NumberOfStudyRelatedInstances == 4  # an SR and a heatmap per instance
    assert uid in {Dataset.from_json(s).StudyInstanceUID for s in web.search_for_studies()}
    series = [Dataset.from_json(s) for s in web.search_for_series(uid)]
    assert sorted(s.Modality for s in series) == ["OT", "OT", "SR", "SR"]
    assert all("not for clinical use" in s.SeriesDescription for s in series)
    srs = web.search_for_instances(uid, search_filters={"Modality": "SR"})
    assert {Dataset.from_json(i).SOPClassUID for i in srs} == {Comprehensive3DSRStorage}

    objects = web.retrieve_study(uid)
    assert len(objects) == 4
    for obj in objects:
        assert obj.StudyInstanceUID == uid and obj.PatientID == study[0].PatientID
    reports = [hd.sr.Comprehensive3DSR.from_dataset(o) for o in objects if o.Modality == "SR"]
    referenced = {
        ref.ReferencedSOPInstanceUID
        for report in reports
        for series_item in report.CurrentRequestedProcedureEvidenceSequence[
            0
        ].ReferencedSeriesSequence
        for ref in series_item.ReferencedSOPSequence
    }
    assert referenced == {d.SOPInstanceUID for d in study}
    heatmaps = [o for o in objects if o.SOPClassUID == SecondaryCaptureImageStorage]
    assert len(heatmaps) == 2 and heatmaps[0].pixel_array.ndim == 3

    sr = Dataset.from_json(srs[0])
    one = web.retrieve_instance(uid, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert one.SOPInstanceUID == sr.SOPInstanceUID
    metadata = web.retrieve_instance_metadata(uid, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    assert Dataset.from_json(metadata).StudyInstanceUID == uid

    # Nothing at rest names the patient or the study as sent (the audit trail of these
    # requests included, committed within ~100 ms of each response).
    time.sleep(1.0)
    at_rest = b"".join(p.read_bytes() for p in live_data_dir.rglob("*") if p.is_file())
    for original in (uid, study[0].PatientID, str(study[0].PatientName), study[0].SOPInstanceUID):
        assert original.encode() not in at_rest, original

    # Another tenant finds none of it, and cannot fetch it by its UIDs.
    stranger = client(url, other_tenant_key(live_data_dir))
    assert stranger.search_for_studies() == []
    assert stranger.search_for_series(uid) == []
    with pytest.raises(requests.HTTPError) as refused:
        stranger.retrieve_study(uid)
    assert refused.value.response.status_code == 404


def test_stow_refusals(live_server: tuple[str, str]) -> None:
    url, token = live_server
    web = client(url, token)
    (instance,) = echo_study(seed=22, instances=1)
    with pytest.raises(requests.HTTPError) as wrong_study:  # every instance failed: 409
        web.store_instances([instance], study_instance_uid="1.2.3.4")
    assert wrong_study.value.response.status_code == 409
    failed = Dataset.from_json(wrong_study.value.response.json()).FailedSOPSequence[0]
    assert failed.FailureReason == 0xA900

    headers = {"Authorization": f"Bearer {token}"}
    stow = f"http://{url}/dicomweb/studies"
    out = io.BytesIO()
    instance.save_as(out, enforce_file_format=True)
    as_dicom = requests.post(
        stow,
        data=out.getvalue(),
        headers={**headers, "Content-Type": "application/dicom"},
        timeout=30,
    )
    assert as_dicom.status_code == 415
    assert as_dicom.headers["content-type"] == "application/problem+json"
    broken = requests.post(
        stow,
        data=b"no boundary here",
        headers={**headers, "Content-Type": 'multipart/related; type="application/dicom"'},
        timeout=30,
    )
    assert broken.status_code == 400
    not_dicom = requests.post(
        stow,
        data=b"--b\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b--\r\n",
        headers={
            **headers,
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
        },
        timeout=30,
    )
    assert not_dicom.status_code == 409
    failed = Dataset.from_json(not_dicom.json()).FailedSOPSequence[0]
    assert failed.FailureReason == 0xC000
    unacceptable = requests.get(
        f"{stow}/{instance.StudyInstanceUID}",
        headers={**headers, "Accept": "image/png"},
        timeout=30,
    )
    assert unacceptable.status_code == 406
