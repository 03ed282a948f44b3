"""What happens to a body on its way in: tell what it is, decode it into the typed input of
its modality, and for DICOM check its modality, de-identify it (PS3.15 Basic Profile) and keep
the owner's identifiers sealed.

    PNG, JPEG, DICOM image or cine       → Frames   (core/intake/decode.py)
    DICOM ECG waveform                   → Signal   (core/intake/waveform.py)
    WFDB record (zip or multipart files) → Signal   (core/intake/wfdb_record.py)
    CSV or JSON samples                  → Signal   (core/intake/signal_table.py)

The object stored and the input the model reads are the de-identified ones. PNG, JPEG and the
signal tables carry no patient metadata and are stored (sealed) as sent.
"""

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from dxserve.core.intake.decode import (
    check_decodable,
    decode_bytes,
    dicom_frames,
    image_pixels,
    read_dicom,
)
from dxserve.core.intake.deidentify import Options, clean_pixel_data, deidentify_attributes
from dxserve.core.intake.frames import Frames
from dxserve.core.intake.signal import Signal
from dxserve.core.intake.signal_table import decode_csv, decode_json
from dxserve.core.intake.waveform import decode_waveform, is_waveform
from dxserve.core.intake.wfdb_record import decode_wfdb, is_zip, unzip
from dxserve.core.modality import IMAGE, SIGNAL, describe
from dxserve.core.runtime.manifest import Manifest
from dxserve.errors import WrongModality
from dxserve.store.identities import Identities

CSV_TYPES = ("text/csv", "text/plain")
JSON_TYPES = ("application/json",)
SIGNAL_TYPES = (*CSV_TYPES, *JSON_TYPES, "application/zip")


@dataclass(frozen=True)
class Body:
    """A request body and what it was found to be: its modality and, for DICOM, the dataset
    (parsed once) and its Modality attribute."""

    data: bytes
    media_type: str
    modality: str
    dataset: Dataset | None = None
    files: dict[str, bytes] | None = None  # a WFDB record's files
    rate: float | None = None  # a CSV's sampling rate, when the caller gives it

    @property
    def dicom_modality(self) -> str | None:
        if self.dataset is None:
            return None
        return str(self.dataset.get("Modality", "") or "") or None

    @property
    def pixels(self) -> int | None:
        """Width × height of a PNG or JPEG from its header (None for anything else)."""
        return image_pixels(self.data) if self.dataset is None else None

    def described(self) -> str:
        kind = describe(self.modality).split(" (")[0].rstrip("s")
        if self.dicom_modality:
            return f"a {self.dicom_modality} object ({kind})"
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def open_body(
    data: bytes,
    media_type: str,
    files: dict[str, bytes] | None = None,
    rate: float | None = None,
) -> Body:
    """What ``data`` is, by content first and media type second."""
    if files is not None:
        return Body(data, media_type, SIGNAL, files=files)
    dataset = read_dicom(data)
    if dataset is not None:
        return Body(data, media_type, SIGNAL if is_waveform(dataset) else IMAGE, dataset)
    if is_zip(data) or media_type in SIGNAL_TYPES:
        return Body(data, media_type, SIGNAL, rate=rate)
    return Body(data, media_type, IMAGE)


@dataclass(frozen=True)
class Received:
    """The model's input, and what to store: ``stored()`` makes the de-identified DICOM object
    (cleaning an ultrasound's pixels first: for a long cine the slowest part of intake, so it
    may run beside the model, which reads the pixels as sent), or is the body as sent."""

    sample: Frames | Signal
    stored: Callable[[], bytes]
    study_uid: str | None = None  # pseudonymous, for DICOM
    sop_class_uid: str | None = None
    sop_uid: str | None = None  # pseudonymous


def part10(dataset: Dataset) -> bytes:
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


class Intake:
    def __init__(self, identities: Identities, options: Options) -> None:
        self.identities = identities
        self.options = options

    def receive(self, tenant_id: str, body: Body, manifest: Manifest) -> Received:
        """Decode ``body`` for the model of ``manifest``: :class:`WrongModality` naming both
        when the model does not read it."""
        modalities = manifest.modalities
        dicom = body.dicom_modality
        if manifest.modality != body.modality:
            raise WrongModality(
                f"this is {body.described()}; {manifest.name} reads {describe(manifest.modality)}"
            )
        if modalities and dicom is not None and dicom not in modalities:
            raise WrongModality(
                f"this is a {dicom} object; {manifest.name} reads {', '.join(modalities)} only"
            )
        if body.dataset is not None:
            if body.modality == IMAGE:
                check_decodable(body.dataset)
            return self.deidentify(tenant_id, body.dataset)
        if body.modality == IMAGE:
            return Received(Frames.of(decode_bytes(body.data)), lambda: body.data)
        signal = _decode_signal(body)
        stored = zip_files(body.files) if body.files else body.data
        return Received(signal, lambda: stored)

    def deidentify(self, tenant_id: str, dataset: Dataset) -> Received:
        """De-identify ``dataset`` (in place) for the tenant and keep its identity sealed."""
        sample = decode_waveform(dataset) if is_waveform(dataset) else dicom_frames(dataset)
        done = deidentify_attributes(dataset, self.identities.pseudonyms(tenant_id), self.options)

        def stored() -> bytes:
            if done.pixels_cleaned:
                clean_pixel_data(dataset)
            return part10(dataset)

        study = str(dataset.get("StudyInstanceUID", "") or "")
        sop = str(dataset.get("SOPInstanceUID", "") or "")
        if study and sop:
            self.identities.remember(tenant_id, study, sop, done.identity)
        return Received(
            sample,
            stored,
            study or None,
            str(dataset.get("SOPClassUID", "") or "") or None,
            sop or None,
        )


def zip_files(files: dict[str, bytes]) -> bytes:
    """A WFDB record's files as one zip (what is stored, and read back, for it)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), files[name])
    return out.getvalue()


def stored_signal(data: bytes, media_type: str, rate: float | None) -> Signal:
    """The signal of a stored (de-identified) input: what a diagnosis of it read."""
    dataset = read_dicom(data)
    if dataset is not None:
        return decode_waveform(dataset)
    return _decode_signal(Body(data, media_type, SIGNAL, rate=rate))


def _decode_signal(body: Body) -> Signal:
    if body.files is not None:
        return decode_wfdb(body.files)
    if is_zip(body.data):
        return decode_wfdb(unzip(body.data))
    if body.media_type in JSON_TYPES or body.data.lstrip().startswith(b"{"):
        return decode_json(body.data)
    return decode_csv(body.data, body.rate)
