"""Rendering the web app's pages: Jinja2 templates next to the routes, assets by versioned
name, and errors as pages (a 404 page, not JSON) or, before sign-in, a redirect to it."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from dxserve import NOT_FOR_CLINICAL_USE, __version__
from dxserve.api.errors import TITLES, status_of
from dxserve.core.security.principal import Principal, Unauthenticated
from dxserve.errors import DxError
from dxserve.store.database import UNAVAILABLE

ASSETS = {
    "css": "/static/dxserve-2.css",
    "js": "/static/dxserve-1.js",
    "htmx": "/static/vendor/htmx-2.0.11.min.js",
    "uplot": "/static/vendor/uPlot-1.6.32.iife.min.js",
    "uplot_css": "/static/vendor/uPlot-1.6.32.min.css",
}
# htmx: no inline indicator styles (the CSP forbids them), no eval, and no history cache (it
# would keep result pages in sessionStorage).
HTMX_CONFIG = (
    '{"includeIndicatorStyles": false, "allowEval": false, "allowScriptTags": false, '
    '"historyCacheSize": 0, "refreshOnHistoryMiss": true}'
)

templates = Environment(
    loader=PackageLoader("dxserve.web"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals.update(
    assets=ASSETS,
    htmx_config=HTMX_CONFIG,
    version=__version__,
    not_for_clinical_use=NOT_FOR_CLINICAL_USE,
)


def page(
    request: Request,
    template: str,
    status: int = 200,
    principal: Principal | None = None,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered for the signed-in ``principal`` (whose CSRF token the forms
    carry)."""
    html = templates.get_template(template).render(
        request=request,
        principal=principal,
        csrf=getattr(request.state, "csrf", ""),
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    title = TITLES.get(status, "Error")
    return page(request, "error.html", status, principal, title=title, detail=detail)


class PageRoute(APIRoute):
    """A route whose errors are pages: sign-in required → a redirect to the sign-in page;
    any other refusal → the error page with its status (no JSON, nothing of the request)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated:
                return RedirectResponse("/sign-in", status_code=303)
            except DxError as error:
                return error_page(request, status_of(error), error.detail)
            except UNAVAILABLE:
                return error_page(request, 503, "the database is unavailable: try again shortly")

        return handle
