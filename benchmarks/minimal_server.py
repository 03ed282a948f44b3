"""The other comparison point of benchmarks/serve.py: the least a Python server can do for the
OIP binary request — uvicorn, a bare ASGI function, dxserve's own ONNX Runtime session and
dynamic batcher, and nothing else (no routing, auth, metering, audit or logs). The gap between
raw ORT and this is what the HTTP stack alone costs on the machine; the gap between this and
dxserve is what dxserve's own work per request costs.

    python benchmarks/minimal_server.py MODEL_REPOSITORY PORT
"""

import sys
from pathlib import Path
from typing import Any

import uvicorn

from dxserve.core.runtime.batcher import DynamicBatcher
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.core.runtime.repository import ModelRepository
from oip_wire import probability_response, read_image

model = OnnxModel(ModelRepository(Path(sys.argv[1])).resolve("echo-cnn"))
manifest = model.manifest
batcher: DynamicBatcher | None = None  # made on the server's event loop


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global batcher
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET":  # /v2/health/ready
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    if batcher is None:
        batcher = DynamicBatcher(
            model.run,
            manifest.max_batch_size,
            manifest.max_queue_delay_ms / 1000,
            preferred_batch_size=manifest.preferred_batch_size,
        )
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    x = read_image(
        b"".join(chunks), int(dict(scope["headers"])[b"inference-header-content-length"])
    )
    outputs, _, _ = await batcher.infer(x)
    payload, header_length = probability_response(outputs["probability"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(len(payload)).encode()),
                (b"inference-header-content-length", str(header_length).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
