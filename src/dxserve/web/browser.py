"""Who a browser is: its session cookie, the cross-site request forgery token its forms and
htmx requests carry, and Fetch Metadata (a request another site made is refused)."""

import asyncio
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request, Response

from dxserve.core.security.principal import Forbidden, Principal, Unauthenticated
from dxserve.services import Services

SESSION_COOKIE = "dxserve_session"
# The sign-in form's double-submit token (there is no session to hold one yet).
SIGN_IN_COOKIE = "dxserve_sign_in"
CSRF_HEADER = "x-csrf-token"
SAFE = {"GET", "HEAD", "OPTIONS"}


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    """An HttpOnly, SameSite=Strict cookie for this site's paths (Secure over TLS)."""
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def same_site(request: Request) -> None:
    """A state-changing request that a browser says another site made is refused; one
    without Fetch Metadata (an older browser, a script) still needs the CSRF token."""
    if request.method in SAFE:
        return
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin", "none"):
        raise Forbidden("a request from another site is refused")


async def check_token(request: Request, expected: str) -> None:
    """The request carries ``expected``: in a header (htmx, and uploads by script) or in the
    ``csrf`` field of a plain form (never read from a multipart body, whose files it would
    spool)."""
    given = request.headers.get(CSRF_HEADER)
    form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    if given is None and form:
        field = (await request.form()).get("csrf")
        given = field if isinstance(field, str) else ""
    if not expected or not hmac.compare_digest((given or "").encode(), expected.encode()):
        raise Forbidden("the form is stale or was not sent from this site: reload the page")


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def signed_in(request: Request) -> Principal:
    """The signed-in caller of a page (recorded for the logs and the audit trail);
    :class:`Unauthenticated` sends the browser to the sign-in page. A state-changing request
    must come from this site with the session's CSRF token."""
    services: Services = request.app.state.services
    token = request.cookies.get(SESSION_COOKIE)
    session = await asyncio.to_thread(services.web_sessions.find, token) if token else None
    if session is None:
        raise Unauthenticated("sign in")
    principal = await asyncio.to_thread(services.accounts.principal_of, session.key_id)
    state = request.state
    state.tenant_id, state.key_id, state.role = (
        principal.tenant_id,
        principal.key_id,
        principal.role.value,
    )
    state.principal, state.csrf, state.web_session = principal, session.csrf, session.id
    same_site(request)
    if request.method not in SAFE:
        await check_token(request, session.csrf)
    await services.throttle(principal)
    return principal


SignedIn = Annotated[Principal, Depends(signed_in)]
