"""A tenant's own models, datasets, training jobs and promotions (admin role)."""

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from dxserve.api.deps import CurrentPrincipal, RequestUnit, ServicesDep
from dxserve.core.security.principal import Permission
from dxserve.customisation import EVALUATE, FINE_TUNE, MAX_AUC_DROP, MAX_ECE_RISE
from dxserve.errors import InvalidInput, ModelRejected

router = APIRouter(prefix="/v1/admin", tags=["customisation"])

MODEL_UPLOAD = "/v1/admin/models"
DATASET_UPLOAD = "/v1/admin/datasets"
MANIFEST_LIMIT = 1 << 20
ID = r"^[0-9a-f]{32}$"
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
REFERENCE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}:[0-9]{1,9}$"  # MODEL:VERSION
ModelName = Annotated[str, PathParam(pattern=MODEL_NAME)]
JobId = Annotated[str, PathParam(pattern=ID)]
DatasetId = Annotated[str, PathParam(pattern=ID)]


@router.post(MODEL_UPLOAD.removeprefix("/v1/admin"), status_code=201)
async def upload_model(
    request: Request, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Bring your own model: a multipart form with ``name``, ``model`` (the ONNX file),
    ``manifest`` (JSON, as ``dxserve train`` writes it) and optionally ``intended_use``. It
    becomes the next version of the tenant's model ``name`` once every check passes; a 422
    names the check that failed."""
    principal.require(Permission.customise_models)
    form = await request.form(max_files=2, max_fields=4, max_part_size=MANIFEST_LIMIT)
    model, manifest = form.get("model"), form.get("manifest")
    name = form.get("name")
    intended_use = form.get("intended_use")
    if not isinstance(model, UploadFile):
        raise ModelRejected("the form needs the ONNX file as the file field 'model'")
    if manifest is None or not isinstance(name, str):
        raise ModelRejected("the form needs the fields 'name' and 'manifest'")
    manifest_bytes = (
        await manifest.read() if isinstance(manifest, UploadFile) else manifest.encode()
    )
    plan = services.plan(principal)

    def check_and_add() -> dict[str, Any]:
        with tempfile.NamedTemporaryFile(suffix=".onnx") as copy:
            model.file.seek(0)
            shutil.copyfileobj(model.file, copy)
            copy.flush()
            return services.customisation.upload_model(
                principal, plan, name, Path(copy.name), manifest_bytes,
                intended_use if isinstance(intended_use, str) else None,
            )  # fmt: skip

    try:
        return await asyncio.to_thread(check_and_add)
    finally:
        await form.close()


@router.delete("/models/{name}", status_code=204)
async def delete_model(
    name: ModelName, principal: CurrentPrincipal, services: ServicesDep
) -> Response:
    """Delete one of the tenant's own models, every version (audited)."""
    await services.customisation.delete_model(principal, name)
    return Response(status_code=204)


class PromotionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    stage: Literal["shadow", "canary", "production"] = "shadow"
    weight: float = Field(default=10, gt=0, lt=100, description="canary: percent of traffic")
    max_auc_drop: float = Field(default=MAX_AUC_DROP, ge=0, le=1)
    max_ece_rise: float = Field(default=MAX_ECE_RISE, ge=0, le=1)


@router.post("/models/{name}/promotion")
async def promote(
    name: ModelName, body: PromotionIn, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Route the tenant's traffic for its model ``name`` to a fine-tuned version: as a shadow
    (the default, and the suggested first step), a canary of ``weight`` percent, or all of it
    — only if, on the held-out split, it is not worse than its base by more than the margins;
    otherwise 409 with the comparison."""
    return await asyncio.to_thread(
        services.customisation.promote,
        principal,
        name,
        body.version,
        body.stage,
        body.weight,
        body.max_auc_drop,
        body.max_ece_rise,
    )


class IntendedUseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intended_use: str = Field(min_length=20, max_length=2000)
    evaluation: str = Field(min_length=1, max_length=500, description="an evaluation on record")


@router.put("/models/{name}/versions/{version}/intended-use")
async def record_intended_use(
    name: ModelName,
    version: Annotated[int, PathParam(ge=1, le=10**9)],
    body: IntendedUseIn,
    principal: CurrentPrincipal,
    services: ServicesDep,
) -> dict[str, Any]:
    """Record the intended use of a version of the tenant's own model and the evaluation that
    supports it: only then do its results stop saying "not for clinical use" (409 when the
    evaluation is not on record, or the model was trained on synthetic phantoms)."""
    return await asyncio.to_thread(
        services.customisation.record_intended_use,
        principal,
        name,
        version,
        body.intended_use,
        body.evaluation,
    )


@router.get("/datasets")
async def list_datasets(principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The tenant's labelled datasets."""
    principal.require(Permission.customise_models)
    return {
        "datasets": await asyncio.to_thread(
            services.customisation.datasets.list, principal.tenant_id
        )
    }


@router.post(
    DATASET_UPLOAD.removeprefix("/v1/admin"),
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_dataset(
    request: Request,
    principal: CurrentPrincipal,
    services: ServicesDep,
    unit: RequestUnit,
    name: Annotated[str, Query(pattern=r"^[\w][\w .,()+-]{0,199}$")],
) -> dict[str, Any]:
    """A labelled dataset: a zip of class folders or of a ``manifest.csv`` (path, label) with
    its files, as ``dxserve train`` reads them. Every file is de-identified as at intake and
    renamed; the archive is kept sealed until deleted."""
    principal.require(Permission.customise_models)
    data = await request.body()
    plan = services.plan(principal)
    return await asyncio.to_thread(
        services.customisation.add_dataset, principal, plan, unit, name, data
    )


@router.delete("/datasets/{dataset_id}", status_code=204)
async def delete_dataset(
    dataset_id: DatasetId, principal: CurrentPrincipal, services: ServicesDep, unit: RequestUnit
) -> Response:
    """Delete a dataset and its stored files (audited)."""
    await asyncio.to_thread(services.customisation.delete_dataset, principal, unit, dataset_id)
    return Response(status_code=204)


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["fine-tune", "evaluate"] = "fine-tune"
    base: str | None = Field(
        default=None, pattern=REFERENCE, description="fine-tune: MODEL:VERSION"
    )
    model: str | None = Field(
        default=None, pattern=REFERENCE, description="evaluate: MODEL:VERSION"
    )
    name: str | None = Field(
        default=None,
        pattern=MODEL_NAME,
        max_length=63,
        description="fine-tune: the tenant's model to write (default: the base's name)",
    )
    datasets: list[Annotated[str, Field(pattern=ID)]] = Field(default_factory=list, max_length=20)
    feedback: bool = Field(
        default=False, description="also the tenant's clinicians' labelled feedback"
    )
    # The seed's recipe (Adam, 10 epochs, 1e-3), from the base's weights.
    epochs: int = Field(default=10, ge=1, le=50)
    learning_rate: float = Field(default=1e-3, gt=0, le=0.1)
    seed: int = Field(default=0, ge=0)


@router.post("/training-jobs", status_code=202)
async def submit_job(
    body: JobIn, principal: CurrentPrincipal, services: ServicesDep, unit: RequestUnit
) -> dict[str, Any]:
    """Queue a fine-tuning job (``base``) or an evaluation (``model``) on the tenant's data;
    ``dxserve worker`` runs it. Follow it at ``GET …/training-jobs/{id}``."""
    if (body.kind == FINE_TUNE) != (body.base is not None) or (body.kind == EVALUATE) != (
        body.model is not None
    ):
        raise InvalidInput("a fine-tune names 'base', an evaluation names 'model'")
    spec = body.model_dump(exclude_none=True, exclude={"kind"})
    return await asyncio.to_thread(
        services.customisation.submit_job,
        principal,
        services.plan(principal),
        unit,
        body.kind,
        spec,
    )


@router.get("/training-jobs")
async def list_jobs(principal: CurrentPrincipal, services: ServicesDep) -> dict[str, Any]:
    """The tenant's jobs, newest first."""
    principal.require(Permission.customise_models)
    return {"jobs": await asyncio.to_thread(services.customisation.jobs.list, principal.tenant_id)}


@router.get("/training-jobs/{job_id}")
async def get_job(
    job_id: JobId, principal: CurrentPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """A job: its state, progress (epoch, loss, validation AUC), and result or error."""
    return await asyncio.to_thread(services.customisation.job, principal, job_id)


@router.post("/training-jobs/{job_id}/cancel", status_code=202)
async def cancel_job(
    job_id: JobId, principal: CurrentPrincipal, services: ServicesDep, unit: RequestUnit
) -> dict[str, Any]:
    """Cancel a queued job, or ask a running one to stop at its next step."""
    principal.require(Permission.customise_models)
    return await asyncio.to_thread(
        services.customisation.jobs.cancel, unit, principal.tenant_id, job_id
    )
