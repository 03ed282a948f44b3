"""Typed dependencies: the services and the authenticated principal."""

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request

from dxserve.core.security.principal import Principal, Unauthenticated
from dxserve.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    """The caller of an ``Authorization: Bearer <key>`` request; 401 otherwise, 429 when the
    key is over its plan's rate."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer API key (Authorization: Bearer <key>)")
    token = token.strip()
    principal = services.accounts.cached(token)
    if principal is None:
        principal = await asyncio.to_thread(services.accounts.authenticate, token)
    request.state.tenant_id = principal.tenant_id
    request.state.key_id = principal.key_id
    request.state.role = principal.role.value
    await services.throttle(principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
