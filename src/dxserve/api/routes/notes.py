"""The clinical notes API: de-identify a note, find its facts, suggest its codes."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from dxserve.api.deps import CurrentPrincipal, RequestUnit, ServicesDep
from dxserve.core.results.note_fhir import note_bundle
from dxserve.core.security.principal import Permission
from dxserve.core.text.note_body import FHIR_TYPES, TEXT_TYPES, read_note

router = APIRouter(prefix="/v1", tags=["clinical notes"])

NOTE_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            **{
                t: {
                    "schema": {
                        "type": "object",
                        "description": "a FHIR R4 DocumentReference or Binary with a base64 "
                        "text/plain attachment",
                    }
                }
                for t in FHIR_TYPES
            },
        },
    }
}


@router.post("/notes", status_code=201, openapi_extra=NOTE_SCHEMA)
async def create_note(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    phi: Annotated[
        Literal["surrogate", "tag"],
        Query(description="replace identifiers by consistent stand-ins, or by [TYPE] tags"),
    ] = "surrogate",
    patient: Annotated[
        str | None,
        Query(max_length=200, description="the patient's identifier (else the note's MRN)"),
    ] = None,
) -> dict[str, Any]:
    """Analyse one clinical note (text/plain; charset=utf-8, or a FHIR DocumentReference or
    Binary): its identifiers replaced, its problems, medications, tests and anatomy with their
    assertion and section, and ranked ICD-10-CM codes with their evidence. The original is
    kept sealed; everything returned is about the de-identified text."""
    principal.require(Permission.diagnose)
    content_type = request.headers.get("content-type", "")
    media_type, _, params = content_type.partition(";")
    charset = params.partition("charset=")[2].strip().strip('"') or None
    note = read_note(await request.body(), media_type.strip().lower(), charset)
    record = await services.analyse_note(principal, unit, note, patient, phi == "tag")
    response.headers["Location"] = f"/v1/notes/{record['id']}"
    return record


@router.get("/notes")
async def list_notes(
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    """The caller's tenant's newest notes (their analyses), newest first."""
    principal.require(Permission.read_results)
    return {"items": services.notes.page(principal.tenant_id, limit)}


@router.get("/notes/{note_id}")
async def get_note(
    note_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """One note's analysis, of the caller's tenant."""
    principal.require(Permission.read_results)
    return services.notes.get(principal.tenant_id, note_id)


@router.get(
    "/notes/{note_id}/fhir",
    response_class=JSONResponse,
    responses={200: {"content": {"application/fhir+json": {}}}},
)
async def get_note_fhir(
    note_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> JSONResponse:
    """The analysis as a FHIR R4 Bundle: the de-identified DocumentReference, Conditions
    (ICD-10-CM coded; refuted when negated, provisional when possible) and
    MedicationStatements."""
    principal.require(Permission.read_results)
    record = services.notes.get(principal.tenant_id, note_id)
    return JSONResponse(note_bundle(record), media_type="application/fhir+json")


@router.get(
    "/notes/{note_id}/original",
    response_class=PlainTextResponse,
    responses={200: {"content": {TEXT_TYPES[0]: {}}}},
)
async def get_note_original(
    note_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> PlainTextResponse:
    """The note as it was sent, identifiers and all: for its owner (the tenant) only."""
    principal.require(Permission.read_results)
    text = services.notes.original(principal.tenant_id, note_id)
    return PlainTextResponse(text)  # the middleware marks every answer no-store
