"""The checks an uploaded ONNX model passes, each failing on a small real model built to fail it."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dxserve.core.runtime.admission import Limits, check_model, read_manifest
from dxserve.errors import ModelRejected

LIMITS = Limits(max_bytes=1 << 20, max_nodes=10, memory_bytes=1 << 30)


def manifest(inputs: list[int] | None = None, outputs: list[int] | None = None) -> dict:
    """The manifest of a binary model reading (N, 3, 2, 2) images."""
    return {
        "name": "tiny",
        "version": 1,
        "architecture": "dense",
        "parameters": 4,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": inputs or [-1, 3, 2, 2]}],
        "outputs": [
            {"name": "probability", "datatype": "FP32", "shape": outputs or [-1, 1]},
            {"name": "logit", "datatype": "FP32", "shape": [-1, 1]},
        ],
        "preprocessing": {"name": "rgb-2", "size": [2, 2]},
        "labels": ["normal", "abnormal"],
        "threshold": 0.5,
        "sha256": "0" * 64,
        "intended_use": "tests",
    }


def tiny_model(path: Path, opset: int = 18, nodes: int = 1, domain: str = "") -> Path:
    """logit = sum(x * w); probability = sigmoid(logit); optionally ``nodes`` Identity steps."""
    weight = numpy_helper.from_array(np.full((1, 3, 2, 2), 0.1, np.float32), "w")
    steps = [helper.make_node("Mul", ["x", "w"], ["xw"])]
    steps.append(helper.make_node("ReduceSum", ["xw", "axes"], ["s"], keepdims=0))
    previous = "s"
    for k in range(nodes - 1):
        steps.append(helper.make_node("Identity", [previous], [f"i{k}"]))
        previous = f"i{k}"
    steps.append(helper.make_node("Unsqueeze", [previous, "one"], ["logit"]))
    steps.append(helper.make_node("Sigmoid", ["logit"], ["probability"]))
    axes = numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes")
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    graph = helper.make_graph(
        steps,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
        [
            helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1]),
        ],
        [weight, axes, one],
    )
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=imports, ir_version=8)
    onnx.save(model, str(path))
    return path


def test_a_good_model_passes_and_says_what_was_checked(tmp_path: Path) -> None:
    report = check_model(
        tiny_model(tmp_path / "m.onnx"), read_manifest(json.dumps(manifest()).encode()), LIMITS
    )
    assert report["opset"] == 18 and report["nodes"] == 4
    assert report["smoke"]["input_shape"] == [1, 3, 2, 2]
    assert report["smoke"]["probabilities"][0][0] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("build", "spec", "limits", "reason"),
    [
        (lambda p: tiny_model(p, opset=9), manifest(), LIMITS, "opset 9"),
        (lambda p: tiny_model(p, domain="com.example.custom"), manifest(), LIMITS, "domain"),
        (lambda p: tiny_model(p, nodes=20), manifest(), LIMITS, "over the limit of 10"),
        (lambda p: tiny_model(p), manifest(inputs=[-1, 3, 4, 4]), LIMITS, "input 'x' has shape"),
        (lambda p: tiny_model(p), manifest(outputs=[-1, 2]), LIMITS, "output 'probability'"),
        (lambda p: tiny_model(p), manifest(), Limits(100, 10, 1 << 30), "over the limit of 100"),
        (lambda p: tiny_model(p), manifest(), Limits(1 << 20, 10, 64 << 20), "within 64 MiB"),
    ],
    ids=["opset", "custom-domain", "nodes", "input-shape", "output-shape", "bytes", "memory"],
)
def test_a_model_failing_a_check_is_rejected_naming_it(
    tmp_path: Path,
    build,
    spec,
    limits,
    reason,  # type: ignore[no-untyped-def]
) -> None:
    path = build(tmp_path / "m.onnx")
    with pytest.raises(ModelRejected, match=reason):
        check_model(path, read_manifest(json.dumps(spec).encode()), limits)


def test_a_manifest_dxserve_cannot_read_is_rejected() -> None:
    for bad in (b"[]", b"{", json.dumps({**manifest(), "task": "regression"}).encode(),
                json.dumps({**manifest(), "preprocessing": {"name": "nope"}}).encode()):  # fmt: skip
        with pytest.raises(ModelRejected, match="manifest"):
            read_manifest(bad)
