"""Loaded model versions: load and unload, aliases, and a memory budget with LRU eviction.

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

from dxserve.core.runtime.aliases import read_aliases
from dxserve.core.runtime.batcher import DynamicBatcher
from dxserve.core.runtime.manifest import Manifest
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.errors import InvalidInput, ModelNotFound

LATEST_TTL_S = 1.0
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
    ) -> None:
        self.repository = repository
        self.memory_budget_bytes = memory_budget_bytes
        self.threads = threads
        self.instances = instances
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms
        self._on_batch = on_batch
        self._rng = rng or random.Random()
        self._loaded: OrderedDict[tuple[str, int], LoadedModel] = OrderedDict()
        self._lock = asyncio.Lock()
        self._latest: dict[str, tuple[int, float]] = {}
        # False where replicas load on demand and a load or unload would reach only one of them.
        self.explicit_control = True

    def loaded(self) -> list[LoadedModel]:
        """Loaded versions, least recently used first."""
        return list(self._loaded.values())

    def is_loaded(self, name: str, version: int) -> bool:
        return (name, version) in self._loaded

    @property
    def memory_bytes(self) -> int:
        return sum(m.memory_bytes for m in self._loaded.values())

    async def load(self, name: str, version: int | None = None) -> LoadedModel:
        """Load a version (the latest by default), evicting LRU versions to stay in budget."""
        ref = self.repository.resolve(name, version)
        key = (ref.name, ref.version)
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

    async def unload(self, name: str, version: int | None = None) -> list[int]:
        """Unload one version, or every loaded version of ``name``; the versions unloaded."""
        async with self._lock:
            keys = [k for k in self._loaded if k[0] == name and version in (None, k[1])]
            for key in keys:
                await self._loaded.pop(key).batcher.close()
        return [k[1] for k in keys]

    async def get(self, name: str, version: int) -> LoadedModel:
        """A loaded version, loading it on first use."""
        loaded = self._loaded.get((name, version))
        if loaded is not None:
            self._loaded.move_to_end((name, version))
            return loaded
        return await self.load(name, version)

    async def get_latest(self, name: str, version: int | None = None) -> LoadedModel:
        """``version`` of ``name``, or its latest version, loaded. The repository is listed at
        most once a second per model, so a hot path does not touch the disk."""
        if version is None:
            cached = self._latest.get(name)
            if cached is None or time.monotonic() - cached[1] > LATEST_TTL_S:
                cached = (self.repository.resolve(name).version, time.monotonic())
                self._latest[name] = cached
            version = cached[0]
        return await self.get(name, version)

    async def select(self, reference: str) -> Selection:
        """Resolve ``name``, ``name:version`` or ``name:alias`` to the version that answers.

        A bare name uses the ``production`` alias when the model has one, else its latest version.
        """
        name, _, tag = reference.partition(":")
        if not name:
            raise InvalidInput("empty model name")
        if tag.isdigit():
            return Selection(await self.get(name, int(tag)))
        aliases = read_aliases(self.repository.root / name)
        alias_name = tag or ("production" if "production" in aliases else "")
        if not alias_name:
            return Selection(await self.get_latest(name))
        alias = aliases.get(alias_name)
        if alias is None:
            raise ModelNotFound(f"model {name!r} has no version or alias {tag!r}")
        primary = await self.get(name, alias.pick(self._rng))
        shadow = await self.get(name, alias.shadow) if alias.shadow is not None else None
        return Selection(primary, shadow, alias_name)

    async def close(self) -> None:
        for loaded in self._loaded.values():
            await loaded.batcher.close()
        self._loaded.clear()
