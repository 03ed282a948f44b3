"""The comparison point of benchmarks/serve.py: FastAPI + ONNX Runtime, one session run per
request, no batching, no auth, no storage — what a first attempt at serving looks like.

    python benchmarks/naive_server.py MODEL.onnx PORT
"""

import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request, Response

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
app = FastAPI()


@app.get("/v2/health/ready")
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.post("/v2/models/echo-cnn/infer")
async def infer_raw(request: Request) -> Response:
    body = await request.body()
    split = int(request.headers["inference-header-content-length"])
    header = json.loads(body[:split])
    shape = header["inputs"][0]["shape"]
    x = np.frombuffer(body[split:], dtype=np.float32).reshape(shape)
    (probability,) = session.run(["probability"], {"image": x})
    out = json.dumps(
        {
            "model_name": "echo-cnn",
            "outputs": [
                {
                    "name": "probability",
                    "datatype": "FP32",
                    "shape": list(probability.shape),
                    "parameters": {"binary_data_size": probability.nbytes},
                }
            ],
        }
    ).encode()
    return Response(
        out + probability.tobytes(), headers={"inference-header-content-length": str(len(out))}
    )


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
