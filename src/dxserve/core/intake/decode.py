"""Decode images (PNG, JPEG, DICOM) into ``(T, H, W, 3)`` uint8 RGB frames.

One decoder for training, evaluation and serving, so a model sees the same pixels everywhere.
DICOM pixel data is decoded by pydicom (with pylibjpeg's and Pillow's codecs); colour spaces are
converted to RGB, palettes applied, more-than-8-bit greyscale windowed to 8 bits, and ultrasound
cropped to its imaging region. A cine is decoded frame by frame, only the frames read
(:func:`dicom_frames`): a model reads a few dozen frames of a cine of hundreds.

JPEG Baseline (most echo cines) is decoded by Pillow's libjpeg-turbo, 4× faster than by
pylibjpeg's libjpeg here, and YBR is converted to RGB by Pillow (C), not by pydicom (numpy,
which took longer than the decoding): 2 ms a 640 × 480 frame instead of 14.
"""

import copy
import io
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi_lut,
    convert_color_space,
    get_decoder,
)
from pydicom.uid import JPEGBaseline8Bit

from dxserve.core.intake.frames import Frames, Indices
from dxserve.errors import ImageTooLarge, InvalidInput, UnsupportedMedia

# Limits checked on the declared dimensions, before anything is decoded: a small file must not
# make the server allocate gigabytes. Ultrasound frames are about 1 MP; a long cine is 100s of MB.
MAX_IMAGE_PIXELS = 50_000_000  # one PNG or JPEG
MAX_DECODED_BYTES = 1 << 30  # all frames of one DICOM object
IMAGE_FORMATS = ("PNG", "JPEG")  # no TIFF, GIF, BMP…: fewer parsers exposed to the network

DICOM_MAGIC_OFFSET = 128
REGION_BOUNDS = (
    "RegionLocationMinX0",
    "RegionLocationMinY0",
    "RegionLocationMaxX1",
    "RegionLocationMaxY1",
)
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # PNG, JPEG
YBR_FULL = ("YBR_FULL", "YBR_FULL_422")  # as decoded: JPEG's own YCbCr, full range
# What decoding a frame reads besides the pixel data: the image pixel description (group 0028),
# the modality and the ultrasound regions.
MODALITY, ULTRASOUND_REGIONS, PIXEL_DATA = 0x00080060, 0x00186011, 0x7FE00010
T = TypeVar("T")
U = TypeVar("U")
# Frames are decoded in parallel: Pillow's and pylibjpeg's codecs release the GIL.
_decoders = ThreadPoolExecutor(os.cpu_count(), thread_name_prefix="dxserve-decode")


def each_frame(work: Callable[[T], U], frames: Iterable[T]) -> list[U]:
    """``work`` on every frame, in parallel (for codecs, which release the GIL)."""
    return list(_decoders.map(work, frames))


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def read_dicom(data: bytes) -> Dataset | None:
    """The DICOM dataset in ``data``: a Part 10 file, or a bare dataset with pixel data.
    None when ``data`` is not DICOM (a PNG or JPEG, say)."""
    if is_dicom(data):
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, UserWarning) as exc:
            raise InvalidInput(f"cannot read the DICOM file: {type(exc).__name__}") from None
    if data.startswith(IMAGE_MAGIC):
        return None
    try:  # DICOM without the Part 10 header
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, UserWarning):
        return None
    return dataset if "PixelData" in dataset else None


def image_pixels(data: bytes) -> int | None:
    """Width × height of a PNG or JPEG, from its header alone; None for anything else."""
    if not data.startswith(IMAGE_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return None
    return width * height


def decode_path(path: Path) -> np.ndarray:
    """Decode the image or DICOM file at ``path`` into RGB frames."""
    return decode_bytes(Path(path).read_bytes())


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/DICOM bytes into ``(T, H, W, 3)`` uint8 RGB frames."""
    dataset = read_dicom(data)
    if dataset is not None:
        return decode_dicom(dataset)
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(f"{width} × {height} pixels", MAX_IMAGE_PIXELS, "pixels")
            return _pil_to_rgb(image)[None]
    except Image.DecompressionBombError:
        raise _too_large("over 180 million pixels", MAX_IMAGE_PIXELS, "pixels") from None
    except UnidentifiedImageError:
        raise UnsupportedMedia("not a PNG, JPEG or DICOM image") from None


def decode_dicom(dataset: Dataset) -> np.ndarray:
    """Pixel data of a DICOM dataset as ``(T, H, W, 3)`` uint8 RGB frames; an ultrasound
    image is cropped to its largest 2D region (what is outside is labels and strips)."""
    return dicom_frames(dataset).pixels


def dicom_frames(dataset: Dataset) -> Frames:
    """The frames of a DICOM image or cine, each decoded when read, from the pixel data as it
    is now (``dataset`` may change after: de-identification cleans its pixels). Greyscale of
    more than 8 bits is windowed over the whole cine, so it is decoded at once."""
    check_decodable(dataset)
    source = _pixel_source(dataset)
    count = int(source.get("NumberOfFrames", 1) or 1)
    rows, columns = int(source.get("Rows", 0) or 0), int(source.get("Columns", 0) or 0)
    if not rows or not columns:
        raise UnsupportedMedia("cannot decode DICOM pixel data: it declares no Rows or Columns")
    x0, y0, x1, y1 = imaging_region(source) or (0, 0, columns - 1, rows - 1)

    def read(indices: Indices) -> np.ndarray:
        return _rgb(source, _decode_frames(source, indices)[:, y0 : y1 + 1, x0 : x1 + 1])

    photometric = str(source.get("PhotometricInterpretation", ""))
    allocated = int(source.get("BitsAllocated", 8) or 8)
    if int(source.get("SamplesPerPixel", 1) or 1) == 1 and (
        allocated > 8 or photometric == "MONOCHROME1"
    ):
        return Frames.of(read(range(count)))
    return Frames(count, (y1 - y0 + 1, x1 - x0 + 1), read)


def _pixel_source(dataset: Dataset) -> Dataset:
    """What decoding reads of ``dataset``, copied: changes to ``dataset`` do not reach it."""
    source = Dataset()
    for element in dataset.group_dataset(0x0028):
        source.add(copy.copy(element))
    for tag in (MODALITY, ULTRASOUND_REGIONS, PIXEL_DATA):
        if tag in dataset:
            source.add(copy.copy(dataset[tag]))
    meta = getattr(dataset, "file_meta", None)
    if meta is not None:
        source.file_meta = copy.copy(meta)
    return source


def _decode_frames(source: Dataset, indices: Indices) -> np.ndarray:
    """Frames ``indices`` of ``source``, ``(n, H, W[, 3])``, decoded in parallel."""
    if len(indices) == int(source.get("NumberOfFrames", 1) or 1) == 1:
        return _decode(source, None)[None]
    if len(indices) == 1:
        return _decode(source, int(indices[0]))[None]
    return np.stack(each_frame(lambda i: _decode(source, int(i)), indices))


def _rgb(source: Dataset, pixels: np.ndarray) -> np.ndarray:
    """Decoded frames ``(n, H, W[, 3])`` as uint8 RGB ``(n, H, W, 3)``."""
    photometric = str(source.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, source)
    if pixels.ndim == 3:  # greyscale
        pixels = _grey_to_uint8(pixels, source, invert=photometric == "MONOCHROME1")
        return np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise UnsupportedMedia(f"unexpected DICOM pixel array shape {pixels.shape}")
    return _to_uint8(pixels, int(source.get("BitsStored", 8)))


def pixel_array(dataset: Dataset) -> np.ndarray:
    """Every frame of ``dataset``'s pixel data, YBR converted to RGB (see :func:`_decode`)."""
    return _decode(dataset, None)


def _decode(dataset: Dataset, index: int | None) -> np.ndarray:
    """Frame ``index`` (None: all frames) as pydicom decodes it, YBR converted to RGB; any
    codec's failure an :class:`UnsupportedMedia`."""
    try:
        syntax = dataset.file_meta.TransferSyntaxUID
        decoder = get_decoder(syntax)
        fast = syntax == JPEGBaseline8Bit and "pillow" in decoder.available_plugins
        pixels, meta = decoder.as_array(
            dataset, index=index, raw=True, decoding_plugin="pillow" if fast else ""
        )
        photometric = str(meta["photometric_interpretation"])
        if photometric in YBR_FULL and pixels.dtype == np.uint8 and pixels.shape[-1] == 3:
            return _ycbcr_to_rgb(pixels)
        if str(photometric).startswith("YBR"):
            return convert_color_space(pixels, photometric, "RGB")
        return pixels
    except (
        NotImplementedError,
        RuntimeError,
        ValueError,
        AttributeError,
        KeyError,
        EOFError,  # truncated encapsulated pixel data
        UserWarning,  # pydicom's warning of the same, where warnings are errors
    ) as exc:
        # AttributeError: pydicom's word for a required element (e.g. Transfer Syntax UID,
        # Bits Allocated) that is missing; the message names the element, never a value.
        raise UnsupportedMedia(f"cannot decode DICOM pixel data: {exc}") from None


def _ycbcr_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """JPEG's full-range YCbCr (DICOM's YBR_FULL) to RGB, frame by frame, by Pillow."""
    if pixels.ndim == 3:
        return np.asarray(Image.fromarray(pixels, "YCbCr").convert("RGB"))
    return np.stack([_ycbcr_to_rgb(frame) for frame in pixels])


@dataclass(frozen=True)
class Region:
    """One item of the Sequence of Ultrasound Regions: its box (inclusive bounds) and
    whether it is a 2D image (not a Doppler or M-mode strip, a graph, …)."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    is_2d: bool

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return (x1 - x0 + 1) * (y1 - y0 + 1)


def ultrasound_regions(dataset: Dataset) -> list[Region]:
    """The ultrasound regions of ``dataset``, clipped to the image; none at all when any of
    them does not fit the image (metadata kept from before a resize): then none is trusted."""
    items = dataset.get("SequenceOfUltrasoundRegions") or []
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (AttributeError, TypeError, ValueError):
        return []
    regions = []
    for item in items:
        try:
            x0, y0, x1, y1 = (int(item[keyword].value) for keyword in REGION_BOUNDS)
            spatial_format = int(item.get("RegionSpatialFormat", 0) or 0)
        except (KeyError, TypeError, ValueError):
            return []
        clipped = (max(x0, 0), max(y0, 0), min(x1, columns - 1), min(y1, rows - 1))
        region = Region(clipped, spatial_format == 1)
        declared = (x1 - x0 + 1) * (y1 - y0 + 1)
        if clipped[0] > clipped[2] or clipped[1] > clipped[3] or region.area < 0.9 * declared:
            return []
        regions.append(region)
    return regions


def imaging_region(dataset: Dataset) -> tuple[int, int, int, int] | None:
    """The box of the largest 2D ultrasound region, where the regions can be trusted."""
    images = [region for region in ultrasound_regions(dataset) if region.is_2d]
    return max(images, key=lambda region: region.area).box if images else None


def check_decodable(dataset: Dataset) -> None:
    """:class:`UnsupportedMedia` without pixel data; :class:`ImageTooLarge` when the declared
    dimensions would decode to too many bytes (checked before anything is decoded)."""
    if "PixelData" not in dataset:
        raise UnsupportedMedia("DICOM object has no pixel data")
    try:
        rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        allocated = int(dataset.get("BitsAllocated", 8) or 8)
    except (TypeError, ValueError):
        raise InvalidInput("DICOM image dimensions are not numbers") from None
    size = rows * columns * frames * samples * max(1, -(-allocated // 8))
    if size > MAX_DECODED_BYTES:
        described = f"{frames} frame(s) of {rows} × {columns} × {samples}"
        raise _too_large(described, MAX_DECODED_BYTES, "decoded bytes")


def _too_large(what: str, limit: int, unit: str) -> ImageTooLarge:
    return ImageTooLarge(f"image declares {what}: over the limit of {limit:,} {unit}")


def _grey_to_uint8(pixels: np.ndarray, dataset: Dataset, invert: bool) -> np.ndarray:
    if pixels.dtype == np.uint8 and not invert:
        return pixels
    values = apply_modality_lut(pixels, dataset)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset)
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if invert:
        scaled = 1.0 - scaled
    return np.round(scaled * 255).astype(np.uint8)


def _to_uint8(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    shift = max(bits_stored - 8, 0)
    return np.clip(pixels.astype(np.int64) >> shift, 0, 255).astype(np.uint8)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
        grey = np.round(scaled * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    try:
        return np.asarray(image.convert("RGB"))
    except OSError as exc:  # truncated or corrupt image data
        raise InvalidInput(f"cannot decode image: {exc}") from None
