"""Requests for a model go to the Ray Serve replicas that already hold it (model multiplexing).

The proxies name each request's model (:class:`dxserve.ray_proxy.ModelAffinity`). On each
replica, :func:`holder` loads that model into the registry through ``serve.multiplexed``, which
tells the router what the replica holds and lets go of the least recently used model once the
replica holds as many as its memory budget fits; the registry then unloads it. The memory
budget stays the hard bound.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable

from ray import serve

from dxserve.core.runtime.registry import ModelRegistry
from dxserve.core.runtime.repository import ModelRef


class HeldModel:
    """Model versions Serve counts as held by this replica; when Serve lets them go (it calls
    ``__del__`` in a worker thread), the registry unloads them before the next one loads."""

    def __init__(self, registry: ModelRegistry, refs: list[ModelRef]) -> None:
        self._registry = registry
        self._refs = refs
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._held = True

    def __del__(self) -> None:
        # Also called by the collector, after Serve's call (then a no-op) or at shutdown, when
        # the app closes the registry itself.
        if not self._held or threading.get_ident() == self._loop_thread or self._loop.is_closed():
            return
        self._held = False
        asyncio.run_coroutine_threadsafe(self._unload(), self._loop).result()

    async def _unload(self) -> None:
        for ref in self._refs:
            await self._registry.unload(ref.name, ref.version, ref.owner)


def holder(registry: ModelRegistry) -> Callable[[str], Awaitable[HeldModel | None]]:
    """What a replica calls with a request's model reference before serving it."""

    @serve.multiplexed(max_num_models_per_replica=registry.models_that_fit())
    async def load(reference: str) -> HeldModel:
        selection = await registry.select(reference)
        shadow = [selection.shadow.ref] if selection.shadow else []
        return HeldModel(registry, [selection.primary.ref, *shadow])

    async def hold(reference: str) -> HeldModel | None:
        # A name the repository lacks is left to the route, which answers 404.
        if not registry.repository.versions(reference.partition(":")[0]):
            return None
        return await load(reference)

    return hold
