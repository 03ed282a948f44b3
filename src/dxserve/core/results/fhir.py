"""A diagnosis as a FHIR R4 Bundle: DiagnosticReport → Observation → Device, ImagingStudy, Patient.

Built as plain JSON and validated with ``fhir.resources`` (its R4B models: R4 4.3, whose
resources used here are R4's), so an invalid report is never sent. Codes come only from
published systems (HL7 v2 0074, v3 ObservationInterpretation, UCUM, data-absent-reason); what
has no standard code (the model's finding) is a ``urn:dxserve`` code with its text.
"""

import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from dxserve.core.results.fhir_ecg import (
    EKG_STUDY,
    finding_observations,
    measurement_observations,
)

UCUM = "http://unitsofmeasure.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# uuid5 namespace of the resources made for one diagnosis: the same ids on every request.
NAMESPACE = uuid.UUID("6f1c1f0e-8a51-4d63-9a0b-2f7d0c3e9d11")


def _urn(diagnosis_id: str, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{diagnosis_id}/{kind}')}"


def _interpretation(record: dict[str, Any]) -> dict[str, Any]:
    label = record["label"]
    if not record.get("assessed", True) or label not in record["labels"]:
        code, display = "IND", "Indeterminate"
    elif label == record["labels"][-1]:  # the positive class: abnormal
        code, display = "A", "Abnormal"
    else:
        code, display = "N", "Normal"
    return {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}


def diagnosis_bundle(record: dict[str, Any]) -> dict[str, Any]:
    """The FHIR R4 collection Bundle of one stored diagnosis (validated)."""
    if record.get("modality") == "signal":
        return _ecg_bundle(record)
    did = record["id"]
    urls = {k: _urn(did, k) for k in ("report", "observation", "device", "study", "patient")}
    model = f"{record['model']} version {record['version']}"
    warning = record.get("warning") or ""
    refer = "yes" if record.get("refer_to_clinician") else "no"
    probability = record.get("probability")
    finding = {
        "coding": [
            {
                "system": "urn:dxserve:finding",
                "code": f"{record['model']}:{record['labels'][-1]}",
                "display": f"{record['labels'][-1]} (model finding of {record['model']})",
            }
        ],
        "text": f"{record['model']}: {record['labels'][-1]} vs {record['labels'][0]}",
    }
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "preliminary",
        "category": [
            {"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}
        ],
        "code": finding,
        "subject": {"reference": urls["patient"]},
        "issued": record["created"],
        "interpretation": [_interpretation(record)],
        "method": {"text": f"{model}: {record.get('aggregation', '')}".strip()},
        "device": {"reference": urls["device"], "display": model},
        "derivedFrom": [{"reference": urls["study"]}],
        "note": [
            {"text": f"threshold {record['threshold']}; refer to a clinician: {refer}"},
            *([{"text": warning}] if warning else []),
        ],
    }
    if probability is None:
        reason = "the input was refused as out of distribution"
        observation["dataAbsentReason"] = {
            "coding": [{"system": ABSENT, "code": "unsupported", "display": "Unsupported"}],
            "text": reason,
        }
    else:
        observation["valueQuantity"] = {
            "value": round(float(probability), 6),
            "unit": "1",
            "system": UCUM,
            "code": "1",
        }
    conclusion = (
        f"{record['label']}"
        + (f" (probability {probability:.3f})" if probability is not None else "")
        + f"; refer to a clinician: {refer}. {warning}"
    ).strip()
    report = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [
            {"coding": [{"system": V2_0074, "code": "CUS", "display": "Cardiac Ultrasound"}]}
        ],
        "code": finding,
        "subject": {"reference": urls["patient"]},
        "issued": record["created"],
        "result": [{"reference": urls["observation"]}],
        "imagingStudy": [{"reference": urls["study"]}],
        "conclusion": conclusion,
    }
    device = _device(record)
    source = record["input"]
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": {"reference": urls["patient"]},
        "identifier": [{"system": "urn:dxserve:input-sha256", "value": source["sha256"]}],
        "numberOfInstances": 1,
        "description": f"submitted {source['media_type']}, {len(record['frames'])} frame(s) read",
    }
    patient = {"resourceType": "Patient"}  # identity stays with the submitting system
    resources = {
        "report": report,
        "observation": observation,
        "device": device,
        "study": study,
        "patient": patient,
    }
    return _bundle(did, record["created"], urls, resources)


def _device(record: dict[str, Any]) -> dict[str, Any]:
    warning = record.get("warning") or ""
    device: dict[str, Any] = {
        "resourceType": "Device",
        "manufacturer": "dxserve",
        "deviceName": [{"name": record["model"], "type": "model-name"}],
        "version": [{"value": str(record["version"])}],
        "type": {"text": "AI model (software as a medical device candidate)"},
    }
    if warning:
        device["note"] = [{"text": warning}]
    return device


def _bundle(
    did: str, created: str, urls: dict[str, str], resources: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"system": "urn:dxserve:diagnosis", "value": did},
        "timestamp": created,
        "entry": [{"fullUrl": urls[k], "resource": r} for k, r in resources.items()],
    }
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 would reject
    return bundle


def _ecg_bundle(record: dict[str, Any]) -> dict[str, Any]:
    """An ECG's report: the rhythm statements and the measurements, each an Observation."""
    did = record["id"]
    urls = {k: _urn(did, k) for k in ("report", "device", "patient")}
    model = f"{record['model']} version {record['version']}"
    common = {
        "subject": {"reference": urls["patient"]},
        "issued": record["created"],
        "device": {"reference": urls["device"], "display": model},
    }
    observations = finding_observations(record, common) + measurement_observations(record, common)
    for i, observation in enumerate(observations):
        urls[f"observation-{i}"] = _urn(did, f"observation-{i}")
        if "note" not in observation and record.get("warning"):
            observation["note"] = [{"text": record["warning"]}]
    refer = "yes" if record.get("refer_to_clinician") else "no"
    probability = record.get("probability")
    report = {
        "resourceType": "DiagnosticReport",
        "status": "preliminary",
        "category": [{"coding": [{"system": V2_0074, "code": "EC", "display": "Electrocardiac"}]}],
        "code": {"coding": [EKG_STUDY], "text": "ECG interpretation by " + model},
        "subject": {"reference": urls["patient"]},
        "issued": record["created"],
        "result": [{"reference": urls[f"observation-{i}"]} for i in range(len(observations))],
        "conclusion": (
            f"{record['label']}"
            + (f" (probability {probability:.3f})" if probability is not None else "")
            + f"; refer to a clinician: {refer}. {record.get('warning') or ''}"
        ).strip(),
    }
    resources: dict[str, dict[str, Any]] = {"report": report}
    resources.update({f"observation-{i}": o for i, o in enumerate(observations)})
    resources["device"] = _device(record)
    resources["patient"] = {"resourceType": "Patient"}
    return _bundle(did, record["created"], urls, resources)
