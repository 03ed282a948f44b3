"""The clinical API through the real app: auth, diagnoses in every format, isolation, errors."""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import JPEGBaseline8Bit

from dxserve.api.app import create_app
from dxserve.core.intake.frames import frame_indices
from dxserve.phantoms.dicom import HEADER_ROWS, FakePatient, jpeg_cine
from dxserve.phantoms.generate import generate
from dxserve.phantoms.study import make_study
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth

PROBLEM = "application/problem+json"


def png(phantom_dir: Path, label: str = "abnormal") -> bytes:
    return next((phantom_dir / label).glob("*.png")).read_bytes()


def post_png(client: TestClient, token: str, image: bytes, query: str = ""):
    """POST a PNG body to /v1/diagnoses with a bearer key."""
    return client.post(
        f"/v1/diagnoses{query}",
        content=image,
        headers={**auth(token), "Content-Type": "image/png"},
    )


def assert_problem(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]


def test_diagnose_a_png(client: TestClient, keys: dict[str, str], phantom_dir: Path) -> None:
    response = post_png(client, keys["clinician"], png(phantom_dir))
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/diagnoses/{body['id']}"
    assert body["model"] == "echo-cnn" and body["version"] == 1
    assert (
        body["label"] in ("normal", "abnormal", "indeterminate") and 0 <= body["probability"] <= 1
    )
    assert body["threshold"] == 0.5 and len(body["frames"]) == 1
    low, high = body["indeterminate_band"]
    assert body["refer_to_clinician"] == (low <= body["probability"] < high)
    assert (body["label"] == "indeterminate") == body["refer_to_clinician"]
    assert body["not_for_clinical_use"] is True and "Not for clinical use" in body["warning"]
    assert set(body["timings_ms"]) == {"preprocess", "queue", "inference", "total"}
    assert body["input"]["media_type"] == "image/png" and body["input"]["bytes"] > 0
    blobs = client.app.state.services.blobs  # type: ignore[attr-defined]
    assert blobs.get(body["input"]["sha256"]) == png(phantom_dir)
    again = client.get(f"/v1/diagnoses/{body['id']}", headers=auth(keys["clinician"]))
    assert again.json() == body


def test_diagnose_multipart_dicom_cine(
    client: TestClient, keys: dict[str, str], tmp_path: Path
) -> None:
    generate(tmp_path, n=2, seed=3, size=128, fmt="dicom", frames=4, workers=1)
    dcm = next((tmp_path / "abnormal").glob("*.dcm")).read_bytes()
    response = client.post(
        "/v1/diagnoses",
        files={"file": ("study.dcm", dcm, "application/dicom")},
        data={"model": "echo-cnn:1"},
        headers=auth(keys["service"]),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert [f["index"] for f in body["frames"]] == [0, 1, 2, 3]
    # The study aggregates the frames the out-of-distribution guard accepted (this tiny test
    # model may refuse some; more than half refused: not assessed).
    accepted = [f["probability"] for f in body["frames"] if f["out_of_distribution"] is None]
    if 2 * len(accepted) >= 4:
        assert body["assessed"] and body["probability"] == pytest.approx(np.mean(accepted))
    else:
        assert not body["assessed"] and body["probability"] is None
        assert body["label"] == "not assessed: out of distribution" and body["refer_to_clinician"]
    assert body["input"]["media_type"] == "application/dicom"


def test_diagnose_jpeg_and_pydicom_ultrasound(client: TestClient, keys: dict[str, str]) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((200, 300, 3), 60, dtype=np.uint8)).save(buffer, format="JPEG")
    response = client.post(
        "/v1/diagnoses",
        content=buffer.getvalue(),
        headers={**auth(keys["clinician"]), "Content-Type": "image/jpeg"},
    )
    assert response.status_code == 201, response.text
    assert len(post_echo_cine(client, keys["clinician"])["frames"]) == 30


def post_echo_cine(client: TestClient, token: str) -> dict:  # type: ignore[type-arg]
    """Diagnose pydicom's 30-frame YBR JPEG echo cine."""
    us = Path(get_testdata_file("examples_ybr_color.dcm", download=False)).read_bytes()
    response = client.post(
        "/v1/diagnoses", content=us, headers={**auth(token), "Content-Type": "application/dicom"}
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_long_cine_is_sampled(settings: Settings, keys: dict[str, str]) -> None:
    """DXSERVE_MAX_FRAMES evenly spaced frames of a 30-frame cine are read (0: every one)."""
    for max_frames, expected in ((8, [0, 4, 8, 12, 17, 21, 25, 29]), (0, list(range(30)))):
        sampled = settings.model_copy(update={"max_frames": max_frames})
        with TestClient(create_app(build_services(sampled))) as sampling:
            made = post_echo_cine(sampling, keys["clinician"])
        assert [f["index"] for f in made["frames"]] == expected


def test_a_jpeg_echo_cine_is_read_sampled_and_stored_cleaned_as_jpeg(
    client: TestClient, keys: dict[str, str]
) -> None:
    """A 40-frame JPEG Baseline cine as scanners export it: the model reads 32 evenly spaced
    frames; what is stored is the cine de-identified, its label band blanked, still JPEG."""
    rng = np.random.default_rng(6)
    study = make_study(seed=6, index=1, size=64, frames=40)
    cine = jpeg_cine(study.frames, FakePatient.random(rng), rng, columns=96)
    sent = io.BytesIO()
    cine.save_as(sent, enforce_file_format=True)
    response = client.post(
        "/v1/diagnoses",
        content=sent.getvalue(),
        headers={**auth(keys["clinician"]), "Content-Type": "application/dicom"},
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert [f["index"] for f in made["frames"]] == list(frame_indices(40, 32))
    services = client.app.state.services  # type: ignore[attr-defined]
    stored = pydicom.dcmread(io.BytesIO(services.blobs.get(made["input"]["sha256"])))
    assert stored.file_meta.TransferSyntaxUID == JPEGBaseline8Bit and stored.NumberOfFrames == 40
    assert stored.BurnedInAnnotation == "NO" and stored.PatientName != cine.PatientName
    assert made["input"]["bytes"] < 1.2 * len(sent.getvalue())
    assert cine.pixel_array[:, :HEADER_ROWS].max() > 200
    assert stored.pixel_array[:, :HEADER_ROWS].max() < 16


def test_authentication_is_required(client: TestClient, phantom_dir: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer dxs_nope_nope"}, {"Authorization": "Basic abc"}):
        response = client.post(
            "/v1/diagnoses", content=b"x", headers={**headers, "Content-Type": "image/png"}
        )
        assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(client.get("/v1/diagnoses"), 401, "unauthenticated")
    assert_problem(client.get("/v1/models"), 401, "unauthenticated")


def test_a_tenant_sees_only_its_own_diagnoses(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    created = post_png(client, keys["clinician"], png(phantom_dir, "normal")).json()
    other = client.get(f"/v1/diagnoses/{created['id']}", headers=auth(keys["other"]))
    assert_problem(other, 404, "not_found")
    listing = client.get("/v1/diagnoses", headers=auth(keys["other"])).json()
    assert all(item["id"] != created["id"] for item in listing["items"])
    own = client.get("/v1/diagnoses?limit=200", headers=auth(keys["admin"])).json()
    assert created["id"] in [item["id"] for item in own["items"]]


def test_pagination_newest_first(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    ids = [post_png(client, keys["admin"], png(phantom_dir)).json()["id"] for _ in range(5)]
    first = client.get("/v1/diagnoses?limit=3", headers=auth(keys["admin"])).json()
    second = client.get(
        f"/v1/diagnoses?limit=3&cursor={first['next_cursor']}", headers=auth(keys["admin"])
    ).json()
    newest = [item["id"] for item in first["items"] + second["items"]][:5]
    assert newest == list(reversed(ids))
    assert_problem(
        client.get("/v1/diagnoses?cursor=zzz", headers=auth(keys["admin"])), 400, "invalid_input"
    )
    assert_problem(
        client.get("/v1/diagnoses?limit=0", headers=auth(keys["admin"])), 422, "invalid_request"
    )


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "image/png", 415, "unsupported_media"),
        (b"hello", "text/plain", 415, "unsupported_media"),
        (b"", "image/png", 400, "invalid_input"),
        (b"%PDF-1.4", "application/dicom", 415, "unsupported_media"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    client: TestClient,
    keys: dict[str, str],
    content: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = client.post(
        "/v1/diagnoses",
        content=content,
        headers={**auth(keys["clinician"]), "Content-Type": content_type},
    )
    assert_problem(response, status, code)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about its malformed files
def test_every_pydicom_test_file_is_answered_without_a_5xx(
    client: TestClient, keys: dict[str, str]
) -> None:
    """pydicom's own test files (valid, odd and deliberately broken) as a user could send them:
    each is diagnosed (201) or refused with a 4xx problem naming why — never a 500."""
    from pydicom.data.data_manager import DATA_ROOT

    files = sorted(f for f in (Path(DATA_ROOT) / "test_files").rglob("*") if f.is_file())
    files = [f for f in files if f.stat().st_size <= 2 * 1024 * 1024]  # the app's body limit
    statuses = {}
    for f in files:
        response = client.post(
            "/v1/diagnoses",
            content=f.read_bytes(),
            headers={**auth(keys["service"]), "Content-Type": "application/dicom"},
        )
        statuses[f.name] = response.status_code
        if response.status_code != 201:
            assert response.headers["content-type"] == PROBLEM, f.name
    assert all(s < 500 for s in statuses.values()), statuses
    # CT, MR, RT… objects are refused by modality (the echo model reads US) before decoding;
    # every transfer syntax is decoded in tests/core/test_decode.py
    assert sum(s == 201 for s in statuses.values()) >= 5, statuses
    assert sum(s == 422 for s in statuses.values()) >= 30, statuses


def test_dicom_without_pixels_and_unknown_model(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    rtplan = Path(get_testdata_file("rtplan.dcm", download=False)).read_bytes()
    response = client.post(
        "/v1/diagnoses",
        content=rtplan,
        headers={**auth(keys["clinician"]), "Content-Type": "application/dicom"},
    )
    assert_problem(response, 422, "wrong_modality")
    assert "this is a RTPLAN object" in response.json()["detail"]
    response = post_png(client, keys["clinician"], png(phantom_dir), "?model=nope")
    assert_problem(response, 404, "model_not_found")
    response = client.post(
        "/v1/diagnoses",
        files={"other": ("a.png", png(phantom_dir), "image/png")},
        headers=auth(keys["clinician"]),
    )
    assert_problem(response, 400, "invalid_input")


def test_body_over_the_limit_is_413(client: TestClient, keys: dict[str, str]) -> None:
    response = post_png(client, keys["clinician"], b"\0" * (3 * 1024 * 1024))
    assert_problem(response, 413, "payload_too_large")


def test_models_and_their_cards(client: TestClient, keys: dict[str, str]) -> None:
    models = client.get("/v1/models", headers=auth(keys["clinician"])).json()["models"]
    assert [m["name"] for m in models] == ["echo-cnn"]
    assert models[0]["versions"] == [1] and models[0]["loaded"] == [1]
    model = client.get("/v1/models/echo-cnn", headers=auth(keys["clinician"])).json()
    card = model["manifests"]["1"]
    assert card["parameters"] == 3_705_921 and card["not_for_clinical_use"] is True
    assert model["card"].startswith("# Model card: echo-cnn version 1")
    assert_problem(
        client.get("/v1/models/nope", headers=auth(keys["clinician"])), 404, "model_not_found"
    )


def test_request_ids_and_metrics(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get("/v1/models", headers={**auth(keys["admin"]), "X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    metrics = client.get("/metrics").text
    assert 'dxserve_inference_request_success_total{model="echo-cnn",version="1"}' in metrics
    assert "dxserve_inference_exec_count_total" in metrics
    assert 'route="/v1/diagnoses"' in metrics


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/diagnoses", "/v1/diagnoses/{diagnosis_id}", "/v2/models/{name}/infer"} <= set(
        paths
    )


def test_shadow_runs_but_is_not_shown(
    client: TestClient, keys: dict[str, str], phantom_dir: Path, trained_repo: Path
) -> None:
    aliases = trained_repo / "echo-cnn" / "aliases.json"
    aliases.write_text('{"shadowed": {"routes": [{"version": 1, "weight": 1}], "shadow": 1}}')
    try:
        response = post_png(client, keys["clinician"], png(phantom_dir), "?model=echo-cnn:shadowed")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["alias"] == "shadowed" and "shadow" not in body
        services = client.app.state.services  # type: ignore[attr-defined]
        stored = services.diagnoses.get(services.accounts.tenant_id("hospital-a"), body["id"])
        assert stored["shadow"]["version"] == 1
        assert stored["shadow"]["probability"] == pytest.approx(body["probability"], abs=1e-6)
        shown = client.get(f"/v1/diagnoses/{body['id']}", headers=auth(keys["clinician"])).json()
        assert "shadow" not in shown
    finally:
        aliases.unlink()


def test_served_probability_is_calibrated(
    client: TestClient, keys: dict[str, str], phantom_dir: Path, trained_repo: Path
) -> None:
    """probability = sigmoid(logit / T) with the manifest's temperature, frame by frame."""
    from dxserve.core.calibration import calibrated
    from dxserve.core.intake.decode import decode_bytes
    from dxserve.core.runtime.onnx import OnnxModel
    from dxserve.core.runtime.repository import ModelRepository

    image = png(phantom_dir, "normal")
    body = post_png(client, keys["clinician"], image).json()
    model = OnnxModel(ModelRepository(trained_repo).resolve("echo-cnn", 1))
    outputs = model.run(model.manifest.recipe.apply(decode_bytes(image)))
    temperature = model.manifest.calibration["temperature"]
    expected = calibrated(outputs["logit"].reshape(-1), temperature)[0]
    assert body["probability"] == pytest.approx(expected, abs=1e-6)
    assert temperature != 1.0


def test_security_headers_and_no_cors(client: TestClient, keys: dict[str, str]) -> None:
    response = client.get(
        "/v1/models", headers={**auth(keys["clinician"]), "Origin": "https://evil.example"}
    )
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "access-control-allow-origin" not in response.headers
    assert "strict-transport-security" not in response.headers  # plain HTTP here
    preflight = client.options(
        "/v1/diagnoses",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    refused = client.get("/v1/models")
    assert refused.status_code == 401 and refused.headers["x-frame-options"] == "DENY"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers


def test_an_object_of_another_modality_is_refused_by_name(
    client: TestClient, keys: dict[str, str]
) -> None:
    for name, modality in (("CT_small.dcm", "CT"), ("MR_small.dcm", "MR")):
        data = Path(str(get_testdata_file(name, download=False))).read_bytes()
        response = client.post(
            "/v1/diagnoses",
            content=data,
            headers={**auth(keys["clinician"]), "Content-Type": "application/dicom"},
        )
        assert_problem(response, 422, "wrong_modality")
        assert f"this is a {modality} object" in response.json()["detail"]
        assert "reads US only" in response.json()["detail"]
    ecg = Path(str(get_testdata_file("waveform_ecg.dcm", download=False))).read_bytes()
    headers = {**auth(keys["clinician"]), "Content-Type": "application/dicom"}
    response = client.post("/v1/diagnoses?model=echo-cnn", content=ecg, headers=headers)
    assert_problem(response, 422, "wrong_modality")  # the model named reads images
    detail = response.json()["detail"]
    assert "this is a ECG object (signal)" in detail and "echo-cnn reads images" in detail
    response = client.post("/v1/diagnoses", content=ecg, headers=headers)
    assert_problem(response, 422, "wrong_modality")  # no model for signals in this repository
    assert "no model here reads signals" in response.json()["detail"]
    us = Path(str(get_testdata_file("examples_ybr_color.dcm", download=False))).read_bytes()
    response = client.post(
        "/v1/diagnoses",
        content=us,
        headers={**auth(keys["clinician"]), "Content-Type": "application/dicom"},
    )
    assert response.status_code == 201
