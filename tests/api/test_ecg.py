"""The ECG path end to end through the real app, on SQLite and on PostgreSQL: pydicom's real
12-lead ECG and phantoms in every format a user sends, the default model chosen by the input's
modality, intervals, FHIR, the ECG picture, STOW-RS, and clear refusals."""

import contextlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from pydicom.data import get_testdata_file

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.phantoms.ecg.generate import make_record, write_record
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth
from tests.api.test_v1 import assert_problem, png
from tests.conftest import new_postgres_database

REAL_ECG = Path(str(get_testdata_file("waveform_ecg.dcm", download=False)))
DEVICE = {"rr_ms": 982, "pr_ms": 161, "qrs_ms": 75, "qt_ms": 368, "qtc_bazett_ms": 370}
LOINC = "http://loinc.org"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def ecg_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_repo: Path
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    data = tmp_path_factory.mktemp("ecg-api")
    with contextlib.ExitStack() as stack:  # a database of its own: other tests rewrap all of theirs
        url = stack.enter_context(new_postgres_database()) if request.param == "postgres" else None
        settings = Settings(data_dir=data, model_repository=model_repo, database_url=url)
        client = stack.enter_context(TestClient(create_app(build_services(settings))))
        accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
        suffix = request.param
        accounts.create_tenant(f"cardiology-{suffix}")
        accounts.create_tenant(f"elsewhere-{suffix}")
        keys = {
            "clinician": accounts.create_key(f"cardiology-{suffix}", Role.clinician)[1],
            "admin": accounts.create_key(f"cardiology-{suffix}", Role.admin)[1],
            "other": accounts.create_key(f"elsewhere-{suffix}", Role.clinician)[1],
            "service": accounts.create_key(f"cardiology-{suffix}", Role.service)[1],
        }
        yield client, keys


def post(client: TestClient, key: str, body: bytes, media: str, query: str = ""):  # type: ignore[no-untyped-def]
    return client.post(
        f"/v1/diagnoses{query}", content=body, headers={**auth(key), "Content-Type": media}
    )


def test_the_real_dicom_ecg_through_v1(ecg_app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = ecg_app
    response = post(client, keys["clinician"], REAL_ECG.read_bytes(), "application/dicom")
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["model"] == "ecg-rnn" and made["modality"] == "signal"
    assert made["task"] == "multilabel" and "Not for clinical use" in made["warning"]
    assert made["signal"] == {
        "rate": 1000.0,
        "leads": list(made["signal"]["leads"]),
        "seconds": 10.0,
    }
    if made["assessed"]:  # an answer, one finding a statement …
        assert {f["label"] for f in made["findings"]} >= {"sinus_rhythm", "atrial_fibrillation"}
    else:  # … or an honest refusal by the guard, with its reasons
        assert made["out_of_distribution"]["reasons"] and made["refer_to_clinician"]
    intervals = made["measurements"]["ecg-intervals"]
    for key, device in DEVICE.items():
        assert intervals[key]["value"] == pytest.approx(device, abs=15), key
    again = client.get(f"/v1/diagnoses/{made['id']}", headers=auth(keys["clinician"]))
    assert again.json()["measurements"] == made["measurements"]
    assert client.get(f"/v1/diagnoses/{made['id']}", headers=auth(keys["other"])).status_code == 404

    bundle = client.get(f"/v1/diagnoses/{made['id']}/fhir", headers=auth(keys["clinician"]))
    assert bundle.status_code == 200
    Bundle.model_validate(bundle.json())
    resources = [entry["resource"] for entry in bundle.json()["entry"]]
    report = resources[0]
    assert report["resourceType"] == "DiagnosticReport"
    assert report["code"]["coding"][0]["code"] == "11524-6"  # EKG study
    by_loinc = {
        c["code"]: r
        for r in resources
        if r["resourceType"] == "Observation"
        for c in r["code"]["coding"]
        if c["system"] == LOINC
    }
    assert by_loinc["8625-6"]["valueQuantity"]["value"] == intervals["pr_ms"]["value"]
    assert by_loinc["8867-4"]["valueQuantity"]["unit"] == "/min"
    assert {"8633-0", "8634-8", "8636-3"} <= set(by_loinc)

    picture = client.get(f"/v1/diagnoses/{made['id']}/ecg.png", headers=auth(keys["clinician"]))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as image:
        assert image.size[0] > 900 and image.size[1] > 400
    for suffix in ("sr.dcm", "heatmap.png"):
        missing = client.get(
            f"/v1/diagnoses/{made['id']}/{suffix}", headers=auth(keys["clinician"])
        )
        assert_problem(missing, 404, "not_found")


def phantom_bodies(tmp_path: Path) -> dict[str, tuple[bytes, str, str]]:
    """One phantom in each format a user sends: body, media type, query."""
    record = make_record(77, 1)  # atrial fibrillation
    samples, leads = record.samples, record.leads
    t = np.arange(len(samples)) / record.rate
    csv_time = (
        "time,"
        + ",".join(leads)
        + "\n"
        + "\n".join(
            f"{ti:.4f}," + ",".join(f"{v:.4f}" for v in row)
            for ti, row in zip(t, samples, strict=True)
        )
    )
    csv_rate = (
        ",".join(leads) + "\n" + "\n".join(",".join(f"{v:.4f}" for v in row) for row in samples)
    )
    lead_ii = "II\n" + "\n".join(f"{v:.4f}" for v in samples[:, 1])
    body = {
        "rate": record.rate,
        "leads": {n: samples[:, i].round(4).tolist() for i, n in enumerate(leads)},
    }
    (tmp_path / "records").mkdir()
    write_record(tmp_path, record, "wfdb")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for path in (tmp_path / "records").iterdir():
            z.write(path, path.name)
    return {
        "csv with time": (csv_time.encode(), "text/csv", ""),
        "csv with rate": (csv_rate.encode(), "text/csv", "?rate=500"),
        "lead II alone": (lead_ii.encode(), "text/csv", "?rate=500"),
        "json": (json.dumps(body).encode(), "application/json", ""),
        "wfdb zip": (archive.getvalue(), "application/zip", ""),
    }


def test_every_signal_format_and_the_refusals(
    ecg_app: tuple[TestClient, dict[str, str]], tmp_path: Path, phantom_dir: Path
) -> None:
    client, keys = ecg_app
    key = keys["clinician"]
    for name, (body, media, query) in phantom_bodies(tmp_path).items():
        response = post(client, key, body, media, query)
        assert response.status_code == 201, (name, response.text)
        made = response.json()
        assert made["model"] == "ecg-rnn" and len(made["findings"]) == 6, name
        assert made["measurements"]["ecg-intervals"]["pr_ms"]["value"] is None, name  # AF
    files = [
        ("file", (p.name, p.read_bytes(), "application/octet-stream"))
        for p in sorted((tmp_path / "records").iterdir())
    ]
    multipart = client.post("/v1/diagnoses", files=files, headers=auth(key))
    assert multipart.status_code == 201, multipart.text
    stored = multipart.json()["input"]
    assert stored["media_type"] == "application/zip"

    limb = "I,III\n" + "\n".join("0.1,0.2" for _ in range(3000))
    refused = post(client, key, limb.encode(), "text/csv", "?rate=500")
    assert_problem(refused, 422, "missing_leads")
    assert "lacks lead(s) II, aVR" in refused.json()["detail"]
    assert "rate" in post(client, key, b"II\n1\n2\n", "text/csv").json()["detail"]
    image = post(client, key, png(phantom_dir), "image/png", "?model=ecg-rnn")
    assert_problem(image, 422, "wrong_modality")
    assert (
        "this is an image" in image.json()["detail"]
        and "ecg-rnn reads signals" in image.json()["detail"]
    )
    echo = post(client, key, REAL_ECG.read_bytes(), "application/dicom", "?model=echo-cnn")
    assert_problem(echo, 422, "wrong_modality")
    nan = post(client, key, b"II\nnan\n1\n", "text/csv", "?rate=500")
    assert_problem(nan, 400, "invalid_input")


def test_an_explained_ecg_is_shaded(ecg_app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = ecg_app
    record = make_record(77, 4)  # PVCs
    body = {
        "rate": record.rate,
        "lead_names": list(record.leads),
        "samples": record.samples.round(4).tolist(),
    }
    response = post(
        client, keys["clinician"], json.dumps(body).encode(), "application/json", "?explain=true"
    )
    assert response.status_code == 201, response.text
    explanation = response.json()["explanation"]
    assert explanation["method"] == "occlusion" and explanation["grid"] == [12, 20]
    assert explanation["rows"][1] == "II" and explanation["stride"] == 0.5
    heat = client.get(
        f"/v1/diagnoses/{response.json()['id']}/heatmap.png", headers=auth(keys["clinician"])
    )
    assert heat.status_code == 200 and heat.content.startswith(b"\x89PNG")


def test_stow_rs_sends_an_ecg_to_the_ecg_model(ecg_app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = ecg_app
    boundary = "dxserve-test-boundary"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + REAL_ECG.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        **auth(keys["clinician"]),
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    response = client.post("/dicomweb/studies", content=body, headers=headers)
    assert response.status_code == 200, response.text
    answer = pydicom.Dataset.from_json(response.json())
    (stored,) = answer.ReferencedSOPSequence
    assert "FailedSOPSequence" not in answer
    services = client.app.state.services  # type: ignore[attr-defined]
    listed = client.get("/v1/diagnoses?limit=5", headers=auth(keys["clinician"])).json()
    kept = services.blobs.get(listed["items"][0]["input"]["sha256"])  # de-identified on the way in
    original = pydicom.dcmread(REAL_ECG)
    received = pydicom.dcmread(io.BytesIO(kept))
    assert received.PatientName != original.PatientName and "WaveformSequence" in received
    assert received.PatientID != original.PatientID
    assert any(
        d["model"] == "ecg-rnn" and d["input"]["media_type"] == "application/dicom"
        for d in listed["items"]
    )
    assert stored.ReferencedSOPInstanceUID == pydicom.dcmread(REAL_ECG).SOPInstanceUID


def test_a_clinician_corrects_an_ecg_with_several_statements(
    ecg_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, keys = ecg_app
    made = post(client, keys["clinician"], REAL_ECG.read_bytes(), "application/dicom").json()
    url = f"/v1/diagnoses/{made['id']}/feedback"
    correct = "sinus_rhythm + first_degree_av_block"
    saved = client.post(
        url,
        json={"agree": False, "correct_label": correct, "comment": "PR"},
        headers=auth(keys["clinician"]),
    )
    assert saved.status_code == 201, saved.text
    unknown = client.post(
        url,
        json={"agree": False, "correct_label": "sinus_rhythm + flutter"},
        headers=auth(keys["clinician"]),
    )
    assert_problem(unknown, 400, "invalid_input")
    assert "several joined by ' + '" in unknown.json()["detail"]


def test_the_oip_serves_the_ecg_model_unchanged(ecg_app: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = ecg_app
    meta = client.get("/v2/models/ecg-rnn", headers=auth(keys["service"])).json()
    assert meta["inputs"][0]["shape"] == [-1, 12, 1000]
    x = np.random.default_rng(0).standard_normal((2, 12, 1000)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "ecg", "datatype": "FP32", "shape": [2, 12, 1000], "data": x.ravel().tolist()}
        ]
    }
    response = client.post("/v2/models/ecg-rnn/infer", json=body, headers=auth(keys["service"]))
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["logit"]["shape"] == [2, 6] and outputs["features"]["shape"] == [2, 64]
