"""Phantom studies as DICOM Ultrasound (Multi-frame) Image Storage files of fake patients.

The identifying attributes carry realistic but invented values, and the patient's name is burned
into the pixels outside the ultrasound sector, as on a real scanner's screen: material for testing
de-identification. None of it belongs to a real person.
"""

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from dxserve import __version__

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
FRAME_TIME_MS = 33.3
PIXEL_SPACING_CM = 0.06  # a 256-px image covers 15 cm of depth
HEADER_ROWS = 44  # the label band above the image, where the patient's name is burned in

_GIVEN = ("Maria", "James", "Wei", "Fatima", "Olga", "Kenji", "Amara", "Lucas", "Priya", "Tomás")
_FAMILY = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "García", "Haddad", "Kowalski")
_CITIES = ("Springfield", "Rivertown", "Lakeside", "Northbridge")
_PHYSICIANS = ("Hartmann^Eva^^Dr", "Osei^Kwame^^Dr", "Bianchi^Luca^^Dr", "Suzuki^Aiko^^Dr")


@dataclass(frozen=True)
class FakePatient:
    """Invented identifiers for one phantom study."""

    name: str
    patient_id: str
    birth_date: dt.date
    sex: str
    study_date: dt.date
    accession: str
    referring_physician: str
    institution: str
    address: str

    @classmethod
    def random(cls, rng: np.random.Generator) -> "FakePatient":
        city = str(rng.choice(_CITIES))
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 60)))
        study = dt.date(2024, 1, 1) + dt.timedelta(days=int(rng.integers(0, 700)))
        return cls(
            name=f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}",
            patient_id=f"MRN{int(rng.integers(10**6, 10**7))}",
            birth_date=birth,
            sex=str(rng.choice(["F", "M"])),
            study_date=study,
            accession=f"ACC{int(rng.integers(10**7, 10**8))}",
            referring_physician=str(rng.choice(_PHYSICIANS)),
            institution=f"{city} General Hospital",
            address=f"{int(rng.integers(1, 999))} Harbor Road, {city}",
        )


def burn_in(frames: np.ndarray, patient: FakePatient) -> np.ndarray:
    """Frames under a header band of :data:`HEADER_ROWS` with the patient's name, ID and study
    date burned in, as scanners label a screen: ``(T, HEADER_ROWS + H, W)``."""
    text = f"{patient.name.replace('^', ' ')}\n{patient.patient_id}\n{patient.study_date:%d.%m.%Y}"
    count, _, cols = frames.shape
    header = Image.new("L", (cols, HEADER_ROWS))
    ImageDraw.Draw(header).multiline_text((3, 2), text, fill=230)
    band = np.broadcast_to(np.asarray(header), (count, HEADER_ROWS, cols))
    return np.concatenate([band, frames], axis=1)


def new_dataset(sop_class: str, rng: np.random.Generator) -> Dataset:
    """An empty Part 10 dataset of ``sop_class`` with its file meta and new study, series and
    instance UIDs (drawn from ``rng``, so the same seed gives the same UIDs)."""
    seed = [int(x) for x in rng.integers(0, 2**31, size=4)]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(seed), "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(seed), "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(seed), "series"])
    return ds


def describe_patient(ds: Dataset, patient: FakePatient, rng: np.random.Generator) -> None:
    """The invented patient's and study's identifying attributes."""
    time = f"{int(rng.integers(7, 18)):02d}{int(rng.integers(0, 60)):02d}00"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = f"{patient.birth_date:%Y%m%d}"
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{(patient.study_date - patient.birth_date).days // 365:03d}Y"
    ds.PatientAddress = patient.address
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{patient.study_date:%Y%m%d}"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AcquisitionDateTime = f"{patient.study_date:%Y%m%d}{time}"
    ds.AccessionNumber = patient.accession
    ds.StudyID = str(int(rng.integers(1000, 9999)))
    ds.ReferringPhysicianName = patient.referring_physician
    ds.InstitutionName = patient.institution
    ds.InstitutionAddress = patient.address
    ds.Manufacturer = "dxserve phantom"
    ds.DeviceSerialNumber = f"SN{int(rng.integers(10**5, 10**6))}"
    ds.SoftwareVersions = __version__


def us_dataset(
    frames: np.ndarray, patient: FakePatient, rng: np.random.Generator, image_top: int = 0
) -> Dataset:
    """A DICOM ultrasound image of ``frames`` ``(T, H, W)`` uint8 for ``patient``, whose
    imaging region starts at row ``image_top`` (the rows above are a label band)."""
    count, rows, cols = frames.shape
    sop_class = US_MULTIFRAME_IMAGE_STORAGE if count > 1 else US_IMAGE_STORAGE
    ds = new_dataset(sop_class, rng)
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[str(ds.StudyInstanceUID), "frame"])
    describe_patient(ds, patient, rng)
    ds.PerformingPhysicianName = str(rng.choice(_PHYSICIANS))
    ds.OperatorsName = f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}"
    ds.StationName = f"ECHO{int(rng.integers(1, 9))}"
    ds.StudyDescription = "Transthoracic echocardiogram"
    ds.SeriesDescription = "Apical 4-chamber"
    ds.Modality = "US"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ManufacturerModelName = "echo-phantom"
    ds.BodyPartExamined = "HEART"
    ds.ImageType = ["DERIVED", "PRIMARY", "ECHO"]
    ds.BurnedInAnnotation = "YES"
    ds.ImageComments = "Synthetic phantom. Not patient data. Not for clinical use."

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    if count > 1:
        ds.NumberOfFrames = count
        ds.FrameTime = FRAME_TIME_MS
        ds.CineRate = round(1000 / FRAME_TIME_MS)
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.SequenceOfUltrasoundRegions = Sequence([_image_region(0, image_top, cols - 1, rows - 1)])
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds


def jpeg_cine(
    frames: np.ndarray,
    patient: FakePatient,
    rng: np.random.Generator,
    columns: int = 640,
    quality: int = 90,
) -> Dataset:
    """A cine as echo scanners export it: each frame of ``frames`` ``(T, H, W)`` uint8 centred
    on a ``HEADER_ROWS + H`` × ``columns`` screen under the label band, in colour, every frame
    JPEG Baseline compressed (YBR_FULL_422)."""
    count, height, width = frames.shape
    left = (columns - width) // 2
    screen = np.zeros((count, height, columns), np.uint8)
    screen[:, :, left : left + width] = frames
    screen = burn_in(screen, patient)
    ds = us_dataset(screen, patient, rng, image_top=HEADER_ROWS)
    ds.SequenceOfUltrasoundRegions = Sequence(
        [_image_region(left, HEADER_ROWS, left + width - 1, HEADER_ROWS + height - 1)]
    )
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.PixelData = encapsulate([_jpeg(frame, quality) for frame in screen])
    ds["PixelData"].VR = "OB"
    return ds


def _jpeg(grey: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(grey).convert("RGB").save(out, "JPEG", quality=quality, subsampling="4:2:2")
    return out.getvalue()


def _image_region(x0: int, y0: int, x1: int, y1: int) -> Dataset:
    """The Sequence of Ultrasound Regions item of a 2D image in the box (inclusive bounds)."""
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = x0
    region.RegionLocationMinY0 = y0
    region.RegionLocationMaxX1 = x1
    region.RegionLocationMaxY1 = y1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = PIXEL_SPACING_CM * 256 / (x1 - x0 + 1)
    region.PhysicalDeltaY = PIXEL_SPACING_CM * 256 / (y1 - y0 + 1)
    return region


def write_study(path: Path, frames: np.ndarray, rng: np.random.Generator) -> None:
    """Write ``frames`` as a DICOM file at ``path`` for a new fake patient."""
    patient = FakePatient.random(rng)
    dataset = us_dataset(burn_in(frames, patient), patient, rng, image_top=HEADER_ROWS)
    dataset.save_as(path, enforce_file_format=True)
