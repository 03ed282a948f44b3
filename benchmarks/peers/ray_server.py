"""The echo CNN on Ray Serve: ONNX Runtime behind ``@serve.batch``, on a one-machine cluster on
loopback. Its request: ``{"image": [[[[…]]]]}``, one (1, 3, 128, 128) image.

    python ray_server.py PORT
"""

import os
import sys
import time

# A one-machine cluster on loopback only (Ray 2.60 otherwise binds every interface).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(max_ongoing_requests=64)
class Echo:
    def __init__(self, model: str) -> None:
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def infer(self, images: list[np.ndarray]) -> list[float]:
        (probability,) = self.session.run(["probability"], {"image": np.stack(images)})
        return [float(p) for p in probability.reshape(-1)]

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        image = np.asarray(body["image"], dtype=np.float32).reshape(3, 128, 128)
        return {"probability": await self.infer(image)}


if __name__ == "__main__":
    ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, num_cpus=os.cpu_count())
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
    serve.run(Echo.bind(os.environ["ECHO_MODEL"]), route_prefix="/predict")
    print("ready", flush=True)
    while True:
        time.sleep(3600)
