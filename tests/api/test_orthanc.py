"""A real PACS: Orthanc (with its DICOMweb plugin) on loopback holds a study; Orthanc pushes it
to dxserve over STOW-RS (its own DICOMweb client, configured with a dxserve key); dxserve
diagnoses it and `dxserve dicomweb push` sends the SR and heatmap back to Orthanc, where they
are read back, in the patient's own study."""

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SecondaryCaptureImageStorage

from tests.api.test_dicomweb import client, echo_study
from tests.processes import free_port

pytestmark = pytest.mark.pacs

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, live_server: tuple[str, str]
) -> Iterator[str]:
    """Orthanc on a free loopback port, knowing dxserve as DICOMweb server "dxserve"."""
    if ORTHANC is None or not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc and its DICOMweb plugin are not installed: apt-get install orthanc "
                    "orthanc-dicomweb (.ci/run does)")  # fmt: skip
    url, token = live_server
    root = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {
        "Name": "dxserve-test",
        "StorageDirectory": str(root / "db"),
        "IndexDirectory": str(root / "db"),
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # loopback clients only
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {
                "dxserve": {
                    "Url": f"http://{url}/dicomweb/",
                    "HttpHeaders": {"Authorization": f"Bearer {token}"},
                }
            },
        },
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "orthanc.log").open("w")
    process = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/system", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not start:\n{(root / 'orthanc.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_a_study_from_orthanc_comes_back_with_its_results(
    orthanc: str, live_server: tuple[str, str], live_data_dir: Path, trained_repo: Path
) -> None:
    url, token = live_server
    pacs = DICOMwebClient(f"{orthanc}/dicom-web")
    study = echo_study(seed=31, instances=2)
    uid = study[0].StudyInstanceUID
    pacs.store_instances(study)

    # Orthanc pushes the study to dxserve with its own DICOMweb client.
    (found,) = requests.post(f"{orthanc}/tools/lookup", data=uid, timeout=10).json()
    pushed = requests.post(
        f"{orthanc}/dicom-web/servers/dxserve/stow", json={"Resources": [found["ID"]]}, timeout=120
    )
    assert pushed.ok, pushed.text
    (ours,) = client(url, token).search_for_studies(search_filters={"StudyInstanceUID": uid})
    assert Dataset.from_json(ours).NumberOfStudyRelatedInstances == 4

    # dxserve sends the results back into the patient's study in Orthanc.
    env = {
        **os.environ,
        "DXSERVE_DATA_DIR": str(live_data_dir),
        "DXSERVE_MODEL_REPOSITORY": str(trained_repo),
    }
    sent = subprocess.run(
        [sys.executable, "-m", "dxserve", "dicomweb", "push", uid, "--tenant", "default",
         "--to", f"{orthanc}/dicom-web"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert "sent 4 of 4" in sent.stderr

    # Orthanc now holds the two cines, two SRs and two heatmaps of the patient's study.
    series = [Dataset.from_json(s) for s in pacs.search_for_series(uid)]
    assert sorted(s.Modality for s in series) == ["OT", "OT", "SR", "SR", "US"]
    objects = pacs.retrieve_study(uid)
    assert {o.PatientID for o in objects} == {study[0].PatientID}
    reports = [hd.sr.Comprehensive3DSR.from_dataset(o) for o in objects if o.Modality == "SR"]
    referenced = set()
    for report in reports:
        (group,) = report.content.get_image_measurement_groups()
        (probability,) = group.get_measurements(name=codes.DCM.Probability)
        assert 0.0 <= probability.value <= 1.0
        evidence = report.CurrentRequestedProcedureEvidenceSequence[0]
        referenced |= {
            r.ReferencedSOPInstanceUID
            for s in evidence.ReferencedSeriesSequence
            for r in s.ReferencedSOPSequence
        }
        assert "not for clinical use" in report.SeriesDescription
    assert referenced == {d.SOPInstanceUID for d in study}
    heatmaps = [o for o in objects if o.SOPClassUID == SecondaryCaptureImageStorage]
    assert len(heatmaps) == 2 and all(h.pixel_array.shape[-1] == 3 for h in heatmaps)
