"""The data plane every front end shares: diagnose a study, run an OIP inference.

Built once by :mod:`dxserve.server` (the composition root) and handed to the API.
"""

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dxserve.core.intake.decode import decode_bytes
from dxserve.core.pipeline import diagnose
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.registry import ModelRegistry
from dxserve.core.security.principal import Permission, Principal
from dxserve.errors import InvalidInput
from dxserve.observability import Metrics
from dxserve.settings import Settings
from dxserve.store.accounts import Accounts
from dxserve.store.blobs import BlobStore
from dxserve.store.diagnoses import Diagnoses, StoredInput

# Frames of a cine the model sees (evenly spaced); the study result aggregates them.
MAX_FRAMES = 32


class Tensor(Protocol):
    """A named input tensor, as any front end decodes it."""

    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> str: ...
    @property
    def array(self) -> np.ndarray: ...


def clinical_view(record: dict[str, Any]) -> dict[str, Any]:
    """A stored diagnosis as the clinical API shows it: a shadow version's answer is recorded
    for the model's owners but never shown as, or beside, the answer."""
    return {k: v for k, v in record.items() if k != "shadow"}


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    accounts: Accounts
    diagnoses: Diagnoses
    blobs: BlobStore
    metrics: Metrics

    async def diagnose(
        self, principal: Principal, data: bytes, media_type: str, model: str | None
    ) -> dict[str, Any]:
        """Decode, diagnose, store the input and record the result; the stored record."""
        principal.require(Permission.diagnose)
        if not data:
            raise InvalidInput("the request has no image")
        selection = await self.registry.select(model or self.settings.default_model)
        ref = selection.primary.ref
        try:
            frames = await asyncio.to_thread(decode_bytes, data)
            result = await diagnose(selection, frames, MAX_FRAMES)
        except Exception:
            self.metrics.request(ref, ok=False)
            raise
        self.metrics.request(ref, ok=True)
        digest = await asyncio.to_thread(self.blobs.put, data)
        stored = StoredInput(digest, media_type, len(data))
        record = await self.diagnoses.add(
            principal.tenant_id, principal.key_id, result.to_dict(), stored
        )
        return clinical_view(record)

    async def infer(
        self, principal: Principal, name: str, version: int | None, inputs: list[Tensor]
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run raw model input through the batcher; the version used and every output."""
        principal.require(Permission.infer)
        loaded = await self.registry.get_latest(name, version)
        tensor = self._model_input(inputs, loaded.manifest)
        try:
            outputs, _, _ = await loaded.batcher.infer(tensor)
        except Exception:
            self.metrics.request(loaded.ref, ok=False)
            raise
        self.metrics.request(loaded.ref, ok=True)
        return loaded.ref.version, outputs

    def _model_input(self, inputs: list[Tensor], manifest: Manifest) -> np.ndarray:
        """The one input tensor, checked against the manifest's name, datatype and shape."""
        (spec,) = manifest.inputs
        if len(inputs) != 1 or inputs[0].name != spec.name:
            raise InvalidInput(f"model {manifest.name!r} takes one input named {spec.name!r}")
        given = inputs[0]
        if given.datatype != spec.datatype:
            raise InvalidInput(f"input {spec.name!r} must be {spec.datatype}, not {given.datatype}")
        shape = list(given.array.shape)
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(f"input {spec.name!r} must have shape {spec.shape}, not {shape}")
        limit = self.settings.max_batch_size or manifest.max_batch_size
        if not 1 <= shape[0] <= limit:
            raise InvalidInput(f"batch size must be between 1 and {limit}")
        return given.array

    async def close(self) -> None:
        await self.registry.close()
        await asyncio.to_thread(self.diagnoses.close)
