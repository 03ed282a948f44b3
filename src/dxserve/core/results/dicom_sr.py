"""A diagnosis in DICOM: a Comprehensive 3D SR following TID 1500 (Measurement Report), and the
heatmap as a Secondary Capture image, both in the source study (built with highdicom).

UIDs derive from the diagnosis id, so the same diagnosis always yields the same objects.
A PNG or JPEG input has no study: it is first wrapped as a Secondary Capture image of a new
study, which the SR then references.
"""

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

from dxserve.core.intake.deidentify import PATIENT_AND_STUDY

if TYPE_CHECKING:  # imported where used: highdicom is 20 MiB of the server's start
    import highdicom as hd

MANUFACTURER = "dxserve"
NAMESPACE = uuid.UUID("0f3e7d52-4b0c-4a8e-9f61-6a3c2d1b7e90")


def uid(diagnosis_id: str, what: str) -> str:
    """A stable DICOM UID for ``what`` of one diagnosis: the 2.25 form of a name-based UUID
    (PS3.5 B.2)."""
    return f"2.25.{uuid.uuid5(NAMESPACE, f'{diagnosis_id}/{what}').int}"


@dataclass(frozen=True)
class ResultObject:
    """One DICOM object dxserve makes of a diagnosis, described without building it."""

    kind: str  # "sr" | "heatmap"
    sop_class_uid: str
    series_uid: str
    series_number: int
    sop_uid: str
    modality: str
    description: str


def result_objects(record: dict[str, Any]) -> list[ResultObject]:
    """The SR of a diagnosis and, when it was explained, its heatmap (an image's: an ECG's
    report is its FHIR bundle and its picture; no ECG SR, TID 3700, is built)."""
    if record.get("modality", "image") != "image":
        return []
    did = record["id"]
    objects = [
        ResultObject(
            "sr",
            Comprehensive3DSRStorage,
            uid(did, "sr-series"),
            901,
            uid(did, "sr"),
            "SR",
            f"dxserve {record['model']} {record['version']}: not for clinical use",
        )
    ]
    if record.get("explanation"):
        objects.append(
            ResultObject(
                "heatmap",
                SecondaryCaptureImageStorage,
                uid(did, "heatmap-series"),
                902,
                uid(did, "heatmap"),
                "OT",
                f"dxserve saliency ({record['explanation']['method']}): not for clinical use",
            )
        )
    return objects


def input_as_secondary_capture(record: dict[str, Any], frame: np.ndarray) -> Dataset:
    """A PNG/JPEG input as a Secondary Capture image of a new study (the SR's evidence)."""
    did = record["id"]
    created = dt.datetime.fromisoformat(record["created"])
    return _rgb_capture(
        frame,
        uid(did, "study"),
        uid(did, "input-series"),
        1,
        uid(did, "input"),
        study_date=created.date(),
        study_time=created.time(),
    )


def diagnosis_sr(record: dict[str, Any], source: Dataset) -> "hd.sr.Comprehensive3DSR":
    """The TID 1500 report of ``record``: heart disease present, absent or indeterminate, the
    probability, the algorithm (model name and version), referencing ``source``."""
    import highdicom as hd

    did = record["id"]
    algorithm = hd.sr.AlgorithmIdentification(
        name=record["model"],
        version=str(record["version"]),
        family=codes.DCM.ArtificialIntelligence,
        manufacturer=MANUFACTURER,
    )
    # The group's finding is heart disease; its evaluation: present, absent or indeterminate.
    evaluations = [hd.sr.QualitativeEvaluation(codes.SCT.HeartDisease, _presence(record))]
    measurements = []
    if record.get("probability") is not None:
        measurements.append(
            hd.sr.Measurement(
                name=codes.DCM.Probability,
                value=round(float(record["probability"]), 6),
                unit=codes.UCUM.NoUnits,
                algorithm_id=algorithm,
            )
        )
    frames = [f["index"] + 1 for f in record["frames"]] if "NumberOfFrames" in source else None
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(did, "tracking"), identifier=did),
        finding_type=codes.SCT.HeartDisease,
        algorithm_id=algorithm,
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(
                source.SOPClassUID, source.SOPInstanceUID, referenced_frame_numbers=frames
            )
        ],
    )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uid(f"{record['model']}:{record['version']}", "device"),
            name=f"{record['model']} {record['version']}",
            manufacturer_name=MANUFACTURER,
            model_name=record["model"],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.Echocardiography,
        imaging_measurements=[group],
    )
    described = result_objects(record)[0]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[_evidence(source)],
        content=report,
        series_instance_uid=described.series_uid,
        series_number=described.series_number,
        sop_instance_uid=described.sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,  # preliminary: a model's finding, not a verified report
    )
    sr.SeriesDescription = described.description
    return sr


def heatmap_secondary_capture(
    record: dict[str, Any], overlay: np.ndarray, source: Dataset
) -> "hd.sc.SCImage":
    """The rendered heatmap overlay (RGB) as a Secondary Capture image in the source study."""
    described = result_objects(record)[1]
    image = _rgb_capture(
        overlay,
        source.StudyInstanceUID,
        described.series_uid,
        described.series_number,
        described.sop_uid,
    )
    for keyword in PATIENT_AND_STUDY:  # as the source has them, unvalidated: not ours to fix
        if keyword in source:
            image[keyword] = source[keyword]
    image.SeriesDescription = described.description
    image.BurnedInAnnotation = "YES"  # the colour bar's and title's text
    return image


def _rgb_capture(
    pixels: np.ndarray, study: str, series: str, series_number: int, sop: str, **more: Any
) -> "hd.sc.SCImage":
    """An RGB Secondary Capture image (one instance of its series)."""
    import highdicom as hd

    return hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(pixels),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        study_instance_uid=study,
        series_instance_uid=series,
        series_number=series_number,
        sop_instance_uid=sop,
        instance_number=1,
        manufacturer=MANUFACTURER,
        patient_orientation=("L", "F"),
        **more,
    )


def _evidence(source: Dataset) -> Dataset:
    """What the SR needs of its source: identifiers, patient and study — no pixels. A name of
    one component gets its trailing caret (PS3.5 6.2.1.2), so that highdicom does not warn
    with the name in the message."""
    evidence = Dataset()
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                    "Modality", *PATIENT_AND_STUDY):  # fmt: skip
        if keyword in source:
            evidence[keyword] = source[keyword]
    for keyword in ("PatientName", "ReferringPhysicianName"):
        name = str(evidence.get(keyword) or "")
        if name and "^" not in name:
            setattr(evidence, keyword, f"{name}^")
    return evidence


def _presence(record: dict[str, Any]) -> Any:
    if not record.get("assessed", True) or record["label"] not in record["labels"]:
        return codes.SCT.Indeterminate
    return codes.SCT.Present if record["label"] == record["labels"][-1] else codes.SCT.Absent
