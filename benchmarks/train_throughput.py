"""Training throughput of dxserve's loop against a bare PyTorch loop on the same data.

The baseline is the plainest fast loop: pre-normalised float tensors in memory, channels-last,
Adam + BCE-with-logits, no metrics, no progress. dxserve's loop normalises uint8 batches with the
model's recipe, counts accuracy and reports progress. Target (issue #2): ratio ≥ 0.95. Also shows
the channels-last gain. Each loop runs ``--repeats`` times, interleaved; the best run counts.

    python benchmarks/train_throughput.py [--images 640] [--repeats 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from dxserve.core.preprocess import get_recipe
from dxserve.datasets import Arrays, open_dataset
from dxserve.models.echo_cnn import EchoCNN
from dxserve.phantoms.generate import generate
from dxserve.training.loop import Observer, TrainConfig, fit


def bare_loop(arrays: Arrays, channels_last: bool, batch_size: int = 32) -> float:
    """Images/s of one epoch of the plainest PyTorch loop."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.from_numpy(arrays.x).float() / 255).contiguous(memory_format=fmt)
    y = torch.from_numpy(arrays.y).unsqueeze(1)
    model = EchoCNN().to(memory_format=fmt)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    order = torch.randperm(len(y))
    started = time.perf_counter()
    for start in range(0, len(y), batch_size):
        index = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model.logits(x[index]), y[index]).backward()
        optimizer.step()
    return len(y) / (time.perf_counter() - started)


def dxserve_loop(arrays: Arrays) -> float:
    """Images/s of one epoch of dxserve's training loop (validation excluded)."""
    recipe = get_recipe("rgb-128")
    val = Arrays(arrays.x[:64], arrays.y[:64], arrays.item[:64])
    _, history, _ = fit(arrays, val, recipe, TrainConfig(epochs=1), Observer())
    return history[0].images_per_second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder), n=args.images, seed=0, size=128)
        arrays = open_dataset(Path(folder)).materialize(get_recipe("rgb-128"))
    runs: dict[str, list[float]] = {"bare": [], "bare-nchw": [], "dxserve": []}
    for _ in range(args.repeats):
        runs["bare"].append(bare_loop(arrays, channels_last=True))
        runs["dxserve"].append(dxserve_loop(arrays))
        runs["bare-nchw"].append(bare_loop(arrays, channels_last=False))
    best = {name: max(values) for name, values in runs.items()}
    table = Table("loop", "images/s (best)", "runs", "ratio to bare channels-last")
    labels = {
        "bare": "bare PyTorch, channels-last (baseline)",
        "dxserve": "dxserve train loop",
        "bare-nchw": "bare PyTorch, contiguous NCHW",
    }
    for name in ("bare", "dxserve", "bare-nchw"):
        table.add_row(
            labels[name],
            f"{best[name]:.1f}",
            " ".join(f"{v:.0f}" for v in runs[name]),
            f"{best[name] / best['bare']:.3f}",
        )
    Console(width=150).print(table)
    print(f"dxserve/bare ratio: {best['dxserve'] / best['bare']:.3f} (target ≥ 0.95)")


if __name__ == "__main__":
    main()
