"""The model repository: ``REPO/<model>/<version>/{model.onnx, manifest.json}`` + ``config.pbtxt``.

The layout is Triton's, so the same directory can be served by Triton Inference Server: integer
version folders, ``model.onnx`` in each, and a ``config.pbtxt`` per model generated from the
latest version's manifest.
"""

from dataclasses import dataclass
from pathlib import Path

from dxserve.core.runtime.manifest import MANIFEST_NAME, Manifest, TensorSpec
from dxserve.errors import ModelNotFound

CONFIG_NAME = "config.pbtxt"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model version on disk; ``owner`` is the tenant whose own model it is (None:
    the platform's, visible to every tenant)."""

    name: str
    version: int
    path: Path
    owner: str | None = None

    def manifest(self) -> Manifest:
        return Manifest.load(self.path)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class ModelRepository:
    """Read and extend a model repository directory."""

    def __init__(self, root: Path, owner: str | None = None) -> None:
        self.root = Path(root)
        self.owner = owner

    def models(self) -> list[str]:
        """Names of the models that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and self.versions(d.name))

    def versions(self, name: str) -> list[int]:
        """The model's versions with a manifest, ascending."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(d.name)
            for d in folder.iterdir()
            if d.is_dir() and d.name.isdigit() and (d / MANIFEST_NAME).is_file()
        )

    def resolve(self, name: str, version: int | None = None) -> ModelRef:
        """A model version (the latest when ``version`` is None); raises :class:`ModelNotFound`."""
        versions = self.versions(name)
        if not versions:
            raise ModelNotFound(f"no model named {name!r} in the repository")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise ModelNotFound(f"model {name!r} has no version {chosen}; it has {versions}")
        return ModelRef(name, chosen, self.root / name / str(chosen), self.owner)

    def new_version_dir(self, name: str) -> tuple[int, Path]:
        """Create the folder for the next version of ``name`` (1 for a new model)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        taken = [int(d.name) for d in folder.iterdir() if d.is_dir() and d.name.isdigit()]
        version = max(taken, default=0) + 1
        path = folder / str(version)
        path.mkdir()
        return version, path

    def write_triton_config(self, manifest: Manifest) -> Path:
        """Write ``REPO/<model>/config.pbtxt`` for Triton from a manifest."""
        path = self.root / manifest.name / CONFIG_NAME
        path.write_text(triton_config(manifest))
        return path


def parse_model_path(text: str) -> tuple[Path, str, int | None]:
    """Split ``REPO/model[/VERSION]`` into repository root, model name and version."""
    path = Path(text)
    if path.name.isdigit():
        return path.parent.parent, path.parent.name, int(path.name)
    return path.parent, path.name, None


_TRITON_TYPES = {
    "FP32": "TYPE_FP32",
    "FP16": "TYPE_FP16",
    "INT64": "TYPE_INT64",
    "UINT8": "TYPE_UINT8",
}


def triton_config(manifest: Manifest) -> str:
    """Triton's model configuration (protobuf text format) for an ONNX model version."""

    def tensor(spec: TensorSpec, image: bool) -> str:
        dims = ", ".join(str(d) for d in spec.shape[1:])  # Triton leaves out the batch dimension
        fmt = "\n    format: FORMAT_NCHW" if image else ""
        return (
            f'  {{\n    name: "{spec.name}"\n    data_type: {_TRITON_TYPES[spec.datatype]}{fmt}\n'
            f"    dims: [ {dims} ]\n  }}"
        )

    inputs = ",\n".join(tensor(t, len(t.shape) == 4) for t in manifest.inputs)
    outputs = ",\n".join(tensor(t, False) for t in manifest.outputs)
    delay_us = int(manifest.max_queue_delay_ms * 1000)
    return (
        f'name: "{manifest.name}"\n'
        f'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {manifest.max_batch_size}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {manifest.preferred_batch_size} ]\n"
        f"  max_queue_delay_microseconds: {delay_us}\n}}\n"
        f"version_policy: {{ all {{ }} }}\n"
        f"instance_group [ {{ kind: KIND_CPU, count: 1 }} ]\n"
    )
