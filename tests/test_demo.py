"""The demo model that `make serve` prepares: the seed CNN, trained with the seed's settings on
phantoms, must reach ROC AUC ≥ 0.95 and ECE ≤ 0.03 on held-out phantoms from another seed."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dxserve.core.runtime.repository import ModelRepository

pytest.importorskip("torch")


@pytest.mark.slow
def test_demo_model_from_a_fresh_data_dir(tmp_path: Path) -> None:
    env = {**os.environ, "DXSERVE_DATA_DIR": str(tmp_path)}
    env.pop("DXSERVE_MODEL_REPOSITORY", None)
    result = subprocess.run(
        [sys.executable, "-m", "dxserve", "prepare"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model ready echo-cnn:1" in result.stderr
    manifest = ModelRepository(tmp_path / "models").resolve("echo-cnn").manifest()
    held_out = manifest.evaluations["test:all"]
    assert held_out["files"] == 600
    assert held_out["auc"] >= 0.95, held_out
    assert held_out["ece"] <= 0.03, held_out  # served probabilities are calibrated
    assert manifest.calibration["method"] == "temperature"
    assert manifest.not_for_clinical_use
