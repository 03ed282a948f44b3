"""The request time limit of the middleware, around a slow application and a stalled client."""

import asyncio
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from dxserve.api.middleware import RequestContext
from dxserve.observability import Metrics
from dxserve.store.audit import AuditTrail
from dxserve.store.database import make_engine, migrate
from dxserve.store.ledger import Ledger


async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then works for a second before answering."""
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(1)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def call(path: str, messages: list[Message]) -> tuple[int, dict[str, Any]]:
    """Run one request through RequestContext (0.2 s limit); its status and JSON body."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "client": None}
    engine = make_engine("sqlite://")  # nothing is written: the slow app writes nothing
    ledger = Ledger(engine, AuditTrail(engine, b"key"))
    middleware = RequestContext(
        slow_app, Metrics(), 1 << 20, ledger=ledger, audit=False, timeout_s=0.2
    )
    sent: list[Message] = []

    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that stopped sending
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    ledger.close()
    return sent[0]["status"], json.loads(sent[1]["body"])


def test_slow_processing_is_a_503_problem() -> None:
    status, body = call("/v1/diagnoses", [{"type": "http.request", "body": b"x"}])
    assert status == 503 and body["code"] == "processing_timeout"
    assert "longer than the limit of 0.2 s" in body["detail"]


def test_a_stalled_upload_is_a_408() -> None:
    partial = {"type": "http.request", "body": b"x", "more_body": True}
    status, body = call("/v1/diagnoses", [partial])
    assert status == 408 and body["code"] == "request_timeout"
    status, body = call("/v2/models/m/infer", [partial])
    assert status == 408 and set(body) == {"error"}


def test_a_commit_under_way_is_not_cut_short_by_the_limit(tmp_path: Path) -> None:
    """A 201 whose commit waits for a lock past the time limit still answers 201: cancelling
    it would answer 503 for an audit event (and writes) that commit anyway."""
    path = tmp_path / "dxserve.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    trail = AuditTrail(engine, b"key")
    ledger = Ledger(engine, trail)
    middleware = RequestContext(created_app, Metrics(), 1 << 20, ledger=ledger, timeout_s=0.2)
    scope = {"type": "http", "method": "POST", "path": "/v1/diagnoses", "headers": []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    locker = sqlite3.connect(path, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock for 0.6 s
    releaser = threading.Timer(0.6, locker.commit)
    releaser.start()
    asyncio.run(middleware({**scope, "client": None}, receive, send))
    releaser.join()
    locker.close()
    ledger.close()
    assert sent[0]["status"] == 201
    assert [e["status"] for e in trail.events()] == [201]
    engine.dispose()


async def created_app(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})
