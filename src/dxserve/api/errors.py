"""Domain errors → HTTP: one status table, resolved along the class hierarchy.

Clinical routes answer RFC 9457 problem+json; Open Inference Protocol routes (``/v2``) answer
``{"error": "..."}`` as KServe and Triton do. Bodies carry no patient data.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dxserve.core.security.principal import Forbidden, Unauthenticated
from dxserve.errors import (
    DatasetError,
    DxError,
    InvalidInput,
    MissingDependency,
    MissingLeads,
    ModelIntegrityError,
    ModelNotFound,
    ModelRejected,
    NotAcceptable,
    PayloadTooLarge,
    PromotionRefused,
    StorageFull,
    StorageUnavailable,
    TenantQuotaExceeded,
    Throttled,
    UnsupportedMedia,
    WrongModality,
)
from dxserve.store.accounts import NotFound
from dxserve.store.database import RETRY_AFTER_S, UNAVAILABLE

log = logging.getLogger("dxserve.api")

STATUS: dict[type[DxError], int] = {
    DxError: 500,
    InvalidInput: 400,
    DatasetError: 400,
    UnsupportedMedia: 415,
    WrongModality: 422,
    MissingLeads: 422,
    PayloadTooLarge: 413,
    Unauthenticated: 401,
    Forbidden: 403,
    ModelNotFound: 404,
    NotFound: 404,
    ModelIntegrityError: 503,
    MissingDependency: 503,
    StorageUnavailable: 503,
    StorageFull: 507,
    Throttled: 429,
    NotAcceptable: 406,
    ModelRejected: 422,
    PromotionRefused: 409,
    TenantQuotaExceeded: 403,
}

TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
    507: "Insufficient storage",
}


def status_of(error: DxError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    if request.url.path.startswith("/v2"):
        return JSONResponse({"error": detail}, status_code=status, headers=headers)
    body = {
        "type": f"urn:dxserve:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
        "instance": request.url.path,
    }
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DxError)
    async def domain_error(request: Request, exc: DxError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("server error", extra={"code": exc.code, "error": exc.detail})
        headers = None
        if isinstance(exc, Throttled):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(request, status, exc.code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        status = 400 if request.url.path.startswith("/v2") else 422
        return error_response(request, status, "invalid_request", problems)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable", extra={"error": type(exc).__name__})
        detail = "the database is unavailable; retry the request"
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return error_response(request, 503, "database_unavailable", detail, headers)

    for error in UNAVAILABLE:
        app.add_exception_handler(error, database_unavailable)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(request, 500, "internal_error", "internal server error")
