"""Typed settings read from the environment (prefix ``DXSERVE_``); CLI flags override them."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where dxserve keeps its data and finds its models."""

    model_config = SettingsConfigDict(env_prefix="DXSERVE_", extra="ignore")

    data_dir: Path = Field(
        default=Path("var"),
        description="Directory for dxserve's own data: database, blobs, generated phantoms.",
    )
    model_repository: Path | None = Field(
        default=None,
        description="Model repository (Triton layout). Defaults to DATA_DIR/models.",
    )
    default_model: str = Field(
        default="echo-cnn", description="Model used when a request names none."
    )

    @property
    def repository(self) -> Path:
        """The model repository actually in use."""
        return self.model_repository or self.data_dir / "models"
