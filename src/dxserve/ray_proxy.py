"""What dxserve adds to Ray Serve's HTTP proxies (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=
dxserve.ray_proxy:proxy_middlewares``): each request's model named for multiplexed routing,
a retryable 503 where a replica died before answering, and one X-Request-ID an answer."""

import re
from urllib.parse import parse_qs

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dxserve.api.errors import error_response

MODEL_HEADER = b"serve_multiplexed_model_id"
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/(\d+))?/infer")
DIAGNOSES_PATH = "/v1/diagnoses"
REQUEST_ID = b"x-request-id"
RETRY_AFTER = "1"  # seconds: Serve routes to the other replicas at once, and replaces the lost one


def model_of(path: str, query: bytes) -> str:
    """The model reference a request names in its path or query ('' when none)."""
    if infer := INFER_PATH.fullmatch(path):
        name, version = infer.groups()
        return f"{name}:{version}" if version else name
    if path == DIAGNOSES_PATH and query:
        return parse_qs(query.decode("latin-1")).get("model", [""])[0]
    return ""


class ModelAffinity:
    """Proxy middleware: adds the header Ray Serve routes multiplexed requests by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            model = model_of(scope["path"], scope["query_string"])
            headers = scope["headers"]
            if model and all(k.replace(b"-", b"_") != MODEL_HEADER for k, _ in headers):
                scope = {**scope, "headers": [*headers, (MODEL_HEADER, model.encode())]}
        await self.app(scope, receive, send)


class ReplicaLost:
    """Proxy middleware: where the replica serving a request died before answering, Ray's proxy
    sends nothing (the client would see a bare 500); this answers 503 with Retry-After."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, receive, watched)
        if not started:
            detail = ("the replica serving this request stopped before it answered; the request "
                      "may have been stored: retry it, or list what was stored")  # fmt: skip
            response = error_response(
                Request(scope), 503, "replica_lost", detail, {"Retry-After": RETRY_AFTER}
            )
            await response(scope, receive, send)


class OneRequestId:
    """Proxy middleware: Ray's proxy adds an X-Request-ID to every answer, and dxserve's replicas
    already answer with the request's: a client gets it once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def deduplicated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers, seen = [], False
                for key, value in message.get("headers", []):
                    if key.lower() == REQUEST_ID:
                        if seen:
                            continue
                        seen = True
                    headers.append((key, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, deduplicated if scope["type"] == "http" else send)


def proxy_middlewares() -> list[Middleware]:
    """The middlewares of every proxy (Ray applies them in this order, the last outermost)."""
    return [Middleware(OneRequestId), Middleware(ReplicaLost), Middleware(ModelAffinity)]
