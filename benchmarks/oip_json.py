"""OIP requests with JSON tensor data — what most OIP clients send — measured in one run.

(1) in process: dxserve's request parser (simdjson) on the JSON body of one 3 × 128 × 128 FP32
    image (about 1 MB), against the standard library's ``json.loads`` and ``np.asarray`` of the
    same body (what dxserve did before);
(2) over HTTP, with wrk at c=1 and 16 against ``dxserve serve``: the same JSON body, and the same
    tensor as binary data (the binary tensor extension), and their ratio; with ``--baseline DIR``
    the JSON body also against the server of another checkout's ``src/``.

    python benchmarks/oip_json.py [--seconds 5] [--baseline /tmp/old-checkout]
"""

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from dxserve.api.oip import parse_request
from serve import build_repository, free_port, median_ms, oip_body, start_server, wrk


def json_body() -> bytes:
    x = np.random.default_rng(1).random((1, 3, 128, 128), dtype=np.float32)
    request = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 3, 128, 128], "data": x.ravel()}
        ],
        "outputs": [{"name": "probability"}],
    }
    return json.dumps(request, default=lambda a: a.tolist()).encode()


def standard_library(body: bytes) -> np.ndarray:
    spec = json.loads(body)["inputs"][0]
    return np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])


def over_http(
    repository: Path, data: Path, seconds: int, source: Path | None = None
) -> dict[str, dict[str, float]]:
    data.mkdir()
    process, token, _ = start_server(repository, data, port := free_port(), source)
    url = f"http://127.0.0.1:{port}/v2/models/echo-cnn/infer"
    binary, length = oip_body()
    results = {}
    try:
        for connections in (1, 16):
            results[f"JSON c={connections}"] = wrk(
                url, json_body(), "application/json", token, connections, seconds
            )
            results[f"binary c={connections}"] = wrk(
                url, binary, "application/octet-stream", token, connections, seconds, length
            )
    finally:
        process.terminate()
        process.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--baseline", type=Path, help="another checkout, whose server is timed")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    body = json_body()
    parse = median_ms(lambda: parse_request(body, None), 30)
    stdlib = median_ms(lambda: standard_library(body), 30)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        http = over_http(repository, root / "data", args.seconds)
        baseline = None
        if args.baseline:
            baseline = over_http(repository, root / "baseline", args.seconds, args.baseline)

    console = Console(width=140)
    console.print(f"one 3 × 128 × 128 FP32 image: JSON body {len(body) / 1e6:.2f} MB")
    parsing = Table("parse the JSON body into the array", "ms", "× dxserve")
    parsing.add_row("dxserve (simdjson)", f"{parse:.2f}", "1.00")
    parsing.add_row("json.loads + np.asarray", f"{stdlib:.2f}", f"{stdlib / parse:.2f}")
    console.print(parsing)
    table = Table("OIP over HTTP", "req/s", "p50 ms", "p99 ms", "errors", "× binary")
    runs = {f"dxserve {k}": v for k, v in http.items()}
    runs |= {f"baseline {k}": v for k, v in (baseline or {}).items() if k.startswith("JSON")}
    for name, r in runs.items():
        binary = http[f"binary c={name.rsplit('c=', 1)[1]}"]["rps"]
        table.add_row(
            name,
            f"{r['rps']:.0f}",
            f"{r['p50_us'] / 1000:.1f}",
            f"{r['p99_us'] / 1000:.1f}",
            str(int(r["errors"] + r["non2xx"])),
            f"{r['rps'] / binary:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
