"""Embedded `dxserve serve` against `dxserve serve --ray` with 1 and 2 replicas, in one run.

Every mode serves the same repository from the same PostgreSQL database (Ray needs one, and the
embedded server is given it too, so only the serving differs). For each mode, wrk drives at
c=1 and c=16: POST /v2/models/echo-cnn/infer (one image, binary tensors), POST /v1/diagnoses
(a 128-px PNG: decode, infer, store, audit, meter) and GET /v2/health/live, a route that does
nothing — what it costs through Ray is Ray's own proxy and hop per request. Besides requests/s
and latency, the CPU time of the server's whole process tree (for Ray: the driver, GCS, raylet,
proxy, controller and replicas; PostgreSQL and wrk are not in it) per request: the cost a
replica adds, from which the table's last column scales to a machine.

The embedded server is measured first and again last; ratios are to the mean of its two runs.

    python benchmarks/ray_serve.py [--seconds 5] [--database postgresql+psycopg://…/postgres]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean

import psutil
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from serve import (
    REPORT_LUA,
    build_repository,
    free_port,
    oip_body,
    png_body,
    server_env,
    wait_ready,
    wrk,
)

MODES = {"embedded": 0, "Ray, 1 replica": 1, "Ray, 2 replicas": 2}
CONCURRENCY = (1, 16)
NO_OP = "GET /v2/health/live (no-op)"
GET_LUA = 'wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")\n' + REPORT_LUA


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server`` (an URL to its maintenance database)."""
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"dxserve_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


PARTS = {"ray::ProxyActor": "proxy", "ray::ServeReplica": "replicas"}


def cpu_seconds(pid: int) -> dict[str, float]:
    """User and system CPU time of a process and all its descendants: Ray's proxy, its
    replicas, and the rest (for the embedded server, all of it)."""
    parts = {"proxy": 0.0, "replicas": 0.0, "rest": 0.0}
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            part = next((v for k, v in PARTS.items() if process.name().startswith(k)), "rest")
            parts[part] += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return parts


def serve(env: dict[str, str], port: int, replicas: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "dxserve", "serve", "--no-demo", "--port", str(port)]
    if replicas:
        command.append("--ray")
        env = {**env, "DXSERVE_RAY_MIN_REPLICAS": str(replicas),
               "DXSERVE_RAY_MAX_REPLICAS": str(replicas),
               "DXSERVE_RAY_CPUS_PER_REPLICA": str(1 / replicas)}  # fmt: skip
    process = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    wait_ready(process, port, log)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it (Ray shuts its cluster down); the whole group if it hangs."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def get_wrk(url: str, token: str, connections: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "get.lua"
        script.write_text(GET_LUA)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(script), url],
            capture_output=True, text=True, env={**os.environ, "TOKEN": token}, check=True,
        ).stdout  # fmt: skip
    result = json.loads(out.split("RESULT ", 1)[1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def measure(pid: int, base: str, token: str, seconds: int) -> dict[tuple[str, int], dict]:
    body, length = oip_body()
    png = png_body()
    routes = {
        "POST OIP binary": lambda c: wrk(f"{base}/v2/models/echo-cnn/infer", body,
                                         "application/octet-stream", token, c, seconds, length),
        "POST /v1/diagnoses PNG": lambda c: wrk(f"{base}/v1/diagnoses", png, "image/png",
                                                token, c, seconds),
        NO_OP: lambda c: get_wrk(f"{base}/v2/health/live", token, c, seconds),
    }  # fmt: skip
    results = {}
    for route, drive in routes.items():
        for connections in CONCURRENCY:
            drive(connections)  # warm: models, connections, Ray's routing
            cpu = cpu_seconds(pid)
            result = drive(connections)
            after = cpu_seconds(pid)
            for part in cpu:
                result[part] = (after[part] - cpu[part]) * 1000 / max(1, result["requests"])
            result["cpu_ms"] = result["proxy"] + result["replicas"] + result["rest"]
            results[route, connections] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument(
        "--database",
        default=os.environ.get("DXSERVE_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server's maintenance database; a fresh database is made on it",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    runs: dict[str, list[dict[tuple[str, int], dict]]] = {}
    with tempfile.TemporaryDirectory() as folder, fresh_database(args.database) as url:
        root = Path(folder)
        repository = build_repository(root)
        (root / "data").mkdir()
        env = {**server_env(repository, root / "data"), "DXSERVE_DATABASE_URL": url}
        token = ""
        for mode in [*MODES, "embedded"]:
            port = free_port()
            log = root / f"serve-{len(runs)}-{MODES[mode]}.log"
            process = serve(env, port, MODES[mode], log)
            token = token or next(w for w in log.read_text().split() if w.startswith("dxs_"))
            try:
                results = measure(process.pid, f"http://127.0.0.1:{port}", token, args.seconds)
                runs.setdefault(mode, []).append(results)
            finally:
                stop(process)
    table = Table("route", "c", "mode", "req/s", "p50 ms", "p99 ms", "errors",
                  "× embedded", "CPU ms/req", "proxy/replicas/rest", "req/s per core")  # fmt: skip
    embedded = runs["embedded"]
    for route, connections in embedded[0]:
        key = (route, connections)
        base_rps = mean(r[key]["rps"] for r in embedded)
        for mode, measured in runs.items():
            rs = [r[key] for r in measured]
            cpu = mean(r["cpu_ms"] for r in rs)
            table.add_row(
                route, str(connections), mode,
                " / ".join(f"{r['rps']:.1f}" for r in rs),
                f"{mean(r['p50_us'] for r in rs) / 1000:.1f}",
                f"{mean(r['p99_us'] for r in rs) / 1000:.1f}",
                str(sum(r["errors"] + r["non2xx"] for r in rs)),
                f"{mean(r['rps'] for r in rs) / base_rps:.2f}",
                f"{cpu:.2f}",
                "/".join(f"{mean(r[part] for r in rs):.1f}" for part in ("proxy", "replicas", "rest")),
                f"{1000 / cpu:.0f}" if cpu else "–",
            )  # fmt: skip
    console = Console(width=170)
    console.print(table)
    console.print(
        f"{args.seconds} s a measurement on {os.cpu_count()} cores; the embedded server ran first "
        "and last (both req/s shown); CPU is the server's process tree's, PostgreSQL's and wrk's "
        "excluded, split into Ray's proxy, the replicas and the rest (driver, GCS, raylet, controller; "
        "for embedded, the whole server); 'req/s per core' = 1000 / CPU ms per request."
    )


if __name__ == "__main__":
    main()
