"""The admin console: the tenant's API keys, usage and invoices, audit trail and models; for a
platform admin, every tenant and its plan. The same services and permissions as ``/v1/admin``.
"""

import asyncio
import datetime as dt
from itertools import islice
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from markdown_it import MarkdownIt
from markupsafe import Markup

from dxserve.api.deps import RequestUnit, ServicesDep
from dxserve.core.results.card import render_card
from dxserve.core.runtime.aliases import read_aliases, set_alias
from dxserve.core.security.principal import Permission, Principal, Role
from dxserve.errors import InvalidInput
from dxserve.store.usage import current_month, month_bounds
from dxserve.web.browser import SignedIn
from dxserve.web.pages import PageRoute, page

router = APIRouter(prefix="/admin", route_class=PageRoute, include_in_schema=False)
AUDIT_PAGE = 50
# Model cards are Markdown written by dxserve; rendered without raw HTML.
CARD = MarkdownIt("commonmark", {"html": False}).enable("table")
# Roles an admin may give (a platform admin may also make platform admins).
ROLES = [Role.clinician, Role.service, Role.admin]


def _keys_page(request: Request, principal: Principal, services: Any, **extra: Any) -> Response:
    """The keys page; after a change, its table loads in a second request, once the change
    (written with this request's audit event, as the response starts) is committed."""
    keys = [] if extra else services.accounts.list_keys(principal.tenant_id)
    return page(
        request,
        "admin_keys.html",
        principal=principal,
        keys=keys,
        roles=ROLES,
        lazy_table=bool(extra),
        **extra,
    )


@router.get("/keys")
async def keys(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    principal.require(Permission.manage_keys)
    return await asyncio.to_thread(_keys_page, request, principal, services)


@router.get("/keys/table")
async def keys_table(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    """The keys table alone (an htmx fragment)."""
    principal.require(Permission.manage_keys)
    keys = await asyncio.to_thread(services.accounts.list_keys, principal.tenant_id)
    return page(request, "admin_keys_table.html", principal=principal, keys=keys)


@router.post("/keys")
async def create_key(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    unit: RequestUnit,
    role: Annotated[Role, Form()],
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """A new key; its secret is on this page only."""
    principal.require(Permission.manage_keys)
    if role not in ROLES:
        raise InvalidInput("only a platform admin may create platform-admin keys")
    key_id, token = services.accounts.create_key(principal.tenant_name, role, name, unit=unit)
    created = {"id": key_id, "token": token, "name": name, "role": role.value}
    return await asyncio.to_thread(_keys_page, request, principal, services, created=created)


@router.post("/keys/{key_id}/rotate")
async def rotate_key(
    request: Request,
    key_id: str,
    principal: SignedIn,
    services: ServicesDep,
    unit: RequestUnit,
    grace_hours: Annotated[float, Form(ge=0, le=24 * 90)] = 24,
) -> Response:
    principal.require(Permission.manage_keys)
    grace = dt.timedelta(hours=grace_hours)
    new_id, token = services.accounts.rotate(key_id, grace, principal.tenant_id, unit)
    created = {"id": new_id, "token": token, "replaces": key_id}
    return await asyncio.to_thread(_keys_page, request, principal, services, created=created)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    request: Request, key_id: str, principal: SignedIn, services: ServicesDep, unit: RequestUnit
) -> Response:
    principal.require(Permission.manage_keys)
    services.accounts.revoke(key_id, principal.tenant_id, unit)
    return await asyncio.to_thread(_keys_page, request, principal, services, revoked=key_id)


def _month(value: str | None) -> str:
    month = value or current_month()
    month_bounds(month)  # InvalidInput when it is not YYYY-MM
    return month


METRICS = ("images", "frames", "requests")
LONGEST_RANGE = dt.timedelta(days=366)


@router.get("/usage")
async def usage(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    month: Annotated[str | None, Query(max_length=7)] = None,
    since: Annotated[dt.date | None, Query(alias="from")] = None,
    until: Annotated[dt.date | None, Query(alias="to")] = None,
    metric: Annotated[str, Query(pattern="^(images|frames|requests)$")] = "images",
) -> Response:
    """Usage per day and model over a range of days (chart and table; the month by default),
    and a month's invoice."""
    principal.require(Permission.read_usage)
    month = _month(month)
    first, after_last = month_bounds(month)
    start = dt.datetime.combine(since, dt.time(), dt.UTC) if since else first
    end = (
        dt.datetime.combine(until, dt.time(), dt.UTC) + dt.timedelta(days=1)
        if until
        else after_last
    )
    if not start < end <= start + LONGEST_RANGE:
        raise InvalidInput("'to' must be on or after 'from', at most a year later")
    days = await asyncio.to_thread(services.usage.daily, principal.tenant_id, start, end)
    invoice = await asyncio.to_thread(
        services.invoice, principal.tenant_id, principal.tenant_name, month
    )
    series: dict[str, dict[str, int]] = {}
    for day, model, requests, images, frames in days:
        counts = {"requests": requests, "images": images, "frames": frames}
        series.setdefault(model, {})[day] = counts[metric]
    dates = [(start + dt.timedelta(days=i)).date().isoformat() for i in range((end - start).days)]
    chart = {
        "days": dates,
        "metric": metric,
        "series": {m: [by_day.get(d, 0) for d in dates] for m, by_day in series.items()},
    }
    chosen = {"from": start.date(), "to": (end - dt.timedelta(days=1)).date(), "metric": metric}
    return page(
        request,
        "admin_usage.html",
        principal=principal,
        month=month,
        days=days,
        chart=chart,
        chosen=chosen,
        metrics=METRICS,
        invoice=invoice,
    )


@router.get("/usage/invoice.csv")
async def invoice_csv(
    principal: SignedIn,
    services: ServicesDep,
    month: Annotated[str | None, Query(max_length=7)] = None,
) -> Response:
    principal.require(Permission.read_usage)
    month = _month(month)
    invoice = await asyncio.to_thread(
        services.invoice, principal.tenant_id, principal.tenant_name, month
    )
    return Response(
        invoice.to_csv(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="invoice-{month}.csv"'},
    )


@router.get("/audit")
async def audit(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    action: Annotated[str | None, Query(max_length=200)] = None,
    key: Annotated[str | None, Query(max_length=32)] = None,
    outcome: Annotated[str | None, Query(pattern="^(|ok|refused|failed)$")] = None,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The tenant's audit events, oldest first, filtered; 50 a page."""
    principal.require(Permission.read_audit)

    def wanted(event: dict[str, Any]) -> bool:
        status = int(event["status"])
        kind = "ok" if status < 400 else "refused" if status < 500 else "failed"
        return (
            (not action or action.lower() in event["action"].lower())
            and (not key or event["key_id"] == key)
            and (not outcome or kind == outcome)
        )

    def found() -> list[dict[str, Any]]:
        events = services.audit.events(principal.tenant_id, after)
        return list(islice(filter(wanted, events), AUDIT_PAGE + 1))

    events = await asyncio.to_thread(found)
    chosen = {"action": action, "key": key, "outcome": outcome}
    more = len(events) > AUDIT_PAGE
    events = events[:AUDIT_PAGE]
    next_query = {k: v for k, v in chosen.items() if v} | {"after": events[-1]["seq"]}
    return page(
        request,
        "admin_audit.html",
        principal=principal,
        events=events,
        chosen=chosen,
        next_query=next_query if more else None,
    )


@router.get("/audit/verify")
async def verify_audit(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    """The whole chain checked (an htmx fragment)."""
    principal.require(Permission.read_audit)
    verdict = await asyncio.to_thread(services.audit.verify)
    return page(request, "audit_verdict.html", principal=principal, verdict=verdict)


@router.get("/models")
async def models(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    """Every model the tenant sees (the platform's and its own): versions, aliases, card, and
    the tenant's feedback per version."""
    principal.require(Permission.read_results)

    def describe() -> list[dict[str, Any]]:
        found = []
        for name, owner in services.registry.models(principal.tenant_id):
            repository = services.registry.repository_of(owner)
            versions = repository.versions(name)
            manifest = repository.resolve(name).manifest()
            labels = list(manifest.labels)
            aliases = read_aliases(repository.root / name)
            found.append(
                {
                    "name": name,
                    "own": owner is not None,
                    "versions": versions,
                    "aliases": {a: alias.to_dict() for a, alias in aliases.items()},
                    "card": Markup(CARD.render(render_card(manifest))),
                    "feedback": services.feedback_store.summary(name, labels, principal.tenant_id),
                    "labels": labels,
                }
            )
        return found

    return page(
        request,
        "admin_models.html",
        principal=principal,
        models=await asyncio.to_thread(describe),
        may_edit=principal.may(Permission.manage_models),
    )


@router.post("/models/{name}/aliases")
async def set_model_alias(
    request: Request,
    name: str,
    principal: SignedIn,
    services: ServicesDep,
    alias: Annotated[str, Form(max_length=50)],
    routes: Annotated[str, Form(max_length=200)],
    shadow: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Point an alias at versions (``1:90 2:10``), with an optional shadow (platform admin)."""
    principal.require(Permission.manage_models)
    repository = services.registry.repository
    versions = repository.versions(name)  # ModelNotFound: a 404 page
    if shadow and not shadow.isdigit():
        raise InvalidInput("the shadow is a version number")
    set_alias(
        repository.root / name, versions, alias, routes.split(), int(shadow) if shadow else None
    )
    return await models(request, principal, services)


def _tenants_page(request: Request, principal: Principal, services: Any, **extra: Any) -> Response:
    listed = services.accounts.tenants()
    return page(
        request,
        "admin_tenants.html",
        principal=principal,
        tenants=listed,
        plans=list(services.plans),
        **extra,
    )


@router.get("/tenants")
async def tenants(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    principal.require(Permission.manage_tenants)
    return await asyncio.to_thread(_tenants_page, request, principal, services)


@router.post("/tenants")
async def create_tenant(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    name: Annotated[str, Form(min_length=1, max_length=200)],
    plan: Annotated[str, Form(max_length=50)],
) -> Response:
    """A new tenant on one of the plans offered (platform admin)."""
    principal.require(Permission.manage_tenants)
    if plan not in services.plans:
        raise InvalidInput(f"plan must be one of {sorted(services.plans)}")
    await asyncio.to_thread(services.accounts.create_tenant, name, plan)
    return await asyncio.to_thread(
        _tenants_page, request, principal, services, done=f"Tenant {name} created."
    )


@router.post("/tenants/{name}/plan")
async def change_plan(
    request: Request,
    name: str,
    principal: SignedIn,
    services: ServicesDep,
    plan: Annotated[str, Form(max_length=50)],
) -> Response:
    principal.require(Permission.manage_tenants)
    if plan not in services.plans:
        raise InvalidInput(f"plan must be one of {sorted(services.plans)}")
    await asyncio.to_thread(services.accounts.set_plan, name, plan)
    return await asyncio.to_thread(
        _tenants_page, request, principal, services, done=f"Tenant {name} is on plan {plan}."
    )
