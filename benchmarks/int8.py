"""int8 against float, measured in one run: raw ONNX Runtime throughput, where the time goes,
and what the quantised model still gets right on held-out phantoms.

The seed CNN trained as the demo's (10 epochs, batch 32, Adam) on ``--train`` phantoms, then
quantised by ``dxserve quantize``'s code (QDQ, int8 weights per channel, uint8 activations,
calibrated on 256 training images).

(1) raw ORT images/s at batch 1, 8 and 32: float with ORT's graph optimisations (as served),
    float without them (what they give), int8; the float runs between the int8 runs, and the
    ratio is to their mean (the machines this runs on are shared);
(2) ORT's profiler at batch 32: each version's time by operator (which kernels run);
(3) held-out phantoms of another seed: AUC with its 95% interval, ECE, the indeterminate band,
    out-of-distribution refusals and the served map's pointing game, for both.

    python benchmarks/int8.py [--train 1200] [--held-out 400] [--seconds 3]
"""

import argparse
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from dxserve.core.runtime.repository import ModelRef
from dxserve.datasets import open_dataset
from dxserve.phantoms.generate import generate
from dxserve.training.evaluate import evaluate
from dxserve.training.loop import TrainConfig, train
from dxserve.training.quantize import quantize

BATCHES = (1, 8, 32)


def session(ref: ModelRef, optimise: bool = True, profile: str = "") -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not optimise:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    path = ref.path / ref.manifest().model_file
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def images_per_second(model: ort.InferenceSession, batch: int, seconds: float) -> float:
    x = np.random.default_rng(0).random((batch, 3, 128, 128), dtype=np.float32)
    model.run(None, {"image": x})
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.run(None, {"image": x})
        done += batch
    return done / (time.perf_counter() - started)


def by_operator(ref: ModelRef, folder: Path, runs: int = 20) -> tuple[float, Counter[str]]:
    """Milliseconds a batch of 32 and each operator's share, from ORT's profiler."""
    model = session(ref, profile=str(folder / f"v{ref.version}"))
    x = np.random.default_rng(0).random((32, 3, 128, 128), dtype=np.float32)
    for _ in range(runs):
        model.run(None, {"image": x})
    events = json.loads(Path(model.end_profiling()).read_text())
    times: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    return sum(times.values()) / runs / 1000, times


def judged(ref: ModelRef, held_out: Path) -> dict[str, Any]:
    return evaluate(ref, open_dataset(held_out), "all", explain=True).to_dict()


def _auc(e: dict[str, Any]) -> str:
    low, high = e["intervals_95"]["auc"]
    return f"{e['auc']:.4f} [{low:.3f}, {high:.3f}]"


def _answered(e: dict[str, Any]) -> str:
    return f"{e['abstention']['coverage']:.3f} / {e['abstention']['accuracy_answered']:.3f}"


def _pointing(e: dict[str, Any]) -> str:
    methods = e["explanation"]["methods"]
    return f"{methods[e['explanation']['served_method']]['pointing_game']:.3f}"


def _ood_sets(e: dict[str, Any]) -> str:
    return f"{np.mean([r['rate'] for r in e['ood']['refusal_rates'].values()]):.3f}"


QUALITY: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("AUC [95% interval]", _auc),
    ("ECE (served)", lambda e: f"{e['ece']:.4f}"),
    ("Brier (served)", lambda e: f"{e['brier']:.4f}"),
    ("answered / their accuracy", _answered),
    ("OOD false refusals", lambda e: f"{e['ood']['false_refusal_rate']:.3f}"),
    ("pointing game (served map)", _pointing),
    ("OOD sets refused (mean rate)", _ood_sets),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1200, help="training phantoms")
    parser.add_argument("--held-out", type=int, default=400, help="held-out phantoms")
    parser.add_argument("--seconds", type=float, default=3.0, help="per throughput run")
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        generate(root / "train", args.train, seed=1, size=128)
        generate(root / "held-out", args.held_out, seed=2, size=128)
        dataset = open_dataset(root / "train")
        base = train(dataset, root / "models", config=TrainConfig(epochs=10)).ref
        int8 = quantize(base, dataset, root / "models").ref

        fast, plain, small = session(base), session(base, optimise=False), session(int8)
        speed = Table(
            "batch", "float img/s", "float, no graph optimisation", "int8 img/s", "int8 ÷ float"
        )
        for batch in BATCHES:
            before = images_per_second(fast, batch, args.seconds)
            unoptimised = images_per_second(plain, batch, args.seconds)
            quantised = images_per_second(small, batch, args.seconds)
            after = images_per_second(fast, batch, args.seconds)
            speed.add_row(
                str(batch),
                f"{(before + after) / 2:.0f}",
                f"{unoptimised:.0f}",
                f"{quantised:.0f}",
                f"{quantised / ((before + after) / 2):.2f}",
            )
        kernels = Table("version", "ms a batch of 32", "time by operator")
        for ref, label in ((base, "float"), (int8, "int8")):
            ms, times = by_operator(ref, root)
            total = sum(times.values())
            shares = ", ".join(f"{op} {t / total:.0%}" for op, t in times.most_common(6))
            kernels.add_row(label, f"{ms:.1f}", shares)

        results = {
            "float": judged(base, root / "held-out"),
            "int8": judged(int8, root / "held-out"),
        }

    quality = Table("on held-out phantoms (another seed)", "float", "int8")
    for label, pick in QUALITY:
        quality.add_row(label, pick(results["float"]), pick(results["int8"]))
    delta = results["int8"]["auc"] - results["float"]["auc"]
    console.print(f"CPU: {ort.get_device()}, ONNX Runtime {ort.__version__}")
    console.print(speed)
    console.print(kernels)
    console.print(quality)
    console.print(f"AUC int8 − float: {delta:+.4f}")


if __name__ == "__main__":
    main()
