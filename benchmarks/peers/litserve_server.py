"""The echo CNN on LitServe: ONNX Runtime behind its batching (``max_batch_size``,
``batch_timeout``). Its request: ``{"image": [[[[…]]]]}``, one (1, 3, 128, 128) image.

    python litserve_server.py PORT
"""

import os
import sys

import litserve as ls
import numpy as np
import onnxruntime as ort


class Echo(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.session = ort.InferenceSession(
            os.environ["ECHO_MODEL"], providers=["CPUExecutionProvider"]
        )

    def decode_request(self, request: dict) -> np.ndarray:
        return np.asarray(request["image"], dtype=np.float32).reshape(3, 128, 128)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["probability"], {"image": x})[0]

    def unbatch(self, output: np.ndarray) -> list[float]:
        return [float(p) for p in output.reshape(-1)]

    def encode_response(self, probability: float) -> dict:
        return {"probability": probability}


if __name__ == "__main__":
    server = ls.LitServer(
        Echo(max_batch_size=32, batch_timeout=0.005), accelerator="cpu", fast_queue=True
    )
    server.run(host="127.0.0.1", port=int(sys.argv[1]), generate_client_file=False)
