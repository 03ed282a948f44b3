"""Loaded model versions: load and unload, aliases, and a memory budget with LRU eviction.

Models live in namespaces: the platform's repository, visible to every tenant, and each
tenant's own (``TENANT_MODELS/<tenant id>/<model>/<version>``), visible to that tenant only. A
tenant's name is looked up in its own namespace first, so its model of a platform model's name
(a fine-tuned copy) answers for it alone.

Each loaded version owns an ONNX Runtime session behind a :class:`DynamicBatcher`. When loading
a version would take the loaded models over the memory budget, the least recently used versions
are unloaded first.
"""

import asyncio
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dxserve.core.runtime.aliases import read_aliases
from dxserve.core.runtime.batcher import DynamicBatcher
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.errors import InvalidInput, ModelNotFound

LATEST_TTL_S = 1.0
Key = tuple[str | None, str, int]  # (owner, name, version)
# A session holds the weights once more than the file, plus arena and activations.
MEMORY_FACTOR = 2.0


def memory_need(ref: ModelRef) -> int:
    """The memory a version takes once loaded, estimated from its file."""
    return int((ref.path / "model.onnx").stat().st_size * MEMORY_FACTOR)


@dataclass
class LoadedModel:
    """A model version ready to run."""

    ref: ModelRef
    model: OnnxModel
    batcher: DynamicBatcher
    memory_bytes: int

    @property
    def manifest(self) -> Manifest:
        return self.model.manifest


@dataclass(frozen=True)
class Selection:
    """What a model reference resolved to: the version that answers, and an optional shadow."""

    primary: LoadedModel
    shadow: LoadedModel | None = None
    alias: str | None = None


class ModelRegistry:
    """The loaded versions of a repository's models."""

    def __init__(
        self,
        repository: ModelRepository,
        memory_budget_bytes: int,
        threads: int = 0,
        instances: int = 1,
        max_batch_size: int | None = None,
        max_queue_delay_ms: float | None = None,
        on_batch: Callable[[ModelRef, int, float, float], None] | None = None,
        rng: random.Random | None = None,
        tenant_models: Path | None = None,
    ) -> None:
        self.repository = repository
        self.tenant_models = tenant_models
        self.memory_budget_bytes = memory_budget_bytes
        self.threads = threads
        self.instances = instances
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        self._on_batch = on_batch
        self._rng = rng or random.Random()
        self._loaded: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._lock = asyncio.Lock()
        self._latest: dict[tuple[str | None, str], tuple[int, float]] = {}
        # False where replicas load on demand and a load or unload would reach only one of them.
        self.explicit_control = True

    def loaded(self) -> list[LoadedModel]:
        """Loaded versions, least recently used first."""
        return list(self._loaded.values())

    def is_loaded(self, name: str, version: int, owner: str | None = None) -> bool:
        return (owner, name, version) in self._loaded

    def repository_of(self, owner: str | None) -> ModelRepository:
        """The platform's repository (``owner`` None) or a tenant's own."""
        if owner is None:
            return self.repository
        if self.tenant_models is None:
            raise ModelNotFound("this server keeps no tenant models")
        return ModelRepository(self.tenant_models / owner, owner=owner)

    def owner_of(self, name: str, tenant_id: str | None) -> str | None:
        """Whose model ``name`` is for ``tenant_id``: the tenant's, when it has a version of
        one, else the platform's (None). One ``stat`` for a tenant without a model so named."""
        if tenant_id is None or self.tenant_models is None or not _safe_name(name):
            return None
        if not (self.tenant_models / tenant_id / name).is_dir():
            return None
        # A folder left without a version (an interrupted upload) shadows nothing.
        own = ModelRepository(self.tenant_models / tenant_id, owner=tenant_id)
        return tenant_id if own.versions(name) else None

    def resolve(
        self, name: str, version: int | None = None, tenant_id: str | None = None
    ) -> ModelRef:
        """The version of ``name`` that ``tenant_id`` sees (see :meth:`owner_of`)."""
        return self.repository_of(self.owner_of(name, tenant_id)).resolve(name, version)

    def models(self, tenant_id: str | None = None) -> list[tuple[str, str | None]]:
        """``(name, owner)`` of every model ``tenant_id`` sees: its own, then the platform's
        it does not shadow."""
        own = self.repository_of(tenant_id).models() if tenant_id and self.tenant_models else []
        platform = [n for n in self.repository.models() if n not in own]
        return [(n, tenant_id) for n in own] + [(n, None) for n in platform]

    @property
    def memory_bytes(self) -> int:
        return sum(m.memory_bytes for m in self._loaded.values())

    async def load(
        self, name: str, version: int | None = None, owner: str | None = None
    ) -> LoadedModel:
        """Load a version (the latest by default) of the platform's model or ``owner``'s,
        evicting LRU versions to stay in budget."""
        ref = self.repository_of(owner).resolve(name, version)
        key = (ref.owner, ref.name, ref.version)
        async with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            need = memory_need(ref)
            if need > self.memory_budget_bytes:
                raise InvalidInput(
                    f"{ref} needs about {need >> 20} MiB, over the memory budget of "
                    f"{self.memory_budget_bytes >> 20} MiB"
                )
            while self._loaded and self.memory_bytes + need > self.memory_budget_bytes:
                _, evicted = self._loaded.popitem(last=False)
                await evicted.batcher.close()
            loaded = await asyncio.to_thread(self._open, ref, need)
            self._loaded[key] = loaded
            return loaded

    def models_that_fit(self) -> int:
        """How many of the repository's largest model versions the memory budget holds (≥ 1)."""
        repository = self.repository
        needs = [memory_need(repository.resolve(n, v))
                 for n in repository.models() for v in repository.versions(n)]  # fmt: skip
        return max(1, self.memory_budget_bytes // max(needs, default=1))

    def _open(self, ref: ModelRef, memory_bytes: int) -> LoadedModel:
        threads = self.threads or max(1, (os.cpu_count() or 1) // self.instances)
        model = OnnxModel(ref, threads=threads)
        model.warm_up()
        manifest = model.manifest
        delay_ms = self.max_queue_delay_ms
        report = self._on_batch
        batcher = DynamicBatcher(
            model.run,
            self.max_batch_size or manifest.max_batch_size,
            (manifest.max_queue_delay_ms if delay_ms is None else delay_ms) / 1000,
            on_batch=(lambda n, q, c: report(ref, n, q, c)) if report else None,
            instances=self.instances,
            preferred_batch_size=manifest.preferred_batch_size,
        )
        return LoadedModel(ref, model, batcher, memory_bytes)

    async def unload(
        self, name: str, version: int | None = None, owner: str | None = None
    ) -> list[int]:
        """Unload one version, or every loaded version of ``name``; the versions unloaded."""
        async with self._lock:
            keys = [k for k in self._loaded if k[:2] == (owner, name) and version in (None, k[2])]
            for key in keys:
                await self._loaded.pop(key).batcher.close()
        return [k[2] for k in keys]

    async def get(self, name: str, version: int, owner: str | None = None) -> LoadedModel:
        """A loaded version, loading it on first use."""
        key = (owner, name, version)
        loaded = self._loaded.get(key)
        if loaded is not None:
            self._loaded.move_to_end(key)
            return loaded
        return await self.load(name, version, owner)

    async def get_latest(
        self, name: str, version: int | None = None, tenant_id: str | None = None
    ) -> LoadedModel:
        """``version`` of ``name`` (as ``tenant_id`` sees it), or its latest version, loaded.
        The repository is listed at most once a second per model; a hot path makes one ``stat``
        (whether the tenant has a model of that name)."""
        owner = self.owner_of(name, tenant_id)
        if version is None:
            cached = self._latest.get((owner, name))
            if cached is None or time.monotonic() - cached[1] > LATEST_TTL_S:
                latest = self.repository_of(owner).resolve(name).version
                cached = (latest, time.monotonic())
                self._latest[(owner, name)] = cached
            version = cached[0]
        return await self.get(name, version, owner)

    async def select(self, reference: str, tenant_id: str | None = None) -> Selection:
        """Resolve ``name``, ``name:version`` or ``name:alias`` (as ``tenant_id`` sees it) to
        the version that answers.

        A bare name uses the ``production`` alias when the model has one, else its latest version.
        """
        name, _, tag = reference.partition(":")
        if not name:
            raise InvalidInput("empty model name")
        owner = self.owner_of(name, tenant_id)
        if tag.isdigit():
            return Selection(await self.get(name, int(tag), owner))
        aliases = read_aliases(self.repository_of(owner).root / name)
        alias_name = tag or ("production" if "production" in aliases else "")
        if not alias_name:
            return Selection(await self.get_latest(name, None, tenant_id))
        alias = aliases.get(alias_name)
        if alias is None:
            raise ModelNotFound(f"model {name!r} has no version or alias {tag!r}")
        primary = await self.get(name, alias.pick(self._rng), owner)
        shadow = await self.get(name, alias.shadow, owner) if alias.shadow is not None else None
        return Selection(primary, shadow, alias_name)

    async def close(self) -> None:
        for loaded in self._loaded.values():
            await loaded.batcher.close()
        self._loaded.clear()


def _safe_name(name: str) -> bool:
    """A model name that is one path component (never ``..`` or a path)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
