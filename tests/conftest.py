"""Shared fixtures: small phantom datasets and a model trained on them, built once per session."""

from pathlib import Path

import pytest

from dxserve.phantoms.generate import generate


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 PNG phantoms at 128 px with a manifest (splits train/val/test)."""
    out = tmp_path_factory.mktemp("phantoms")
    generate(out, n=64, seed=11, size=128, workers=1)
    return out


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory, phantom_dir: Path) -> Path:
    """A model repository with echo-cnn version 1, trained for one epoch on ``phantom_dir``."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from dxserve.datasets import open_dataset
    from dxserve.training.loop import TrainConfig, train

    repo = tmp_path_factory.mktemp("repo")
    train(open_dataset(phantom_dir), repo, config=TrainConfig(epochs=1, batch_size=16, seed=3))
    return repo
