"""The clinician's notes pages: paste or pick a clinical note, read it back de-identified with its
entities marked by type and assertion, and the suggested ICD-10-CM codes with their evidence.

The same service as ``POST /v1/notes``; the note's original text is never shown here (it is the
API's ``/original``, for software that must re-identify)."""

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from dxserve.api.deps import RequestUnit, ServicesDep
from dxserve.core.results.note_fhir import note_bundle
from dxserve.core.security.principal import Permission
from dxserve.core.text.note_body import MAX_CHARACTERS, read_note
from dxserve.web.browser import SignedIn
from dxserve.web.pages import PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
LEGEND = ("problem", "medication", "test", "anatomy", "strength", "dosage", "route", "frequency")


def segments(text: str, entities: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any] | None]]:
    """``text`` cut into plain runs and entities (which never overlap), in order."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    at = 0
    for entity in sorted(entities, key=lambda e: e["start"]):
        out.append((text[at : entity["start"]], None))
        out.append((text[entity["start"] : entity["end"]], entity))
        at = entity["end"]
    out.append((text[at:], None))
    return [(t, e) for t, e in out if t]


@router.get("/notes/new")
async def new_note(request: Request, principal: SignedIn) -> Response:
    principal.require(Permission.diagnose)
    return page(request, "note_new.html", principal=principal, limit=MAX_CHARACTERS)


@router.post("/notes")
async def create_note(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    unit: RequestUnit,
    note: Annotated[str, Form(max_length=MAX_CHARACTERS)],
    phi: Annotated[str, Form(pattern="^(surrogate|tag)$")] = "surrogate",
) -> Response:
    """Analyse the pasted note and show its result (a redirect: the address has only the id)."""
    body = read_note(note.encode("utf-8"), "text/plain")
    record = await services.analyse_note(principal, unit, body, None, phi == "tag")
    return RedirectResponse(f"/notes/{record['id']}", status_code=303)


@router.get("/notes/{note_id}")
async def note_result(
    request: Request, note_id: str, principal: SignedIn, services: ServicesDep
) -> Response:
    principal.require(Permission.read_results)
    record = await asyncio.to_thread(services.notes.get, principal.tenant_id, note_id)
    text = record["deidentified_text"]
    return page(
        request,
        "note.html",
        principal=principal,
        record=record,
        segments=segments(text, record["entities"]),
        legend=LEGEND,
        evidence={c["code"]: ", ".join(e["text"] for e in c["evidence"]) for c in record["codes"]},
    )


@router.get("/notes/{note_id}/fhir.json")
async def note_fhir(note_id: str, principal: SignedIn, services: ServicesDep) -> Response:
    principal.require(Permission.read_results)
    record = await asyncio.to_thread(services.notes.get, principal.tenant_id, note_id)
    return Response(
        json.dumps(note_bundle(record), indent=1),
        media_type="application/fhir+json",
        headers={"Content-Disposition": f'attachment; filename="note-{note_id}.fhir.json"'},
    )
