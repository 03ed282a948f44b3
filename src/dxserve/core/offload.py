"""CPU work from the event loop: to a worker thread only when it is big enough to pay for one.

A worker thread costs a wake-up each way, and numpy or Pillow running in a thread beside a busy
event loop waits for the GIL at each of its releases. Under /v1 load (benchmarks/serve.py) the
0.2 ms it takes to decode and preprocess a 128-px image became 0.6 ms of CPU and 6 ms of wall
time in a thread. So an image no larger than the model's input is handled in place; larger
images, cines and DICOM objects (de-identification) still go to a thread, so that no request
holds up the others for long.
"""

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def is_small(pixels: int | None, model_input: tuple[int, int]) -> bool:
    """Whether work on ``pixels`` pixels in all (None: unknown) is cheap enough for the event
    loop: no more than one frame of the model's input ``(height, width)``."""
    return pixels is not None and pixels <= model_input[0] * model_input[1]


async def run_cpu(small: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``: right here when ``small``, else in a worker thread."""
    if small:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)
