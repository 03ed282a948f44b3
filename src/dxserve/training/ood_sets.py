"""Images a cardiac-ultrasound model was not trained for, to measure its out-of-distribution guard.

All local: pydicom's own test files (CT, MR, other modalities, and real — non-phantom —
ultrasound), a photograph shipped with matplotlib, generated blank/saturated/noise frames, and
the evaluation's own phantoms turned upside down or on their side (a stand-in for a wrong view).
"""

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from dxserve.core.intake.decode import decode_path
from dxserve.core.runtime.onnx import OnnxModel
from dxserve.errors import DxError

Images = list[np.ndarray]  # (H, W, 3) uint8 each


def pydicom_sets() -> dict[str, Images]:
    """First frames of pydicom's test files with pixel data, grouped by modality (the files
    installed with pydicom only: its downloadable extras are never fetched)."""
    import pydicom
    from pydicom.data.data_manager import DATA_ROOT
    from pydicom.errors import InvalidDicomError

    groups = {"CT": "CT slices", "MR": "MR slices", "US": "real ultrasound (not phantoms)"}
    sets: dict[str, Images] = {name: [] for name in groups.values()}
    sets["other modalities (NM, SEG)"] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some test files are deliberately malformed
        for name in sorted((Path(DATA_ROOT) / "test_files").rglob("*.dcm")):
            try:
                modality = str(pydicom.dcmread(name, stop_before_pixels=True).get("Modality", ""))
                frames = decode_path(name)
            except (DxError, InvalidDicomError, ValueError, AttributeError, OSError):
                continue
            if modality in groups:
                sets[groups[modality]].append(frames[0])
            elif modality in ("NM", "SEG") and min(frames.shape[1:3]) >= 64:
                sets["other modalities (NM, SEG)"].append(frames[0])
    return {name: images for name, images in sets.items() if images}


def generated_sets(seed: int = 0, n: int = 20) -> dict[str, Images]:
    """Blank, saturated and noise frames, and a colour and a greyscale photograph."""
    import matplotlib.cbook

    rng = np.random.default_rng(seed)
    size = (256, 256, 3)
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    photo = np.asarray(Image.open(path).convert("RGB"))
    grey = np.repeat(np.asarray(Image.fromarray(photo).convert("L"))[..., None], 3, axis=-1)
    return {
        "blank frames": [np.full(size, v, np.uint8) for v in np.linspace(0, 200, n).astype(int)],
        "saturated frames": [
            np.clip(rng.normal(250, 3, size), 0, 255).astype(np.uint8) for _ in range(n)
        ],
        "uniform noise": [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(n)],
        "photographs (colour)": [photo],
        "photographs (greyscale)": [grey],
    }


def wrong_view_sets(images: Images) -> dict[str, Images]:
    """Phantoms upside down and on their side: the right anatomy seen from a wrong window."""
    return {
        "phantoms upside down": [np.ascontiguousarray(i[::-1]) for i in images],
        "phantoms rotated 90°": [np.ascontiguousarray(np.rot90(i)) for i in images],
    }


def refusal_rates(model: OnnxModel, sets: dict[str, Images]) -> dict[str, dict[str, object]]:
    """Per set: how many images the model's guard refuses, and why."""
    guard = model.manifest.guard
    recipe = model.manifest.image_recipe
    report: dict[str, dict[str, object]] = {}
    for name, images in sets.items():
        x = np.concatenate([recipe.resize(image[None]) for image in images])
        reasons = guard.problems(x, model.predict(x)) if guard else [None] * len(x)
        refused = [r.split(" (")[0] for r in reasons if r is not None]
        report[name] = {
            "n": len(images),
            "refused": len(refused),
            "rate": len(refused) / len(images),
            "reasons": dict(Counter(refused).most_common()),
        }
    return report
