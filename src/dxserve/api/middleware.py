"""ASGI middleware: request ids, body-size limit, the request's writes and audit event committed
before its response, one JSON log line and a latency sample a request."""

import asyncio
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dxserve.core.ids import record_id
from dxserve.core.security.audit_event import audit_event
from dxserve.observability import Metrics
from dxserve.store.database import RETRY_AFTER_S, unavailable
from dxserve.store.ledger import Ledger, Unit

log = logging.getLogger("dxserve.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# On every response: results hold patient data, so nothing is cached, sniffed, framed or
# referred. No CORS header is ever sent: browsers on other origins cannot call the API.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# The API's answers load nothing; the web app's pages load only their own assets (no inline
# script or style); the interactive docs, whose page loads Swagger UI's, get neither.
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
PAGE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
)
API = ("/v1", "/v2", "/dicomweb", "/metrics", "/openapi.json")
DOCS = ("/docs", "/redoc")
HSTS = (b"strict-transport-security", b"max-age=31536000")  # only when served over TLS


# Not audited: health, protocol metadata, metrics and docs — no patient data, no account.
# Path parameters that are a caller's own identifiers (DICOM UIDs): never recorded as sent; a
# route records them as their pseudonyms in ``request.state.audit_resource``.
IDENTIFIERS = {"study", "series", "sop"}
UNAUDITED = {"/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"}
STATIC = "/static/"  # the web app's assets


class RequestContext:
    """Around every request.

    A request answered with a result (2xx, or a 3xx after a form) starts its response only
    once what it wrote (its :class:`~dxserve.store.ledger.Unit`: a diagnosis, feedback, a key,
    a web session, its usage) and its audit event are committed, in one transaction: no client
    holds an answer, or patient data, whose record a crash could lose. When that commit fails, the response becomes a 503
    (the database is unavailable) or a 500, and nothing of it exists. A request answered
    otherwise (4xx, 5xx) writes nothing; its audit event is queued after its response, for a
    lingering transaction shared by many."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        ledger: Ledger,
        audit: bool = True,
        timeout_s: float | None = None,
        upload_limits: dict[str, "BodyLimit"] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.body_limit = BodyLimit(max_body_bytes)
        self.upload_limits = upload_limits or {}
        self.ledger = ledger
        self.audit = audit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else record_id()
        unit = Unit()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["unit"] = unit
        status = 500
        location: str | None = None

        limit = self.body_limit
        if scope["method"] == "POST":
            limit = self.upload_limits.get(scope["path"], limit)
        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit.bytes:
            status = limit.status
            await limit.refuse(scope, send, request_id)
            self._log(scope, status, started, request_id)
            self._audit(scope, status, request_id, None)
            return

        received = 0
        body_complete = False
        responding = False
        committed = False
        replaced = False  # the app's response, refused by the database, became a 503 or 500
        deadline = asyncio.timeout(self.timeout_s)

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > limit.bytes:
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, location, responding, committed, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"location":
                        location = value.decode("latin-1")
                if 200 <= status < 400:
                    event = self._event(scope, status, request_id, location)
                    if event is not None:
                        unit.audit(event)
                    # From here the commit decides the outcome: a time limit that cancelled it
                    # could answer 503 for writes that still commit.
                    deadline.reschedule(None)
                    try:
                        if unit:
                            await self.ledger.commit(unit)
                        committed = True
                    except Exception as exc:
                        replaced, responding = True, True
                        status = await _not_committed(scope, send, request_id, exc)
                        unit.events.clear()  # the refusal's own event is queued instead
                        return
                responding = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *security_headers(scope),
                ]
            await send(message)

        try:
            async with deadline:
                await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            status = limit.status
            await limit.refuse(scope, send, request_id)
        except TimeoutError:
            if responding:  # too late for a status: the client sees the connection close
                raise
            # A body still arriving is the client's delay (408); otherwise the work's (503).
            status = 503 if body_complete else 408
            what = "processing" if body_complete else "receiving the request body"
            detail = f"{what} took longer than the limit of {self.timeout_s:g} s"
            code = "request_timeout" if status == 408 else "processing_timeout"
            await _problem(scope, send, request_id, status, code, detail)
        finally:
            self._log(scope, status, started, request_id)
            if not committed:
                unit.discard()
                self._audit(scope, status, request_id, location)

    def _audit(self, scope: Scope, status: int, request_id: str, location: str | None) -> None:
        """Queue the audit event of a request that got no result (a refusal, an error) for a
        lingering transaction, after its response."""
        event = self._event(scope, status, request_id, location)
        if event is not None:
            self.ledger.submit(Unit(events=[event]))

    def _event(
        self, scope: Scope, status: int, request_id: str, location: str | None
    ) -> dict[str, Any] | None:
        """The request's audit event; None for what is not audited."""
        path = scope["path"]
        if not self.audit or path in UNAUDITED or path.startswith((*DOCS, STATIC)):
            return None
        route = getattr(scope.get("route"), "path", None) or path
        state: dict[str, Any] = scope.get("state", {})
        params = scope.get("path_params") or {}
        resource = location.rsplit("/", 1)[-1] if location else state.get("audit_resource")
        named = {k: v for k, v in params.items() if k not in IDENTIFIERS}
        resource = resource or ",".join(f"{k}={v}" for k, v in named.items()) or None
        client = scope.get("client")
        return audit_event(
            f"{scope['method']} {route}",
            status,
            tenant_id=state.get("tenant_id"),
            key_id=state.get("key_id"),
            role=state.get("role"),
            resource_id=resource,
            source=client[0] if client else None,
            request_id=request_id,
        )

    def _log(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        elapsed = time.perf_counter() - started
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        self.metrics.http_duration.labels(scope["method"], route, str(status)).observe(elapsed)
        state: dict[str, Any] = scope.get("state", {})
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "tenant_id": state.get("tenant_id"),
            },
        )


def security_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers = list(SECURITY_HEADERS)
    path = scope["path"]
    if path.startswith(API):
        headers.append(CSP)
    elif not path.startswith(DOCS):
        headers.append(PAGE_CSP)
    if scope.get("scheme") == "https":
        headers.append(HSTS)
    return headers


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class BodyLimit:
    """The largest body a route takes, and how a larger one is refused (read no further)."""

    bytes: int
    status: int = 413
    code: str = "payload_too_large"
    what: str = "request body"

    async def refuse(self, scope: Scope, send: Send, request_id: str) -> None:
        detail = f"the {self.what} is over the limit of {self.bytes} bytes"
        await _problem(scope, send, request_id, self.status, self.code, detail)


TITLES = {
    408: "Request timeout",
    413: "Payload too large",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


async def _not_committed(scope: Scope, send: Send, request_id: str, error: Exception) -> int:
    """Answer a request whose writes the database refused: 503 with ``Retry-After`` when it
    is unavailable (stopped, unreachable, locked), else 500; the status sent."""
    if unavailable(error):
        detail = "the database is unavailable; nothing of this request was kept: retry it"
        retry = [(b"retry-after", str(RETRY_AFTER_S).encode())]
        await _problem(scope, send, request_id, 503, "database_unavailable", detail, retry)
        return 503
    log.error("commit failed", extra={"request_id": request_id, "error": type(error).__name__})
    await _problem(scope, send, request_id, 500, "internal_error", "internal server error")
    return 500


async def _problem(
    scope: Scope,
    send: Send,
    request_id: str,
    status: int,
    code: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem+json answer (``{"error": …}`` on the OIP) sent from the middleware itself;
    the connection closes after it."""
    body: dict[str, object]
    if scope["path"].startswith("/v2"):
        body, media = {"error": detail}, b"application/json"
    else:
        body = {
            "type": f"urn:dxserve:problem:{code}",
            "title": TITLES[status],
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": request_id,
            "instance": scope["path"],
        }
        media = b"application/problem+json"
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media),
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
                *(headers or []),
                *security_headers(scope),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
