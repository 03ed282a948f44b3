"""Serving throughput and latency against raw in-process ONNX Runtime, measured in one run.

(1) raw: ONNX Runtime in this process at its best batch size — the practical ceiling;
(2) OIP: POST /v2/models/echo-cnn/infer, one 3×128×128 image a request, binary tensor data;
(3) /v1: POST /v1/diagnoses with a 128-px PNG (decode, preprocess, infer, store, record).
(4) naive: FastAPI + ORT, one session run a request, no batching (benchmarks/naive_server.py),
    on the same OIP binary request — the comparison point the issue names;
(5) minimal: a bare ASGI function on uvicorn with dxserve's ORT session and batcher and nothing
    else (benchmarks/minimal_server.py) — what the Python HTTP stack itself allows here.
(2) to (5) are driven by wrk (C, Debian package `wrk`) at concurrency 1 and 16 against
`dxserve serve` in its own process. Also reports cold start to ready and the server's RSS.
Targets (issue #3): OIP ≥ 0.85× raw and /v1 ≥ 0.6× raw at concurrency 16, p99 ≤ 50 ms.

The machines this runs on share their cores with other tenants: raw ORT alone was seen to move
between 600 and 1,100 images/s within a minute. So raw ORT is measured again between every two
measurements of a path, and each ratio is to the mean of the raw runs just before and just
after it. The measurements run in rounds; a path's ratio is the median of its per-round
ratios, and its throughput and latencies are medians over the rounds.

    python benchmarks/serve.py [--rounds 3] [--seconds 5]
    DXSERVE_WORKERS=2 DXSERVE_ORT_THREADS=1 python benchmarks/serve.py   # two worker processes
"""

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime as ort
from PIL import Image
from rich.console import Console
from rich.table import Table

from dxserve.core.security.envelope import new_master_key
from dxserve.phantoms.study import make_study

REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "non2xx": %d}\\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""

LUA = (
    """
local f = io.open(os.getenv("BODY_FILE"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE")
local extra = os.getenv("HEADER_LENGTH")
if extra and extra ~= "" then wrk.headers["Inference-Header-Content-Length"] = extra end
"""
    + REPORT_LUA
)


def build_repository(root: Path) -> Path:
    """A model repository with the seed CNN (one quick epoch on phantoms: speed, not accuracy)."""
    from dxserve.datasets import open_dataset
    from dxserve.phantoms.generate import generate
    from dxserve.training.loop import TrainConfig, train

    generate(root / "phantoms", n=64, seed=0, size=128)
    train(open_dataset(root / "phantoms"), root / "models", config=TrainConfig(epochs=1))
    return root / "models"


def raw_throughput(
    session: ort.InferenceSession, seconds: float, batches: tuple[int, ...] = (1, 8, 16, 32, 64)
) -> tuple[int, float]:
    """The best of ``batches``: its size and images/s, each run for ``seconds / len(batches)``."""
    best = (0, 0.0)
    for batch in batches:
        x = np.random.default_rng(0).random((batch, 3, 128, 128), dtype=np.float32)
        session.run(None, {"image": x})
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / len(batches):
            session.run(None, {"image": x})
            done += batch
        rate = done / (time.perf_counter() - started)
        best = max(best, (batch, rate), key=lambda b: b[1])
    return best


def median_ms(work: Callable[[], object], repeat: int = 20) -> float:
    """Median milliseconds of ``work`` over ``repeat`` runs, after one to warm up."""
    work()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return 1000 * median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The dev key's plan, with a rate limit no load generator reaches: the limiter's bookkeeping is
# measured, not its refusals.
BENCH_PLANS = "[plans.standard]\nrate_per_second = 1e9\nburst = 1000000000\n"


def server_env(repository: Path, data: Path) -> dict[str, str]:
    """`dxserve serve`'s environment for a benchmark: its data, a master key, the plans."""
    (data / "plans.toml").write_text(BENCH_PLANS)
    return {
        **os.environ,
        "DXSERVE_DATA_DIR": str(data),
        "DXSERVE_MODEL_REPOSITORY": str(repository),
        "DXSERVE_LOG_LEVEL": "WARNING",
        "DXSERVE_MASTER_KEY": os.environ.get("DXSERVE_MASTER_KEY") or new_master_key(),
        "DXSERVE_PLANS_FILE": str(data / "plans.toml"),
    }


def start_server(
    repository: Path, data: Path, port: int, source: Path | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """`dxserve serve` (of the ``source`` folder's ``src/`` when given: another revision)."""
    env = server_env(repository, data)
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    log = (data / "serve.log").open("w")
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "dxserve", "serve", "--no-demo", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    wait_ready(process, port, data / "serve.log")
    cold = time.perf_counter() - started
    token = next(w for w in (data / "serve.log").read_text().split() if w.startswith("dxs_"))
    return process, token, cold


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path | None = None) -> None:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None:
            raise SystemExit(log.read_text() if log else "server exited")
        time.sleep(0.05)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's worker processes)."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += rss_mb(int(child))
    return total


def wrk(
    url: str,
    body: bytes,
    content_type: str,
    token: str,
    connections: int,
    seconds: int,
    header_length: str = "",
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        script, body_file = Path(folder) / "post.lua", Path(folder) / "body"
        script.write_text(LUA)
        body_file.write_bytes(body)
        env = {
            **os.environ,
            "BODY_FILE": str(body_file),
            "TOKEN": token,
            "CONTENT_TYPE": content_type,
            "HEADER_LENGTH": header_length,
        }
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
    result = json.loads(out.split("RESULT ", 1)[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


ACCOUNTED_ROUTES = ("/v1/diagnoses PNG", "OIP binary")


def drive_accounted_routes(base: str, token: str, seconds: int) -> dict[str, float]:
    """Requests/s at c=16 on the two routes that write usage and audit events: a PNG to
    /v1/diagnoses and a binary OIP inference."""
    body, length = oip_body()
    return {
        ACCOUNTED_ROUTES[0]: wrk(
            f"{base}/v1/diagnoses", png_body(), "image/png", token, 16, seconds, ""
        )["rps"],
        ACCOUNTED_ROUTES[1]: wrk(
            f"{base}/v2/models/echo-cnn/infer",
            body,
            "application/octet-stream",
            token,
            16,
            seconds,
            length,
        )["rps"],
    }


def oip_body() -> tuple[bytes, str]:
    x = np.random.default_rng(1).random((1, 3, 128, 128), dtype=np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "FP32",
                    "shape": [1, 3, 128, 128],
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + x.tobytes(), str(len(header))


def png_body() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(make_study(0, 1, 128).frames[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def start_comparison(script: str, argument: Path) -> tuple[subprocess.Popen[bytes], int]:
    """One of the comparison servers next to this file, ready on a free port."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name(script)), str(argument), str(port)]
    )
    wait_ready(server, port)
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        model = repository / "echo-cnn" / "1" / "model.onnx"
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        batch, _ = raw_throughput(session, 2 * args.seconds)
        port = free_port()
        (root / "data").mkdir()
        process, token, cold = start_server(repository, root / "data", port)
        naive, naive_port = start_comparison("naive_server.py", model)
        minimal, minimal_port = start_comparison("minimal_server.py", repository)
        body, length = oip_body()
        paths = [
            (
                "OIP binary",
                f"http://127.0.0.1:{port}/v2/models/echo-cnn/infer",
                body,
                "application/octet-stream",
                length,
            ),
            (
                "/v1/diagnoses PNG",
                f"http://127.0.0.1:{port}/v1/diagnoses",
                png_body(),
                "image/png",
                "",
            ),
            (
                "naive FastAPI + ORT (no batching)",
                f"http://127.0.0.1:{naive_port}/v2/models/echo-cnn/infer",
                body,
                "application/octet-stream",
                length,
            ),
            (
                "minimal ASGI + dxserve's batcher",
                f"http://127.0.0.1:{minimal_port}/v2/models/echo-cnn/infer",
                body,
                "application/octet-stream",
                length,
            ),
        ]
        raws: list[float] = []
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        try:
            raw_seconds = max(2.0, args.seconds / 2)
            for _ in range(args.rounds):
                before = raw_throughput(session, raw_seconds, (batch,))[1]
                raws.append(before)
                for name, url, payload, ctype, hlen in paths:
                    for connections in (1, 16):
                        r = wrk(url, payload, ctype, token, connections, args.seconds, hlen)
                        after = raw_throughput(session, raw_seconds, (batch,))[1]
                        raws.append(after)
                        r["ratio"] = r["rps"] / ((before + after) / 2)
                        runs.setdefault((name, connections), []).append(r)
                        before = after
            rss = rss_mb(process.pid)
        finally:
            for server in (process, naive, minimal):
                server.terminate()
                server.wait(timeout=20)
    table = Table(
        "path",
        "concurrency",
        "req/s = images/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "ratio to raw",
        "ratio by round",
    )
    raw_range = f"{min(raws):.0f}–{max(raws):.0f} images/s"
    table.add_row(
        f"raw ORT in-process (batch {batch})",
        "–",
        f"{median(raws):.1f}",
        "",
        "",
        "",
        "1.00",
        raw_range,
    )
    for (name, connections), results in runs.items():
        table.add_row(
            name,
            str(connections),
            f"{median(r['rps'] for r in results):.1f}",
            f"{median(r['p50_us'] for r in results) / 1000:.1f}",
            f"{median(r['p99_us'] for r in results) / 1000:.1f}",
            str(sum(r["errors"] + r["non2xx"] for r in results)),
            f"{median(r['ratio'] for r in results):.2f}",
            " ".join(f"{r['ratio']:.2f}" for r in results),
        )
    console = Console(width=160)
    console.print(table)
    workers = os.environ.get("DXSERVE_WORKERS", "1")
    console.print(
        f"{args.rounds} rounds of {args.seconds} s a measurement; server: {workers} worker "
        f"process(es); cold start to ready: {cold:.2f} s; RSS after the run (all processes): "
        f"{rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
