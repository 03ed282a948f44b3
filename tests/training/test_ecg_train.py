"""The ECG RNN: trained on phantoms, exported to ONNX that matches PyTorch, described by a
manifest the serving pipeline reads, evaluated with ONNX Runtime as served, and carded."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import torch

from dxserve.core.results.card import render_card
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRepository
from dxserve.datasets.signals import open_signal_dataset
from dxserve.models.ecg_rnn import EcgRNN
from dxserve.phantoms.ecg.rhythm import LABELS
from dxserve.training.ecg import RECIPE
from dxserve.training.evaluate_signal import evaluate_signal


def test_the_trained_ecg_model_is_described_for_serving(model_repo: Path) -> None:
    ref = ModelRepository(model_repo).resolve("ecg-rnn")
    manifest = ref.manifest()
    assert manifest.modality == "signal" and manifest.task == "multilabel"
    assert manifest.labels == list(LABELS) and manifest.modalities == ["ECG"]
    assert manifest.inputs[0].shape == [-1, 12, 1000]
    assert [o.name for o in manifest.outputs] == ["probability", "logit", "features"]
    assert len(manifest.calibration["temperatures"]) == len(LABELS)
    assert set(manifest.abstention["bands"]) == set(LABELS)
    assert "signal_bounds" in manifest.ood and manifest.measurements == ["ecg-intervals"]
    assert manifest.training["export_max_abs_diff"] < 1e-4
    assert "lead II" in manifest.training["single_lead"]
    assert manifest.recipe == RECIPE
    assert "Not for clinical use" in (manifest.clinical_use_warning or "")
    card = render_card(manifest)
    assert "atrial_fibrillation" in card and "synthetic ECGs" in card


def test_onnx_runtime_computes_what_the_checkpoint_computes(
    model_repo: Path, ecg_dir: Path
) -> None:
    ref = ModelRepository(model_repo).resolve("ecg-rnn")
    network = EcgRNN()
    network.load_state_dict(torch.load(ref.path / "checkpoint.pt", weights_only=True))
    windows = open_signal_dataset(ecg_dir).subset("test").materialize(RECIPE).x[:8]
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(windows)).numpy()
    served = OnnxModel(ref).run_batches(windows)["logit"]
    assert np.abs(served - expected).max() < 1e-4


def test_evaluation_reports_every_statement_and_the_intervals(
    model_repo: Path, ecg_dir: Path
) -> None:
    ref = ModelRepository(model_repo).resolve("ecg-rnn")
    result = evaluate_signal(ref, open_signal_dataset(ecg_dir), "test")
    assert set(result["per_class"]) == set(LABELS) and result["records"] > 5
    for key in ("auc", "f1", "accuracy", "ece", "brier", "abstention", "ood", "confusion"):
        assert key in result
    assert 0 <= result["ece"] <= 1 and result["single_lead"]["lead"] == "II"
    assert len(result["confusion"]["rows_true_cols_predicted"]) == len(LABELS)
    measured = result["measurements"]
    assert measured["records"] == result["records"]
    assert measured["mae"]["qrs_ms"] is not None and measured["mae"]["qrs_ms"] < 15
