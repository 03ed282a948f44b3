"""Triton's own client against `dxserve serve` in a separate process, over real HTTP."""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.processes import free_port

httpclient = pytest.importorskip("tritonclient.http", reason="tests need the dev extra")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, trained_repo: Path
) -> Iterator[tuple[str, str]]:
    """``dxserve serve`` on a free loopback port; yields its address and the dev admin key."""
    yield from run_server(tmp_path_factory.mktemp("serve"), trained_repo)


def run_server(
    data: Path, repository: Path, expect_key: bool = True, **env_extra: str
) -> Iterator[tuple[str, str]]:
    """``dxserve serve`` on ``data``: its address and the dev key it printed (``""`` when
    ``expect_key`` is false: a data dir that already has keys prints none)."""
    port = free_port()
    log = data / "serve.log"
    env = {
        **os.environ,
        "DXSERVE_DATA_DIR": str(data),
        "DXSERVE_MODEL_REPOSITORY": str(repository),
        **env_extra,
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dxserve", "serve", "--no-demo", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        client = httpclient.InferenceServerClient(url)
        while True:
            try:
                if client.is_server_ready():
                    break
            except Exception:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        client.close()
        match = re.search(r"dxs_[A-Za-z0-9_-]+", log.read_text())
        assert match or not expect_key, "serve printed no dev key"
        yield url, match.group(0) if match else ""
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_health_metadata_and_config(server: tuple[str, str]) -> None:
    url, token = server
    headers = {"Authorization": f"Bearer {token}"}
    client = httpclient.InferenceServerClient(url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("echo-cnn", headers=headers)
    assert client.get_server_metadata()["name"] == "dxserve"
    metadata = client.get_model_metadata("echo-cnn", headers=headers)
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 128, 128]}]
    config = client.get_model_config("echo-cnn", headers=headers)
    assert config["max_batch_size"] == 32 and config["platform"] == "onnxruntime_onnx"
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": 0,
        "preferred_batch_size": [8],
    }
    client.close()


def test_binary_inference_matches_onnx_runtime(server: tuple[str, str], trained_repo: Path) -> None:
    url, token = server
    client = httpclient.InferenceServerClient(url)
    x = np.random.default_rng(0).random((5, 3, 128, 128), dtype=np.float32)
    image = httpclient.InferInput("image", list(x.shape), "FP32")
    image.set_data_from_numpy(x, binary_data=True)
    outputs = [
        httpclient.InferRequestedOutput("probability", binary_data=True),
        httpclient.InferRequestedOutput("logit", binary_data=True),
        httpclient.InferRequestedOutput("hirescam", binary_data=True),  # the saliency map
    ]
    result = client.infer(
        "echo-cnn", [image], outputs=outputs, headers={"Authorization": f"Bearer {token}"}
    )
    session = ort.InferenceSession(
        str(trained_repo / "echo-cnn" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    expected_p, expected_l, expected_map = session.run(
        ["probability", "logit", "hirescam"], {"image": x}
    )
    assert np.abs(result.as_numpy("probability") - expected_p).max() <= 1e-6
    assert np.abs(result.as_numpy("logit") - expected_l).max() <= 1e-6
    assert result.as_numpy("hirescam").shape == (5, 30, 30)
    assert np.abs(result.as_numpy("hirescam") - expected_map).max() <= 1e-6
    assert result.as_numpy("features") is None  # only what was asked for comes back
    assert result.get_response()["model_version"] == "1"
    client.close()


def test_unauthenticated_inference_is_refused(server: tuple[str, str]) -> None:
    url, _ = server
    client = httpclient.InferenceServerClient(url)
    x = np.zeros((1, 3, 128, 128), dtype=np.float32)
    image = httpclient.InferInput("image", list(x.shape), "FP32")
    image.set_data_from_numpy(x)
    with pytest.raises(Exception, match="API key"):
        client.infer("echo-cnn", [image])
    client.close()


def test_several_worker_processes(tmp_path: Path, trained_repo: Path) -> None:
    for url, token in run_server(
        tmp_path, trained_repo, DXSERVE_WORKERS="2", DXSERVE_ORT_THREADS="1"
    ):
        client = httpclient.InferenceServerClient(url)
        x = np.zeros((2, 3, 128, 128), dtype=np.float32)
        image = httpclient.InferInput("image", list(x.shape), "FP32")
        image.set_data_from_numpy(x, binary_data=True)
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(6):  # requests spread over both workers, each with its own sessions
            result = client.infer("echo-cnn", [image], headers=headers)
            assert result.as_numpy("probability").shape == (2, 1)
        client.close()
        assert "2 worker process(es)" in (tmp_path / "serve.log").read_text()
