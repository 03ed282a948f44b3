"""A tenant's fine-tune against its base, measured in one run on the same held-out files.

The base is the seed CNN trained as the demo's (10 epochs, batch 32, Adam) on ``--train``
phantoms of the demo's findings (effusion, LV thrombus, dilated LV). The tenant's data is
``--tenant`` phantoms of another seed whose abnormal studies all show a left atrial mass, a
finding the base never saw. ``dxserve worker``'s fine-tune code splits it by label (held out
20 %, validation 20 %), trains from the base's weights, refits temperature, band and guard,
and evaluates both versions on the held-out files. Both are also evaluated on ``--platform``
phantoms of the demo's findings: what the fine-tune kept of what the base knew.

    python benchmarks/fine_tune.py [--train 1000] [--tenant 200] [--epochs 10] [--platform 400]
"""

import argparse
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dxserve.core.calibration import expected_calibration_error
from dxserve.core.runtime.repository import ModelRef, ModelRepository
from dxserve.datasets import open_dataset
from dxserve.phantoms.generate import generate
from dxserve.training.evaluate import evaluate
from dxserve.training.fine_tune import fine_tune
from dxserve.training.loop import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=1000, help="base training phantoms")
    parser.add_argument("--tenant", type=int, default=200, help="the tenant's labelled phantoms")
    parser.add_argument("--platform", type=int, default=400, help="phantoms of the base's findings")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        generate(root / "base", n=args.train, seed=0, size=128)
        generate(root / "tenant", n=args.tenant, seed=31, size=128, findings=("atrial_mass",))
        generate(root / "platform", n=args.platform, seed=2, size=128)
        started = time.perf_counter()
        base = train(open_dataset(root / "base"), root / "repo").ref
        base_seconds = time.perf_counter() - started
        namespace = ModelRepository(root / "tenant-models" / "a", owner="a")
        config = TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate)
        started = time.perf_counter()
        result = fine_tune(base, open_dataset(root / "tenant"), namespace, "echo-cnn", config)
        tune_seconds = time.perf_counter() - started
        comparison = result["comparison"]
        platform = open_dataset(root / "platform")
        tuned = namespace.resolve("echo-cnn", result["version"])
        kept = {
            name: evaluate(ref, platform, "all") for name, ref in (("base", base), ("new", tuned))
        }
        show(console, comparison, kept, base, tuned)
        console.print(
            f"base trained in {base_seconds:.0f} s on {args.train} phantoms; fine-tuned in "
            f"{tune_seconds:.0f} s ({args.epochs} epochs on {args.tenant} tenant phantoms, "
            "evaluation of both included)"
        )


def show(console: Console, comparison: dict, kept: dict, base: ModelRef, tuned: ModelRef) -> None:
    held = comparison["held_out"]
    table = Table(title=f"held out: {held['files']} tenant files ({held['positives']} atrial mass)")
    for column in (
        "version",
        "AUC (95% CI)",
        "ECE",
        "sens",
        "spec",
        "AUC on the base's findings",
        "ECE there",
    ):
        table.add_column(column, justify="right")
    for side in ("base", "new"):
        e, p = comparison[side], kept[side]
        low, high = e["auc_95"]
        table.add_row(
            f"{e['model']} ({side})",
            f"{e['auc']:.3f} ({low:.3f}–{high:.3f})",
            f"{e['ece']:.3f}",
            f"{e['sensitivity']:.3f}",
            f"{e['specificity']:.3f}",
            f"{p.metrics.auc:.3f}",
            f"{expected_calibration_error(p.prob, p.y):.3f}",
        )
    console.print(table)
    low, high = comparison["auc_delta_95"]
    ratio = comparison["new"]["auc"] / max(comparison["base"]["auc"], 1e-9)
    console.print(
        f"AUC new/base on the tenant's held-out files: {ratio:.2f}× "
        f"(difference {comparison['new']['auc'] - comparison['base']['auc']:+.3f}, "
        f"95% CI {low:+.3f} to {high:+.3f}, paired bootstrap)"
    )


if __name__ == "__main__":
    main()
