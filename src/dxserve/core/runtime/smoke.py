"""``python -m dxserve.core.runtime.smoke MODEL.onnx < manifest.json``: load a model in ONNX
Runtime and run it once on zeros of its input's shape (free dimensions 1), in a process of its
own (see :mod:`dxserve.core.runtime.admission`). Prints what it ran as JSON; a failure is a
non-zero exit with the reason on the last line of stderr."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

from dxserve.core.runtime.manifest import Manifest, TensorSpec

_DTYPES = {"FP32": np.float32, "FP16": np.float16, "INT64": np.int64, "UINT8": np.uint8}


def main(path: str) -> None:
    document = json.loads(sys.stdin.read())
    document["inputs"] = [TensorSpec(**t) for t in document["inputs"]]
    document["outputs"] = [TensorSpec(**t) for t in document["outputs"]]
    manifest = Manifest(**document)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    started = time.perf_counter()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    (spec,) = manifest.inputs
    shape = [1 if d == -1 else d for d in spec.shape]
    feed = {spec.name: np.zeros(shape, dtype=_DTYPES[spec.datatype])}
    names = [o.name for o in manifest.outputs]
    outputs = dict(zip(names, session.run(names, feed), strict=True))
    for out in manifest.outputs:
        value = outputs[out.name]
        if value.ndim != len(out.shape) or any(
            want not in (-1, got) for want, got in zip(out.shape, value.shape, strict=True)
        ):
            raise SystemExit(f"output {out.name!r} has shape {list(value.shape)}, not {out.shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise SystemExit(f"output {out.name!r} is not finite on a zero input")
    probabilities = manifest.probabilities(outputs)
    print(
        json.dumps(
            {
                "input_shape": shape,
                "seconds": round(time.perf_counter() - started, 3),
                "probabilities": np.round(probabilities, 6).tolist(),
            }
        )
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except SystemExit:
        raise
    except Exception as exc:  # the reason, on one line, for the parent's refusal
        raise SystemExit(f"{type(exc).__name__}: {' '.join(str(exc).split())}") from None
