"""What durable accounting costs: `dxserve serve` of this checkout against the same server at
an earlier revision, where a request's audit event was queued after its response and its
usage event committed in a lingering transaction (issue 18's "today's code").

Here a 201 answer waits for one transaction holding its diagnosis, its usage and its audit
event (group-committed with every request answering meanwhile). Both servers run from this
checkout's virtual environment on the same model repository, each with a fresh data dir, driven
by wrk at concurrency 16 in alternating runs (A B A B). Target: ≤ 10 % fewer requests/s.

    python benchmarks/durability_cost.py [--against 2f977b1] [--seconds 10] [--rounds 2]
"""

import argparse
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from serve import (
    ACCOUNTED_ROUTES,
    build_repository,
    drive_accounted_routes,
    free_port,
    start_server,
)

# The last commit before issue 18 (durability) changed how requests are recorded.
BEFORE = "2f977b1"


def checkout(revision: str, into: Path) -> Path:
    """The ``src/`` tree of ``revision`` (from this repository's history) under ``into``."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", "--format=tar", revision, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", default=BEFORE, help="the revision to compare with")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install -y wrk")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        before = checkout(args.against, root / "before")
        totals: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            for mode, source in (("now", None), (args.against, before)):
                data = root / f"data-{mode}-{round_}"
                data.mkdir()
                port = free_port()
                process, token, _ = start_server(repository, data, port, source)
                base = f"http://127.0.0.1:{port}"
                try:
                    for name, rps in drive_accounted_routes(base, token, args.seconds).items():
                        totals.setdefault((name, mode), []).append(rps)
                finally:
                    process.terminate()
                    process.wait(timeout=20)
    table = Table(
        "route (c=16)",
        "durable (now) req/s",
        f"at {args.against} req/s",
        "ratio",
        "cost",
        title="cost of committing usage and audit before answering",
    )
    for name in ACCOUNTED_ROUTES:
        now = sum(totals[(name, "now")]) / args.rounds
        then = sum(totals[(name, args.against)]) / args.rounds
        table.add_row(
            name, f"{now:.1f}", f"{then:.1f}", f"{now / then:.3f}", f"{1 - now / then:+.1%}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
