"""The clinical API: diagnoses and models."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dxserve.api.deps import CurrentPrincipal, RequestUnit, ServicesDep
from dxserve.api.upload import BODY_TYPES, read_upload
from dxserve.core.results.card import render_card
from dxserve.core.results.fhir import diagnosis_bundle
from dxserve.core.runtime.aliases import read_aliases
from dxserve.core.security.principal import Permission
from dxserve.services import clinical_view

router = APIRouter(prefix="/v1", tags=["clinical"])

UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in BODY_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "description": "the image, DICOM object or signal; for a WFDB "
                            "record, its .hea and .dat files, each as a part named file",
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "model": {"type": "string"},
                    },
                }
            },
        },
    }
}


@router.post("/diagnoses", status_code=201, openapi_extra=UPLOAD_SCHEMA)
async def create_diagnosis(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    model: Annotated[str | None, Query(description="name, name:version or name:alias")] = None,
    explain: Annotated[
        bool, Query(description="also compute a saliency map (GET …/heatmap.png)")
    ] = False,
    rate: Annotated[
        float | None,
        Query(
            gt=0, le=20000, description="sampling rate (Hz) of a CSV signal without a time column"
        ),
    ] = None,
) -> dict[str, Any]:
    """Diagnose one study: an image or cine (PNG, JPEG, DICOM) or an ECG (DICOM waveform, WFDB
    as a zip or as multipart files, CSV, JSON), raw or as multipart field `file`; without
    `model`, the default model of the input's modality."""
    principal.require(Permission.diagnose)
    upload = await read_upload(request)
    record = await services.diagnose(
        principal,
        unit,
        upload.data,
        upload.media_type,
        model or upload.model,
        explain,
        upload.files,
        rate,
    )
    response.headers["Location"] = f"/v1/diagnoses/{record['id']}"
    return record


@router.get("/diagnoses/{diagnosis_id}")
async def get_diagnosis(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """One diagnosis of the caller's tenant."""
    principal.require(Permission.read_results)
    return clinical_view(services.diagnoses.get(principal.tenant_id, diagnosis_id))


@router.get(
    "/diagnoses/{diagnosis_id}/heatmap.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def get_heatmap_png(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """The saliency map over the explained frame, with a colour bar (diagnose with explain=true)."""
    png = await asyncio.to_thread(services.heatmap_image, principal, diagnosis_id)
    return Response(png, media_type="image/png")


@router.get(
    "/diagnoses/{diagnosis_id}/ecg.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
async def get_ecg_png(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """The ECG on standard paper (25 mm/s, 10 mm/mV, 12-lead layout and a rhythm strip), the
    answer and the measurements, with the explained segments shaded (explain=true)."""
    png = await asyncio.to_thread(services.ecg_picture, principal, diagnosis_id)
    return Response(png, media_type="image/png")


DICOM_RESPONSE: dict[int | str, dict[str, Any]] = {200: {"content": {"application/dicom": {}}}}


@router.get("/diagnoses/{diagnosis_id}/sr.dcm", response_class=Response, responses=DICOM_RESPONSE)
async def get_structured_report(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """The diagnosis as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report): finding,
    probability, algorithm name and version, referencing the source image in its study."""
    sr = await asyncio.to_thread(services.structured_report, principal, diagnosis_id)
    return Response(sr, media_type="application/dicom")


@router.get(
    "/diagnoses/{diagnosis_id}/heatmap.dcm", response_class=Response, responses=DICOM_RESPONSE
)
async def get_heatmap_dicom(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """The heatmap overlay as a DICOM Secondary Capture image in the source study."""
    image = await asyncio.to_thread(services.heatmap_dicom, principal, diagnosis_id)
    return Response(image, media_type="application/dicom")


@router.get("/diagnoses/{diagnosis_id}/heatmap.json")
async def get_heatmap_values(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """The raw saliency map: values on its grid over the model input, and that grid's geometry
    (cell (i, j) is centred on input pixel (offset + stride·i, offset + stride·j))."""
    saliency, _ = services.saliency(principal, diagnosis_id)
    return {**saliency.describe(), "values": saliency.values.round(6).tolist()}


@router.get(
    "/diagnoses/{diagnosis_id}/fhir",
    response_class=JSONResponse,
    responses={200: {"content": {"application/fhir+json": {}}}},
)
async def get_diagnosis_fhir(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> JSONResponse:
    """The diagnosis as a FHIR R4 Bundle: a preliminary DiagnosticReport, its Observation
    (probability, interpretation), the model as a Device, the ImagingStudy and the Patient."""
    principal.require(Permission.read_results)
    record = clinical_view(services.diagnoses.get(principal.tenant_id, diagnosis_id))
    return JSONResponse(diagnosis_bundle(record), media_type="application/fhir+json")


class FeedbackIn(BaseModel):
    """A clinician's verdict: agree or not, the correct label, a comment."""

    model_config = ConfigDict(extra="forbid")

    agree: bool
    correct_label: str | None = Field(default=None, max_length=400)  # several statements
    comment: str = Field(default="", max_length=2000)


@router.post("/diagnoses/{diagnosis_id}/feedback", status_code=201)
async def post_feedback(
    diagnosis_id: str,
    body: FeedbackIn,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
) -> dict[str, Any]:
    """Agree or disagree with a diagnosis and give the correct label (clinician role). A second
    verdict from the same key replaces the first."""
    return await asyncio.to_thread(
        services.feedback,
        principal,
        unit,
        diagnosis_id,
        body.agree,
        body.correct_label,
        body.comment,
    )


@router.get("/diagnoses")
async def list_diagnoses(
    principal: CurrentPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The caller's tenant's diagnoses, newest first; pass `next_cursor` back for more."""
    principal.require(Permission.read_results)
    items, next_cursor = services.diagnoses.page(principal.tenant_id, limit, cursor)
    return {"items": [clinical_view(i) for i in items], "next_cursor": next_cursor}


@router.get("/models")
async def list_models(principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The models the caller's tenant sees (the platform's and its own), their versions and
    aliases."""
    models = services.registry.models(principal.tenant_id)
    return {"models": [_model_summary(services, name, owner) for name, owner in models]}


@router.get("/models/{name}")
async def get_model(
    name: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """A model: versions (with their manifests, i.e. model cards), aliases, what is loaded."""
    owner = services.registry.owner_of(name, principal.tenant_id)
    repo = services.registry.repository_of(owner)
    summary = _model_summary(services, name, owner)
    manifests = {v: repo.resolve(name, v).manifest() for v in repo.versions(name)}
    summary["manifests"] = {str(v): m.to_dict() for v, m in manifests.items()}
    summary["card"] = render_card(manifests[summary["latest"]])
    summary["feedback"] = services.feedback_store.summary(
        name, summary["labels"], principal.tenant_id
    )
    return summary


def _model_summary(services: ServicesDep, name: str, owner: str | None) -> dict[str, Any]:
    repo = services.registry.repository_of(owner)
    latest = repo.resolve(name).manifest()
    loaded = services.registry.loaded()
    return {
        "name": name,
        "namespace": "tenant" if owner else "platform",
        "versions": repo.versions(name),
        "latest": latest.version,
        "loaded": [m.ref.version for m in loaded if (m.ref.owner, m.ref.name) == (owner, name)],
        "aliases": {a: alias.to_dict() for a, alias in read_aliases(repo.root / name).items()},
        "labels": latest.labels,
        "intended_use": latest.intended_use,
        "not_for_clinical_use": latest.not_for_clinical_use,
        "warning": latest.clinical_use_warning,
    }
