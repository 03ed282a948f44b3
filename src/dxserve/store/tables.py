"""The database schema (SQLAlchemy 2). Changes go through an Alembic migration."""

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# A multi-label answer names every statement present, joined by " + " (migration 0006).
LABEL_LENGTH = 400


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plan: Mapped[str] = mapped_column(String(50), server_default="standard")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200), default="")
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Space-separated permissions the key is limited to (within its role's); NULL: the role's.
    scopes: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class DiagnosisRow(Base):
    __tablename__ = "diagnoses"
    __table_args__ = (
        Index("ix_diagnoses_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_diagnoses_tenant_study", "tenant_id", "study_uid"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_sha256: Mapped[str] = mapped_column(String(64))
    input_media_type: Mapped[str] = mapped_column(String(100))
    input_bytes: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(Text)  # the diagnosis JSON as returned
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The (pseudonymous) study its input belongs to, where its SR and heatmap are filed.
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refer: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # migration 0007


class FeedbackRow(Base):
    """A clinician's verdict on a diagnosis: one per diagnosis and key (a new one replaces it)."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("diagnosis_id", "key_id", name="uq_feedback_diagnosis_key"),
        Index("ix_feedback_tenant_model", "tenant_id", "model", "version"),
        Index("ix_feedback_model", "model", "version"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    diagnosis_id: Mapped[str] = mapped_column(ForeignKey("diagnoses.id"))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    predicted_label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    agree: Mapped[bool] = mapped_column(Boolean)
    correct_label: Mapped[str] = mapped_column(String(LABEL_LENGTH))
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEventRow(Base):
    """One audited action, chained to the one before (see dxserve.core.security.audit_chain)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_tenant_seq", "tenant_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    recorded: Mapped[str] = mapped_column(String(40))  # ISO 8601 UTC, as hashed
    tenant_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    action: Mapped[str] = mapped_column(String(200))
    resource_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(100), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last link, one row; locking it serialises appends across processes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class UsageEventRow(Base):
    """One billable unit of work: a diagnosis or an OIP inference that ran a model."""

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_events_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # diagnosis | inference
    images: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)
    compute_ms: Mapped[float] = mapped_column(Float)
    bytes: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class RateBucket(Base):
    """A key's token bucket, shared by every server process (each leases tokens in chunks)."""

    __tablename__ = "rate_buckets"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)  # epoch seconds


class PseudonymKey(Base):
    """A tenant's secret for its pseudonyms (sealed under the master key ring)."""

    __tablename__ = "pseudonym_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IdentityRow(Base):
    """What de-identifying one instance took away (original identifiers), sealed; keyed by
    the pseudonymous UIDs only."""

    __tablename__ = "identities"
    __table_args__ = (Index("ix_identities_tenant_study", "tenant_id", "study_uid"),)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    sop_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebSessionRow(Base):
    """A browser's session of the web app: the hash of its cookie's token, the API key it
    signed in with, and its cross-site request forgery token."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class NoteRow(Base):
    """A clinical note's analysis: the de-identified text and what was found in it, readable
    by the tenant; the original text only sealed (bound to tenant and note)."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str] = mapped_column(String(32))
    patient: Mapped[str] = mapped_column(String(32))  # pseudonymous patient id
    result: Mapped[str] = mapped_column(Text)  # the analysis JSON as returned
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # the original text
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class DatasetRow(Base):
    """A tenant's labelled dataset (a zip in a layout ``dxserve train`` reads, de-identified),
    kept as one sealed blob until deleted."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    name: Mapped[str] = mapped_column(String(200))
    blob_sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text)  # counts per label and split, layout
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class TrainingJobRow(Base):
    """A job for ``dxserve worker``: fine-tune a model or evaluate one, queued in the database."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        Index("ix_training_jobs_status_created", "status", "created_at"),
        Index("ix_training_jobs_tenant_created", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(20))  # fine-tune | evaluate
    spec: Mapped[str] = mapped_column(Text)  # JSON: base, datasets, epochs …
    status: Mapped[str] = mapped_column(String(20))  # queued running succeeded failed cancelled
    progress: Mapped[str] = mapped_column(Text, default="{}")  # JSON: epoch, loss, AUC …
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
