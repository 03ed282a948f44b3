"""DICOMweb (PS3.18) over dxserve's data plane.

STOW-RS stores each instance (de-identified) and diagnoses it with the model for its modality;
QIDO-RS searches, and WADO-RS retrieves, the result objects (the TID 1500 SR and the heatmap
Secondary Capture) of the caller's tenant. The caller speaks its own study UIDs: they are
mapped to the tenant's pseudonyms on the way in, and results are re-identified on the way out.
"""

import io
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dxserve.core.intake.decode import is_dicom
from dxserve.core.intake.deidentify import PATIENT_AND_STUDY
from dxserve.core.results.dicom_sr import ResultObject, result_objects
from dxserve.core.security.principal import Permission, Principal
from dxserve.errors import (
    ImageTooLarge,
    InvalidInput,
    QuotaExceeded,
    UnsupportedMedia,
    WrongModality,
)
from dxserve.services import Services
from dxserve.store.accounts import NotFound
from dxserve.store.ledger import Unit

# PS3.18 Table I.2-1 / PS3.4 failure reasons of STOW-RS.
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # the instance is not of the study the request names
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_NOT_SUPPORTED = 0x0122

# The only QIDO-RS matching keys here (the attributes of result objects dxserve indexes).
QIDO_KEYS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
    "Modality": "00080060",
}
QIDO_CONTROLS = {"limit", "offset", "includefield", "fuzzymatching"}
MAX_RESULTS = 1000


@dataclass(frozen=True)
class StudyResults:
    """One study of the tenant: its UID as the owner knows it, the pseudonymous one it is
    stored under, the owner's patient and study attributes, and its diagnoses."""

    uid: str
    stored_uid: str
    patient: dict[str, str]
    records: list[dict[str, Any]]

    def objects(self) -> Iterable[tuple[dict[str, Any], ResultObject]]:
        for record in self.records:
            for described in result_objects(record):
                yield record, described


class DicomWeb:
    def __init__(self, services: Services) -> None:
        self.services = services

    # STOW-RS

    async def store(
        self,
        principal: Principal,
        unit: Unit,
        parts: list[bytes],
        study: str | None,
        base: str,
        explain: bool,
    ) -> tuple[int, Dataset]:
        """Store and diagnose each part (the diagnoses added to ``unit``); the HTTP status and
        the PS3.18 response dataset."""
        principal.require(Permission.diagnose)
        response = Dataset()
        referenced, failed = [], []
        for data in parts:
            header = _header(data)
            if header is None:
                failed.append(_sop_item(None, None, CANNOT_UNDERSTAND))
                continue
            sop_class, sop = header.get("SOPClassUID"), header.get("SOPInstanceUID")
            if study is not None and header.get("StudyInstanceUID") != study:
                failed.append(_sop_item(sop_class, sop, DOES_NOT_MATCH))
                continue
            model = self.services.settings.dicomweb_models.get(str(header.get("Modality", "")))
            try:
                await self.services.diagnose(
                    principal, unit, data, "application/dicom", model, explain
                )
            except (ImageTooLarge, QuotaExceeded):
                failed.append(_sop_item(sop_class, sop, OUT_OF_RESOURCES))
            except (UnsupportedMedia, WrongModality):  # an SR, a waveform, a modality not read
                failed.append(_sop_item(sop_class, sop, SOP_CLASS_NOT_SUPPORTED))
            except InvalidInput:
                failed.append(_sop_item(sop_class, sop, CANNOT_UNDERSTAND))
            else:
                item = _sop_item(sop_class, sop, None)
                item.RetrieveURL = f"{base}/studies/{header.StudyInstanceUID}"
                referenced.append(item)
        if study is not None:
            response.RetrieveURL = f"{base}/studies/{study}"
        if referenced:
            response.ReferencedSOPSequence = referenced
        if failed:
            response.FailedSOPSequence = failed
        status = 200 if not failed else 202 if referenced else 409
        return status, response

    # QIDO-RS

    def search_studies(self, principal: Principal, query: dict[str, str], base: str) -> list[Any]:
        matches = _matches(query)
        limit, offset = _paging(query)
        if "StudyInstanceUID" in matches:
            studies = self._studies(principal, [matches.pop("StudyInstanceUID")])
        else:
            stored = self.services.diagnoses.studies(principal.tenant_id, limit, offset)
            studies = self._resolved(principal, stored)
        found = []
        for study in studies:
            objects = [o for _, o in study.objects() if _matching(o, study, matches)]
            if not objects:
                continue
            attributes = _study_attributes(study)
            attributes.ModalitiesInStudy = sorted({o.modality for o in objects})
            attributes.NumberOfStudyRelatedSeries = len({o.series_uid for o in objects})
            attributes.NumberOfStudyRelatedInstances = len(objects)
            attributes.RetrieveURL = f"{base}/studies/{study.uid}"
            found.append(attributes.to_json_dict())
        return found

    def search_series(
        self, principal: Principal, study: str, query: dict[str, str], base: str
    ) -> list[Any]:
        return [
            _series_attributes(study_results, o, base).to_json_dict()
            for study_results, o in self._objects(principal, study, query)
        ]

    def search_instances(
        self, principal: Principal, study: str, query: dict[str, str], base: str
    ) -> list[Any]:
        found = []
        for study_results, described in self._objects(principal, study, query):
            attributes = _series_attributes(study_results, described, base)
            attributes.SOPClassUID = described.sop_class_uid
            attributes.SOPInstanceUID = described.sop_uid
            attributes.InstanceNumber = 1
            attributes.RetrieveURL = (
                f"{base}/studies/{study_results.uid}/series/{described.series_uid}"
                f"/instances/{described.sop_uid}"
            )
            found.append(attributes.to_json_dict())
        return found

    def _objects(
        self, principal: Principal, study: str, query: dict[str, str]
    ) -> list[tuple[StudyResults, ResultObject]]:
        matches = _matches(query)
        limit, offset = _paging(query)
        return [
            (found, described)
            for found in self._studies(principal, [study])
            for _, described in found.objects()
            if _matching(described, found, matches)
        ][offset : offset + limit]

    # WADO-RS

    def retrieve(
        self, principal: Principal, study: str, series: str | None = None, sop: str | None = None
    ) -> list[bytes]:
        """The result objects of a study (of one series, or one instance), Part 10 bytes each,
        pointed at the owner's study; NotFound when there are none."""
        principal.require(Permission.read_results)
        matches = {"SeriesInstanceUID": series, "SOPInstanceUID": sop}
        wanted = {k: v for k, v in matches.items() if v is not None}
        objects = []
        for found in self._studies(principal, [study]):
            for record, described in found.objects():
                if not _matching(described, found, wanted):
                    continue
                if described.kind == "sr":
                    objects.append(self.services.structured_report(principal, record["id"]))
                else:
                    objects.append(self.services.heatmap_dicom(principal, record["id"]))
        if not objects:
            raise NotFound("no such study, series or instance among this tenant's results")
        return objects

    def metadata(
        self, principal: Principal, study: str, series: str | None = None, sop: str | None = None
    ) -> list[Any]:
        """WADO-RS metadata: each object's attributes without its bulk data."""
        return [
            pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).to_json_dict()
            for data in self.retrieve(principal, study, series, sop)
        ]

    # The owner's study UIDs ↔ the tenant's pseudonymous ones

    def _studies(self, principal: Principal, uids: list[str]) -> list[StudyResults]:
        """The tenant's studies known to the caller as ``uids`` (its own UIDs, or ones dxserve
        gave to a PNG/JPEG input)."""
        principal.require(Permission.read_results)
        pseudonyms = self.services.identities.pseudonyms(principal.tenant_id)
        candidates = [c for uid in uids for c in (pseudonyms.uid(uid), uid)]
        return self._resolved(principal, candidates)

    def _resolved(self, principal: Principal, stored_uids: list[str]) -> list[StudyResults]:
        tenant = principal.tenant_id
        by_study = self.services.diagnoses.in_study(tenant, stored_uids)
        found = []
        for stored_uid in stored_uids:
            if stored_uid not in by_study:
                continue
            identity = self.services.identities.of_study(tenant, stored_uid)
            uid = identity.uids.get(stored_uid, stored_uid)
            found.append(StudyResults(uid, stored_uid, identity.patient, by_study[stored_uid]))
        return found


def parse_multipart(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a STOW-RS body: ``multipart/related; type="application/dicom"``;
    UnsupportedMedia for any other type, InvalidInput when it cannot be parsed."""
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if message.get_content_type() != "multipart/related":
        raise UnsupportedMedia('STOW-RS takes multipart/related; type="application/dicom"')
    if (message.get_param("type") or "application/dicom") != "application/dicom":
        raise UnsupportedMedia(
            "only application/dicom parts are stored here (not DICOM JSON or XML with bulk data)"
        )
    if not message.is_multipart() or message.defects:
        raise InvalidInput("the multipart/related body cannot be parsed (boundary?)")
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if part.get_content_type() != "application/dicom" or not isinstance(payload, bytes):
            raise UnsupportedMedia("every part must be application/dicom")
        parts.append(payload)
    if not parts:
        raise InvalidInput("the multipart/related body has no parts")
    return parts


def _header(data: bytes) -> Dataset | None:
    """The header of a Part 10 file (no pixels); None for anything else."""
    if not is_dicom(data):
        return None
    try:
        header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError, KeyError, TypeError, UserWarning):
        return None
    return header if "SOPInstanceUID" in header and "StudyInstanceUID" in header else None


def _sop_item(sop_class: Any, sop: Any, failure: int | None) -> Dataset:
    item = Dataset()
    if sop_class:
        item.ReferencedSOPClassUID = sop_class
    if sop:
        item.ReferencedSOPInstanceUID = sop
    if failure is not None:
        item.FailureReason = failure
    return item


def _matches(query: dict[str, str]) -> dict[str, str]:
    """The query's matching keys (by keyword or tag), InvalidInput for any other."""
    tags = {tag: keyword for keyword, tag in QIDO_KEYS.items()}
    matches = {}
    for key, value in query.items():
        if key in QIDO_CONTROLS:
            continue
        keyword = key if key in QIDO_KEYS else tags.get(key.upper())
        if keyword is None:
            raise InvalidInput(
                f"QIDO-RS here matches {', '.join(QIDO_KEYS)} only (single values); not {key!r}"
            )
        matches[keyword] = value
    return matches


def _paging(query: dict[str, str]) -> tuple[int, int]:
    try:
        limit = int(query.get("limit", MAX_RESULTS))
        offset = int(query.get("offset", 0))
    except ValueError:
        raise InvalidInput("limit and offset are whole numbers") from None
    if not limit > 0 or offset < 0:
        raise InvalidInput("limit must be positive, offset not negative")
    return min(limit, MAX_RESULTS), offset


def _matching(described: ResultObject, study: StudyResults, matches: dict[str, str]) -> bool:
    values = {
        "StudyInstanceUID": study.uid,
        "SeriesInstanceUID": described.series_uid,
        "SOPInstanceUID": described.sop_uid,
        "Modality": described.modality,
    }
    return all(values[keyword] == value for keyword, value in matches.items())


def _study_attributes(study: StudyResults) -> Dataset:
    attributes = Dataset()
    attributes.StudyInstanceUID = study.uid
    for keyword in PATIENT_AND_STUDY:
        setattr(attributes, keyword, study.patient.get(keyword, ""))
    return attributes


def _series_attributes(study: StudyResults, described: ResultObject, base: str) -> Dataset:
    attributes = _study_attributes(study)
    attributes.SeriesInstanceUID = described.series_uid
    attributes.Modality = described.modality
    attributes.SeriesNumber = described.series_number
    attributes.SeriesDescription = described.description
    attributes.NumberOfSeriesRelatedInstances = 1
    attributes.RetrieveURL = f"{base}/studies/{study.uid}/series/{described.series_uid}"
    return attributes
