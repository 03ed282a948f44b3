"""`dxserve serve` with its own certificate: HTTPS on loopback, HSTS, and no plain HTTP."""

import http.client
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.processes import free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_serve_https_with_its_own_certificate(tmp_path: Path, trained_repo: Path) -> None:
    if not Path("/usr/bin/openssl").exists():
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "DXSERVE_DATA_DIR": str(tmp_path / "data"),
        "DXSERVE_MODEL_REPOSITORY": str(trained_repo),
        "DXSERVE_SSL_CERTFILE": str(cert),
        "DXSERVE_SSL_KEYFILE": str(key),
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dxserve", "serve", "--no-demo", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}/v2/health/ready"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as response:
                    assert response.status == 200
                    assert response.headers["strict-transport-security"] == "max-age=31536000"
                    assert response.headers["x-content-type-options"] == "nosniff"
                    break
            except (ConnectionError, urllib.error.URLError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((tmp_path / "serve.log").read_text()[-3000:])
                time.sleep(0.3)
        assert f"serving on https://127.0.0.1:{port}" in (tmp_path / "serve.log").read_text()
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/v2/health/ready")
            plain.getresponse()
        plain.close()
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "DXSERVE_DATA_DIR": str(tmp_path), "DXSERVE_SSL_CERTFILE": "/x.pem"}
    env.pop("DXSERVE_SSL_KEYFILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "dxserve", "serve", "--no-demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DXSERVE_SSL_KEYFILE" in result.stderr and "Traceback" not in result.stderr
