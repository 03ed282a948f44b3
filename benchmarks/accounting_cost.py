"""What accounting costs serving: throughput with and without the audit trail, usage metering
and per-key rate limiting.

Both servers are `dxserve serve` on the same model repository and database (the one without
accounting is benchmarks/unaccounted_server.py); wrk drives the clinical API (POST
/v1/diagnoses, PNG) and the OIP at concurrency 16, alternating runs (A B A B) so drift in these
noisy machines falls on both. Target (issue #6): audit + metering cost ≤ 10 % of throughput.

    python benchmarks/accounting_cost.py [--seconds 10] [--rounds 2]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from serve import (
    ACCOUNTED_ROUTES,
    build_repository,
    drive_accounted_routes,
    free_port,
    server_env,
    start_server,
    wait_ready,
)


def unaccounted(repository: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    script = Path(__file__).with_name("unaccounted_server.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], env=server_env(repository, data)
    )
    wait_ready(process, port)
    return process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        totals: dict[tuple[str, str], list[float]] = {}
        token = ""
        for round_ in range(args.rounds):
            data = root / f"data{round_}"  # a fresh database each round: the dev key is new
            data.mkdir()
            for mode in ("accounted", "unaccounted"):
                port = free_port()
                if mode == "accounted":
                    process, token, _ = start_server(repository, data, port)
                else:
                    process = unaccounted(repository, data, port)
                base = f"http://127.0.0.1:{port}"
                try:
                    for name, rps in drive_accounted_routes(base, token, args.seconds).items():
                        totals.setdefault((name, mode), []).append(rps)
                finally:
                    process.terminate()
                    process.wait(timeout=20)
    table = Table(
        "route (c=16)",
        "accounted req/s",
        "unaccounted req/s",
        "ratio",
        "cost",
        title="cost of audit trail + usage metering + rate limiting",
    )
    for name in ACCOUNTED_ROUTES:
        audited = sum(totals[(name, "accounted")]) / args.rounds
        plain = sum(totals[(name, "unaccounted")]) / args.rounds
        table.add_row(
            name,
            f"{audited:.1f}",
            f"{plain:.1f}",
            f"{audited / plain:.3f}",
            f"{1 - audited / plain:+.1%}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
