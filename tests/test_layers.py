"""Serving must not need torch: the core, data and evaluation modules import without it."""

import subprocess
import sys

# A finder that refuses torch, as if it were not installed (other libraries may still look for it).
BLOCK_TORCH = (
    "import sys\n"
    "class NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ModuleNotFoundError(name)\n"
    "sys.meta_path.insert(0, NoTorch())\n"
)


def test_serving_side_imports_without_torch() -> None:
    modules = [
        "dxserve.core.intake.decode",
        "dxserve.core.preprocess",
        "dxserve.core.runtime.onnx",
        "dxserve.core.metrics",
        "dxserve.datasets",
        "dxserve.phantoms.generate",
        "dxserve.training.evaluate",
        "dxserve.cli",
    ]
    code = BLOCK_TORCH + "\n".join(f"import {m}" for m in modules)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_core_never_imports_web_frameworks_or_torch() -> None:
    code = (
        "import sys, pkgutil, importlib, dxserve.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'dxserve.core.'): importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'fastapi', 'starlette') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_server_starts_without_what_only_some_requests_need() -> None:
    """Drawing (matplotlib), filtering ECGs (scipy.signal) and DICOM results (highdicom) are
    imported when first used: together 115 MiB and 2 s of every server's start."""
    code = (
        "import sys, dxserve.server\n"
        "loaded = [m for m in ('matplotlib', 'scipy.signal', 'highdicom') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
