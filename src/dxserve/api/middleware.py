"""ASGI middleware: request ids, body-size limit, one JSON log line and a latency sample a request."""

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dxserve.core.ids import record_id
from dxserve.core.security.audit_event import audit_event
from dxserve.observability import Metrics

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
# Not on the interactive docs, whose page loads Swagger UI's script and styles.
CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
DOCS = ("/docs", "/redoc")
HSTS = (b"strict-transport-security", b"max-age=31536000")  # only when served over TLS


# Not audited: health, protocol metadata, metrics and docs — no patient data, no account.
# Path parameters that are a caller's own identifiers (DICOM UIDs): never recorded as sent; a
# route records them as their pseudonyms in ``request.state.audit_resource``.
IDENTIFIERS = {"study", "series", "sop"}
UNAUDITED = {"/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"}
Audit = Callable[[dict[str, Any]], None]
AwaitedAudit = Callable[[dict[str, Any]], Awaitable[None]]


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        max_body_bytes: int,
        audit: Audit | None = None,
        timeout_s: float | None = None,
        record: AwaitedAudit | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.audit = audit
        # A request answered with a result (2xx) starts its response only once its audit event
        # is committed: no client holds patient data whose access the trail could lose.
        self.record = record
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else record_id()
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        location: str | None = None

        declared = headers.get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            status = 413
            await _too_large(scope, send, request_id, self.max_body_bytes)
            self._log(scope, status, started, request_id)
            self._audit(scope, status, request_id, None)
            return

        received = 0
        body_complete = False
        responding = False
        audited = False

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_complete = not message.get("more_body", False)
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, location, responding, audited
            if message["type"] == "http.response.start":
                responding = True
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name == b"location":
                        location = value.decode("latin-1")
                if 200 <= status < 300 and self.record is not None:
                    event = self._event(scope, status, request_id, location)
                    if event is not None:
                        await self.record(event)
                    audited = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                    *security_headers(scope),
                ]
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_s):
                await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            status = 413
            await _too_large(scope, send, request_id, self.max_body_bytes)
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
            if not audited:
                self._audit(scope, status, request_id, location)

    def _audit(self, scope: Scope, status: int, request_id: str, location: str | None) -> None:
        """Queue the audit event of a request that got no result (a refusal, an error) for the
        next group commit, after its response."""
        event = self._event(scope, status, request_id, location)
        if event is not None and self.audit is not None:
            self.audit(event)

    def _event(
        self, scope: Scope, status: int, request_id: str, location: str | None
    ) -> dict[str, Any] | None:
        """The request's audit event; None for what is not audited."""
        path = scope["path"]
        if self.audit is None or path in UNAUDITED or path.startswith(DOCS):
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
    if not scope["path"].startswith(DOCS):
        headers.append(CSP)
    if scope.get("scheme") == "https":
        headers.append(HSTS)
    return headers


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, send: Send, request_id: str, limit: int) -> None:
    detail = f"request body is over the limit of {limit} bytes"
    await _problem(scope, send, request_id, 413, "payload_too_large", detail)


TITLES = {408: "Request timeout", 413: "Payload too large", 503: "Service unavailable"}


async def _problem(
    scope: Scope, send: Send, request_id: str, status: int, code: str, detail: str
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
                *security_headers(scope),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
