"""Shared fixtures: small phantom datasets and a model trained on them, built once per session."""

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dxserve.core.security.envelope import new_master_key
from dxserve.phantoms.generate import generate


@pytest.fixture(scope="session", autouse=True)
def master_key() -> Iterator[str]:
    """One throwaway master key for the session's stores (servers run as subprocesses inherit
    it through the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        key = new_master_key()
        patch.setenv("DXSERVE_MASTER_KEY", key)
        yield key


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


@pytest.fixture(scope="session")
def ecg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 ECG phantoms (12 leads, 10 s at 500 Hz) with a manifest and exact truth."""
    from dxserve.phantoms.ecg.generate import generate_ecg

    out = tmp_path_factory.mktemp("ecg")
    generate_ecg(out, n=120, seed=13, workers=1)
    return out


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path, ecg_dir: Path) -> Path:
    """A repository of both demo architectures: ``trained_repo``'s echo-cnn and an ecg-rnn
    trained for two epochs on ``ecg_dir``."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from dxserve.datasets.signals import open_signal_dataset
    from dxserve.training.ecg import EcgTrainConfig, train_ecg

    repo = tmp_path_factory.mktemp("repo-both")
    shutil.copytree(trained_repo / "echo-cnn", repo / "echo-cnn")
    config = EcgTrainConfig(epochs=2, batch_size=16, seed=3)
    train_ecg(open_signal_dataset(ecg_dir), repo, config=config)
    return repo


POSTGRES = os.environ.get("DXSERVE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def new_postgres_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database, dropped afterwards (skips where there is none)."""
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the postgres extra")
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    name = f"dxserve_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES}: {exc.orig}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session's store tests, dropped afterwards."""
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def own_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the test's own: SQLite at ``tmp_path/data/dxserve.db`` (the data
    dir's default), or a fresh PostgreSQL database dropped afterwards (never the session's,
    which other tests fill)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'dxserve.db'}"
        return
    with new_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite (a new file) and on PostgreSQL (a session database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def tagger_repo(tmp_path_factory: pytest.TempPathFactory, trained_repo: Path) -> Path:
    """``trained_repo``'s echo-cnn and a PHI tagger trained briefly on phantom notes."""
    pytest.importorskip("torch", reason="training needs the train extra")
    from dxserve.training.phi_tagger import TaggerConfig, train_tagger

    repo = tmp_path_factory.mktemp("repo-tagger")
    shutil.copytree(trained_repo / "echo-cnn", repo / "echo-cnn")
    train_tagger(repo, TaggerConfig(notes=600, validation=60, held_out=60, epochs=2, seed=1))
    return repo


@pytest.fixture(scope="session")
def full_repo(
    tmp_path_factory: pytest.TempPathFactory, model_repo: Path, tagger_repo: Path
) -> Path:
    """Every demo model (echo-cnn, ecg-rnn, phi-tagger), briefly trained: `dxserve prepare`
    over it only checks them."""
    repo = tmp_path_factory.mktemp("repo-full") / "models"
    shutil.copytree(model_repo, repo)
    shutil.copytree(tagger_repo / "phi-tagger", repo / "phi-tagger")
    return repo
