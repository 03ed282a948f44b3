"""The dxserve command line, end to end on real files."""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dxserve.cli import app
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.security.envelope import KeyRing, SealedError
from dxserve.phantoms.notes.families import HELD_OUT_FAMILIES
from dxserve.phantoms.notes.generate import notes, read_notes
from dxserve.store.blobs import BlobStore

runner = CliRunner()


def dxserve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dxserve", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def record_evaluation(model: str, data: Path, roc: Path) -> Result:
    """`dxserve evaluate MODEL --data DATA --split all --record --explain` (in process)."""
    return runner.invoke(
        app,
        [
            "evaluate",
            model,
            "--data",
            str(data),
            "--split",
            "all",
            "--record",
            "--explain",
            "--roc",
            str(roc),
        ],
    )


def test_phantoms_command(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["phantoms", "--out", str(tmp_path), "--n", "6", "--seed", "1", "--size", "64"]
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "manifest.csv").read_text().splitlines()) == 7


def test_note_phantoms_command(tmp_path: Path) -> None:
    out = tmp_path / "notes" / "held-out.jsonl"
    result = dxserve("phantoms", "notes", "--out", str(out), "--n", "6", "--held-out")
    assert result.returncode == 0, result.stderr
    written = read_notes(out)
    assert len(written) == 6 and {n.family for n in written} == set(HELD_OUT_FAMILIES)


def test_evaluate_json(trained_repo: Path, phantom_dir: Path, tmp_path: Path) -> None:
    roc = tmp_path / "roc.png"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(trained_repo / "echo-cnn"),
            "--data",
            str(phantom_dir),
            "--json",
            "--roc",
            str(roc),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "echo-cnn" and report["version"] == 1
    assert set(report) >= {"accuracy", "auc", "sensitivity", "specificity", "confusion_matrix"}
    assert {"ece", "brier", "ece_uncalibrated", "brier_uncalibrated", "temperature"} <= set(report)
    assert set(report["abstention"]) == {"low", "high", "coverage", "accuracy_answered"}
    low, high = report["intervals_95"]["accuracy"]
    assert low <= report["accuracy"] <= high
    assert roc.is_file() and Path(report["reliability_png"]).is_file()
    assert "explanation" not in report and "refusal_rates" not in report["ood"]
    assert 0 <= report["ood"]["false_refusal_rate"] <= 1


def test_evaluate_explain_measures_localisation_and_refusals(
    trained_repo: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    args = ["evaluate", str(trained_repo / "echo-cnn"), "--data", str(phantom_dir), "--json"]
    result = runner.invoke(app, [*args, "--explain", "--roc", str(tmp_path / "roc.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    explanation = report["explanation"]
    assert explanation["served_method"] == "hirescam"
    assert set(explanation["methods"]) == {"hirescam", "grad-cam", "occlusion"}
    for scores in explanation["methods"].values():
        assert 0 <= scores["pointing_game_strict"] <= scores["pointing_game"] <= 1
        assert 0 <= scores["relevance_mass"] <= 1 and scores["n"] > 0
    rates = report["ood"]["refusal_rates"]
    assert {"CT slices", "MR slices", "blank frames", "photographs (colour)"} <= set(rates)
    # Even a one-epoch model refuses what no echo looks like, by the image checks alone.
    for name in ("blank frames", "saturated frames", "photographs (colour)"):
        assert rates[name]["rate"] == 1.0, (name, rates[name])


def test_evaluate_record_stores_the_result(
    trained_repo: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    result = record_evaluation(
        str(trained_repo / "echo-cnn" / "1"), phantom_dir, tmp_path / "r.png"
    )
    assert result.exit_code == 0, result.output
    manifest = ModelRepository(trained_repo).resolve("echo-cnn", 1).manifest()
    assert manifest.evaluations[f"{phantom_dir.name}:all"]["files"] == 64


def test_train_command(tmp_path: Path, phantom_dir: Path) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(
        app,
        [
            "train",
            "echo-cnn",
            "--data",
            str(phantom_dir),
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "model ready" in result.output
    assert ModelRepository(tmp_path).versions("echo-cnn") == [1]


def test_prepare_checks_models_and_creates_a_dev_key_once(full_repo: Path, tmp_path: Path) -> None:
    env = {
        "DXSERVE_MODEL_REPOSITORY": str(full_repo),
        "DXSERVE_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "DXSERVE_MASTER_KEY": os.environ["DXSERVE_MASTER_KEY"],
    }
    result = dxserve("prepare", env=env)
    assert result.returncode == 0, result.stderr
    assert "model ready echo-cnn:1" in result.stderr
    assert "Not for clinical use" in result.stderr
    assert result.stderr.count("dxs_") == 2  # the key, and the curl example using it
    again = dxserve("prepare", env=env)
    assert again.returncode == 0 and "dxs_" not in again.stderr


def test_no_master_key_no_service(trained_repo: Path, tmp_path: Path) -> None:
    env = {"DXSERVE_DATA_DIR": str(tmp_path), "DXSERVE_MODEL_REPOSITORY": str(trained_repo)}
    result = dxserve("serve", "--port", "1", env={**env, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error (master_key): no master key" in result.stderr
    assert not (tmp_path / "dxserve.db").exists()  # refused before storing anything
    bad = dxserve("prepare", env={**env, "DXSERVE_MASTER_KEY": "too-short"})
    assert bad.returncode == 2 and "too-short" not in bad.stderr


def test_rotate_master_rewraps_what_is_stored(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "master.key"
    env = {"DXSERVE_DATA_DIR": str(tmp_path / "data"), "DXSERVE_MASTER_KEY_FILE": str(key_file)}
    created = dxserve("keys", "create-master", "--out", str(key_file), env=env)
    assert created.returncode == 0, created.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    old_key = key_file.read_text()
    running = KeyRing.from_settings(None, key_file)  # a server holding the file
    blobs = BlobStore(tmp_path / "data" / "blobs", running)
    digests = [blobs.put(f"image {i}".encode()) for i in range(5)]
    rotated = dxserve("keys", "rotate-master", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "5 data keys re-wrapped" in rotated.stderr
    assert key_file.read_text() != old_key and len(key_file.read_text().split()) == 1
    fresh = BlobStore(tmp_path / "data" / "blobs", KeyRing.from_settings(None, key_file))
    assert [fresh.get(d) for d in digests] == [f"image {i}".encode() for i in range(5)]
    assert blobs.get(digests[0]) == b"image 0"  # the running server followed the file
    old_only = BlobStore(tmp_path / "data" / "blobs", KeyRing.from_settings(old_key, None))
    with pytest.raises(SealedError):
        old_only.get(digests[0])
    again = dxserve("keys", "create-master", "--out", str(key_file), env=env)
    assert again.returncode != 0 and "exists" in again.stderr


def test_flags_override_the_environment(full_repo: Path, tmp_path: Path) -> None:
    env = {
        "DXSERVE_MODEL_REPOSITORY": str(tmp_path / "empty"),
        "DXSERVE_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "DXSERVE_MASTER_KEY": os.environ["DXSERVE_MASTER_KEY"],
    }
    result = dxserve("prepare", "--model-repository", str(full_repo), env=env)
    assert result.returncode == 0, result.stderr
    assert "model ready echo-cnn:1" in result.stderr


def test_tenants_keys_and_aliases(trained_repo: Path, tmp_path: Path) -> None:
    env = {
        "DXSERVE_DATA_DIR": str(tmp_path),
        "DXSERVE_MODEL_REPOSITORY": str(trained_repo),
        "PATH": "/usr/bin:/bin",
        "DXSERVE_MASTER_KEY": os.environ["DXSERVE_MASTER_KEY"],
    }
    assert dxserve("tenants", "create", "clinic", env=env).returncode == 0
    created = dxserve("keys", "create", "--tenant", "clinic", "--role", "clinician", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("dxs_") and token not in created.stderr
    key_id = token.split("_")[1]
    listing = dxserve("keys", "list", env=env)
    assert key_id in listing.stderr and token.split("_", 2)[2] not in listing.stderr
    assert dxserve("keys", "revoke", key_id, env=env).returncode == 0
    assert dxserve("tenants", "create", "clinic", env=env).returncode == 2
    alias = dxserve("alias", "echo-cnn", "production", "1:90", env=env)
    assert alias.returncode == 0, alias.stderr
    assert (trained_repo / "echo-cnn" / "aliases.json").is_file()
    (trained_repo / "echo-cnn" / "aliases.json").unlink()
    assert dxserve("alias", "echo-cnn", "canary", "7", env=env).returncode != 0


def test_plans_scoped_keys_rotation_and_usage(tmp_path: Path) -> None:
    env = {
        "DXSERVE_DATA_DIR": str(tmp_path),
        "DXSERVE_MASTER_KEY": os.environ["DXSERVE_MASTER_KEY"],
        "COLUMNS": "200",  # the key table, unwrapped
    }
    assert dxserve("tenants", "create", "clinic", "--plan", "trial", env=env).returncode == 0
    gold = dxserve("tenants", "create", "other", "--plan", "gold", env=env)
    assert gold.returncode == 2 and "plan must be one of" in gold.stderr
    created = dxserve(
        "keys",
        "create",
        "--tenant",
        "clinic",
        "--role",
        "service",
        "--scopes",
        "diagnose",
        "--expires-in-days",
        "30",
        env=env,
    )
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.split("_")[1]
    rotated = dxserve("keys", "rotate", key_id, "--grace-hours", "2", env=env)
    assert rotated.returncode == 0 and rotated.stdout.startswith("dxs_"), rotated.stderr
    listing = dxserve("keys", "list", env=env).stderr
    assert listing.count("diagnose") == 2 and "trial" in dxserve("tenants", "list", env=env).stderr
    usage = dxserve("usage", "--tenant", "clinic", "--csv", env=env)
    assert usage.returncode == 0, usage.stderr
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    assert usage.stdout.splitlines()[-1] == f"clinic,{month},total,,,0.00,EUR"
    assert dxserve("tenants", "set-plan", "clinic", "standard", env=env).returncode == 0
    table = dxserve("usage", "--tenant", "clinic", "--month", "2026-01", env=env)
    assert table.returncode == 0 and "0 images, 0 frames on plan 'standard'" in table.stderr


def test_errors_are_clear_not_tracebacks(tmp_path: Path) -> None:
    result = dxserve("evaluate", str(tmp_path / "echo-cnn"), "--data", str(tmp_path))
    assert result.returncode == 2
    assert "model_not_found" in result.stderr and "Traceback" not in result.stderr
    result = dxserve(
        "train", "echo-cnn", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)
    )
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_evaluate_an_empty_split_is_a_clear_error(trained_repo: Path, phantom_dir: Path) -> None:
    result = dxserve(
        "evaluate", str(trained_repo / "echo-cnn"), "--data", str(phantom_dir), "--split", "nope"
    )
    assert result.returncode == 2
    assert "no items in split 'nope'" in result.stderr and "Traceback" not in result.stderr


def test_model_card_from_the_manifest(
    trained_repo: Path, phantom_dir: Path, tmp_path: Path
) -> None:
    record_evaluation(str(trained_repo / "echo-cnn"), phantom_dir, tmp_path / "roc.png")
    result = runner.invoke(app, ["card", str(trained_repo / "echo-cnn")])
    assert result.exit_code == 0, result.output
    card = result.stdout
    for heading in (
        "# Model card: echo-cnn version 1",
        "## Intended use",
        "## Training data",
        "## Calibration",
        "## Abstention",
        "## Out-of-distribution guard",
        "## Explanations",
        "## Evaluations",
        "## Limitations",
    ):
        assert heading in card
    assert "Not for clinical use" in card and "3,705,921 parameters" in card
    assert "95% CI" in card
    assert "hirescam (served): pointing game" in card and "refused" in card


def test_notes_deid_and_analyse_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    written = list(notes(3, 7))
    for k, note in enumerate(written):
        (folder / f"note{k}.txt").write_text(note.text, encoding="utf-8")
    (folder / "broken.txt").write_bytes(b"\xff\xfe not UTF-8")
    result = runner.invoke(app, ["notes", "deid", str(folder), "--out", str(tmp_path / "deid")])
    assert result.exit_code == 1  # one note could not be read: said, and the rest written
    assert "skipped broken.txt" in result.output
    for k, note in enumerate(written):
        deidentified = (tmp_path / "deid" / f"note{k}.txt").read_text(encoding="utf-8")
        for span in note.phi:
            if span.label in ("MRN", "PHONE", "EMAIL", "SSN", "DATE"):
                assert note.text[span.start : span.end] not in deidentified
    (folder / "broken.txt").unlink()
    result = runner.invoke(app, ["notes", "analyse", str(folder), "--out", str(tmp_path / "json")])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "json" / "note0.json").read_text())
    assert analysis["entities"] and "not for clinical use" in analysis["warning"].lower()


def test_worker_runs_the_queue_and_stops(tmp_path: Path) -> None:
    """`dxserve worker --once` on an empty queue: migrates, looks, exits cleanly."""
    done = dxserve("worker", "--once", "--data-dir", str(tmp_path), env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert "0 jobs run" in done.stdout + done.stderr  # the console writes to stderr


def test_phantoms_of_a_finding_the_demo_never_saw(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["phantoms", "--out", str(tmp_path), "--n", "6", "--size", "64", "--workers", "1",
         "--findings", "atrial_mass"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = (tmp_path / "manifest.csv").read_text()
    assert "atrial_mass" in manifest and "effusion" not in manifest
    refused = runner.invoke(app, ["phantoms", "--out", str(tmp_path), "--findings", "nope"])
    assert refused.exit_code != 0 and "unknown findings" in refused.output
