"""Administration of a tenant (admin role) and of the platform (platform-admin): API keys, usage,
invoices, the audit trail, tenants. A platform admin names another tenant with ``?tenant=``."""

import asyncio
import datetime as dt
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from dxserve.api.deps import CurrentPrincipal, RequestUnit, ServicesDep
from dxserve.core.security.audit_event import to_fhir_bundle
from dxserve.core.security.principal import Permission, Role
from dxserve.errors import InvalidInput

router = APIRouter(prefix="/v1", tags=["administration"])

TenantQuery = Annotated[
    str | None,
    Query(max_length=200, description="another tenant's name (platform-admin only)"),
]
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


@router.get("/usage")
async def get_usage(
    principal: CurrentPrincipal,
    services: ServicesDep,
    start: Annotated[
        dt.date | None, Query(alias="from", description="first day (default: this month's)")
    ] = None,
    end: Annotated[dt.date | None, Query(alias="to", description="last day, inclusive")] = None,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    """Recorded usage per model version between two days (UTC, inclusive), and its totals."""
    principal.require(Permission.read_usage)
    tenant_id, name = services.tenant_scope(principal, tenant)
    today = dt.datetime.now(dt.UTC).date()
    start = start or today.replace(day=1)
    end = end or today
    if end < start:
        raise InvalidInput("'to' is before 'from'")
    lower = dt.datetime.combine(start, dt.time(), dt.UTC)
    upper = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    totals = await asyncio.to_thread(services.usage.totals, tenant_id, lower, upper)
    return {
        "tenant": name,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "requests": sum(t.requests for t in totals),
        "images": sum(t.images for t in totals),
        "frames": sum(t.frames for t in totals),
        "compute_ms": round(sum(t.compute_ms for t in totals), 3),
        "bytes": sum(t.bytes for t in totals),
        "by_model": [t.__dict__ for t in totals],
    }


@router.get(
    "/admin/invoices/{month}",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def get_invoice(
    month: Annotated[str, Path(pattern=MONTH, description="YYYY-MM")],
    principal: CurrentPrincipal,
    services: ServicesDep,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    tenant: TenantQuery = None,
) -> Any:
    """The month's invoice (YYYY-MM): a line per model version and unit at the tenant's plan's
    prices, the included-images credit, the total; ``format=csv`` for a spreadsheet."""
    principal.require(Permission.read_usage)
    tenant_id, name = services.tenant_scope(principal, tenant)
    invoice = await asyncio.to_thread(services.invoice, tenant_id, name, month)
    if format == "csv":
        return Response(
            invoice.to_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="invoice-{month}.csv"'},
        )
    return invoice.to_dict()


@router.get("/admin/audit")
async def get_audit(
    principal: CurrentPrincipal,
    services: ServicesDep,
    after: Annotated[int, Query(ge=0, description="sequence number to continue after")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    """The tenant's audit events, oldest first, as a FHIR R4 Bundle of AuditEvent resources
    (admin role); follow the `next` link for more."""
    principal.require(Permission.read_audit)
    tenant_id, name = services.tenant_scope(principal, tenant)
    events = await asyncio.to_thread(
        lambda: list(islice(services.audit.events(tenant_id, after), limit + 1))
    )
    more = len(events) > limit
    events = events[:limit]
    scope = f"&tenant={name}" if tenant else ""
    next_url = f"/v1/admin/audit?after={events[-1]['seq']}&limit={limit}{scope}" if more else None
    return to_fhir_bundle(events, next_url)


class KeyIn(BaseModel):
    """A new API key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    name: str = Field(default="", max_length=200)
    scopes: list[Permission] | None = Field(
        default=None, max_length=len(Permission), description="limit to these permissions"
    )
    expires_at: dt.datetime | None = None


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_hours: float = Field(default=24, ge=0, le=24 * 90)


@router.get("/admin/keys")
async def list_keys(
    principal: CurrentPrincipal, services: ServicesDep, tenant: TenantQuery = None
) -> dict[str, Any]:
    """The tenant's API keys (never their secrets), with scopes, expiry and last use."""
    principal.require(Permission.manage_keys)
    tenant_id, _ = services.tenant_scope(principal, tenant)
    return {"keys": services.accounts.list_keys(tenant_id)}


@router.post("/admin/keys", status_code=201)
async def create_key(
    body: KeyIn,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    """A new key of the tenant; the token is in this response only."""
    principal.require(Permission.manage_keys)
    _, name = services.tenant_scope(principal, tenant)
    if body.role is Role.platform_admin and not principal.may(Permission.manage_tenants):
        raise InvalidInput("only a platform admin may create platform-admin keys")
    scopes = " ".join(s.value for s in body.scopes) if body.scopes is not None else None
    key_id, token = services.accounts.create_key(
        name, body.role, body.name, scopes, body.expires_at, unit
    )
    return {"id": key_id, "token": token}


@router.post("/admin/keys/{key_id}/rotate", status_code=201)
async def rotate_key(
    key_id: str,
    body: RotateIn,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    tenant: TenantQuery = None,
) -> dict[str, Any]:
    """A new key like this one; this one keeps working for ``grace_hours``."""
    principal.require(Permission.manage_keys)
    tenant_id, _ = services.tenant_scope(principal, tenant)
    grace = dt.timedelta(hours=body.grace_hours)
    new_id, token = services.accounts.rotate(key_id, grace, tenant_id, unit)
    return {"id": new_id, "token": token, "replaces": key_id}


@router.delete("/admin/keys/{key_id}", status_code=204)
async def revoke_key(
    key_id: str,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    tenant: TenantQuery = None,
) -> Response:
    """Revoke a key of the tenant at once."""
    principal.require(Permission.manage_keys)
    tenant_id, _ = services.tenant_scope(principal, tenant)
    services.accounts.revoke(key_id, tenant_id, unit)
    return Response(status_code=204)


class TenantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")
    plan: str = Field(default="standard", max_length=50)


@router.get("/admin/tenants")
async def list_tenants(principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """Every tenant and its plan (platform-admin)."""
    principal.require(Permission.manage_tenants)
    return {"tenants": services.accounts.tenants(), "plans": list(services.plans)}


@router.post("/admin/tenants", status_code=201)
async def create_tenant(
    body: TenantIn, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """A new tenant on one of the configured plans (platform-admin)."""
    principal.require(Permission.manage_tenants)
    if body.plan not in services.plans:
        raise InvalidInput(f"plan must be one of {sorted(services.plans)}")
    tenant_id = services.accounts.create_tenant(body.name, body.plan)
    return {"id": tenant_id, "name": body.name, "plan": body.plan}
