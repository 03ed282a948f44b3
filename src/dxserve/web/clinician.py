"""The clinician's pages: sign in with an API key, send a study, read its result (cine player
with the explanation overlay, ECG with its intervals), give feedback, find it in the history.

Every page calls the same services as the API; results are never cached by the browser
(the middleware's ``Cache-Control: no-store``) and no patient identifier is in a URL or title.
"""

import asyncio
import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from dxserve.api.deps import RequestUnit, ServicesDep, authenticate
from dxserve.api.errors import status_of
from dxserve.api.upload import read_upload
from dxserve.core.explain.overlay import heat_layer
from dxserve.core.intake.decode import decode_bytes
from dxserve.core.modality import IMAGE
from dxserve.core.results.fhir import diagnosis_bundle
from dxserve.core.results.film_strip import film_strip
from dxserve.core.security.principal import Permission, Principal, Unauthenticated
from dxserve.errors import DxError, InvalidInput
from dxserve.services import Services, clinical_view
from dxserve.store.accounts import NotFound
from dxserve.store.diagnoses import Filters
from dxserve.store.web_sessions import LONGEST
from dxserve.web.browser import (
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SignedIn,
    check_token,
    new_token,
    same_site,
    set_cookie,
)
from dxserve.web.pages import PageRoute, page

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HISTORY_PAGE = 20
RECENT_STUDIES = 20  # on the new-study page: the studies already received


@router.get("/")
async def home(request: Request) -> Response:
    signed_in = SESSION_COOKIE in request.cookies
    return RedirectResponse("/studies/new" if signed_in else "/sign-in", status_code=303)


def _sign_in_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    token = new_token()
    response = page(request, "sign_in.html", status, sign_in_token=token, error=error)
    set_cookie(request, response, SIGN_IN_COOKIE, token, age=600)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    services: ServicesDep,
    unit: RequestUnit,
    api_key: Annotated[str, Form(max_length=200)],
) -> Response:
    """Trade an API key for a session cookie; the key itself is never kept by the browser."""
    same_site(request)
    await check_token(request, request.cookies.get(SIGN_IN_COOKIE, ""))
    try:
        principal = await authenticate(services, f"Bearer {api_key}", request.state)
    except Unauthenticated:
        return _sign_in_page(request, 401, "That API key does not work.")
    token, _ = services.web_sessions.open(unit, principal.key_id)
    response = RedirectResponse("/studies/new", status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, age=int(LONGEST.total_seconds()))
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(
    request: Request, principal: SignedIn, services: ServicesDep, unit: RequestUnit
) -> Response:
    services.web_sessions.end(unit, request.state.web_session)
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/studies/new")
async def new_study(request: Request, principal: SignedIn, services: ServicesDep) -> Response:
    principal.require(Permission.diagnose)
    models = [name for name, _ in services.registry.models(principal.tenant_id)]

    def received() -> dict[str, list[dict[str, Any]]]:
        uids = services.diagnoses.studies(principal.tenant_id, RECENT_STUDIES, 0)
        found = services.diagnoses.in_study(principal.tenant_id, uids)
        return {uid: [clinical_view(r) for r in found.get(uid, [])] for uid in uids}

    studies = await asyncio.to_thread(received) if principal.may(Permission.read_results) else {}
    return page(request, "new_study.html", principal=principal, models=models, studies=studies)


@router.post("/studies")
async def create_study(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    unit: RequestUnit,
    explain: bool = False,
) -> Response:
    """The upload form's target (sent by script, with progress): JSON with the result's
    address, or the reason it was refused."""
    try:
        upload = await read_upload(request)
        record = await services.diagnose(
            principal, unit, upload.data, upload.media_type, upload.model, explain, upload.files
        )
    except DxError as error:
        return JSONResponse({"detail": error.detail}, status_code=status_of(error))
    return JSONResponse({"location": f"/diagnoses/{record['id']}"}, status_code=201)


def _record(services: Services, principal: Principal, diagnosis_id: str) -> dict[str, Any]:
    principal.require(Permission.read_results)
    return clinical_view(services.diagnoses.get(principal.tenant_id, diagnosis_id))


@router.get("/diagnoses/{diagnosis_id}")
async def result(
    request: Request, diagnosis_id: str, principal: SignedIn, services: ServicesDep
) -> Response:
    record = await asyncio.to_thread(_record, services, principal, diagnosis_id)
    chart = {
        "frames": [f["index"] for f in record["frames"]],
        "probabilities": [f["probability"] for f in record["frames"]],
        "refused": [f["out_of_distribution"] is not None for f in record["frames"]],
        "threshold": record["threshold"],
        "explained_frame": (record.get("explanation") or {}).get("frame"),
    }
    return page(
        request,
        "result.html",
        principal=principal,
        record=record,
        image=record.get("modality", IMAGE) == IMAGE,
        chart=chart,
        can_feedback=principal.may(Permission.feedback),
    )


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png")


@router.get("/diagnoses/{diagnosis_id}/cine.png")
async def cine(diagnosis_id: str, principal: SignedIn, services: ServicesDep) -> Response:
    """The study's frames, top to bottom, for the player."""

    def strip() -> bytes:
        record = _record(services, principal, diagnosis_id)
        if record.get("modality", IMAGE) != IMAGE:
            raise NotFound("an ECG has no frames")
        return film_strip(decode_bytes(services.blobs.get(record["input"]["sha256"])))[0]

    return _png(await asyncio.to_thread(strip))


@router.get("/diagnoses/{diagnosis_id}/explanation.png")
async def explanation(diagnosis_id: str, principal: SignedIn, services: ServicesDep) -> Response:
    """The saliency map alone, transparent elsewhere, for the player's overlay."""

    def layer() -> bytes:
        saliency, data = services.saliency(principal, diagnosis_id)
        frame = decode_bytes(data)[saliency.frame]
        return heat_layer(saliency, *frame.shape[:2])

    return _png(await asyncio.to_thread(layer))


@router.get("/diagnoses/{diagnosis_id}/ecg.png")
async def ecg(diagnosis_id: str, principal: SignedIn, services: ServicesDep) -> Response:
    return _png(await asyncio.to_thread(services.ecg_picture, principal, diagnosis_id))


DOWNLOADS = {
    "fhir": ("application/fhir+json", "json"),
    "sr": ("application/dicom", "dcm"),
    "heatmap-dicom": ("application/dicom", "dcm"),
    "heatmap-png": ("image/png", "png"),
}


@router.get("/diagnoses/{diagnosis_id}/download/{kind}")
async def download(
    diagnosis_id: str, kind: str, principal: SignedIn, services: ServicesDep
) -> Response:
    """A result file: FHIR report, DICOM SR, heatmap as DICOM or PNG."""
    if kind not in DOWNLOADS:
        raise NotFound(f"no download {kind!r}")

    def make() -> bytes:
        if kind == "fhir":
            bundle = diagnosis_bundle(_record(services, principal, diagnosis_id))
            return json.dumps(bundle, indent=1).encode()
        if kind == "sr":
            return services.structured_report(principal, diagnosis_id)
        if kind == "heatmap-dicom":
            return services.heatmap_dicom(principal, diagnosis_id)
        return services.heatmap_image(principal, diagnosis_id)

    media, suffix = DOWNLOADS[kind]
    name = f"diagnosis-{diagnosis_id[:8]}-{kind}.{suffix}"
    return Response(
        await asyncio.to_thread(make),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/diagnoses/{diagnosis_id}/feedback")
async def feedback(
    request: Request,
    diagnosis_id: str,
    principal: SignedIn,
    services: ServicesDep,
    unit: RequestUnit,
    verdict: Annotated[str, Form(pattern="^(agree|disagree)$")],
    correct_label: Annotated[str, Form(max_length=400)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Save a clinician's verdict (an htmx form: the answer replaces the form)."""
    try:
        saved = await asyncio.to_thread(
            services.feedback,
            principal,
            unit,
            diagnosis_id,
            verdict == "agree",
            correct_label or None,
            comment,
        )
    except InvalidInput as error:
        return page(request, "feedback_refused.html", 422, principal, detail=error.detail)
    return page(request, "feedback_saved.html", principal=principal, saved=saved)


def _day(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD)") from None


@router.get("/history")
async def history(
    request: Request,
    principal: SignedIn,
    services: ServicesDep,
    model: Annotated[str | None, Query(max_length=200)] = None,
    label: Annotated[str | None, Query(max_length=400)] = None,
    refer: Annotated[str | None, Query(pattern="^(|yes|no)$")] = None,
    since: Annotated[str | None, Query(alias="from")] = None,
    until: Annotated[str | None, Query(alias="to")] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The tenant's diagnoses, newest first, filtered and paginated."""
    principal.require(Permission.read_results)
    last = _day(until, "to")
    where = Filters(
        model=model or None,
        label=label or None,
        refer={"yes": True, "no": False}.get(refer or ""),
        since=_day(since, "from"),
        before=last + dt.timedelta(days=1) if last else None,
    )
    items, next_cursor = await asyncio.to_thread(
        services.diagnoses.page, principal.tenant_id, HISTORY_PAGE, cursor, where
    )
    models = await asyncio.to_thread(services.diagnoses.models, principal.tenant_id)
    chosen = {"model": model, "label": label, "refer": refer, "from": since, "to": until}
    more = {k: v for k, v in chosen.items() if v} | {"cursor": next_cursor}
    return page(
        request,
        "history.html",
        principal=principal,
        items=items,
        models=models,
        chosen=chosen,
        next_query=more if next_cursor else None,
    )
