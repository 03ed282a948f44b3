"""The PS3.15 Basic Profile engine on pydicom's own files: every transfer syntax it may meet,
the options, consistent pseudonyms, and re-identification for the owner."""

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import JPEGBaseline8Bit

from dxserve.core.intake.decode import decode_dicom, ultrasound_regions
from dxserve.core.intake.deidentify import Options, Pseudonyms, deidentify, reidentify
from dxserve.phantoms.dicom import HEADER_ROWS, FakePatient, burn_in, jpeg_cine, us_dataset
from dxserve.phantoms.study import make_study

PSEUDONYMS = Pseudonyms(b"k" * 32)
FILES = {
    "CT_small.dcm": "Explicit VR Little Endian",
    "MR_small_implicit.dcm": "Implicit VR Little Endian",
    "MR_small_bigendian.dcm": "Explicit VR Big Endian",
    "image_dfl.dcm": "Deflated Explicit VR Little Endian",
    "examples_jpeg2k.dcm": "JPEG 2000 Image Compression (Lossless Only)",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG Baseline (Process 1)",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process "
    "14 [Selection Value 1])",
    "JPGExtended.dcm": "JPEG Extended (Process 2 and 4)",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless Image Compression",
    "MR_small_RLE.dcm": "RLE Lossless",
    "SC_rgb_rle_16bit_2frame.dcm": "RLE Lossless",
    "examples_ybr_color.dcm": "JPEG Baseline (Process 1)",
    "examples_palette.dcm": "Explicit VR Little Endian",
}


def read(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name, download=False))


def round_trip(dataset: Dataset) -> Dataset:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(out.getvalue()))


@pytest.mark.parametrize("name", FILES)
def test_every_transfer_syntax_round_trips(name: str) -> None:
    original = read(name)
    assert original.file_meta.TransferSyntaxUID.name == FILES[name]
    pixels = decode_dicom(read(name))
    done = deidentify(original, PSEUDONYMS, Options())
    back = round_trip(done.dataset)
    assert back.PatientIdentityRemoved == "YES"
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.SOPInstanceUID.startswith("2.25.") and back.StudyInstanceUID.startswith("2.25.")
    assert done.identity.uids[back.StudyInstanceUID] == read(name).StudyInstanceUID
    decoded = decode_dicom(back)
    assert decoded.shape == pixels.shape
    if not done.pixels_cleaned:  # the pixels are the ones sent
        np.testing.assert_array_equal(decoded, pixels)


def test_clean_pixel_data_blanks_outside_the_region() -> None:
    """A phantom echo's label band (above its region) is blanked, the region kept."""
    rng = np.random.default_rng(2)
    frames = burn_in(make_study(seed=2, index=0, size=64, frames=2).frames, FakePatient.random(rng))
    sent = us_dataset(frames, FakePatient.random(rng), rng, image_top=HEADER_ROWS)
    done = deidentify(round_trip(sent), PSEUDONYMS, Options())
    assert done.pixels_cleaned and done.dataset.BurnedInAnnotation == "NO"
    codes = [item.CodeValue for item in done.dataset.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", "113107"]
    pixels = round_trip(done.dataset).pixel_array
    assert frames[:, :HEADER_ROWS].max() > 200 and not pixels[:, :HEADER_ROWS].any()
    np.testing.assert_array_equal(pixels[:, HEADER_ROWS:], frames[:, HEADER_ROWS:])


@pytest.mark.parametrize("name", ["examples_palette.dcm", "examples_ybr_color.dcm"])
def test_regions_that_do_not_fit_the_image_claim_nothing(name: str) -> None:
    """pydicom's echo files keep the regions of a larger original: no pixel is trusted to be
    outside them, so none is blanked and Clean Pixel Data is not claimed."""
    done = deidentify(read(name), PSEUDONYMS, Options())
    assert (not done.pixels_cleaned and "BurnedInAnnotation" not in done.dataset) or (
        done.dataset.BurnedInAnnotation == read(name).get("BurnedInAnnotation")
    )
    codes = {item.CodeValue for item in done.dataset.DeidentificationMethodCodeSequence}
    assert "113101" not in codes


def test_options() -> None:
    kept = deidentify(
        read("CT_small.dcm"),
        PSEUDONYMS,
        Options(
            retain_uids=True, retain_device_identity=True, retain_longitudinal_modified_dates=False
        ),
    ).dataset
    original = read("CT_small.dcm")
    assert kept.StudyInstanceUID == original.StudyInstanceUID
    assert kept.StationName == original.StationName
    assert not kept.StudyDate and kept.LongitudinalTemporalInformationModified == "REMOVED"
    assert "StudyTime" in kept and not kept.StudyTime
    codes = [item.CodeValue for item in kept.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113110", "113109"]
    shifted = deidentify(read("CT_small.dcm"), PSEUDONYMS, Options()).dataset
    assert shifted.StudyTime == original.StudyTime and shifted.StudyDate != original.StudyDate
    assert not shifted.StationName and "PatientAge" not in shifted


def test_uids_are_consistent_within_a_study() -> None:
    first, second = read("CT_small.dcm"), read("CT_small.dcm")
    second.SOPInstanceUID = second.SOPInstanceUID + ".2"
    a = deidentify(first, PSEUDONYMS, Options()).dataset
    b = deidentify(second, PSEUDONYMS, Options()).dataset
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    other = deidentify(read("CT_small.dcm"), Pseudonyms(b"j" * 32), Options()).dataset
    assert other.StudyInstanceUID != a.StudyInstanceUID and other.PatientID != a.PatientID


def test_reidentify_points_a_result_back_at_the_owners_study() -> None:
    original = read("CT_small.dcm")
    done = deidentify(read("CT_small.dcm"), PSEUDONYMS, Options())
    result = Dataset()  # what a report about the de-identified object carries
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate"):
        setattr(result, keyword, done.dataset[keyword].value)
    reference = Dataset()
    reference.ReferencedSOPInstanceUID = done.dataset.SOPInstanceUID
    result.ReferencedImageSequence = [reference]
    reidentify(result, done.identity)
    assert result.StudyInstanceUID == original.StudyInstanceUID
    assert result.ReferencedImageSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    assert (result.PatientID, result.PatientName, result.StudyDate) == (
        original.PatientID,
        original.PatientName,
        original.StudyDate,
    )


def test_a_jpeg_cine_stays_jpeg_when_its_pixels_are_cleaned() -> None:
    """A JPEG Baseline echo cine: the label band and side panels are blanked, every frame is
    JPEG again with its own tables (the region's pixels change by rounding only), and the second
    lossy compression is declared."""
    rng = np.random.default_rng(5)
    study = make_study(seed=5, index=1, size=64, frames=4)
    sent = round_trip(jpeg_cine(study.frames, FakePatient.random(rng), rng, columns=96))
    done = deidentify(round_trip(sent), PSEUDONYMS, Options())
    stored = round_trip(done.dataset)
    assert done.pixels_cleaned and stored.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert len(stored.PixelData) < 1.2 * len(sent.PixelData)
    assert stored.LossyImageCompressionMethod == ["ISO_10918_1", "ISO_10918_1"]
    before, after = sent.pixel_array.astype(int), stored.pixel_array.astype(int)
    assert before[:, :HEADER_ROWS].max() > 200 and after[:, :HEADER_ROWS].max() < 16
    x0, y0, x1, y1 = ultrasound_regions(sent)[0].box
    assert after[:, :, : x0 - 8].max() < 16 and after[:, :, x1 + 9 :].max() < 16
    inside = np.abs(after - before)[:, y0 + 8 : y1 - 7, x0 + 8 : x1 - 7]
    assert inside.mean() < 0.5
