"""Soak: `dxserve serve` under a realistic mix for minutes on end, watched minute by minute.

32 clients (by default) send, each pick weighted: PNG frames, DICOM cines of phantom patients,
PNGs with explain=true, reads of FHIR reports, DICOM SRs and heatmaps, clinicians' feedback,
OIP inference (binary tensors) and listing. Per minute: requests, errors (anything but the
expected 2xx, or no answer), 5xx, p50/p99 latency and the server's RSS.
Targets (issue 18): 0 errors and 0 5xx; RSS at the last minute within 10 % of minute 2; p99
of the last minute within 1.5× of minute 2's.

    python benchmarks/soak.py [--minutes 10] [--concurrency 32]
"""

import argparse
import asyncio
import random
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from dxserve.phantoms.dicom import write_study
from dxserve.phantoms.study import make_study
from serve import build_repository, free_port, oip_body, png_body, rss_mb, start_server

# What the mix sends, by weight.
MIX = {
    "diagnose PNG": 28,
    "diagnose DICOM cine": 6,
    "diagnose explain": 4,
    "read FHIR": 10,
    "read SR": 5,
    "read heatmap": 4,
    "feedback": 5,
    "OIP infer": 28,
    "list": 10,
}


@dataclass
class Minute:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    server_errors: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rss_mb: float = 0.0


def cines(count: int) -> list[bytes]:
    """Phantom echo cines (16 frames, 256 px) as DICOM files of different fake patients."""
    rng = np.random.default_rng(7)
    bodies = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(count):
            path = Path(folder) / f"{i}.dcm"
            write_study(path, make_study(7, i, 256, frames=16).frames, rng)
            bodies.append(path.read_bytes())
    return bodies


class Soak:
    def __init__(self, base: str, token: str, minutes: int) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}
        self.png = png_body()
        self.cines = cines(8)
        self.oip, self.oip_header = oip_body()
        self.made: list[dict[str, object]] = []  # diagnoses to read and give feedback on
        self.explained: list[str] = []
        self.minutes = [Minute() for _ in range(minutes)]
        self.started = time.monotonic()
        self.until = self.started + 60 * minutes

    def minute(self) -> Minute:
        index = int((time.monotonic() - self.started) // 60)
        return self.minutes[min(index, len(self.minutes) - 1)]

    async def one(self, client: httpx.AsyncClient, kind: str) -> httpx.Response | None:
        base, auth = self.base, self.headers
        if kind.startswith("diagnose"):
            explain = kind == "diagnose explain"
            cine = kind == "diagnose DICOM cine"
            body = random.choice(self.cines) if cine else self.png
            media = "application/dicom" if cine else "image/png"
            return await client.post(
                f"{base}/v1/diagnoses",
                params={"explain": "true"} if explain else None,
                content=body,
                headers={**auth, "Content-Type": media},
            )
        if kind == "OIP infer":
            return await client.post(
                f"{base}/v2/models/echo-cnn/infer",
                content=self.oip,
                headers={
                    **auth,
                    "Content-Type": "application/octet-stream",
                    "Inference-Header-Content-Length": self.oip_header,
                },
            )
        if kind == "list":
            return await client.get(f"{base}/v1/diagnoses", params={"limit": 20}, headers=auth)
        if not self.made or (kind == "read heatmap" and not self.explained):
            return None  # nothing to read yet
        if kind == "read heatmap":
            diagnosis = random.choice(self.explained)
            return await client.get(f"{base}/v1/diagnoses/{diagnosis}/heatmap.png", headers=auth)
        record = random.choice(self.made)
        if kind == "read FHIR":
            return await client.get(f"{base}/v1/diagnoses/{record['id']}/fhir", headers=auth)
        if kind == "read SR":
            return await client.get(f"{base}/v1/diagnoses/{record['id']}/sr.dcm", headers=auth)
        labels = list(record["labels"])  # type: ignore[call-overload]
        answer = record["label"]
        verdict = (
            {"agree": True} if answer in labels else {"agree": False, "correct_label": labels[0]}
        )
        return await client.post(
            f"{base}/v1/diagnoses/{record['id']}/feedback", json=verdict, headers=auth
        )

    async def client(self) -> None:
        kinds, weights = list(MIX), list(MIX.values())
        async with httpx.AsyncClient(timeout=60) as client:
            while time.monotonic() < self.until:
                kind = random.choices(kinds, weights)[0]
                sent = time.monotonic()
                try:
                    response = await self.one(client, kind)
                except httpx.HTTPError:
                    self.minute().errors += 1
                    continue
                if response is None:
                    continue
                minute = self.minute()
                minute.latencies.append(time.monotonic() - sent)
                minute.kinds[kind] += 1
                if response.status_code >= 500:
                    minute.server_errors += 1
                if not response.is_success:
                    minute.errors += 1
                    continue
                if kind.startswith("diagnose"):
                    record = response.json()
                    self.made = [*self.made[-500:], record]
                    if kind == "diagnose explain":
                        self.explained = [*self.explained[-500:], str(record["id"])]

    async def watch(self, pid: int) -> None:
        """The server's RSS at the end of each minute."""
        for index in range(len(self.minutes)):
            await asyncio.sleep(max(0.0, self.started + 60 * (index + 1) - 1 - time.monotonic()))
            self.minutes[index].rss_mb = rss_mb(pid)

    async def run(self, concurrency: int, pid: int) -> None:
        await asyncio.gather(self.watch(pid), *(self.client() for _ in range(concurrency)))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    random.seed(18)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        repository = build_repository(root)
        data = root / "data"
        data.mkdir()
        port = free_port()
        process, token, _ = start_server(repository, data, port)
        try:
            soak = Soak(f"http://127.0.0.1:{port}", token, args.minutes)
            asyncio.run(soak.run(args.concurrency, process.pid))
        finally:
            process.terminate()
            process.wait(timeout=30)
    table = Table(
        "minute", "requests", "req/s", "errors", "5xx", "p50 ms", "p99 ms", "RSS MB",
        title=f"soak: {args.concurrency} clients, {args.minutes} min",
    )  # fmt: skip
    for index, minute in enumerate(soak.minutes, 1):
        n = len(minute.latencies)
        table.add_row(
            str(index),
            str(n),
            f"{n / 60:.1f}",
            str(minute.errors),
            str(minute.server_errors),
            f"{percentile(minute.latencies, 50):.0f}",
            f"{percentile(minute.latencies, 99):.0f}",
            f"{minute.rss_mb:.0f}",
        )
    console = Console(width=140)
    console.print(table)
    second, last = soak.minutes[1 if len(soak.minutes) > 1 else 0], soak.minutes[-1]
    errors = sum(m.errors for m in soak.minutes)
    server_errors = sum(m.server_errors for m in soak.minutes)
    rss = last.rss_mb / second.rss_mb
    p99 = percentile(last.latencies, 99) / percentile(second.latencies, 99)
    mix = defaultdict(int)
    for minute in soak.minutes:
        for kind, n in minute.kinds.items():
            mix[kind] += n
    console.print("mix: " + ", ".join(f"{k} {n}" for k, n in sorted(mix.items())))
    console.print(
        f"errors {errors} (target 0), 5xx {server_errors} (target 0), "
        f"RSS last/minute 2 {rss:.3f} (target ≤ 1.10), p99 last/minute 2 {p99:.2f} (target ≤ 1.5)"
    )


if __name__ == "__main__":
    main()
