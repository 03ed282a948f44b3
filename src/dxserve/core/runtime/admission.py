"""Checks an uploaded ONNX model passes before a tenant's namespace takes it.

In order, each refusal a :class:`ModelRejected` (422) naming what failed: the manifest is one
dxserve reads (the format ``dxserve train`` writes); the file is within the size limit, parses
as ONNX, keeps every tensor inside itself (no external-data paths, which would make the server
read files of its choosing), has no more nodes than the limit, uses the default opset in the
supported range and no custom domains, passes ``onnx.checker`` (full check, with shape
inference), declares the inputs and outputs the manifest names; and, in a separate process
whose address space is capped, loads in ONNX Runtime and answers a smoke inference of the
manifest's input shape with finite outputs of the declared shapes, which the manifest's head
turns into probabilities.
"""

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import GraphProto, TensorProto

from dxserve.core.heads import BINARY, TASKS
from dxserve.core.modality import IMAGE, SIGNAL
from dxserve.core.runtime.manifest import Manifest, TensorSpec
from dxserve.errors import InvalidInput, ModelRejected

OPSETS = (13, 23)  # the default domain's opsets accepted (ONNX Runtime 1.17+ runs them all)
DOMAINS = {"", "ai.onnx", "com.microsoft"}  # custom operator domains would need libraries
SMOKE_TIMEOUT_S = 120
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_ELEMENT_TYPES = {
    TensorProto.FLOAT: "FP32",
    TensorProto.FLOAT16: "FP16",
    TensorProto.INT64: "INT64",
    TensorProto.UINT8: "UINT8",
}


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_nodes: int
    memory_bytes: int


def read_manifest(data: bytes) -> Manifest:
    """An uploaded manifest (JSON as ``dxserve train`` writes it), or :class:`ModelRejected`."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise TypeError("it is not a JSON object")
        document["inputs"] = [TensorSpec(**t) for t in document["inputs"]]
        document["outputs"] = [TensorSpec(**t) for t in document["outputs"]]
        manifest = Manifest(**document)
        manifest.recipe  # noqa: B018 — the preprocessing must be one dxserve knows
        manifest.head  # noqa: B018 — and the task, labels and thresholds consistent
    except (ValueError, TypeError, KeyError, InvalidInput) as exc:
        raise ModelRejected(f"the manifest is not one dxserve reads: {_short(exc)}") from None
    if len(manifest.inputs) != 1:
        raise ModelRejected("the manifest must name exactly one input")
    if manifest.task not in TASKS or manifest.modality not in (IMAGE, SIGNAL):
        raise ModelRejected(
            f"the manifest's task must be one of {TASKS} and its modality image or signal"
        )
    if manifest.task == BINARY and len(manifest.labels) != 2:
        raise ModelRejected("a binary task has two labels: [negative, positive]")
    return manifest


def check_model(path: Path, manifest: Manifest, limits: Limits) -> dict[str, Any]:
    """Run every check on the ONNX file at ``path``; what was checked, for the model card."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ModelRejected(f"the ONNX file is {size} bytes, over the limit of {limits.max_bytes}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelRejected(f"the file is not an ONNX model: {_short(exc)}") from None
    for tensor in _tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "?")
            raise ModelRejected(
                f"tensor {tensor.name!r} keeps its data outside the file ({location!r}); "
                "upload a single-file model (onnx.save(..., save_as_external_data=False))"
            )
    nodes = sum(1 for _ in _nodes(model.graph))
    if nodes > limits.max_nodes:
        raise ModelRejected(f"the graph has {nodes} nodes, over the limit of {limits.max_nodes}")
    opset = _check_opsets(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        raise ModelRejected(f"the ONNX checker refuses the model: {_short(exc)}") from None
    _match(model.graph.input, manifest.inputs, "input", {i.name for i in model.graph.initializer})
    _match(model.graph.output, manifest.outputs, "output", set())
    smoke = _smoke(path, manifest, limits.memory_bytes)
    return {
        "bytes": size,
        "nodes": nodes,
        "opset": opset,
        "checker": "onnx.checker full_check",
        "smoke": smoke,
        "memory_limit_bytes": limits.memory_bytes,
    }


def _tensors(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
    for node in _nodes(graph):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors


def _nodes(graph: GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def _check_opsets(model: onnx.ModelProto) -> int:
    default = None
    for entry in model.opset_import:
        if entry.domain not in DOMAINS:
            raise ModelRejected(f"operator domain {entry.domain!r} is not supported here")
        if entry.domain in ("", "ai.onnx"):
            default = entry.version
    if default is None or not OPSETS[0] <= default <= OPSETS[1]:
        raise ModelRejected(
            f"the model uses opset {default}; supported: {OPSETS[0]} to {OPSETS[1]}"
        )
    return default


def _match(declared: Any, specs: list[TensorSpec], kind: str, initializers: set[str]) -> None:
    """The graph's inputs (or outputs) are the manifest's: names, element types and shapes
    (the manifest's -1 is a free dimension)."""
    graph = {v.name: v for v in declared if v.name not in initializers}
    if set(graph) != {s.name for s in specs}:
        raise ModelRejected(
            f"the model's {kind}s are {sorted(graph)}, the manifest's "
            f"{sorted(s.name for s in specs)}"
        )
    for spec in specs:
        tensor = graph[spec.name].type.tensor_type
        datatype = _ELEMENT_TYPES.get(tensor.elem_type, f"element type {tensor.elem_type}")
        if datatype != spec.datatype:
            raise ModelRejected(
                f"{kind} {spec.name!r} is {datatype}, the manifest says {spec.datatype}"
            )
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if len(dims) != len(spec.shape) or any(
            want != -1 and got != want for want, got in zip(spec.shape, dims, strict=True)
        ):
            shape = [d if d != -1 else "?" for d in dims]
            raise ModelRejected(
                f"{kind} {spec.name!r} has shape {shape}, the manifest says {spec.shape}"
            )


def _smoke(path: Path, manifest: Manifest, memory_bytes: int) -> dict[str, Any]:
    """Load and run the model once in a child process limited to ``memory_bytes``."""

    def limit() -> None:  # in the child, before it starts Python
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    env = {k: v for k, v in os.environ.items() if not k.startswith("DXSERVE_")}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dxserve.core.runtime.smoke", str(path)],
            input=manifest.to_json(),
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT_S,
            preexec_fn=limit,
            env=env,
        )
    except subprocess.TimeoutExpired:
        raise ModelRejected(
            f"the model did not load and answer within {SMOKE_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise ModelRejected(
            f"the model does not load and run in ONNX Runtime within "
            f"{memory_bytes >> 20} MiB: {_short(reason)}"
        )
    return dict(json.loads(done.stdout))


def _short(error: object, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
