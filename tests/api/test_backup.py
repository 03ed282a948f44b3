"""The backup drill: back up while `dxserve serve` is under load, verify the backup (and see a
damaged one refused), restore it into a fresh data dir, start a server on it, and find every
diagnosis answered before the backup began — with its heatmap, SR and FHIR — and an audit
trail that verifies."""

import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import requests

from tests.api.test_tritonclient import run_server
from tests.api.test_v1 import png


def dxserve(*args: str, data: Path, repository: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DXSERVE_DATA_DIR": str(data), "DXSERVE_MODEL_REPOSITORY": str(repository)}
    return subprocess.run(
        [sys.executable, "-m", "dxserve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_backup_under_load_then_restore(
    live_server: tuple[str, str],
    live_data_dir: Path,
    trained_repo: Path,
    phantom_dir: Path,
    tmp_path: Path,
) -> None:
    url, token = live_server
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "image/png"}
    image = png(phantom_dir)
    answered = []
    for _ in range(4):
        made = requests.post(
            f"http://{url}/v1/diagnoses?explain=true", data=image, headers=headers, timeout=60
        )
        assert made.status_code == 201, made.text
        answered.append(made.json()["id"])

    stop, during = threading.Event(), []

    def load() -> None:  # bounded: it stops with the backup, at most 200 requests
        while not stop.is_set() and len(during) < 200:
            response = requests.post(
                f"http://{url}/v1/diagnoses", data=image, headers=headers, timeout=60
            )
            during.append(response.status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        out = tmp_path / "dxserve-backup.tar"
        made = dxserve("backup", "--out", str(out), data=live_data_dir, repository=trained_repo)
    finally:
        stop.set()
        worker.join(timeout=120)
    assert made.returncode == 0, made.stderr
    assert "master key is not in it" in made.stderr.replace("\n", " ")
    # the server answered throughout (the dev key's plan rate-limits some: 429, never a 5xx)
    assert 201 in during and set(during) <= {201, 429}

    checked = dxserve("backup", "verify", str(out), data=live_data_dir, repository=trained_repo)
    assert checked.returncode == 0 and "intact" in checked.stderr, checked.stderr
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(out) as archive:
        member = archive.getmember("database/dxserve.db")
    data = bytearray(out.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0xFF  # a byte of the database snapshot
    damaged.write_bytes(bytes(data))
    refused = dxserve("backup", "verify", str(damaged), data=live_data_dir, repository=trained_repo)
    assert refused.returncode == 2 and "damaged" in refused.stderr

    restored = tmp_path / "restored"
    done = dxserve(
        "restore", str(out), "--data-dir", str(restored), data=restored, repository=trained_repo
    )
    assert done.returncode == 0, done.stderr
    again = dxserve(
        "restore", str(out), "--data-dir", str(restored), data=restored, repository=trained_repo
    )
    assert again.returncode == 2 and "empty data dir" in again.stderr

    for new_url, _ in run_server(restored, trained_repo, expect_key=False):
        auth = {"Authorization": f"Bearer {token}"}  # the keys came back with the database
        for diagnosis in answered:
            base = f"http://{new_url}/v1/diagnoses/{diagnosis}"
            assert requests.get(base, headers=auth, timeout=30).json()["id"] == diagnosis
            for suffix in ("heatmap.png", "sr.dcm", "fhir"):
                response = requests.get(f"{base}/{suffix}", headers=auth, timeout=60)
                assert response.status_code == 200, (suffix, response.text)
    audit = dxserve("audit", "verify", data=restored, repository=trained_repo)
    assert audit.returncode == 0, audit.stderr + audit.stdout
