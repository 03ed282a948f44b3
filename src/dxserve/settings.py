"""Typed settings read from the environment (prefix ``DXSERVE_``); CLI flags override them."""

import json
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dxserve.core.intake.deidentify import Options


class Settings(BaseSettings):
    """Where dxserve keeps its data, finds its models, and how it serves them."""

    model_config = SettingsConfigDict(env_prefix="DXSERVE_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for dxserve's own data: database, blobs, generated phantoms.",
    )
    model_repository: Path | None = Field(
        default=None,
        description="Model repository (Triton layout). Defaults to DATA_DIR/models.",
    )
    tenant_models: Path | None = Field(
        default=None,
        description="Tenants' own models (uploaded or fine-tuned), one repository per tenant "
        "under it. Defaults to DATA_DIR/tenant-models.",
    )
    max_model_mb: float = Field(
        default=256.0, gt=0, description="Largest ONNX file a tenant may upload."
    )
    max_model_nodes: int = Field(
        default=20_000, ge=1, description="Most nodes an uploaded ONNX graph may have."
    )
    model_check_memory_mb: int = Field(
        default=2048,
        ge=64,
        description="Address space an uploaded model may use while it is loaded and run once "
        "(in a separate process) before it is accepted.",
    )
    max_dataset_mb: float = Field(
        default=512.0, gt=0, description="Largest labelled dataset (zip) a tenant may upload."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db. "
        "Defaults to SQLite at DATA_DIR/dxserve.db (WAL mode).",
    )
    default_model: str = Field(
        default="echo-cnn", description="Model for an image when a request names none."
    )
    default_models: dict[str, str] = Field(
        default_factory=lambda: {"signal": "ecg-rnn"},
        description="Model for each other input modality when a request names none, as JSON "
        '(e.g. {"signal": "ecg-rnn"}); images use DEFAULT_MODEL.',
    )
    host: str = Field(default="127.0.0.1", description="Address `dxserve serve` binds.")
    port: int = Field(default=8000, description="Port `dxserve serve` binds.")
    memory_budget_mb: int = Field(
        default=2048,
        description="Memory the loaded models may take; the least recently used model is "
        "unloaded when loading another would exceed it.",
    )
    max_batch_size: int | None = Field(
        default=None, description="Overrides every manifest's dynamic-batching max batch size."
    )
    max_queue_delay_ms: float | None = Field(
        default=None, description="Overrides every manifest's dynamic-batching max queue delay."
    )
    model_instances: int = Field(
        default=1,
        ge=1,
        description="Batches of one model version that may run at once (Triton's instance "
        "count). More than one helps on machines with cores to spare; on 2 cores one instance "
        "with both cores measured best (benchmarks/serve.py).",
    )
    ort_threads: int = Field(
        default=0,
        description="ONNX Runtime intra-op threads per model session (0: the cores shared out "
        "among the instances).",
    )
    max_frames: int = Field(
        default=32,
        ge=0,
        description="Frames of a cine the model reads, evenly spaced (0: every frame); the "
        "study's result aggregates them (mean probability of the frames the guard accepts).",
    )
    max_body_mb: float = Field(default=64.0, description="Largest request body accepted.")
    request_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest a request may take, upload included: 408 while its body is still "
        "arriving (a slow or stalled client), 503 once it is being processed.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="HTTP worker processes; each loads its own model sessions. With several, "
        "set ORT_THREADS so that workers × threads ≈ cores.",
    )
    log_level: str = Field(default="INFO", description="Log level of the JSON logs.")
    ssl_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain): serve HTTPS directly with uvicorn."
    )
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of ssl_certfile.")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated, "
        "or * ); behind a TLS-terminating proxy, its address.",
    )

    audit_key: SecretStr | None = Field(
        default=None,
        description="Key of the audit trail's hash chain; default: DATA_DIR/audit.key, created "
        "once. Keep it outside the data dir (a secret store) so whoever can edit the database "
        "cannot also re-forge the chain.",
    )

    plans_file: Path | None = Field(
        default=None,
        description="TOML file of price plans (per image, per frame, included images, monthly "
        "quota, rate limit); default: the built-in plans `trial` and `standard`.",
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db for the per-key rate-limit buckets (the `redis` "
        "extra); default: the database.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="Master key (urlsafe base64 of 32 bytes) that wraps the data key of every "
        "stored input, output and pseudonym map. Prefer MASTER_KEY_FILE, which can be rotated.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="File of master keys (`dxserve keys create-master`), one a line, the first "
        "current; keep it outside the data dir. Without a master key dxserve will not start.",
    )

    dicomweb_models: dict[str, str] = Field(
        default_factory=dict,
        description='Model STOW-RS runs for each modality, as JSON (e.g. {"US": "echo-cnn"}); '
        "a modality not named gets the default model of its kind (image or signal).",
    )
    dicomweb_explain: bool = Field(
        default=True,
        description="STOW-RS diagnoses with a saliency map, so a heatmap Secondary Capture "
        "is filed beside each SR.",
    )
    deid_retain_uids: bool = Field(
        default=False,
        description="De-identification (PS3.15 Basic Profile) option Retain UIDs: keep the "
        "study, series and instance UIDs as sent instead of per-tenant pseudonyms.",
    )
    deid_retain_device_identity: bool = Field(
        default=False,
        description="De-identification option Retain Device Identity (station name, serial "
        "numbers…).",
    )
    deid_retain_longitudinal_dates: bool = Field(
        default=True,
        description="De-identification option Retain Longitudinal Temporal Information with "
        "Modified Dates: shift every date by one per-patient offset instead of removing it.",
    )
    deid_clean_pixel_data: bool = Field(
        default=True,
        description="De-identification option Clean Pixel Data: blank ultrasound pixels "
        "outside the Sequence of Ultrasound Regions (burned-in names and dates).",
    )

    ray_address: str | None = Field(
        default=None,
        description="`dxserve serve --ray`: the Ray cluster to join (e.g. ray://head:10001 or "
        "auto); default: start a local one on loopback.",
    )
    ray_min_replicas: int = Field(default=1, ge=1, description="Fewest replicas of the app.")
    ray_max_replicas: int = Field(default=1, ge=1, description="Most replicas (autoscaling).")
    ray_target_ongoing_requests: float = Field(
        default=16.0,
        gt=0,
        description="Requests in flight per replica that autoscaling aims at: dxserve's batcher "
        "needs several in flight to fill a batch.",
    )
    ray_max_ongoing_requests: int = Field(
        default=64,
        ge=1,
        description="Requests one replica takes at once (Ray's default of 5 would cap batches).",
    )
    ray_cpus_per_replica: float = Field(default=1.0, gt=0, description="CPUs Ray reserves.")

    @model_validator(mode="after")
    def _tls_pair(self) -> "Settings":
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("set both DXSERVE_SSL_CERTFILE and DXSERVE_SSL_KEYFILE, or neither")
        return self

    def model_for(self, modality: str) -> str | None:
        """The model a request without ``?model=`` gets for input of ``modality``."""
        return self.default_model if modality == "image" else self.default_models.get(modality)

    @property
    def repository(self) -> Path:
        """The model repository actually in use."""
        return self.model_repository or self.data_dir / "models"

    @property
    def tenant_repository(self) -> Path:
        """Where tenants' own models are kept."""
        return self.tenant_models or self.data_dir / "tenant-models"

    @property
    def audit_secret(self) -> str | None:
        return self.audit_key.get_secret_value() if self.audit_key else None

    @property
    def master_secret(self) -> str | None:
        return self.master_key.get_secret_value() if self.master_key else None

    @property
    def deidentification(self) -> Options:
        return Options(
            retain_uids=self.deid_retain_uids,
            retain_device_identity=self.deid_retain_device_identity,
            retain_longitudinal_modified_dates=self.deid_retain_longitudinal_dates,
            clean_pixel_data=self.deid_clean_pixel_data,
        )

    @property
    def database(self) -> str:
        """The database URL actually in use."""
        return self.database_url or f"sqlite:///{self.data_dir / 'dxserve.db'}"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``DXSERVE_*`` variables, for processes that build their own (worker
        processes, Ray replicas)."""
        variables = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, dict | list):
                value = json.dumps(value)
            variables[f"DXSERVE_{name.upper()}"] = str(value)
        return variables
