"""Decode images (PNG, JPEG, DICOM) into ``(T, H, W, 3)`` uint8 RGB frames.

One decoder for training, evaluation and serving, so a model sees the same pixels everywhere.
DICOM pixel data is decoded by pydicom (with pylibjpeg's codecs); colour spaces are converted to
RGB, palettes applied, and more-than-8-bit greyscale windowed to 8 bits.
"""

import io
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


def is_dicom(data: bytes) -> bool:
    """True for a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM"


def dicom_modality(data: bytes) -> str | None:
    """The Modality of a DICOM Part 10 file (its header only), None for anything else."""
    if not is_dicom(data):
        return None
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, UserWarning):
        return None  # decoding will say what is wrong
    return str(header.get("Modality", "")) or None


def decode_path(path: Path) -> np.ndarray:
    """Decode the image or DICOM file at ``path`` into RGB frames."""
    return decode_bytes(Path(path).read_bytes())


def decode_bytes(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/DICOM bytes into ``(T, H, W, 3)`` uint8 RGB frames."""
    if is_dicom(data):
        try:
            part10 = pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, UserWarning) as exc:
            raise InvalidInput(f"cannot read the DICOM file: {type(exc).__name__}") from None
        return decode_dicom(part10)
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _too_large(f"{width} × {height} pixels", MAX_IMAGE_PIXELS, "pixels")
            return _pil_to_rgb(image)[None]
    except Image.DecompressionBombError:
        raise _too_large("over 180 million pixels", MAX_IMAGE_PIXELS, "pixels") from None
    except UnidentifiedImageError:
        pass
    try:  # DICOM without the Part 10 header (raw dataset)
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, ValueError, EOFError):
        dataset = None
    if dataset is not None and "PixelData" in dataset:
        return decode_dicom(dataset)
    raise UnsupportedMedia("not a PNG, JPEG or DICOM image")


def decode_dicom(dataset: Dataset) -> np.ndarray:
    """Pixel data of a DICOM dataset as ``(T, H, W, 3)`` uint8 RGB frames."""
    if "PixelData" not in dataset:
        raise UnsupportedMedia("DICOM object has no pixel data")
    _check_declared_size(dataset)
    try:
        pixels = dataset.pixel_array  # pydicom 3 converts YBR_* to RGB by default
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
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, dataset)
    if frames == 1:
        pixels = pixels[None]
    if pixels.ndim == 3:  # greyscale (T, H, W)
        pixels = _grey_to_uint8(pixels, dataset, invert=photometric == "MONOCHROME1")
        return np.repeat(pixels[..., None], 3, axis=-1)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise UnsupportedMedia(f"unexpected DICOM pixel array shape {pixels.shape}")
    return _to_uint8(pixels, int(dataset.get("BitsStored", 8)))


def _check_declared_size(dataset: Dataset) -> None:
    """:class:`ImageTooLarge` when the declared dimensions would decode to too many bytes."""
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
