"""Decode images (PNG, JPEG, DICOM) into ``(T, H, W, 3)`` uint8 RGB frames.

One decoder for training, evaluation and serving, so a model sees the same pixels everywhere.
DICOM pixel data is decoded by pydicom (with pylibjpeg's codecs); colour spaces are converted to
RGB, palettes applied, more-than-8-bit greyscale windowed to 8 bits, and ultrasound cropped to
its imaging region.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

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
    check_decodable(dataset)
    pixels = pixel_array(dataset)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if frames == 1:
        pixels = pixels[None]
    region = imaging_region(dataset)
    if region is not None:
        x0, y0, x1, y1 = region
        pixels = pixels[:, y0 : y1 + 1, x0 : x1 + 1]
    if pixels.ndim == 3:  # greyscale (T, H, W)
        pixels = _grey_to_uint8(pixels, dataset, invert=photometric == "MONOCHROME1")
        return np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise UnsupportedMedia(f"unexpected DICOM pixel array shape {pixels.shape}")
    return _to_uint8(pixels, int(dataset.get("BitsStored", 8)))


def pixel_array(dataset: Dataset) -> np.ndarray:
    """``dataset.pixel_array`` (YBR converted to RGB), any codec's failure an
    :class:`UnsupportedMedia`."""
    try:
        return dataset.pixel_array
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
