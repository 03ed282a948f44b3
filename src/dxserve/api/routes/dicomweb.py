"""DICOMweb (PS3.18): STOW-RS in, QIDO-RS and WADO-RS over the results, for the caller's tenant."""

import asyncio
import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from dxserve.api.deps import CurrentPrincipal, ServicesDep
from dxserve.core.security.principal import Principal
from dxserve.dicomweb import DicomWeb, parse_multipart
from dxserve.errors import NotAcceptable
from dxserve.services import Services
from dxserve.store.ledger import Unit

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

DICOM_JSON = "application/dicom+json"
STOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            'multipart/related; type="application/dicom"': {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
}


async def caller_study(
    study: str, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> str:
    """The study UID in the path, as the caller knows it. The audit trail records it by its
    pseudonym, never by the caller's UID."""
    pseudonym = services.identities.pseudonyms(principal.tenant_id).uid(study)
    request.state.audit_resource = f"study={pseudonym}"
    return study


Study = Annotated[str, Depends(caller_study)]


def base_url(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/dicomweb"


def dicom_json(value: Any, status: int = 200) -> Response:
    return Response(json.dumps(value), status_code=status, media_type=DICOM_JSON)


def check_accept(accept: str | None) -> None:
    wanted = (accept or "*/*").lower()
    if not any(kind in wanted for kind in ("application/dicom", "*/*", "multipart/related")):
        raise NotAcceptable('WADO-RS here returns multipart/related; type="application/dicom"')


def multipart(objects: list[bytes]) -> Response:
    """``multipart/related; type="application/dicom"`` of Part 10 objects (Explicit VR Little
    Endian, as they are made)."""
    boundary = secrets.token_hex(16)
    body = b"".join(
        b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), data)
        for data in objects
    )
    body += b"--%s--\r\n" % boundary.encode()
    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return Response(body, media_type=media)


async def _store(
    request: Request, principal: Principal, services: Services, study: str | None
) -> Response:
    unit: Unit = request.state.unit
    parts = parse_multipart(request.headers.get("content-type", ""), await request.body())
    explain = services.settings.dicomweb_explain
    status, response = await DicomWeb(services).store(
        principal, unit, parts, study, base_url(request), explain
    )
    return dicom_json(response.to_json_dict(), status)


@router.post("/studies", openapi_extra=STOW_BODY, response_class=Response)
async def store_instances(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """STOW-RS: store (de-identified) and diagnose DICOM instances."""
    return await _store(request, principal, services, None)


@router.post("/studies/{study}", openapi_extra=STOW_BODY, response_class=Response)
async def store_study_instances(
    study: Study, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """STOW-RS into one study: instances of another study fail (0xA900)."""
    return await _store(request, principal, services, study)


@router.get("/studies", response_class=Response)
async def search_studies(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """QIDO-RS: the caller's studies that have results."""
    query, base = dict(request.query_params), base_url(request)
    found = await asyncio.to_thread(DicomWeb(services).search_studies, principal, query, base)
    return dicom_json(found)


@router.get("/studies/{study}/series", response_class=Response)
async def search_series(
    study: Study, request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """QIDO-RS: the result series (SR, heatmap) of a study."""
    query, base = dict(request.query_params), base_url(request)
    web = DicomWeb(services)
    return dicom_json(await asyncio.to_thread(web.search_series, principal, study, query, base))


@router.get("/studies/{study}/instances", response_class=Response)
@router.get("/studies/{study}/series/{series}/instances", response_class=Response)
async def search_instances(
    study: Study,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    series: str | None = None,
) -> Response:
    """QIDO-RS: the result instances of a study (or of one of its series)."""
    query, base = dict(request.query_params), base_url(request)
    if series is not None:
        query["SeriesInstanceUID"] = series
    web = DicomWeb(services)
    return dicom_json(await asyncio.to_thread(web.search_instances, principal, study, query, base))


@router.get("/studies/{study}", response_class=Response)
@router.get("/studies/{study}/series/{series}", response_class=Response)
@router.get("/studies/{study}/series/{series}/instances/{sop}", response_class=Response)
async def retrieve(
    study: Study,
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    """WADO-RS: the result objects, re-identified for the owner."""
    check_accept(request.headers.get("accept"))
    web = DicomWeb(services)
    return multipart(await asyncio.to_thread(web.retrieve, principal, study, series, sop))


@router.get("/studies/{study}/metadata", response_class=Response)
@router.get("/studies/{study}/series/{series}/metadata", response_class=Response)
@router.get("/studies/{study}/series/{series}/instances/{sop}/metadata", response_class=Response)
async def retrieve_metadata(
    study: Study,
    principal: CurrentPrincipal,
    services: ServicesDep,
    series: str | None = None,
    sop: str | None = None,
) -> Response:
    """WADO-RS metadata: the result objects' attributes, without bulk data."""
    web = DicomWeb(services)
    return dicom_json(await asyncio.to_thread(web.metadata, principal, study, series, sop))
