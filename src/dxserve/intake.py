"""What happens to an image on its way in: decode it and, for DICOM, check its modality,
de-identify it (PS3.15 Basic Profile) and keep the owner's identifiers sealed.

The object stored, and the pixels the model reads, are the de-identified ones.
"""

import io
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from dxserve.core.intake.decode import check_decodable, decode_bytes, decode_dicom, read_dicom
from dxserve.core.intake.deidentify import Options, deidentify
from dxserve.errors import WrongModality
from dxserve.store.identities import Identities


@dataclass(frozen=True)
class Received:
    frames: np.ndarray
    stored: bytes  # the de-identified DICOM object, or the PNG/JPEG as sent
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

    def receive(
        self, tenant_id: str, data: bytes, modalities: tuple[str, ...] | list[str], model: str
    ) -> Received:
        """Decode ``data`` for ``model`` (which reads ``modalities``; empty: any)."""
        dataset = read_dicom(data)
        if dataset is None:
            return Received(decode_bytes(data), data)
        modality = str(dataset.get("Modality", "") or "") or None
        if modalities and modality is not None and modality not in modalities:
            raise WrongModality(
                f"this is a {modality} object; {model} reads {', '.join(modalities)} only"
            )
        check_decodable(dataset)
        return self.deidentify(tenant_id, dataset)

    def deidentify(self, tenant_id: str, dataset: Dataset) -> Received:
        """De-identify ``dataset`` (in place) for the tenant and keep its identity sealed."""
        done = deidentify(dataset, self.identities.pseudonyms(tenant_id), self.options)
        frames = decode_dicom(dataset)
        study = str(dataset.get("StudyInstanceUID", "") or "")
        sop = str(dataset.get("SOPInstanceUID", "") or "")
        if study and sop:
            self.identities.remember(tenant_id, study, sop, done.identity)
        return Received(
            frames,
            part10(dataset),
            study or None,
            str(dataset.get("SOPClassUID", "") or "") or None,
            sop or None,
        )
