"""What dxserve adds to Ray Serve's proxies: the model a request names, for multiplexed routing,
and a retryable 503 where a replica died before answering."""

import asyncio
import json
from typing import Any

import pytest

from dxserve.ray_proxy import MODEL_HEADER, ModelAffinity, ReplicaLost, model_of


@pytest.mark.parametrize(
    ("path", "query", "model"),
    [
        ("/v2/models/echo-cnn/infer", b"", "echo-cnn"),
        ("/v2/models/echo-cnn/versions/3/infer", b"", "echo-cnn:3"),
        ("/v1/diagnoses", b"model=ecg-rnn%3Aproduction&explain=true", "ecg-rnn:production"),
        ("/v1/diagnoses", b"explain=true", ""),
        ("/v2/models/echo-cnn/ready", b"", ""),
        ("/v1/diagnoses/abc", b"model=echo-cnn", ""),
    ],
)
def test_the_model_a_request_names(path: str, query: bytes, model: str) -> None:
    assert model_of(path, query) == model


def headers_passed_on(path: str, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        seen.append(scope["headers"])

    scope = {"type": "http", "path": path, "query_string": b"", "headers": headers}
    asyncio.run(ModelAffinity(app)(scope, None, None))  # type: ignore[arg-type]
    return seen[0]


def test_the_header_is_added_and_a_clients_own_wins() -> None:
    added = headers_passed_on("/v2/models/echo-cnn/infer", [(b"host", b"x")])
    assert (MODEL_HEADER, b"echo-cnn") in added
    own = [(b"serve-multiplexed-model-id", b"echo-cnn:2")]
    assert headers_passed_on("/v2/models/echo-cnn/infer", own) == own
    assert headers_passed_on("/metrics", []) == []


def answer_through_replica_lost(path: str, app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"", "headers": [],
             "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": ""}  # fmt: skip
    asyncio.run(ReplicaLost(app)(scope, receive, send))  # type: ignore[arg-type]
    return sent


def test_a_request_left_unanswered_gets_a_retryable_503() -> None:
    async def died(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        return None  # what Ray's proxy does when the replica's actor died mid-request

    for path, shape in (("/v1/diagnoses", "code"), ("/v2/models/echo-cnn/infer", "error")):
        start, body = answer_through_replica_lost(path, died)
        assert start["status"] == 503
        assert (b"retry-after", b"1") in start["headers"]
        assert shape in json.loads(body["body"])


def test_an_answer_passes_unchanged() -> None:
    async def answered(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"dxserve's own"})

    start, body = answer_through_replica_lost("/v1/diagnoses", answered)
    assert start["status"] == 500 and body["body"] == b"dxserve's own"
