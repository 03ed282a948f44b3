"""Explanations, the out-of-distribution guard and clinician feedback through the real app."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from dxserve.api.app import create_app
from dxserve.cli import app as cli
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.security.principal import Role
from dxserve.datasets import open_dataset
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth
from tests.api.test_v1 import assert_problem, png, post_png
from tests.on_ray import ON_RAY


def blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((128, 128), 40, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_explain_returns_a_heatmap_for_the_owner_only(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    body = post_png(client, keys["clinician"], png(phantom_dir), "?explain=true").json()
    assert body["assessed"], body
    explanation = body["explanation"]
    assert explanation["method"] == "hirescam" and explanation["target"] == "abnormal"
    assert explanation["grid"] == [30, 30] and explanation["frame"] == 0
    url = f"/v1/diagnoses/{body['id']}/heatmap"
    image = client.get(f"{url}.png", headers=auth(keys["clinician"]))
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(image.content)).format == "PNG"
    raw = client.get(f"{url}.json", headers=auth(keys["clinician"])).json()
    assert np.array(raw["values"]).shape == (30, 30)
    assert raw["stride"] == 4 and raw["offset"] == 4 and raw["input_size"] == [128, 128]
    for suffix in (".png", ".json"):
        assert_problem(client.get(url + suffix, headers=auth(keys["other"])), 404, "not_found")
    plain = post_png(client, keys["clinician"], png(phantom_dir)).json()
    assert plain["explanation"] is None
    missing = client.get(
        f"/v1/diagnoses/{plain['id']}/heatmap.png", headers=auth(keys["clinician"])
    )
    assert_problem(missing, 404, "not_found")


def test_an_image_that_is_not_an_echo_is_not_assessed(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = post_png(client, keys["clinician"], blank_png(), "?explain=true")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["assessed"] is False and body["probability"] is None
    assert body["label"] == "not assessed: out of distribution" and body["refer_to_clinician"]
    assert body["out_of_distribution"]["reasons"] == ["blank frame (no contrast)"]
    assert body["explanation"] is None
    stored = client.get(f"/v1/diagnoses/{body['id']}", headers=auth(keys["clinician"])).json()
    assert stored == body
    if not ON_RAY:  # on Ray, /metrics is the answering replica's own
        metrics = client.get("/metrics").text
        assert 'dxserve_out_of_distribution_refusals_total{model="echo-cnn",version="1"}' in metrics


def test_feedback_is_stored_summarised_and_isolated(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    body = post_png(client, keys["clinician"], png(phantom_dir, "normal")).json()
    answer = body["label"]
    url = f"/v1/diagnoses/{body['id']}/feedback"
    clinician = auth(keys["clinician"])
    other = "abnormal" if answer == "normal" else "normal"
    disagree = {"agree": False, "correct_label": other, "comment": "see the apex"}
    created = client.post(url, json=disagree, headers=clinician)
    assert created.status_code == 201, created.text
    assert created.json()["model_label"] == answer and created.json()["correct_label"] == other
    # The same clinician changing their mind replaces the verdict.
    changed = client.post(url, json={"agree": False, "correct_label": "normal"}, headers=clinician)
    if answer == "normal":  # disagreeing while naming the model's own label contradicts itself
        assert_problem(changed, 400, "invalid_input")
    else:
        assert changed.status_code == 201
    summary = client.get("/v1/models/echo-cnn", headers=clinician).json()["feedback"]["1"]
    assert summary["n"] == 1
    matrix = summary["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == 1 and summary["confusion"]["labels"] == ["normal", "abnormal"]
    assert summary["agreement_rate"] in (0.0, None)
    assert client.get("/v1/models/echo-cnn", headers=auth(keys["other"])).json()["feedback"] == {}
    assert_problem(client.post(url, json=disagree, headers=auth(keys["other"])), 404, "not_found")
    assert_problem(client.post(url, json=disagree, headers=auth(keys["service"])), 403, "forbidden")
    bad = client.post(url, json={"agree": True, "correct_label": "maybe"}, headers=clinician)
    assert_problem(bad, 400, "invalid_input")
    assert client.post(url, json={"agree": "perhaps"}, headers=clinician).status_code == 422
    assert client.post(url, json={"agree": True, "x": 1}, headers=clinician).status_code == 422
    if not ON_RAY:  # on Ray, /metrics is the answering replica's own
        assert "dxserve_feedback_total{clinician_label=" in client.get("/metrics").text


def test_feedback_on_a_refused_study_needs_the_label(
    client: TestClient, keys: dict[str, str]
) -> None:
    body = post_png(client, keys["clinician"], blank_png()).json()
    url = f"/v1/diagnoses/{body['id']}/feedback"
    clinician = auth(keys["clinician"])
    assert_problem(client.post(url, json={"agree": True}, headers=clinician), 400, "invalid_input")
    ok = client.post(url, json={"agree": True, "correct_label": "normal"}, headers=clinician)
    assert ok.status_code == 201, ok.text


def test_feedback_export_is_a_dataset_train_reads(
    client: TestClient,
    keys: dict[str, str],
    settings: Settings,
    phantom_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clinician = auth(keys["clinician"])
    for label in ("normal", "abnormal"):
        body = post_png(client, keys["clinician"], png(phantom_dir, label)).json()
        verdict = {"agree": body["label"] == label, "correct_label": label}
        response = client.post(
            f"/v1/diagnoses/{body['id']}/feedback", json=verdict, headers=clinician
        )
        assert response.status_code == 201, response.text
    monkeypatch.setenv("DXSERVE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DXSERVE_DATABASE_URL", settings.database)
    out = tmp_path / "export"
    result = CliRunner().invoke(
        cli,
        ["feedback", "export", "--model", "echo-cnn", "--out", str(out), "--tenant", "hospital-a"],
    )
    assert result.exit_code == 0, result.output
    dataset = open_dataset(out)
    assert dataset.layout == "csv" and dataset.labels == ("normal", "abnormal")
    assert {"normal", "abnormal"} <= {dataset.labels[i.label] for i in dataset.items}
    exported = {p.read_bytes() for p in out.rglob("*.png")}
    assert png(phantom_dir, "normal") in exported and png(phantom_dir, "abnormal") in exported
    other = CliRunner().invoke(
        cli,
        [
            "feedback",
            "export",
            "--model",
            "echo-cnn",
            "--out",
            str(tmp_path / "b"),
            "--tenant",
            "hospital-b",
        ],
    )
    assert other.exit_code == 0 and (tmp_path / "b" / "manifest.csv").read_text() == "path,label\n"


def test_models_without_a_saliency_output_are_explained_by_occlusion(
    trained_repo: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(trained_repo / "echo-cnn", repo / "echo-cnn")
    version = repo / "echo-cnn" / "1"
    manifest = Manifest.load(version)
    manifest.explanation = {}
    manifest.save(version)
    settings = Settings(data_dir=tmp_path / "data", model_repository=repo)
    with TestClient(create_app(build_services(settings))) as local:
        accounts = local.app.state.services.accounts  # type: ignore[attr-defined]
        accounts.create_tenant("t")
        token = accounts.create_key("t", Role.clinician)[1]
        body = post_png(local, token, png(phantom_dir), "?explain=true").json()
        assert body["explanation"]["method"] == "occlusion", body
        raw = local.get(f"/v1/diagnoses/{body['id']}/heatmap.json", headers=auth(token)).json()
        assert np.array(raw["values"]).shape == (15, 15) and raw["stride"] == 8
        batches = local.get("/metrics").text
        # 225 occluded copies went through the dynamic batcher in batches, not one by one.
        executions = [
            line
            for line in batches.splitlines()
            if line.startswith("dxserve_inference_exec_count_total")
        ]
        rows = [
            line
            for line in batches.splitlines()
            if line.startswith("dxserve_inference_count_total")
        ]
        assert float(rows[0].split()[-1]) >= 226 and float(executions[0].split()[-1]) <= 20
    json.dumps(body)
