"""The proxy middleware that names a request's model for Ray Serve's multiplexed routing."""

import asyncio

import pytest

# Through dxserve.ray_serve, which sets Ray's environment before Ray is first imported.
pytest.importorskip("dxserve.ray_serve", reason="the ray extra")

from dxserve.ray_multiplex import MODEL_HEADER, ModelAffinity, model_of


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
