"""Tenant customisation over real HTTP, a real database and a real worker: a tenant brings its
own ONNX model (checked, refused with 422s), uploads a labelled dataset, fine-tunes the demo
model on a finding it never saw, and promotes the result only past the guard; another tenant
sees none of it."""

import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import helper, numpy_helper

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.customisation import guard
from dxserve.jobs.worker import Worker
from dxserve.server import build_services
from dxserve.settings import Settings
from dxserve.store.jobs import JobCancelled, Jobs
from tests.api.conftest import auth

MODEL = "echo-cnn"


@pytest.fixture(scope="module")
def custom_settings(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Settings:
    data = tmp_path_factory.mktemp("custom")
    return Settings(data_dir=data, model_repository=trained_repo, max_body_mb=2, max_model_mb=64)


@pytest.fixture(scope="module")
def app(custom_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(build_services(custom_settings))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokens(app: TestClient) -> dict[str, str]:
    accounts = app.app.state.services.accounts  # type: ignore[attr-defined]
    accounts.create_tenant("clinic-a")
    accounts.create_tenant("clinic-b")
    accounts.create_tenant("clinic-trial", "trial")
    return {
        "a": accounts.create_key("clinic-a", Role.admin)[1],
        "a-clinician": accounts.create_key("clinic-a", Role.clinician)[1],
        "b": accounts.create_key("clinic-b", Role.admin)[1],
        "trial": accounts.create_key("clinic-trial", Role.admin)[1],
    }


def upload(
    app: TestClient, token: str, name: str, model: bytes, manifest: dict | bytes
) -> "object":
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return app.post(
        "/v1/admin/models",
        headers=auth(token),
        data={"name": name},
        files={
            "model": ("model.onnx", model, "application/octet-stream"),
            "manifest": ("manifest.json", body, "application/json"),
        },
    )


def platform_model(trained_repo: Path) -> tuple[bytes, dict]:
    version = trained_repo / MODEL / "1"
    return (version / "model.onnx").read_bytes(), json.loads(
        (version / "manifest.json").read_text()
    )


def test_an_uploaded_model_is_checked_and_seen_by_its_tenant_only(
    app: TestClient, tokens: dict[str, str], trained_repo: Path
) -> None:
    model, manifest = platform_model(trained_repo)
    response = upload(app, tokens["a"], "own-echo", model, manifest)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["version"] == 1
    checks = body["checks"]
    assert checks["opset"] == 18 and checks["nodes"] > 10
    assert checks["smoke"]["input_shape"] == [1, 3, 128, 128]
    assert body["manifest"]["not_for_clinical_use"] is True

    a, b = auth(tokens["a"]), auth(tokens["b"])
    mine = {m["name"]: m for m in app.get("/v1/models", headers=a).json()["models"]}
    assert mine["own-echo"]["namespace"] == "tenant"
    assert mine[MODEL]["namespace"] == "platform"
    theirs = [m["name"] for m in app.get("/v1/models", headers=b).json()["models"]]
    assert "own-echo" not in theirs and MODEL in theirs

    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 3, 128, 128],
              "data": [0.5] * (3 * 128 * 128)}  # fmt: skip
    infer = {"inputs": [tensor]}
    assert app.post("/v2/models/own-echo/infer", headers=a, json=infer).status_code == 200
    for path in ("/v1/models/own-echo", "/v2/models/own-echo", "/v2/models/own-echo/versions/1"):
        assert app.get(path, headers=b).status_code == 404, path
    assert app.post("/v2/models/own-echo/infer", headers=b, json=infer).status_code == 404
    index = app.post("/v2/repository/index", headers=b).json()
    assert all(entry["name"] != "own-echo" for entry in index)
    png = phantom_png()
    headers_a = {**auth(tokens["a-clinician"]), "Content-Type": "image/png"}
    headers_b = {**auth(tokens["b"]), "Content-Type": "image/png"}
    assert (
        app.post("/v1/diagnoses?model=own-echo", headers=headers_a, content=png).status_code == 201
    )
    refused = app.post("/v1/diagnoses?model=own-echo", headers=headers_b, content=png)
    assert refused.status_code == 404


def phantom_png(index: int = 1) -> bytes:
    from PIL import Image

    from dxserve.phantoms.study import make_study

    out = io.BytesIO()
    Image.fromarray(make_study(3, index, 128).frames[0]).save(out, "PNG")
    return out.getvalue()


def external_data_model(folder: Path) -> bytes:
    """A tiny valid model whose weight lives in a file beside it ("weights.bin")."""
    weight = numpy_helper.from_array(np.ones((4, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [-1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [-1, 1])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = folder / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)  # fmt: skip
    return path.read_bytes()


def test_uploads_that_fail_a_check_are_refused_with_422(
    app: TestClient, tokens: dict[str, str], trained_repo: Path, tmp_path: Path
) -> None:
    model, manifest = platform_model(trained_repo)
    a = tokens["a"]

    wrong_shape = {
        **manifest,
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 64, 64]}],
    }
    response = upload(app, a, "wrong-shape", model, wrong_shape)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "model_rejected"
    assert "shape" in problem["detail"] and "[-1, 3, 64, 64]" in problem["detail"]

    response = upload(app, a, "outside", external_data_model(tmp_path), manifest)
    assert response.status_code == 422
    assert "outside the file" in response.json()["detail"]
    assert "weights.bin" in response.json()["detail"]

    response = upload(app, a, "not-onnx", b"\x00garbage" * 100, manifest)
    assert response.status_code == 422 and "not an ONNX model" in response.json()["detail"]

    response = upload(app, a, "bad-manifest", model, b'{"name": "x"}')
    assert response.status_code == 422 and "manifest" in response.json()["detail"]

    response = upload(app, a, "mismatched", model, {**manifest, "sha256": "0" * 64})
    assert response.status_code == 422 and "sha256" in response.json()["detail"]

    response = upload(app, a, MODEL, model, manifest)  # a platform model's name
    assert response.status_code == 422 and "platform" in response.json()["detail"]

    response = upload(app, tokens["a-clinician"], "clinician-model", model, manifest)
    assert response.status_code == 403

    names = {m["name"] for m in app.get("/v1/models", headers=auth(a)).json()["models"]}
    assert not names & {"wrong-shape", "outside", "not-onnx", "bad-manifest", "mismatched"}


def test_a_one_gigabyte_model_is_refused_before_it_is_read(
    live_server: tuple[str, str],
) -> None:
    """A 1 GiB upload to a real server: refused (422) from its declared length, after at most
    the first chunks were sent, never read whole."""
    address, token = live_server
    host, port = address.split(":")
    boundary = "dxserve-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"; filename="big.onnx"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    length = len(head) + (1 << 30)
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            (
                f"POST /v1/admin/models HTTP/1.1\r\nHost: {address}\r\n"
                f"Authorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {length}\r\n\r\n"
            ).encode()
            + head
        )
        sent = 0
        chunk = bytes(1 << 20)
        connection.settimeout(0.05)
        answer = b""
        while sent < 64 << 20 and b"\r\n\r\n" not in answer:
            try:
                answer += connection.recv(65536)
            except TimeoutError:
                try:
                    connection.sendall(chunk)
                    sent += len(chunk)
                except OSError:
                    break
        connection.settimeout(10)
        while b"\r\n\r\n" not in answer:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 422"), answer[:200]
    assert b"model_rejected" in answer or b"\r\n\r\n" in answer
    assert sent < 64 << 20  # the server answered without reading the gigabyte


def test_the_guard_refuses_a_worse_version() -> None:
    comparison = {
        "held_out": {"files": 40, "positives": 20},
        "base": {"auc": 0.90, "ece": 0.05, "auc_95": [0.8, 0.97]},
        "new": {"auc": 0.85, "ece": 0.05, "auc_95": [0.75, 0.93]},
        "auc_delta_95": [-0.1, 0.0],
    }
    verdict = guard(comparison, 0.02, 0.02)
    assert not verdict["allowed"] and "AUC 0.850 is 0.050 below" in verdict["reason"]
    assert guard(comparison, 0.06, 0.02)["allowed"]
    worse_calibrated = {**comparison, "new": {"auc": 0.95, "ece": 0.09}}
    assert "ECE" in guard(worse_calibrated, 0.02, 0.02)["reason"]


def dataset_zip(folder: Path, n: int = 200) -> bytes:
    """``n`` labelled phantoms whose abnormal studies all show a left atrial mass, a finding the
    platform's model never saw, zipped as class folders."""
    from dxserve.phantoms.generate import generate

    generate(folder, n=n, seed=21, size=128, workers=1, findings=("atrial_mass",))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for label in ("normal", "abnormal"):
            for path in sorted((folder / label).iterdir()):
                archive.write(path, f"clinic-data/{label}/patient-smith-{path.name}")
    return out.getvalue()


def test_fine_tuning_on_a_tenants_data_beats_the_base_and_stays_its_own(
    app: TestClient,
    tokens: dict[str, str],
    custom_settings: Settings,
    tmp_path: Path,
) -> None:
    a, b = auth(tokens["a"]), auth(tokens["b"])
    services = app.app.state.services  # type: ignore[attr-defined]
    created = app.post(
        "/v1/admin/datasets?name=atrial-masses",
        headers={**a, "Content-Type": "application/zip"},
        content=dataset_zip(tmp_path / "phantoms"),
    )
    assert created.status_code == 201, created.text
    dataset = created.json()
    assert dataset["summary"]["files"] == 200
    stored = zipfile.ZipFile(io.BytesIO(services.blobs.get(dataset["sha256"])))
    assert not any("smith" in name for name in stored.namelist())  # names de-identified
    assert app.get("/v1/admin/datasets", headers=b).json()["datasets"] == []

    # Two of the tenant's diagnoses, labelled by its clinician, join the uploaded studies.
    clinician = {**auth(tokens["a-clinician"]), "Content-Type": "image/png"}
    for index in (1, 2):
        diagnosis = app.post("/v1/diagnoses", headers=clinician, content=phantom_png(index)).json()
        label = "abnormal" if index % 2 else "normal"
        verdict = {"agree": diagnosis["label"] == label, "correct_label": label}
        url = f"/v1/diagnoses/{diagnosis['id']}/feedback"
        assert app.post(url, headers=auth(tokens["a-clinician"]), json=verdict).status_code == 201

    spec = {
        "base": f"{MODEL}:1",
        "datasets": [dataset["id"]],
        "feedback": True,
        "epochs": 4,
        "learning_rate": 5e-4,
    }
    assert app.post("/v1/admin/training-jobs", headers=b, json=spec).status_code == 404
    job = app.post("/v1/admin/training-jobs", headers=a, json=spec)
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    assert job.json()["status"] == "queued"
    assert app.get(f"/v1/admin/training-jobs/{job_id}", headers=b).status_code == 404

    worker = Worker.from_settings(custom_settings)
    assert worker.run(once=True) == 1
    done = app.get(f"/v1/admin/training-jobs/{job_id}", headers=a).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["progress"]["epoch"] == 4 and "val_auc" in done["progress"]
    comparison = done["result"]["comparison"]
    print(json.dumps(comparison, indent=1))
    assert comparison["held_out"]["files"] == 40
    assert comparison["new"]["auc"] > comparison["base"]["auc"]
    assert done["result"]["version"] == 2  # version 1 is the base, copied
    card = app.get(f"/v1/models/{MODEL}", headers=a).json()
    assert card["manifests"]["2"]["training"]["data"]["files"] == 202  # 200 uploaded + 2 labelled
    assert "## Fine-tuning" in card["card"] and "(base)" in card["card"]
    assert card["manifests"]["2"]["not_for_clinical_use"] is True

    # The tenant's traffic stays on the base until it promotes; the other tenant never moves.
    mine = app.get(f"/v1/models/{MODEL}", headers=a).json()
    assert mine["namespace"] == "tenant" and mine["versions"] == [1, 2]
    assert mine["aliases"]["production"]["routes"] == [{"version": 1, "weight": 1.0}]
    assert app.get(f"/v1/models/{MODEL}", headers=b).json()["namespace"] == "platform"

    refused = app.post(f"/v1/admin/models/{MODEL}/promotion", headers=a, json={"version": 1})
    assert refused.status_code == 409  # the copied base has no comparison to pass
    promoted = app.post(
        f"/v1/admin/models/{MODEL}/promotion",
        headers=a,
        json={"version": 2, "stage": "canary", "weight": 10},
    )
    assert promoted.status_code == 200, promoted.text
    routes = promoted.json()["production"]["routes"]
    assert routes == [{"version": 1, "weight": 90.0}, {"version": 2, "weight": 10.0}]
    assert promoted.json()["guard"]["allowed"]
    assert (
        app.post(f"/v1/admin/models/{MODEL}/promotion", headers=b, json={"version": 2}).status_code
        == 404
    )

    # The job is audited, metered, and deleting the dataset deletes its blob.
    actions = [e["action"] for e in services.audit.events(services.accounts.tenant_id("clinic-a"))]
    assert "job: started (fine-tune)" in actions and "job: succeeded (fine-tune)" in actions
    tenant_a = services.accounts.tenant_id("clinic-a")
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    assert services.usage.training_hours(tenant_a, now - dt.timedelta(hours=1), now) > 0
    assert app.delete(f"/v1/admin/datasets/{dataset['id']}", headers=b).status_code == 404
    assert app.delete(f"/v1/admin/datasets/{dataset['id']}", headers=a).status_code == 204
    assert not services.blobs.exists(dataset["sha256"])
    assert app.get("/v1/admin/datasets", headers=a).json()["datasets"] == []


def test_jobs_are_cancelled_and_survive_a_lost_worker(
    app: TestClient, tokens: dict[str, str], custom_settings: Settings
) -> None:
    import datetime as dt

    a = auth(tokens["b"])  # tenant B: no feedback of its own
    services = app.app.state.services  # type: ignore[attr-defined]
    spec = {"base": f"{MODEL}:1", "feedback": True, "epochs": 1}
    queued = app.post("/v1/admin/training-jobs", headers=a, json=spec).json()
    cancelled = app.post(f"/v1/admin/training-jobs/{queued['id']}/cancel", headers=a).json()
    assert cancelled["status"] == "cancelled"

    second = app.post("/v1/admin/training-jobs", headers=a, json=spec).json()
    jobs: Jobs = services.customisation.jobs
    claimed = jobs.claim("worker-that-dies")
    assert claimed is not None and claimed["id"] == second["id"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    assert jobs.requeue_stale(now=later) == 1  # its heartbeat stopped: queued again
    again = app.get(f"/v1/admin/training-jobs/{second['id']}", headers=a).json()
    assert again["status"] == "queued" and again["attempts"] == 1

    # Run by a live worker, it fails clearly: this tenant has no labelled feedback.
    Worker.from_settings(custom_settings).run(once=True)
    failed = app.get(f"/v1/admin/training-jobs/{second['id']}", headers=a).json()
    assert failed["status"] == "failed" and "empty" in failed["error"]

    # A running job asked to stop stops at its next heartbeat.
    third = app.post("/v1/admin/training-jobs", headers=a, json=spec).json()
    assert jobs.claim("busy-worker")["id"] == third["id"]  # type: ignore[index]
    asked = app.post(f"/v1/admin/training-jobs/{third['id']}/cancel", headers=a).json()
    assert asked["status"] == "running" and asked["cancel_requested"]
    with pytest.raises(JobCancelled):
        jobs.heartbeat(third["id"], {"epoch": 1})
    jobs.finish(third["id"], "cancelled", error="cancelled")
    assert (
        app.get(f"/v1/admin/training-jobs/{third['id']}", headers=a).json()["status"] == "cancelled"
    )


def test_a_plan_caps_a_tenants_own_models(
    app: TestClient, tokens: dict[str, str], trained_repo: Path
) -> None:
    model, manifest = platform_model(trained_repo)
    assert upload(app, tokens["trial"], "first", model, manifest).status_code == 201
    refused = upload(app, tokens["trial"], "second", model, manifest)
    assert refused.status_code == 403
    assert refused.json()["code"] == "tenant_quota_exceeded"
    again = upload(app, tokens["trial"], "first", model, manifest)
    assert again.status_code == 201 and again.json()["version"] == 2  # a new version
    trial = auth(tokens["trial"])
    assert app.delete("/v1/admin/models/first", headers=auth(tokens["b"])).status_code == 404
    assert app.delete("/v1/admin/models/echo-cnn", headers=trial).status_code == 404  # platform's
    assert app.delete("/v1/admin/models/first", headers=trial).status_code == 204
    assert upload(app, tokens["trial"], "second", model, manifest).status_code == 201


def test_an_uploaded_model_is_evaluated_and_cleared_for_its_intended_use(
    app: TestClient,
    tokens: dict[str, str],
    trained_repo: Path,
    custom_settings: Settings,
    tmp_path: Path,
) -> None:
    """A model trained elsewhere (its manifest says nothing of phantoms) is evaluated on the
    tenant's labelled set; its admin then records the intended use that evaluation supports,
    and only then do its diagnoses stop saying "not for clinical use"."""
    model, manifest = platform_model(trained_repo)
    training = {k: v for k, v in manifest["training"].items() if k != "synthetic_phantoms"}
    a = auth(tokens["a"])
    assert (
        upload(
            app, tokens["a"], "partner-echo", model, {**manifest, "training": training}
        ).status_code
        == 201
    )
    data = app.post(
        "/v1/admin/datasets?name=evaluation-set",
        headers={**a, "Content-Type": "application/zip"},
        content=dataset_zip(tmp_path / "evaluation", n=60),
    ).json()
    url = "/v1/admin/models/partner-echo/versions/1/intended-use"
    use = {
        "intended_use": "Triage of apical four-chamber views for a second read.",
        "evaluation": "x",
    }
    refused = app.put(url, headers=a, json=use)
    assert refused.status_code == 409 and "no evaluation" in refused.json()["detail"]

    job = {"kind": "evaluate", "model": "partner-echo:1", "datasets": [data["id"]]}
    job_id = app.post("/v1/admin/training-jobs", headers=a, json=job).json()["id"]
    Worker.from_settings(custom_settings).run(once=True)
    done = app.get(f"/v1/admin/training-jobs/{job_id}", headers=a).json()
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["evaluation"]["files"] == 60
    described = app.get("/v1/models/partner-echo", headers=a).json()
    (evaluation,) = described["manifests"]["1"]["evaluations"]
    assert evaluation in described["card"]

    cleared = app.put(url, headers=a, json={**use, "evaluation": evaluation})
    assert cleared.status_code == 200, cleared.text
    png = {**auth(tokens["a-clinician"]), "Content-Type": "image/png"}
    diagnosis = app.post("/v1/diagnoses?model=partner-echo", headers=png, content=phantom_png())
    assert diagnosis.json()["not_for_clinical_use"] is False
    # The demo model (trained on phantoms) can never be cleared.
    demo = app.put("/v1/admin/models/own-echo/versions/1/intended-use", headers=a, json=use)
    assert demo.status_code == 409 and "synthetic phantoms" in demo.json()["detail"]


def test_datasets_are_refused_when_unsafe_and_kept_de_identified(
    app: TestClient, tokens: dict[str, str], tmp_path: Path
) -> None:
    import pydicom

    from dxserve.phantoms.generate import generate

    headers = {**auth(tokens["b"]), "Content-Type": "application/zip"}
    url = "/v1/admin/datasets?name=x"
    assert app.post(url, headers=headers, content=b"not a zip").status_code == 400
    escaping = io.BytesIO()
    with zipfile.ZipFile(escaping, "w") as archive:
        archive.writestr("../../etc/evil.png", b"x")
    refused = app.post(url, headers=headers, content=escaping.getvalue())
    assert refused.status_code == 400 and "outside" in refused.json()["detail"]

    folder = tmp_path / "dicom"
    generate(folder, n=24, seed=5, size=128, fmt="dicom", workers=1)
    names = {str(pydicom.dcmread(p).PatientName) for p in folder.rglob("*.dcm")}
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    created = app.post(url, headers=headers, content=archive_bytes.getvalue())
    assert created.status_code == 201, created.text
    services = app.app.state.services  # type: ignore[attr-defined]
    stored = zipfile.ZipFile(io.BytesIO(services.blobs.get(created.json()["sha256"])))
    members = [m for m in stored.namelist() if m.endswith(".dcm")]
    assert len(members) == 24
    for member in members:
        dataset = pydicom.dcmread(io.BytesIO(stored.read(member)))
        assert str(dataset.get("PatientName", "")) not in names
        assert dataset.PatientIdentityRemoved == "YES"
