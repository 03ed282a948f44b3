"""The comparison point of benchmarks/serve.py: FastAPI + ONNX Runtime, one session run per
request, no batching, no auth, no storage — what a first attempt at serving looks like.

    python benchmarks/naive_server.py MODEL.onnx PORT
"""

import sys

import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response

from oip_wire import probability_response, read_image

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
app = FastAPI()


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/v2/models/echo-cnn/infer")
async def infer_raw(request: Request) -> Response:
    x = read_image(await request.body(), int(request.headers["inference-header-content-length"]))
    (probability,) = session.run(["probability"], {"image": x})
    body, header_length = probability_response(probability)
    return Response(body, headers={"inference-header-content-length": str(header_length)})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
