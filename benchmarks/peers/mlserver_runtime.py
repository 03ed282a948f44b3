"""The echo CNN on MLServer: a custom runtime running ONNX Runtime (MLServer has none for ONNX).
Adaptive batching is MLServer's own (``max_batch_size``, ``max_batch_time`` in the model's
settings, written by benchmarks/peers.py)."""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class EchoOnnx(MLModel):
    async def load(self) -> bool:
        self.session = ort.InferenceSession(
            self.settings.parameters.uri, providers=["CPUExecutionProvider"]
        )
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (probability,) = self.session.run(["probability"], {"image": x})
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("probability", probability)]
        )
