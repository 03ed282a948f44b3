"""Training writes a verified, self-describing model version; evaluation judges the ONNX file."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra")

from dxserve.core.runtime.onnx import OnnxModel  # noqa: E402
from dxserve.core.runtime.repository import ModelRepository  # noqa: E402
from dxserve.datasets import open_dataset  # noqa: E402
from dxserve.models.echo_cnn import EchoCNN, ExportHead  # noqa: E402
from dxserve.training.evaluate import evaluate, plot_roc  # noqa: E402
from dxserve.training.export import TOLERANCE, export_onnx  # noqa: E402
from dxserve.training.loop import TrainConfig, train  # noqa: E402


def test_version_folder_is_complete(trained_repo: Path) -> None:
    ref = ModelRepository(trained_repo).resolve("echo-cnn")
    assert ref.version == 1
    assert {p.name for p in ref.path.iterdir()} == {"model.onnx", "manifest.json", "checkpoint.pt"}
    manifest = ref.manifest()
    manifest.verify(ref.path)
    assert manifest.parameters == 3_705_921
    assert manifest.preprocessing["name"] == "rgb-128"
    assert [o.name for o in manifest.outputs] == [
        "probability",
        "logit",
        "gradcam",
        "hirescam",
        "features",
    ]
    assert manifest.explanation["output"] == "hirescam" and manifest.explanation["stride"] == 4
    guard = manifest.guard
    assert guard is not None and guard.means.shape == (2, 64) and guard.threshold > 0
    assert manifest.labels == ["normal", "abnormal"]
    assert manifest.not_for_clinical_use and "synthetic phantoms" in manifest.clinical_use_warning
    assert manifest.training["synthetic_phantoms"] is True
    assert manifest.training["history"][0]["val"]["n"] == manifest.training["images"]["val"]
    assert set(manifest.metrics["validation"]) >= {"auc", "accuracy", "sensitivity", "specificity"}
    calibration = manifest.calibration
    assert calibration["method"] == "temperature" and calibration["fitted_on"] == "val"
    assert 0.05 <= calibration["temperature"] <= 20
    assert calibration["n"] == manifest.training["images"]["val"]
    band = manifest.indeterminate_band
    assert band is not None and 0.05 <= band[0] <= 0.5 <= band[1] <= 0.95
    assert manifest.abstention["fitted_on"] == "val" and 0 <= manifest.abstention["coverage"] <= 1
    config = (trained_repo / "echo-cnn" / "config.pbtxt").read_text()
    assert 'name: "echo-cnn"' in config and "dynamic_batching" in config


def test_onnx_model_has_dynamic_batch_and_opset(trained_repo: Path) -> None:
    path = ModelRepository(trained_repo).resolve("echo-cnn").path / "model.onnx"
    import onnx

    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        out = session.run(None, {"image": np.zeros((batch, 3, 128, 128), dtype=np.float32)})
        assert out[0].shape == (batch, 1)


def test_export_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = EchoCNN().eval()
    delta = export_onnx(model, tmp_path / "m.onnx")
    assert delta <= TOLERANCE
    x = torch.rand(9, 3, 128, 128)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = ExportHead(model)(x)
    assert len(outputs) == len(expected) == 5
    for got, want in zip(outputs, expected, strict=True):
        assert np.abs(got - want.numpy()).max() <= TOLERANCE * max(1.0, float(want.abs().max()))


def test_exported_cams_equal_autograd() -> None:
    """The closed-form gradient in ExportHead is the gradient autograd computes."""
    torch.manual_seed(1)
    model = EchoCNN().eval()
    x = torch.rand(3, 3, 128, 128)
    layers = list(model)
    activations = torch.nn.Sequential(*layers[:6])(x).detach().requires_grad_(True)
    logit = torch.nn.Sequential(*layers[6:10])(activations)
    (gradient,) = torch.autograd.grad(logit.sum(), activations)
    gradcam = torch.relu((gradient.mean(dim=(2, 3), keepdim=True) * activations).sum(1))
    hirescam = (gradient * activations).sum(1)
    with torch.no_grad():
        _, _, got_gradcam, got_hirescam, features = ExportHead(model)(x)
    assert torch.allclose(got_gradcam, gradcam.detach(), atol=1e-6, rtol=1e-4)
    assert torch.allclose(got_hirescam, hirescam.detach(), atol=1e-6, rtol=1e-4)
    # HiResCAM is an exact decomposition: the dense head is linear where its ReLU pattern
    # holds, so Σ cam = logit − (W2 ⊙ 1[h > 0])·b1 − b2.
    dense1, dense2 = layers[7], layers[9]
    active = (features > 0).float()
    bias = (active * dense2.weight) @ dense1.bias + dense2.bias
    expected_sum = (logit.reshape(-1) - bias).detach()
    assert torch.allclose(got_hirescam.sum(dim=(1, 2)), expected_sum, atol=1e-4)
    assert features.shape == (3, 64)


def test_training_is_deterministic_and_adds_versions(tmp_path: Path, phantom_dir: Path) -> None:
    dataset = open_dataset(phantom_dir)
    config = TrainConfig(epochs=1, batch_size=16, seed=5)
    first = train(dataset, tmp_path, config=config)
    second = train(dataset, tmp_path, config=config)
    assert (first.ref.version, second.ref.version) == (1, 2)
    a = torch.load(first.ref.path / "checkpoint.pt")
    b = torch.load(second.ref.path / "checkpoint.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.history[0].train_loss == second.history[0].train_loss


def test_evaluate_runs_the_served_artifact(
    trained_repo: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    ref = ModelRepository(trained_repo).resolve("echo-cnn")
    dataset = open_dataset(phantom_dir)
    result = evaluate(ref, dataset)
    assert result.split == "test" and result.files == len(dataset.subset("test"))
    m = result.metrics
    assert m.tn + m.fp + m.fn + m.tp == result.files
    # The same probabilities as running the ONNX session directly.
    model = OnnxModel(ref)
    x = dataset.subset("test").materialize(model.manifest.recipe).x
    assert np.allclose(result.prob, model.predict_proba(x), atol=1e-6)
    png = plot_roc(result, tmp_path / "roc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result.to_dict())


def test_validation_is_carved_from_train_when_the_data_has_none(
    tmp_path: Path, phantom_dir: Path
) -> None:
    rows = (phantom_dir / "manifest.csv").read_text().splitlines()
    header, body = rows[0], [r.replace(",val,", ",train,") for r in rows[1:]]
    (phantom_dir / "no-val.csv").write_text("\n".join([header, *body]) + "\n")
    dataset = open_dataset(phantom_dir / "no-val.csv")
    assert "val" not in dataset.splits
    result = train(dataset, tmp_path, config=TrainConfig(epochs=1, batch_size=16))
    images = result.ref.manifest().training["images"]
    assert images["val"] > 0 and images["train"] + images["val"] == len(dataset.subset("train"))
    (phantom_dir / "no-val.csv").unlink()
