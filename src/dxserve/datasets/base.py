"""The dataset abstraction: items (file, label, split) and their preprocessed arrays."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dxserve.core.intake.decode import decode_path
from dxserve.core.intake.frames import sample_frames
from dxserve.core.preprocess import Recipe
from dxserve.errors import DatasetError, MissingDependency

VIDEO_SUFFIXES = {".avi", ".mp4", ".mov"}


@dataclass(frozen=True)
class Item:
    """One labelled file: an image, a DICOM object (one or more frames) or a video."""

    path: Path
    label: int
    split: str
    finding: str = ""
    mask: Path | None = None


@dataclass(frozen=True)
class Arrays:
    """Preprocessed frames ``x`` (N, 3, h, w) uint8, labels ``y`` (N,) and ``item`` index of each."""

    x: np.ndarray
    y: np.ndarray
    item: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset; ``labels`` names label 0 and label 1 (the positive class)."""

    root: Path
    layout: str
    items: tuple[Item, ...]
    labels: tuple[str, str] = ("normal", "abnormal")

    def __len__(self) -> int:
        return len(self.items)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(sorted({i.split for i in self.items}))

    def subset(self, *splits: str) -> "Dataset":
        """The items in the named splits (possibly none); ``"all"`` keeps everything."""
        if "all" in splits:
            return self
        return replace(self, items=tuple(i for i in self.items if i.split in splits))

    def require(self, what: str) -> "Dataset":
        """This dataset, or a :class:`DatasetError` naming ``what`` when it has no items."""
        if not self.items:
            raise DatasetError(f"no {what} found in {self.root} ({self.layout} layout)")
        return self

    def summary(self) -> dict[str, object]:
        """Counts per split, label and finding — what a model card reports about its data."""
        counts: Counter[tuple[str, str]] = Counter(
            (i.split, self.labels[i.label]) for i in self.items
        )
        findings = Counter(i.finding for i in self.items if i.finding)
        return {
            "root": str(self.root),
            "layout": self.layout,
            "files": len(self.items),
            "labels": list(self.labels),
            "per_split": {
                split: {label: counts[(split, label)] for label in self.labels}
                for split in self.splits
            },
            "findings": dict(sorted(findings.items())),
        }

    def materialize(
        self,
        recipe: Recipe,
        frames: int | None = 1,
        on_progress: Callable[[int], None] | None = None,
    ) -> Arrays:
        """Decode and resize every item; ``frames`` evenly spaced frames per file (None: all)."""
        xs, ys, owners = [], [], []
        for index, item in enumerate(self.items):
            resized = recipe.resize(sample_frames(load_frames(item.path), frames))
            xs.append(resized)
            ys.append(np.full(len(resized), item.label, dtype=np.float32))
            owners.append(np.full(len(resized), index, dtype=np.int64))
            if on_progress:
                on_progress(1)
        return Arrays(np.concatenate(xs), np.concatenate(ys), np.concatenate(owners))


def load_frames(path: Path) -> np.ndarray:
    """Decode a file into ``(T, H, W, 3)`` uint8 RGB frames."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path)
    return decode_path(path)


def read_video(path: Path) -> np.ndarray:
    """Every frame of a video file as RGB (needs OpenCV: the ``train`` or ``video`` extra)."""
    try:
        import cv2
    except ImportError:
        raise MissingDependency(
            "reading videos needs OpenCV: pip install 'dxserve[video]'"
        ) from None
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise DatasetError(f"cannot read any frame from video {path.name}")
    return np.stack(frames)
