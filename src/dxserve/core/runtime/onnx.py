"""ONNX Runtime sessions for model versions."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from dxserve.core.runtime.repository import ModelRef

# Intra-op threads per session: 0 lets ONNX Runtime use one per physical core, which is right for
# a process that runs one session at a time; set lower when several models run concurrently.
DEFAULT_THREADS = 0
INPUT_DTYPES = {"INT64": np.int64, "UINT8": np.uint8, "FP16": np.float16}  # else FP32


class OnnxModel:
    """One model version loaded into an ONNX Runtime CPU session, checked against its manifest."""

    def __init__(self, ref: ModelRef, threads: int = DEFAULT_THREADS) -> None:
        self.ref = ref
        self.manifest = ref.manifest()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle ORT threads would otherwise spin, taking the cores the HTTP event loop needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path: Path = self.manifest.verify(ref.path)
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch of preprocessed input; all outputs by name."""
        results = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, results, strict=True))

    def run_batches(self, x: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output for model input ``x`` (as the recipe makes it), run in batches."""
        chunks = [self.run(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return {name: np.concatenate([c[name] for c in chunks]) for name in self.output_names}

    def predict(self, x: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every output for uint8 recipe-resized image input ``(N, 3, h, w)``, in batches."""
        recipe = self.manifest.image_recipe
        chunks = [
            self.run(recipe.normalize(x[i : i + batch_size])) for i in range(0, len(x), batch_size)
        ]
        return {name: np.concatenate([c[name] for c in chunks]) for name in self.output_names}

    def predict_proba(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """A binary image model's served (calibrated) positive-class probabilities."""
        if len(x) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.manifest.probabilities(self.predict(x, batch_size))[:, 0]

    def warm_up(self) -> None:
        """One run on zeros so the first real request does not pay for initialisation."""
        spec = self.manifest.inputs[0]
        shape = [1 if d < 0 else d for d in spec.shape]
        self.run(np.zeros(shape, dtype=INPUT_DTYPES.get(spec.datatype, np.float32)))
