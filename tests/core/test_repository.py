"""The model repository: Triton layout, versions, manifests and integrity."""

from pathlib import Path

import pytest

from dxserve.core.runtime.manifest import Manifest, TensorSpec
from dxserve.core.runtime.repository import ModelRepository, parse_model_path, triton_config
from dxserve.errors import ModelIntegrityError, ModelNotFound


def manifest(version: int, sha: str = "0" * 64) -> Manifest:
    return Manifest(
        name="echo-cnn",
        version=version,
        architecture="test",
        parameters=1,
        inputs=[TensorSpec("image", "FP32", [-1, 3, 128, 128])],
        outputs=[TensorSpec("probability", "FP32", [-1, 1]), TensorSpec("logit", "FP32", [-1, 1])],
        preprocessing={"name": "rgb-128", "size": [128, 128]},
        labels=["normal", "abnormal"],
        threshold=0.5,
        sha256=sha,
        intended_use="testing",
        max_batch_size=16,
        max_queue_delay_ms=2.5,
    )


def test_versions_are_integers_and_new_runs_add_one(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    assert repo.models() == []
    for expected in (1, 2):
        version, folder = repo.new_version_dir("echo-cnn")
        assert version == expected and folder == tmp_path / "echo-cnn" / str(expected)
        manifest(version).save(folder)
    assert repo.versions("echo-cnn") == [1, 2]
    assert repo.resolve("echo-cnn").version == 2
    assert repo.resolve("echo-cnn", 1).manifest().version == 1
    with pytest.raises(ModelNotFound):
        repo.resolve("echo-cnn", 3)
    with pytest.raises(ModelNotFound):
        repo.resolve("other")


def test_manifest_round_trip_and_integrity(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    from dxserve.core.runtime.manifest import sha256_file

    m = manifest(1, sha256_file(tmp_path / "model.onnx"))
    m.save(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == m and loaded.not_for_clinical_use
    assert "Not for clinical use" in (loaded.clinical_use_warning or "")
    assert loaded.verify(tmp_path) == tmp_path / "model.onnx"
    (tmp_path / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(ModelIntegrityError):
        loaded.verify(tmp_path)


def test_triton_config() -> None:
    text = triton_config(manifest(1))
    assert 'platform: "onnxruntime_onnx"' in text
    assert "max_batch_size: 16" in text
    assert "dims: [ 3, 128, 128 ]" in text and "dims: [ 1 ]" in text
    assert "max_queue_delay_microseconds: 2500" in text
    assert text.count("{") == text.count("}")


def test_parse_model_path() -> None:
    assert parse_model_path("repo/echo-cnn/3") == (Path("repo"), "echo-cnn", 3)
    assert parse_model_path("repo/echo-cnn") == (Path("repo"), "echo-cnn", None)
