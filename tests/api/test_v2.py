"""The Open Inference Protocol: errors in KServe's shape, roles, repository control."""

import gc
import json

import numpy as np
from fastapi.testclient import TestClient

from dxserve.api.app import create_app
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth
from tests.on_ray import ON_RAY


def infer_body(x: np.ndarray) -> str:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "data": x.ravel().tolist(),
                }
            ]
        }
    )


def test_health_and_server_metadata_need_no_key(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data", "model_repository"]


def test_model_routes_need_a_key_and_errors_are_kserve_shaped(
    client: TestClient, keys: dict[str, str]
) -> None:
    response = client.get("/v2/models/echo-cnn")
    assert response.status_code == 401 and "error" in response.json()
    response = client.get("/v2/models/nope", headers=auth(keys["service"]))
    assert response.status_code == 404 and set(response.json()) == {"error"}
    response = client.get("/v2/models/echo-cnn/versions/x", headers=auth(keys["service"]))
    assert response.status_code == 404


def test_json_inference(client: TestClient, keys: dict[str, str]) -> None:
    x = np.zeros((2, 3, 128, 128), dtype=np.float32)
    response = client.post(
        "/v2/models/echo-cnn/versions/1/infer", content=infer_body(x), headers=auth(keys["service"])
    )
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["probability"]["shape"] == [2, 1] and len(outputs["probability"]["data"]) == 2


def test_bad_tensors_are_400(client: TestClient, keys: dict[str, str]) -> None:
    cases = [
        infer_body(np.zeros((1, 3, 64, 64), dtype=np.float32)),
        infer_body(np.zeros((40, 3, 128, 128), dtype=np.float32)[:0].reshape(0, 3, 128, 128)),
        json.dumps({"inputs": [{"name": "wrong", "datatype": "FP32", "shape": [1], "data": [1]}]}),
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "INT64",
                        "shape": [1, 3, 128, 128],
                        "data": [0] * (3 * 128 * 128),
                    }
                ]
            }
        ),
        "{not json",
    ]
    for body in cases:
        response = client.post(
            "/v2/models/echo-cnn/infer", content=body, headers=auth(keys["service"])
        )
        assert response.status_code == 400, (body[:80], response.text)
        assert set(response.json()) == {"error"}


def test_roles(client: TestClient, keys: dict[str, str]) -> None:
    x = np.zeros((1, 3, 128, 128), dtype=np.float32)
    response = client.post(
        "/v2/models/echo-cnn/infer", content=infer_body(x), headers=auth(keys["clinician"])
    )
    assert response.status_code == 403
    for role in ("service", "admin"):  # models serve every tenant: only the platform's admin
        response = client.post("/v2/repository/models/echo-cnn/unload", headers=auth(keys[role]))
        assert response.status_code == 403


def test_repository_unload_and_load(client: TestClient, keys: dict[str, str]) -> None:
    admin = auth(keys["platform"])
    if ON_RAY:  # replicas load on demand: refused as Triton refuses it outside explicit mode
        refused = client.post("/v2/repository/models/echo-cnn/unload", headers=admin)
        assert refused.status_code == 400 and "on demand" in refused.json()["error"]
        return
    assert client.post("/v2/repository/models/echo-cnn/unload", headers=admin).status_code == 200
    assert client.get("/v2/models/echo-cnn/ready", headers=admin).status_code == 400
    index = client.post("/v2/repository/index", headers=admin).json()
    assert index == [
        {"name": "echo-cnn", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    assert client.post("/v2/repository/models/echo-cnn/load", headers=admin).status_code == 200
    assert client.get("/v2/models/echo-cnn/versions/1/ready", headers=admin).status_code == 200
    assert client.post("/v2/repository/models/nope/load", headers=admin).status_code == 404


def test_startup_freezes_what_it_built_and_shutdown_thaws_it(settings: Settings) -> None:
    """A full garbage collection must not walk the app's long-lived objects on a request's
    time (gen-2 pauses set the p99 latency); once the app is gone they are collectable."""
    gc.unfreeze()
    with TestClient(create_app(build_services(settings))) as client:
        assert client.get("/v2/health/ready").status_code == 200
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
