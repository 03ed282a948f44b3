"""The echo CNN on BentoML: ONNX Runtime in a service whose API is batchable (BentoML's adaptive
batching). Its request: ``{"image": [[[[…]]]]}``, one (1, 3, 128, 128) image."""

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1)
class Echo:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(
            os.environ["ECHO_MODEL"], providers=["CPUExecutionProvider"]
        )

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=32, max_latency_ms=10_000)
    def predict(self, image: np.ndarray) -> np.ndarray:
        (probability,) = self.session.run(["probability"], {"image": image.astype(np.float32)})
        return probability
