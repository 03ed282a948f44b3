"""Small CPU work stays on the event loop; anything larger goes to a worker thread."""

import asyncio
import io
import threading

import numpy as np
from PIL import Image

from dxserve.core.intake.decode import image_pixels
from dxserve.core.offload import is_small, run_cpu


def encoded(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_pixels_reads_the_header_only() -> None:
    assert image_pixels(encoded(128, 96, "PNG")) == 128 * 96
    assert image_pixels(encoded(640, 480, "JPEG")) == 640 * 480
    assert image_pixels(b"\x89PNG\r\n\x1a\n" + b"\0" * 40) is None  # broken header
    assert image_pixels(b"\0" * 128 + b"DICM" + b"\0" * 64) is None  # not PNG or JPEG


def test_only_work_within_one_model_input_is_small() -> None:
    assert is_small(128 * 128, (128, 128))
    assert not is_small(128 * 128 + 1, (128, 128))
    assert not is_small(16 * 128 * 128, (128, 128))  # a cine of model-sized frames
    assert not is_small(None, (128, 128))  # unknown: DICOM, say


def test_run_cpu_runs_small_work_in_place_and_the_rest_in_a_thread() -> None:
    async def main() -> tuple[int, int, int]:
        here = threading.get_ident()
        small = await run_cpu(True, threading.get_ident)
        large = await run_cpu(False, threading.get_ident)
        return here, small, large

    here, small, large = asyncio.run(main())
    assert small == here and large != here
