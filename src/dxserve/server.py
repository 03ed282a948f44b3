"""Composition root: build the stores, the runtime and the services, then the app."""

from fastapi import FastAPI

from dxserve.api.app import create_app
from dxserve.core.billing.plans import load_plans
from dxserve.core.runtime.registry import ModelRegistry
from dxserve.core.runtime.repository import ModelRepository
from dxserve.core.security.envelope import KeyRing
from dxserve.customisation import Customisation
from dxserve.intake import Intake
from dxserve.observability import Metrics, configure_logging
from dxserve.services import Services
from dxserve.settings import Settings
from dxserve.store.accounts import Accounts
from dxserve.store.audit import AuditTrail, load_key
from dxserve.store.blobs import BlobStore
from dxserve.store.database import make_engine, migrate
from dxserve.store.datasets import Datasets
from dxserve.store.diagnoses import Diagnoses
from dxserve.store.feedback import Feedback
from dxserve.store.identities import Identities
from dxserve.store.jobs import Jobs
from dxserve.store.ledger import Ledger
from dxserve.store.notes import Notes
from dxserve.store.ratelimit import DatabaseBucket, FallbackBucket, RateLimiter, RedisBucket
from dxserve.store.usage import Usage
from dxserve.store.web_sessions import WebSessions


def build_services(settings: Settings) -> Services:
    """Everything the API needs, from settings; migrates the database. Refuses (MasterKeyError)
    without a master key: nothing is stored in clear."""
    keys = KeyRing.from_settings(settings.master_secret, settings.master_key_file)
    engine = make_engine(settings.database)
    migrate(engine)
    metrics = Metrics()
    registry = ModelRegistry(
        ModelRepository(settings.repository),
        memory_budget_bytes=settings.memory_budget_mb << 20,
        threads=settings.ort_threads,
        instances=settings.model_instances,
        max_batch_size=settings.max_batch_size,
        max_queue_delay_ms=settings.max_queue_delay_ms,
        on_batch=metrics.on_batch,
        tenant_models=settings.tenant_repository,
    )
    identities = Identities(engine, keys)
    audit = AuditTrail(engine, load_key(settings.audit_secret, settings.data_dir))
    blobs = BlobStore(settings.data_dir / "blobs", keys)
    intake = Intake(identities, settings.deidentification)
    return Services(
        settings=settings,
        registry=registry,
        accounts=Accounts(engine),
        diagnoses=Diagnoses(engine),
        feedback_store=Feedback(engine),
        blobs=blobs,
        metrics=metrics,
        audit=audit,
        ledger=Ledger(engine, audit),
        usage=Usage(engine),
        limiter=RateLimiter(
            FallbackBucket(RedisBucket(settings.redis_url), DatabaseBucket(engine))
            if settings.redis_url
            else DatabaseBucket(engine)
        ),
        plans=load_plans(settings.plans_file),
        identities=identities,
        intake=intake,
        web_sessions=WebSessions(engine),
        notes=Notes(engine, keys),
        customisation=Customisation(
            settings, registry, Datasets(engine), Jobs(engine, audit), blobs, intake
        ),
    )


def build_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app for ``settings`` (from the environment when omitted); the factory each
    worker process calls when ``dxserve serve`` runs several."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    return create_app(build_services(settings))
