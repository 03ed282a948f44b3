"""Diagnosis-row writes: group commit against one transaction per row, SQLite and PostgreSQL.

16 concurrent writers (as 16 concurrent requests would be) insert ``--rows`` diagnosis rows.
The baseline commits each row in its own transaction from a thread pool; dxserve's
GroupCommitter commits whatever has queued up in one transaction. Prints rows/s and the ratio.

    python benchmarks/group_commit.py [--rows 2000] [--postgres URL]
"""

import argparse
import asyncio
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, create_engine, insert, text

from dxserve.store.database import make_engine, migrate
from dxserve.store.group_commit import GroupCommitter
from dxserve.store.tables import DiagnosisRow, Tenant

WRITERS = 16


def row(tenant: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex,
        "tenant_id": tenant,
        "key_id": "k",
        "model": "echo-cnn",
        "version": 1,
        "label": "normal",
        "probability": 0.1,
        "input_sha256": "0" * 64,
        "input_media_type": "image/png",
        "input_bytes": 1,
        "result": "{}" * 200,
        "created_at": dt.datetime.now(dt.UTC),
    }


def prepare(engine: Engine) -> str:
    migrate(engine)
    tenant = uuid.uuid4().hex
    with engine.begin() as connection:
        connection.execute(
            insert(Tenant), [{"id": tenant, "name": tenant, "created_at": dt.datetime.now(dt.UTC)}]
        )
    return tenant


async def per_row(engine: Engine, tenant: str, rows: int) -> float:
    table = DiagnosisRow.__table__

    def commit_one() -> None:
        with engine.begin() as connection:
            connection.execute(insert(table), [row(tenant)])

    async def writer(n: int) -> None:
        for _ in range(n):
            await asyncio.to_thread(commit_one)

    started = time.perf_counter()
    await asyncio.gather(*(writer(rows // WRITERS) for _ in range(WRITERS)))
    return rows / (time.perf_counter() - started)


async def grouped(engine: Engine, tenant: str, rows: int) -> tuple[float, float]:
    table = DiagnosisRow.__table__

    def write(connection: Connection, rows: list[dict[str, object]]) -> None:
        connection.execute(insert(table), rows)

    committer = GroupCommitter(engine, write, "bench")

    async def writer(n: int) -> None:
        for _ in range(n):
            await committer.commit(row(tenant))

    started = time.perf_counter()
    await asyncio.gather(*(writer(rows // WRITERS) for _ in range(WRITERS)))
    rate = rows / (time.perf_counter() - started)
    per_tx = committer.items / committer.transactions
    committer.close()
    return rate, per_tx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    table = Table(
        "database", "one commit a row (rows/s)", "group commit (rows/s)", "rows a commit", "ratio"
    )
    with tempfile.TemporaryDirectory() as folder:
        targets = [("SQLite (WAL)", f"sqlite:///{Path(folder) / 'bench.db'}", None)]
        name = f"dxserve_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(f"{args.postgres}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            targets.append(("PostgreSQL", f"{args.postgres}/{name}", name))
        except Exception as exc:  # PostgreSQL is optional for this benchmark
            print(f"PostgreSQL skipped: {exc}")
        for label, url, _ in targets:
            engine = make_engine(url)
            tenant = prepare(engine)
            base = asyncio.run(per_row(engine, tenant, args.rows))
            rate, per_tx = asyncio.run(grouped(engine, tenant, args.rows))
            table.add_row(
                label, f"{base:.0f}", f"{rate:.0f}", f"{per_tx:.1f}", f"{rate / base:.1f}×"
            )
            engine.dispose()
        if len(targets) > 1:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
