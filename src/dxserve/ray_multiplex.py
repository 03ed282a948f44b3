"""Requests for a model go to the Ray Serve replicas that already hold it (model multiplexing).

On the proxy, :class:`ModelAffinity` names the model a request runs — the OIP infer path's
``name[/versions/N]``, ``/v1/diagnoses?model=…`` — in the header Ray Serve routes by, keyed
``name`` or ``name:version``; a client's own header wins. On each replica, :func:`holder` loads
that model into the registry through ``serve.multiplexed``, which tells the router what the
replica holds and lets go of the least recently used model once the replica holds as many as
its memory budget fits; the registry then unloads it. The memory budget stays the hard bound.
"""

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from ray import serve
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from dxserve.core.runtime.registry import ModelRegistry
from dxserve.core.runtime.repository import ModelRef

MODEL_HEADER = b"serve_multiplexed_model_id"
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/(\d+))?/infer")
DIAGNOSES_PATH = "/v1/diagnoses"


def model_of(path: str, query: bytes) -> str:
    """The model reference a request names in its path or query ('' when none)."""
    if infer := INFER_PATH.fullmatch(path):
        name, version = infer.groups()
        return f"{name}:{version}" if version else name
    if path == DIAGNOSES_PATH and query:
        return parse_qs(query.decode("latin-1")).get("model", [""])[0]
    return ""


class ModelAffinity:
    """Proxy middleware: adds the header Ray Serve routes multiplexed requests by."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            model = model_of(scope["path"], scope["query_string"])
            headers = scope["headers"]
            if model and all(k.replace(b"-", b"_") != MODEL_HEADER for k, _ in headers):
                scope = {**scope, "headers": [*headers, (MODEL_HEADER, model.encode())]}
        await self.app(scope, receive, send)


def proxy_middlewares() -> list[Middleware]:
    """For ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=dxserve.ray_multiplex:proxy_middlewares``."""
    return [Middleware(ModelAffinity)]


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
            await self._registry.unload(ref.name, ref.version)


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
