"""De-identification at intake: DICOM PS3.15 Annex E, Basic Application Level Confidentiality
Profile, driven by the standard's attribute table (Table E.1-1, release 2026c, as kept by
Kitware's ``dicom-anonymizer``), with the options a diagnostic service needs:

- Retain UIDs, Retain Device Identity (off by default);
- Retain Longitudinal Temporal Information with Modified Dates (on): every date moves by one
  per-patient offset, so intervals and ages survive and calendar dates do not;
- Clean Pixel Data (on): for ultrasound, every pixel outside the Sequence of Ultrasound
  Regions is blanked (where burned-in names and dates sit) and ``BurnedInAnnotation`` = NO.
  JPEG Baseline frames (most echo cines) stay JPEG, re-encoded with their own quantisation
  tables and subsampling, so the region's pixels change by rounding only (on a phantom cine:
  0.07 of 255 on average, at most 6) and the object stays its size; other pixel data is
  stored uncompressed.

Pseudonyms are keyed per tenant (HMAC-SHA256), so one tenant's study always gets the same
pseudonymous UIDs (within a study and across uploads) and two tenants never share one. What
was removed that the owner needs back (patient, study and instance identifiers) is returned as
an :class:`Identity`, to be kept encrypted; :func:`reidentify` puts it back into a result.
"""

import datetime as dt
import hashlib
import hmac
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dxserve.core.intake.decode import (
    YBR_FULL,
    check_decodable,
    each_frame,
    pixel_array,
    ultrasound_regions,
)
from dxserve.errors import UnsupportedMedia

STANDARD = "DICOM PS3.15 2026c Table E.1-1"

# The table's action codes; a combination takes the least that keeps the object valid for an
# attribute of unknown type (Z keeps a Type 2 present, D a Type 1 non-empty).
ACTIONS = {
    "D_TAGS": "D",
    "Z_TAGS": "Z",
    "X_TAGS": "X",
    "U_TAGS": "U",
    "Z_D_TAGS": "D",
    "X_Z_TAGS": "Z",
    "X_D_TAGS": "D",
    "X_Z_D_TAGS": "Z",
    "X_Z_U_STAR_TAGS": "U*",  # sequences of references: keep, replacing the UIDs inside
}

# The table's "Rtn. Dev. Id." column: attributes the Retain Device Identity option keeps.
DEVICE_IDENTITY = (
    "CassetteID",
    "DetectorID",
    "DeviceDescription",
    "DeviceLabel",
    "DeviceSerialNumber",
    "DeviceUID",
    "GantryID",
    "GeneratorID",
    "PerformedStationAETitle",
    "PerformedStationGeographicLocationCodeSequence",
    "PerformedStationName",
    "PerformedStationNameCodeSequence",
    "PlateID",
    "ScheduledStationAETitle",
    "ScheduledStationGeographicLocationCodeSequence",
    "ScheduledStationName",
    "ScheduledStationNameCodeSequence",
    "SourceSerialNumber",
    "StationName",
    "UDISequence",
)

# The patient and study attributes a result object carries over from its source; what the
# owner gets back in its results (kept encrypted, never stored in clear).
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)

DUMMY_TEXT = "ANONYMIZED"
DUMMY_BY_VR: dict[str, Any] = {
    "PN": "ANONYMIZED^",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}
MAX_DATE_SHIFT_DAYS = 3650


def _load_table() -> tuple[dict[BaseTag, str], list[tuple[int, int, int, int, str]]]:
    exact: dict[BaseTag, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for name, action in ACTIONS.items():
        for entry in getattr(table, name):
            if len(entry) == 4:
                masked.append((*entry, action))
            else:
                exact[Tag(*entry)] = action
    return exact, masked


TABLE, MASKED = _load_table()
DEVICE_TAGS = {tag_for_keyword(keyword) for keyword in DEVICE_IDENTITY} - {None}


@dataclass(frozen=True)
class Options:
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_longitudinal_modified_dates: bool = True
    clean_pixel_data: bool = True


class Pseudonyms:
    """One tenant's pseudonyms: the same original always maps to the same pseudonym."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A UID in the 2.25 form (PS3.5 B.2) from 128 bits of the keyed hash."""
        return f"2.25.{int.from_bytes(self._digest('uid', original)[:16], 'big')}"

    def seed(self, kind: str, original: str) -> int:
        """A number that stands for ``original`` (of ``kind``) for this tenant only: the seed of
        its surrogate in de-identified text."""
        return int.from_bytes(self._digest(kind, original)[:8], "big")

    def patient_id(self, original: str) -> str:
        return "DX" + self._digest("patient", original)[:10].hex().upper()

    def date_shift(self, patient_id: str) -> dt.timedelta:
        """The patient's offset, 1 to 3650 days into the past."""
        value = int.from_bytes(self._digest("dates", patient_id)[:4], "big")
        return dt.timedelta(days=-(1 + value % MAX_DATE_SHIFT_DAYS))


@dataclass
class Identity:
    """What de-identification took away that the owner gets back: pseudonymous → original UID,
    and the patient and study attributes as they were."""

    uids: dict[str, str] = field(default_factory=dict)
    patient: dict[str, str] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps({"uids": self.uids, "patient": self.patient}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Identity":
        value = json.loads(data)
        return cls(dict(value["uids"]), dict(value["patient"]))

    def merge(self, other: "Identity") -> None:
        self.uids.update(other.uids)
        self.patient = self.patient or other.patient


@dataclass
class Deidentified:
    dataset: Dataset
    identity: Identity
    pixels_cleaned: bool  # Clean Pixel Data applies (and :func:`clean_pixel_data` is due)


def deidentify(dataset: Dataset, pseudonyms: Pseudonyms, options: Options) -> Deidentified:
    """``dataset`` de-identified in place per the Basic Profile and ``options``."""
    done = deidentify_attributes(dataset, pseudonyms, options)
    if done.pixels_cleaned:
        clean_pixel_data(dataset)
    return done


def deidentify_attributes(
    dataset: Dataset, pseudonyms: Pseudonyms, options: Options
) -> Deidentified:
    """All of :func:`deidentify` but the pixels: where ``pixels_cleaned``,
    :func:`clean_pixel_data` is still to be called before the object is written (for a long
    cine the slow part, which a caller may run beside other work)."""
    patient = {
        k: str(dataset[k].value) for k in PATIENT_AND_STUDY if dataset.get(k) not in (None, "")
    }
    original_id = str(dataset.get("PatientID", "") or "")
    run = _Run(pseudonyms, options, pseudonyms.date_shift(original_id))
    pixels_cleaned = options.clean_pixel_data and bool(_blanked_regions(dataset))
    run.clean(dataset)
    _mark(dataset, options, pixels_cleaned)
    return Deidentified(dataset, Identity(run.uids, patient), pixels_cleaned)


class _Run:
    def __init__(self, pseudonyms: Pseudonyms, options: Options, shift: dt.timedelta) -> None:
        self.pseudonyms = pseudonyms
        self.options = options
        self.shift = shift
        self.uids: dict[str, str] = {}

    def clean(self, dataset: Dataset) -> None:
        for element in list(dataset):
            if element.tag.is_private:
                del dataset[element.tag]
                continue
            action = self.action(element)
            if action == "X":
                del dataset[element.tag]
            elif action == "Z":
                element.value = Sequence() if element.VR == "SQ" else None
            elif action == "D":
                element.value = self.dummy(element)
            elif action == "U":
                element.value = self.replace_uids(element.value)
            elif action == "C":
                element.value = self.shift_dates(element)
            elif element.VR == "SQ":  # kept (K or U*): its items are de-identified in turn
                for item in element.value:
                    self.clean(item)

    def action(self, element: DataElement) -> str | None:
        tag = element.tag
        action = TABLE.get(tag) or _masked_action(tag)
        if action is None:
            return None
        if self.options.retain_uids and action == "U":
            return None
        if self.options.retain_device_identity and tag in DEVICE_TAGS:
            return None
        if self.options.retain_longitudinal_modified_dates and action != "X":
            if element.VR in ("DA", "DT"):
                return "C"
            if element.VR == "TM":
                return None  # times of day stay: they identify no one once dates moved
        return action

    def dummy(self, element: DataElement) -> Any:
        if element.value in (None, "", b""):
            return element.value  # nothing there to hide
        if element.VR == "SQ":
            return Sequence()
        if element.VR == "UI":
            return self.replace_uids(element.value)
        if element.tag == Tag("PatientID"):
            return self.pseudonyms.patient_id(str(element.value or ""))
        if element.VR in ("DA", "DT") and self.options.retain_longitudinal_modified_dates:
            return self.shift_dates(element)
        if element.VR in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            return None
        dummy = DUMMY_BY_VR.get(element.VR, DUMMY_TEXT)
        return [dummy] * len(element.value) if element.VM > 1 else dummy

    def replace_uids(self, value: Any) -> Any:
        if value in (None, ""):
            return value
        values = list(value) if isinstance(value, (list, tuple)) or _is_multi(value) else [value]
        replaced = []
        for original in map(str, values):
            pseudonym = self.pseudonyms.uid(original)
            self.uids[pseudonym] = original
            replaced.append(pseudonym)
        return replaced if len(replaced) > 1 else replaced[0]

    def shift_dates(self, element: DataElement) -> Any:
        values = element.value if element.VM > 1 else [element.value]
        shifted = [_shift(str(v), element.VR, self.shift) for v in values if v not in (None, "")]
        if not shifted:
            return element.value
        return shifted if len(shifted) > 1 else shifted[0]


def _is_multi(value: Any) -> bool:
    return hasattr(value, "__iter__") and not isinstance(value, (str, bytes))


def _masked_action(tag: BaseTag) -> str | None:
    for group, elem, group_mask, elem_mask, action in MASKED:
        if (tag.group & group_mask) == group and (tag.element & elem_mask) == elem:
            return action
    return None


def _shift(value: str, vr: str, shift: dt.timedelta) -> str:
    """A DA (YYYYMMDD) or DT value moved by ``shift``; time and offset kept as they were."""
    day = value[:8]
    try:
        moved = dt.datetime.strptime(day, "%Y%m%d").date() + shift
    except ValueError:
        return DUMMY_BY_VR[vr]  # not a date a reader could parse: no date at all
    return moved.strftime("%Y%m%d") + (value[8:] if vr == "DT" else "")


def _blanked_regions(dataset: Dataset) -> list[tuple[int, int, int, int]]:
    """The boxes of an ultrasound image outside which it is blanked; none where there is
    nothing to go by (not US, no pixels, no regions): then nothing is claimed."""
    if dataset.get("Modality") != "US" or "PixelData" not in dataset:
        return []
    return [region.box for region in ultrasound_regions(dataset)]


def clean_pixel_data(dataset: Dataset) -> None:
    """Blank an ultrasound image outside its regions (see :func:`deidentify_attributes`)."""
    regions = _blanked_regions(dataset)
    check_decodable(dataset)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if syntax == JPEGBaseline8Bit and photometric in YBR_FULL:
        _blank_jpeg_frames(dataset, regions)
        return
    pixels = pixel_array(dataset)  # YBR is converted to RGB
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    keep = np.zeros((rows, columns), dtype=bool)
    for x0, y0, x1, y1 in regions:
        keep[y0 : y1 + 1, x0 : x1 + 1] = True
    pixels = np.array(pixels, copy=True)
    view = pixels if frames > 1 else pixels[None]
    view[:, ~keep] = 0
    if photometric.startswith("YBR"):
        photometric = "RGB"
    if meta is not None and syntax == ExplicitVRBigEndian:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian  # pydicom writes pixels little endian
    bits = int(dataset.get("BitsStored", 8))
    dataset.set_pixel_data(pixels, photometric, bits, generate_instance_uid=False)


def _blank_jpeg_frames(dataset: Dataset, regions: list[tuple[int, int, int, int]]) -> None:
    """Each JPEG Baseline frame blanked outside ``regions`` and encoded again with its own
    quantisation tables and subsampling (Pillow's ``quality="keep"``)."""
    outside = Image.new("L", (int(dataset.Columns), int(dataset.Rows)), 255)
    for x0, y0, x1, y1 in regions:
        outside.paste(0, (x0, y0, x1 + 1, y1 + 1))
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    sent = generate_frames(dataset.PixelData, number_of_frames=count)
    frames = each_frame(lambda frame: _blank_jpeg(frame, outside), sent)
    dataset.PixelData = encapsulate(frames)
    dataset["PixelData"].VR = "OB"
    # PS3.3 C.7.6.1.1.5: each lossy compression applied, in order, with its ratio.
    methods = _values(dataset.get("LossyImageCompressionMethod")) or ["ISO_10918_1"]
    ratios = _values(dataset.get("LossyImageCompressionRatio"))
    dataset.LossyImageCompression = "01"
    dataset.LossyImageCompressionMethod = [*methods, "ISO_10918_1"]
    if len(ratios) == len(methods):
        decoded = int(dataset.Rows) * int(dataset.Columns) * 3 * count
        ratio = decoded / sum(map(len, frames))
        dataset.LossyImageCompressionRatio = [*ratios, f"{ratio:.2f}"[:16]]
    elif ratios:
        del dataset.LossyImageCompressionRatio


def _values(value: Any) -> list[Any]:
    if value in (None, ""):
        return []
    return list(value) if _is_multi(value) else [value]


def _blank_jpeg(frame: bytes, outside: Image.Image) -> bytes:
    try:
        with Image.open(io.BytesIO(frame), formats=["JPEG"]) as image:
            if image.mode != "RGB" or image.size != outside.size:
                raise UnsupportedMedia(
                    f"a JPEG frame is {image.mode} {image.size[0]} × {image.size[1]}, not the "
                    f"RGB {outside.size[0]} × {outside.size[1]} the dataset declares"
                )
            image.paste((0, 0, 0), mask=outside)
            out = io.BytesIO()
            image.save(out, "JPEG", quality="keep")
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's words for a corrupt JPEG
        raise UnsupportedMedia(f"cannot decode a JPEG frame: {exc}") from None
    return out.getvalue()


def _mark(dataset: Dataset, options: Options, pixels_cleaned: bool) -> None:
    """The attributes that say what was done (PS3.15 E.1.1, CID 7050)."""
    methods = [codes.DCM.BasicApplicationConfidentialityProfile]
    if pixels_cleaned:
        methods.append(codes.DCM.CleanPixelDataOption)
        dataset.BurnedInAnnotation = "NO"
    if options.retain_uids:
        methods.append(codes.DCM.RetainUidsOption)
    if options.retain_device_identity:
        methods.append(codes.DCM.RetainDeviceIdentityOption)
    if options.retain_longitudinal_modified_dates:
        methods.append(codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption)
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = f"dxserve: {STANDARD} Basic Profile"
    dataset.DeidentificationMethodCodeSequence = Sequence([_code_item(code) for code in methods])
    dataset.LongitudinalTemporalInformationModified = (
        "MODIFIED" if options.retain_longitudinal_modified_dates else "REMOVED"
    )
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = dataset.get("SOPInstanceUID", "")
    old = getattr(dataset, "file_meta", None)
    syntax = old.get("TransferSyntaxUID") if old is not None else None
    meta.TransferSyntaxUID = syntax or ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    dataset.file_meta = meta


def _code_item(code: Any) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def reidentify(dataset: Dataset, identity: Identity) -> Dataset:
    """``dataset`` (a result about a de-identified study) pointed back at the owner's own
    patient and study: every pseudonymous UID and the patient and study attributes restored."""
    for element in _walk(dataset):
        if element.VR == "UI" and element.value:
            if _is_multi(element.value):
                element.value = [identity.uids.get(str(v), str(v)) for v in element.value]
            else:
                element.value = identity.uids.get(str(element.value), element.value)
    for keyword, value in identity.patient.items():
        setattr(dataset, keyword, value)
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return dataset


def _walk(dataset: Dataset) -> Iterator[DataElement]:
    for element in dataset:
        yield element
        if element.VR == "SQ":
            for item in element.value:
                yield from _walk(item)
