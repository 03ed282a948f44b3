"""The clinical API: diagnoses and models."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile

from dxserve.api.deps import CurrentPrincipal, ServicesDep
from dxserve.core.intake.decode import is_dicom
from dxserve.core.results.card import render_card
from dxserve.core.runtime.aliases import read_aliases
from dxserve.core.security.principal import Permission
from dxserve.errors import InvalidInput, UnsupportedMedia
from dxserve.services import clinical_view

router = APIRouter(prefix="/v1", tags=["clinical"])

IMAGE_TYPES = ("image/png", "image/jpeg", "application/dicom")
UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
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
    model: Annotated[str | None, Query(description="name, name:version or name:alias")] = None,
) -> dict[str, Any]:
    """Diagnose one image or cine (PNG, JPEG or DICOM), raw or as multipart field `file`."""
    principal.require(Permission.diagnose)
    data, media_type, form_model = await _read_upload(request)
    record = await services.diagnose(principal, data, media_type, model or form_model)
    response.headers["Location"] = f"/v1/diagnoses/{record['id']}"
    return record


async def _read_upload(request: Request) -> tuple[bytes, str, str | None]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        form = await request.form()
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput("multipart form needs a file field named 'file'")
            data = await upload.read()
            model = form.get("model")
            media = (upload.content_type or "").lower()
        finally:
            await form.close()
        if media not in IMAGE_TYPES:
            media = "application/dicom" if is_dicom(data) else media or "application/octet-stream"
        return data, media, model if isinstance(model, str) and model else None
    if content_type not in IMAGE_TYPES:
        raise UnsupportedMedia(
            f"Content-Type must be one of {', '.join(IMAGE_TYPES)} or multipart/form-data"
        )
    return await request.body(), content_type, None


@router.get("/diagnoses/{diagnosis_id}")
async def get_diagnosis(
    diagnosis_id: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """One diagnosis of the caller's tenant."""
    principal.require(Permission.read_results)
    return clinical_view(services.diagnoses.get(principal.tenant_id, diagnosis_id))


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
    """The models in the repository, their versions and aliases."""
    repo = services.registry.repository
    return {"models": [_model_summary(services, name) for name in repo.models()]}


@router.get("/models/{name}")
async def get_model(
    name: str, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """A model: versions (with their manifests, i.e. model cards), aliases, what is loaded."""
    repo = services.registry.repository
    summary = _model_summary(services, name)
    manifests = {v: repo.resolve(name, v).manifest() for v in repo.versions(name)}
    summary["manifests"] = {str(v): m.to_dict() for v, m in manifests.items()}
    summary["card"] = render_card(manifests[summary["latest"]])
    return summary


def _model_summary(services: ServicesDep, name: str) -> dict[str, Any]:
    repo = services.registry.repository
    latest = repo.resolve(name).manifest()
    return {
        "name": name,
        "versions": repo.versions(name),
        "latest": latest.version,
        "loaded": [m.ref.version for m in services.registry.loaded() if m.ref.name == name],
        "aliases": {a: alias.to_dict() for a, alias in read_aliases(repo.root / name).items()},
        "labels": latest.labels,
        "intended_use": latest.intended_use,
        "not_for_clinical_use": latest.not_for_clinical_use,
        "warning": latest.clinical_use_warning,
    }
