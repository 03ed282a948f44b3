"""`dxserve quantize`: an int8 version of a trained model, fitted and judged like any version."""

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from dxserve.cli import app
from dxserve.core.results.card import render_card
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRepository
from dxserve.datasets import open_dataset

pytest.importorskip("torch", reason="quantizing needs the train extra")


@pytest.fixture(scope="module")
def repo(trained_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained repository (version 1), quantised to version 2 by the CLI."""
    copy = tmp_path_factory.mktemp("quantised") / "repo"
    shutil.copytree(trained_repo, copy)
    return copy


def test_an_int8_version_is_added_and_compared(
    repo: Path, phantom_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # where the evaluations' plots go
    result = CliRunner().invoke(
        app, ["quantize", str(repo / "echo-cnn" / "1"), "--data", str(phantom_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "version 2 (int8)" in result.output and "pointing game" in result.output

    models = ModelRepository(repo)
    assert models.versions("echo-cnn") == [1, 2]
    float_ref, int8_ref = models.resolve("echo-cnn", 1), models.resolve("echo-cnn", 2)
    manifest = int8_ref.manifest()
    graph = onnx.load(str(manifest.verify(int8_ref.path))).graph
    kinds = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(weights) >= 4  # two convolutions and two dense layers
    quantization = manifest.training["quantization"]
    assert quantization["source"] == "echo-cnn:1" and quantization["calibration"]["images"] > 0
    # Fitted again on its own outputs, evaluated and recorded; still not for clinical use.
    assert manifest.calibration["temperature"] > 0 and manifest.ood and manifest.abstention
    assert list(manifest.evaluations) == [f"{phantom_dir.name}:test"]
    card = render_card(manifest)
    assert "## Quantisation" in card and "echo-cnn:1" in card
    assert manifest.not_for_clinical_use and "Not for clinical use" in card

    # It answers as the float model does, within the rounding of int8.
    dataset = open_dataset(phantom_dir)
    x = dataset.subset("test").materialize(manifest.image_recipe, 1).x
    float_p = OnnxModel(float_ref).predict(x)["probability"]
    int8_p = OnnxModel(int8_ref).predict(x)["probability"]
    assert np.abs(float_p - int8_p).max() < 0.05


def test_only_image_models_are_quantised(model_repo: Path, ecg_dir: Path) -> None:
    result = CliRunner().invoke(
        app, ["quantize", str(model_repo / "ecg-rnn"), "--data", str(ecg_dir), "--no-check"]
    )
    assert result.exit_code != 0 and "int8 is for image models" in str(result.exception)
