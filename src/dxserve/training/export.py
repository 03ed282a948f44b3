"""Export a trained network to ONNX and prove the export computes what PyTorch computes."""

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from dxserve.models.echo_cnn import FEATURES, INPUT_SHAPE, EchoCNN, ExportHead

OPSET = 18  # torch's ONNX exporter implements opset ≥ 18; the issue asks ≥ 17
# Relative to each output's largest magnitude. CPUs differ in how their kernels accumulate
# (AVX2 or AVX-512, oneDNN in PyTorch, MLAS in ONNX Runtime): on one CI machine a Grad-CAM map
# differed by 8e-5 of its range; a wrong export differs by whole units.
TOLERANCE = 1e-4
INPUT_NAME = "image"
# Every output of the echo CNN and its shape (-1: the batch axis); see ExportHead.
OUTPUTS: dict[str, list[int]] = {
    "probability": [-1, 1],
    "logit": [-1, 1],
    "gradcam": [-1, 30, 30],
    "hirescam": [-1, 30, 30],
    "features": [-1, FEATURES],
}
OUTPUT_NAMES = tuple(OUTPUTS)
# A random input batch of a given size: uniform [0, 1) floats unless a head reads other input.
Sample = Callable[[int, torch.Generator], torch.Tensor]


def export_onnx(model: EchoCNN, path: Path) -> float:
    """Write the echo CNN as a single-file ONNX model; see :func:`export_head`."""
    return export_head(ExportHead(model), INPUT_SHAPE, path, INPUT_NAME, OUTPUT_NAMES)


def export_head(
    head: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    sample: Sample | None = None,
) -> float:
    """Write ``head`` as a single-file ONNX model with a dynamic batch axis.

    Returns the largest absolute difference between ONNX Runtime and PyTorch on a random batch;
    raises ``ValueError`` when it exceeds ``TOLERANCE``.
    """
    head = head.eval()
    sample = sample or (lambda n, g: torch.rand(n, *input_shape, generator=g))
    example = sample(2, torch.Generator().manual_seed(1))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # The exporter warns about its own internals (pytree deprecations, a GRU's flat weights
        # "assigned during export"); nothing to act on.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            head,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=list(output_names),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
    return verify_export(head, input_shape, path, input_name, output_names, sample=sample)


def verify_export(
    head: nn.Module,
    input_shape: tuple[int, ...],
    path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    batch: int = 5,
    seed: int = 0,
    sample: Sample | None = None,
) -> float:
    """Max |ONNX Runtime − PyTorch| over every output on a random batch of size ``batch``.

    Raises when a difference exceeds ``TOLERANCE`` times the output's largest magnitude (at least
    1): logits of a trained model reach ±20, where float32 rounding alone is ~2e-6."""
    sample = sample or (lambda n, g: torch.rand(n, *input_shape, generator=g))
    x = sample(batch, torch.Generator().manual_seed(seed))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(list(output_names), {input_name: x.numpy()})
    with torch.no_grad():
        torch_out = head(x)
    pairs = [(o, t.numpy()) for o, t in zip(onnx_out, torch_out, strict=True)]
    delta = max(float(np.abs(o - t).max()) for o, t in pairs)
    scaled = max(float(np.abs(o - t).max()) / max(1.0, float(np.abs(t).max())) for o, t in pairs)
    if scaled > TOLERANCE:
        raise ValueError(
            f"ONNX export differs from PyTorch by {scaled:.2e} of its range (> {TOLERANCE:.0e})"
        )
    return delta
