"""dxserve beside the servers a user would otherwise pick, on the same model and the same
tensors, measured in one run.

The echo CNN (one quick epoch: speed, not accuracy) served by
- MLServer (a custom ONNX Runtime runtime, adaptive batching: max_batch_size 32,
  max_batch_time 5 ms; ``parallel_workers`` 0: 1.7.1's worker processes die on start here),
  request: OIP JSON (it has no binary tensor extension);
- BentoML (``@bentoml.api(batchable=True, max_batch_size=32)``, one worker), its own JSON;
- LitServe (``max_batch_size=32, batch_timeout=5 ms``), its own JSON;
- Ray Serve (``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)``,
  ``max_ongoing_requests=64``, a one-machine cluster on loopback), its own JSON;
- naive FastAPI + ONNX Runtime, no batching, and a minimal ASGI function with dxserve's batcher
  and nothing else (the ceiling of a Python server here), both on OIP binary;
- dxserve: OIP binary, OIP JSON, and ``/v1/diagnoses`` (a 128-px PNG, with authentication,
  audit, metering and storage).
"Own JSON" is ``{"image": [[[[…]]]]}``, the (1, 3, 128, 128) image as nested lists; OIP JSON
carries the same numbers. Every peer runs from its own virtual environment, made by this script
from the pinned versions in ``benchmarks/peers/*.txt`` (kept in ``~/.cache/dxserve-peers``), one
at a time, bound to 127.0.0.1, warmed, each driven by wrk at c=1, 16 and 64. Raw ONNX Runtime
in this process is measured before each server, as a reference for how busy the machine was.

    python benchmarks/peers.py [--seconds 5] [--only mlserver,bentoml,litserve,ray]
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psutil
from rich.console import Console
from rich.table import Table

from oip_json import json_body
from serve import (
    build_repository,
    free_port,
    oip_body,
    png_body,
    raw_throughput,
    start_comparison,
    start_server,
    wrk,
)

HERE = Path(__file__).parent / "peers"
VENVS = Path(os.environ.get("DXSERVE_PEERS_VENVS", Path.home() / ".cache" / "dxserve-peers"))
CONNECTIONS = (1, 16, 64)
PEERS = ("mlserver", "bentoml", "litserve", "ray")


@dataclass(frozen=True)
class Target:
    """One server and the request it is measured on."""

    name: str
    url: str
    body: bytes
    content_type: str
    header_length: str = ""
    token: str = "-"


def own_json() -> bytes:
    x = np.random.default_rng(1).random((1, 3, 128, 128), dtype=np.float32)
    return json.dumps({"image": x.tolist()}).encode()


def venv(peer: str) -> Path:
    """The peer's virtual environment (made again when its requirements change)."""
    requirements = HERE / f"{peer}.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    folder = VENVS / f"{peer}-{digest}"
    if not (folder / "ready").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)
        (folder / "ready").touch()
    return folder / "bin"


def peer_command(peer: str, bin: Path, port: int, model: Path, scratch: Path) -> list[str]:
    if peer == "mlserver":
        folder = scratch / "mlserver"
        folder.mkdir()
        shutil.copy(HERE / "mlserver_runtime.py", folder)
        settings = {"host": "127.0.0.1", "http_port": port, "parallel_workers": 0}
        settings |= {"grpc_port": free_port(), "metrics_port": free_port()}
        (folder / "settings.json").write_text(json.dumps(settings))
        model_settings = {
            "name": "echo-cnn",
            "implementation": "mlserver_runtime.EchoOnnx",
            "max_batch_size": 32,
            "max_batch_time": 0.005,
            "parameters": {"uri": str(model)},
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
        return [str(bin / "mlserver"), "start", str(folder)]
    if peer == "bentoml":
        return [
            str(bin / "bentoml"),
            "serve",
            "bentoml_service:Echo",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
    return [str(bin / "python"), str(HERE / f"{peer}_server.py"), str(port)]


def peer_target(peer: str, port: int) -> Target:
    base = f"http://127.0.0.1:{port}"
    if peer == "mlserver":
        return Target(
            "MLServer, OIP JSON",
            f"{base}/v2/models/echo-cnn/infer",
            json_body(),
            "application/json",
        )
    names = {"bentoml": "BentoML", "litserve": "LitServe", "ray": "Ray Serve"}
    return Target(f"{names[peer]}, own JSON", f"{base}/predict", own_json(), "application/json")


@contextmanager
def running(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[int]:
    """The server of ``command`` while inside; yields its pid."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process.pid
    finally:
        for child in psutil.Process(process.pid).children(recursive=True):
            child.terminate()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_answering(target: Target, pid: int, log: Path, timeout: float = 180) -> None:
    """Until ``target`` answers its request with a 2xx (the model loaded and warmed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            raise SystemExit(f"{target.name} exited:\n{log.read_text()[-3000:]}")
        request = urllib.request.Request(
            target.url,
            data=target.body,
            headers={"Content-Type": target.content_type, "Authorization": f"Bearer {target.token}"}
            | (
                {"Inference-Header-Content-Length": target.header_length}
                if target.header_length
                else {}
            ),
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise SystemExit(f"{target.name} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    processes = [process, *process.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes if p.is_running()) / 2**20


def measure(target: Target, pid: int, seconds: int) -> list[dict[str, float]]:
    rows = []
    for connections in CONNECTIONS:
        result = wrk(
            target.url,
            target.body,
            target.content_type,
            target.token,
            connections,
            seconds,
            target.header_length,
        )
        rows.append({**result, "connections": connections, "rss": rss_mb(pid)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--only", default=",".join(PEERS), help="peers to run, comma-separated")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    peers = [p for p in args.only.split(",") if p]
    console = Console(width=160)
    bins = {}
    for peer in peers:
        console.print(f"virtual environment of {peer} …")
        bins[peer] = venv(peer)
    results: dict[str, list[dict[str, float]]] = {}
    raw: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        model = repository / "echo-cnn" / "1" / "model.onnx"
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        batch, _ = raw_throughput(session, 4)

        (root / "data").mkdir()
        process, token, _ = start_server(repository, root / "data", port := free_port())
        binary, length = oip_body()
        oip = f"http://127.0.0.1:{port}/v2/models/echo-cnn/infer"
        dxserve = [
            Target("dxserve, OIP binary", oip, binary, "application/octet-stream", length, token),
            Target("dxserve, OIP JSON", oip, json_body(), "application/json", "", token),
            Target(
                "dxserve /v1 (auth, audit, metering, storage), PNG",
                f"http://127.0.0.1:{port}/v1/diagnoses",
                png_body(),
                "image/png",
                "",
                token,
            ),
        ]
        try:
            raw["dxserve"] = raw_throughput(session, 2, (batch,))[1]
            for target in dxserve:
                results[target.name] = measure(target, process.pid, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
        for script, argument, name in (
            ("naive_server.py", model, "naive FastAPI + ORT, no batching, OIP binary"),
            ("minimal_server.py", repository, "minimal ASGI + dxserve's batcher, OIP binary"),
        ):
            raw[name] = raw_throughput(session, 2, (batch,))[1]
            comparison, comparison_port = start_comparison(script, argument)
            try:
                target = Target(
                    name,
                    f"http://127.0.0.1:{comparison_port}/v2/models/echo-cnn/infer",
                    binary,
                    "application/octet-stream",
                    length,
                )
                results[name] = measure(target, comparison.pid, args.seconds)
            finally:
                comparison.terminate()
                comparison.wait(timeout=30)
        for peer in peers:
            port = free_port()
            target = peer_target(peer, port)
            env = {**os.environ, "ECHO_MODEL": str(model), "RAY_USAGE_STATS_ENABLED": "0"}
            env.pop("PYTHONPATH", None)
            log = root / f"{peer}.log"
            command = peer_command(peer, bins[peer], port, model, root)
            raw[target.name] = raw_throughput(session, 2, (batch,))[1]
            with running(command, HERE, env, log) as pid:
                wait_answering(target, pid, log)
                results[target.name] = measure(target, pid, args.seconds)

    table = Table("server, request", "c", "images/s", "p50 ms", "p99 ms", "errors", "RSS MiB")
    for name, rows in results.items():
        for row in rows:
            table.add_row(
                name,
                str(int(row["connections"])),
                f"{row['rps']:.0f}",
                f"{row['p50_us'] / 1000:.1f}",
                f"{row['p99_us'] / 1000:.1f}",
                str(int(row["errors"] + row["non2xx"])),
                f"{row['rss']:.0f}",
            )
    console.print(table)
    console.print(
        "raw ONNX Runtime in process before each server, images/s at batch "
        f"{batch}: " + ", ".join(f"{v:.0f}" for v in raw.values())
    )
    console.print(targets(results))


def at(results: dict[str, list[dict[str, float]]], name: str, c: int = 16) -> dict[str, float]:
    return next(r for r in results[name] if r["connections"] == c)


def targets(results: dict[str, list[dict[str, float]]]) -> Table:
    """Issue 17's targets at c=16, from this run."""
    table = Table("target (c=16)", "measured", "met")
    peer_names = [
        n for n in results if n.split(",")[0] in ("MLServer", "BentoML", "LitServe", "Ray Serve")
    ]
    binary, as_json = at(results, "dxserve, OIP binary"), at(results, "dxserve, OIP JSON")
    v1 = at(results, "dxserve /v1 (auth, audit, metering, storage), PNG")
    minimal = at(results, "minimal ASGI + dxserve's batcher, OIP binary")
    if peer_names:
        best_name = max(peer_names, key=lambda n: at(results, n)["rps"])
        best = at(results, best_name)
        ratio = binary["rps"] / best["rps"]
        table.add_row(
            f"OIP binary ≥ 1.5× the best peer ({best_name}), p99 no worse",
            f"{ratio:.2f}×, p99 {binary['p99_us'] / 1000:.0f} vs {best['p99_us'] / 1000:.0f} ms",
            str(ratio >= 1.5 and binary["p99_us"] <= best["p99_us"]),
        )
        ratio = v1["rps"] / best["rps"]
        table.add_row("/v1 ≥ the best peer", f"{ratio:.2f}×", str(ratio >= 1))
    if "MLServer, OIP JSON" in results:
        ratio = as_json["rps"] / at(results, "MLServer, OIP JSON")["rps"]
        table.add_row("OIP JSON ≥ 1.5× MLServer", f"{ratio:.2f}×", str(ratio >= 1.5))
    for label, row, goal in (("OIP binary", binary, 0.9), ("/v1", v1, 0.6)):
        ratio = row["rps"] / minimal["rps"]
        table.add_row(f"{label} ≥ {goal}× the minimal server", f"{ratio:.2f}×", str(ratio >= goal))
    return table


if __name__ == "__main__":
    main()
