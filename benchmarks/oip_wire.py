"""The OIP binary request and response of benchmarks/serve.py, as its comparison servers
(naive_server.py, minimal_server.py) read and write them: one FP32 input, one output."""

import json

import numpy as np


def read_image(body: bytes, header_length: int) -> np.ndarray:
    """The input tensor of a binary-tensor request body."""
    shape = json.loads(body[:header_length])["inputs"][0]["shape"]
    return np.frombuffer(body, dtype=np.float32, offset=header_length).reshape(shape)


def probability_response(probability: np.ndarray) -> tuple[bytes, int]:
    """The response body carrying ``probability`` as binary data, and its JSON header's length."""
    probability = np.ascontiguousarray(probability)
    header = json.dumps(
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
    return header + probability.tobytes(), len(header)
