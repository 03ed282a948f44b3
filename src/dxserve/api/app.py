"""``create_app``: the FastAPI application over a set of services. Nothing is built at import."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dxserve import __version__
from dxserve.api.errors import install_error_handlers
from dxserve.api.middleware import BodyLimit, RequestContext
from dxserve.api.routes import admin, customisation, dicomweb, notes, v1, v2
from dxserve.core.text.analysis import warm_up as warm_up_notes
from dxserve.core.text.phi_tagger import NAME_MODEL
from dxserve.services import Services
from dxserve.settings import Settings
from dxserve.web import admin as admin_pages
from dxserve.web import clinician
from dxserve.web import notes as note_pages

log = logging.getLogger("dxserve.api")


def create_app(services: Services, load_models: bool = True, audit: bool = True) -> FastAPI:
    """The app; on startup it loads the latest version of every model (when ``load_models``)
    and, where the text models are installed, the notes' lexicons.

    ``audit=False`` exists for ``benchmarks/accounting_cost.py`` only: no setting or command turns
    the audit trail off."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if load_models:
            for name in services.registry.repository.models():
                loaded = await services.registry.load(name)
                log.info("model ready", extra={"model": name, "version": loaded.ref.version})
            if NAME_MODEL in services.registry.repository.models():  # notes are served
                await asyncio.to_thread(warm_up_notes)
        # What startup built (modules, tables, sessions) lives as long as the app: frozen out
        # of the collector, a full collection no longer walks it on a request's time (such
        # pauses of over 100 ms had set the p99 latency, benchmarks/serve.py).
        gc.collect()
        gc.freeze()
        app.state.ready = True
        yield
        app.state.ready = False
        gc.unfreeze()  # collectable again once the app is gone (an embedding process goes on)
        await services.close()

    app = FastAPI(
        title="dxserve",
        version=__version__,
        summary="Medical AI models as a service. Demo models are not for clinical use.",
        lifespan=lifespan,
        # dxserve observes itself with Prometheus and JSON logs; FastAPI's native OpenTelemetry
        # would look up the global tracer provider on every request (4 % of the event loop's
        # time on the OIP path, benchmarks/serve.py under py-spy).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.state.ready = False
    install_error_handlers(app)
    v2.add_infer_routes(app)  # first: see its docstring
    app.include_router(v1.router)
    app.include_router(notes.router)
    app.include_router(admin.router)
    app.include_router(customisation.router)
    app.include_router(v2.router)
    app.include_router(dicomweb.router)
    app.include_router(clinician.router)
    app.include_router(note_pages.router)
    app.include_router(admin_pages.router)
    app.mount("/static", StaticFiles(packages=[("dxserve.web", "static")]), name="static")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        RequestContext,
        metrics=services.metrics,
        max_body_bytes=int(services.settings.max_body_mb * 1024 * 1024),
        ledger=services.ledger,
        audit=audit,
        timeout_s=services.settings.request_timeout_s,
        upload_limits=upload_limits(services.settings),
    )
    return app


def upload_limits(settings: Settings) -> dict[str, BodyLimit]:
    """The routes that take more than a request's usual body: a tenant's model (over its limit:
    422, as every other check an upload fails) and its datasets."""
    mib = 1 << 20
    return {
        customisation.MODEL_UPLOAD: BodyLimit(
            int(settings.max_model_mb * mib) + customisation.MANIFEST_LIMIT + 64 * 1024,
            422,
            "model_rejected",
            "model upload",
        ),
        customisation.DATASET_UPLOAD: BodyLimit(int(settings.max_dataset_mb * mib), what="dataset"),
    }
