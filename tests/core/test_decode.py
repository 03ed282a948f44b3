"""One decoder for every input: PNG, JPEG and DICOM in its common transfer syntaxes."""

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames

from dxserve.core.intake.decode import (
    decode_bytes,
    decode_dicom,
    decode_path,
    dicom_frames,
    imaging_region,
)
from dxserve.errors import InvalidInput, UnsupportedMedia
from dxserve.phantoms.dicom import FakePatient, jpeg_cine
from dxserve.phantoms.study import make_study


def bundled(name: str):
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return path


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("examples_ybr_color.dcm", (30, 240, 320, 3)),  # US multi-frame, YBR_FULL_422 JPEG
        ("examples_palette.dcm", (1, 350, 800, 3)),  # PALETTE COLOR
        ("examples_jpeg2k.dcm", (1, 480, 640, 3)),  # JPEG 2000
        ("CT_small.dcm", (1, 128, 128, 3)),  # 16-bit MONOCHROME2
        ("MR_small.dcm", (1, 64, 64, 3)),
        ("SC_rgb_rle.dcm", (1, 100, 100, 3)),  # RLE RGB
        ("JPEG2000.dcm", (1, 1024, 256, 3)),
        ("MR_small_bigendian.dcm", (1, 64, 64, 3)),  # explicit VR big endian
        ("MR_small_RLE.dcm", (1, 64, 64, 3)),
        ("SC_rgb_jpeg_dcmtk.dcm", (1, 100, 100, 3)),  # JPEG baseline
        ("JPGExtended.dcm", (1, 1024, 256, 3)),  # JPEG extended, 12 bit
        ("MR_small_jpeg_ls_lossless.dcm", (1, 64, 64, 3)),  # JPEG-LS
        ("JPEGLSNearLossless_16.dcm", (1, 50, 10, 3)),
        ("MR_small_jp2klossless.dcm", (1, 64, 64, 3)),
        ("image_dfl.dcm", (1, 512, 512, 3)),  # deflated explicit VR
        ("MR_small_implicit.dcm", (1, 64, 64, 3)),  # implicit VR little endian
        ("SC_rgb_rle_16bit_2frame.dcm", (2, 100, 100, 3)),  # 16-bit RGB, multi-frame
        ("SC_ybr_full_422_uncompressed.dcm", (1, 100, 100, 3)),
    ],
)
def test_dicom_test_files(name: str, shape: tuple[int, ...]) -> None:
    frames = decode_path(bundled(name))
    assert frames.shape == shape and frames.dtype == np.uint8
    assert frames.max() > frames.min()


def test_ybr_ultrasound_is_converted_to_rgb() -> None:
    """Grey ultrasound pixels stored as YBR come back with R ≈ G ≈ B, not a green cast."""
    frames = decode_path(bundled("examples_ybr_color.dcm")).astype(int)
    grey = frames[(frames.sum(axis=-1) > 150)]
    assert np.abs(grey[:, 0] - grey[:, 1]).mean() < 8


def test_png_grey_rgba_and_16_bit() -> None:
    for array in (
        np.arange(64, dtype=np.uint8).reshape(8, 8),
        np.full((8, 8, 4), 200, dtype=np.uint8),
        (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8),
    ):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        frames = decode_bytes(buffer.getvalue())
        assert frames.shape == (1, 8, 8, 3)
        assert frames.max() > 0


def test_jpeg() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 24, 3), 90, dtype=np.uint8)).save(buffer, format="JPEG")
    assert decode_bytes(buffer.getvalue()).shape == (1, 16, 24, 3)


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedMedia):
        decode_bytes(b"%PDF-1.7 not an image at all" * 10)


def test_truncated_png_is_a_clear_error() -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    with pytest.raises(InvalidInput):
        decode_bytes(buffer.getvalue()[:200])


def test_dicom_without_pixels() -> None:
    with pytest.raises(UnsupportedMedia, match="no pixel data"):
        decode_path(bundled("rtplan.dcm"))


def test_monochrome1_is_inverted() -> None:
    """MONOCHROME1 (0 is white, as some CR/DX write it) becomes the usual dark-is-low RGB."""
    ramp = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # 12 bits stored
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.set_pixel_data(ramp, "MONOCHROME1", 12)
    frames = decode_dicom(dataset)
    assert frames.shape == (1, 8, 64, 3)
    assert frames[0, 0, 0, 0] == 255 and frames[0, 0, -1, 0] == 0  # lowest value is brightest


def jpeg_echo(frames: int = 6) -> Dataset:
    """A phantom JPEG Baseline echo cine of ``frames`` frames, 108 × 96 (label band and
    side panels outside its ultrasound region)."""
    rng = np.random.default_rng(4)
    study = make_study(seed=4, index=1, size=64, frames=frames)
    return jpeg_cine(study.frames, FakePatient.random(rng), rng, columns=96)


def test_fast_ybr_conversion_matches_pydicoms() -> None:
    """JPEG Baseline decoded by Pillow (libjpeg-turbo) and converted to RGB by it: pydicom's
    own pixels (pylibjpeg's libjpeg, numpy's conversion), within the two codecs' rounding."""
    for dataset in (pydicom.dcmread(bundled("examples_ybr_color.dcm")), jpeg_echo()):
        mine = dicom_frames(dataset).read([0, 2]).astype(int)
        theirs = dataset.pixel_array[[0, 2]].astype(int)
        region = imaging_region(dataset)
        if region is not None:
            x0, y0, x1, y1 = region
            theirs = theirs[:, y0 : y1 + 1, x0 : x1 + 1]
        difference = np.abs(mine - theirs)
        assert mine.shape == theirs.shape and difference.max() <= 6
        assert difference.mean() < 0.1 and (difference > 1).mean() < 0.01


def test_only_the_frames_read_are_decoded() -> None:
    """A cine with a corrupt frame: the frames around it are read; the corrupt one, when read,
    is a clear error."""
    dataset = jpeg_echo()
    frames = list(generate_frames(dataset.PixelData, number_of_frames=6))
    frames[3] = frames[3][:20] + b"\x00" * (len(frames[3]) - 20)
    dataset.PixelData = encapsulate(frames)
    cine = dicom_frames(dataset)
    assert cine.count == 6 and cine.size == (64, 64)
    read = cine.read([0, 2, 5])
    assert read.shape == (3, 64, 64, 3) and read.max() > 100
    with pytest.raises(UnsupportedMedia, match="cannot decode"):
        _ = cine.pixels


def test_frames_are_read_from_the_pixels_as_they_were() -> None:
    """What de-identification does to the dataset after does not change the frames read."""
    dataset = jpeg_echo()
    cine = dicom_frames(dataset)
    before = cine.read([1])
    dataset.PixelData = b""
    dataset.Rows = 1
    np.testing.assert_array_equal(cine.read([1]), before)
