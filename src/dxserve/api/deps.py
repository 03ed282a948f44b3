"""Typed dependencies: the services and the authenticated principal."""

import asyncio
from typing import Annotated, Any

from fastapi import Depends, Request

from dxserve.core.security.principal import Principal, Unauthenticated
from dxserve.services import Services
from dxserve.store.ledger import Unit


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(services: Services, authorization: str | None, state: Any) -> Principal:
    """The caller of an ``Authorization: Bearer <key>`` header, recorded on the request's
    ``state`` for the logs and the audit trail; :class:`Unauthenticated` otherwise,
    :class:`Throttled` when the key is over its plan's rate."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer API key (Authorization: Bearer <key>)")
    token = token.strip()
    principal = services.accounts.cached(token)
    if principal is None:
        principal = await asyncio.to_thread(services.accounts.authenticate, token)
    state.tenant_id = principal.tenant_id
    state.key_id = principal.key_id
    state.role = principal.role.value
    await services.throttle(principal)
    return principal


async def current_principal(request: Request) -> Principal:
    """The authenticated caller of a route (401, or 429 over its plan's rate). It reads the
    request itself: a dependency with sub-dependencies costs every request more of FastAPI's
    dependency solving than the authentication."""
    services: Services = request.app.state.services
    return await authenticate(services, request.headers.get("authorization"), request.state)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def request_unit(request: Request) -> Unit:
    """What the request writes: committed with its audit event before its response starts
    (:class:`dxserve.api.middleware.RequestContext`)."""
    unit: Unit = request.state.unit
    return unit


RequestUnit = Annotated[Unit, Depends(request_unit)]
