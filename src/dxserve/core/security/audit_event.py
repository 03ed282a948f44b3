"""Audit events: who did what to which resource, when, from where, with what outcome — and the
same event as a FHIR R4 AuditEvent (the IHE ATNA model), for export to a hospital's audit
repository."""

import datetime as dt
from typing import Any

from dxserve.core.ids import record_id

DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ACTIONS = {"POST": "C", "GET": "R", "HEAD": "R", "PUT": "U", "PATCH": "U", "DELETE": "D"}


def audit_event(
    action: str,
    status: int,
    *,
    tenant_id: str | None = None,
    key_id: str | None = None,
    role: str | None = None,
    resource_id: str | None = None,
    source: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A new event. ``action`` is ``"METHOD /route/{template}"`` for API calls or
    ``"cli: …"`` for operator commands; ``status`` the HTTP status (0 for the CLI's success)."""
    return {
        "id": record_id(),
        "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "tenant_id": tenant_id,
        "key_id": key_id,
        "role": role,
        "action": action,
        "resource_id": resource_id,
        "status": status,
        "source": source,
        "request_id": request_id,
    }


def to_fhir(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a FHIR R4 ``AuditEvent`` resource."""
    method = event["action"].split(" ", 1)[0]
    status = int(event["status"])
    if status in (401, 403):
        kind = ("110114", "User Authentication")
    elif "/diagnoses" in event["action"]:
        kind = ("110110", "Patient Record")
    else:
        kind = ("110100", "Application Activity")
    outcome = "0" if status < 400 else "4" if status < 500 else "8"
    agent: dict[str, Any] = {
        "type": {"text": event.get("role") or "unauthenticated"},
        "who": {"identifier": {"system": "urn:dxserve:api-key", "value": event.get("key_id")}}
        if event.get("key_id")
        else {"display": "unauthenticated caller"},
        "requestor": True,
    }
    if event.get("source"):
        agent["network"] = {"address": event["source"], "type": "2"}  # 2: IP address
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event["id"],
        "type": {"system": DCM, "code": kind[0], "display": kind[1]},
        "subtype": [{"system": "urn:dxserve:action", "code": event["action"]}],
        "action": _ACTIONS.get(method, "E"),
        "recorded": event["recorded"],
        "outcome": outcome,
        "outcomeDesc": f"HTTP {status}" if status else "completed",
        "agent": [agent],
        "source": {"site": event.get("tenant_id") or "none", "observer": {"display": "dxserve"}},
    }
    if event.get("resource_id"):
        resource["entity"] = [{"what": {"identifier": {"value": event["resource_id"]}}}]
    if event.get("request_id"):
        resource.setdefault("entity", []).append(
            {
                "what": {
                    "identifier": {"system": "urn:dxserve:request-id", "value": event["request_id"]}
                }
            }
        )
    return resource


def to_fhir_bundle(events: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    """Events as a FHIR R4 collection Bundle of AuditEvent resources, with a ``next`` link
    when there are more to fetch."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "total": len(events),
        "entry": [{"resource": to_fhir(e)} for e in events],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle
