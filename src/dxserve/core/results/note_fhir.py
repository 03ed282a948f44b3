"""A clinical note's analysis as a FHIR R4 Bundle: the de-identified note as a DocumentReference,
each problem the note asserts as a Condition (ICD-10-CM coded where a code was suggested;
``refuted`` when negated, ``provisional`` when possible), each medication as a
MedicationStatement — all about the pseudonymous Patient. Validated with ``fhir.resources``."""

import base64
import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from dxserve.core.text.analysis import ICD_10_CM

NAMESPACE = uuid.UUID("1d0b8f5e-3f0a-4a53-8d7e-5c2b9a7e4f21")
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
LOINC = "http://loinc.org"
VERIFIED = {  # a problem's assertion → Condition.verificationStatus
    "present": "confirmed",
    "historical": "confirmed",
    "possible": "provisional",
    "negated": "refuted",
}
NOT_CONDITIONS = frozenset({"family", "hypothetical"})  # not the patient's, or not yet


def _urn(note_id: str, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{note_id}/{kind}')}"


def note_bundle(record: dict[str, Any]) -> dict[str, Any]:
    """The FHIR R4 collection Bundle of one stored note analysis (validated)."""
    nid = record["id"]
    urls = {k: _urn(nid, k) for k in ("document", "patient")}
    subject = {"reference": urls["patient"]}
    text = record["deidentified_text"]
    resources: dict[str, dict[str, Any]] = {
        "patient": {
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:dxserve:pseudonymous-patient", "value": record["patient"]}
            ],
        },
        "document": {
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "preliminary",
            "type": {"coding": [{"system": LOINC, "code": "11506-3", "display": "Progress note"}]},
            "subject": subject,
            "date": record["created"],
            "description": f"De-identified by {record['model']} version {record['version']}. "
            + record["warning"],
            "securityLabel": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                            "code": "PSEUDED",
                            "display": "pseudonymized",
                        }
                    ]
                }
            ],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain; charset=utf-8",
                        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                    }
                }
            ],
        },
    }
    codes: dict[tuple[int, int], dict[str, Any]] = {}  # each problem's best code
    for code in record["codes"]:  # best first
        for evidence in code["evidence"]:
            codes.setdefault((evidence["start"], evidence["end"]), code)
    for k, entity in enumerate(record["entities"]):
        if entity["type"] == "problem" and entity.get("assertion") not in NOT_CONDITIONS:
            resources[f"condition-{k}"] = _condition(entity, codes, subject, urls, record)
        elif entity["type"] == "medication" and entity.get("assertion") != "negated":
            resources[f"medication-{k}"] = _medication(entity, record["entities"], subject, urls)
    for key in resources:
        urls.setdefault(key, _urn(nid, key))
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "identifier": {"system": "urn:dxserve:note", "value": nid},
        "timestamp": record["created"],
        "entry": [{"fullUrl": urls[k], "resource": r} for k, r in resources.items()],
    }
    Bundle.model_validate(bundle)  # raises on anything FHIR R4 would reject
    return bundle


def _condition(
    entity: dict[str, Any],
    codes: dict[tuple[int, int], dict[str, Any]],
    subject: dict[str, str],
    urls: dict[str, str],
    record: dict[str, Any],
) -> dict[str, Any]:
    status = VERIFIED.get(entity.get("assertion", "present"), "unconfirmed")
    code: dict[str, Any] = {"text": entity["text"]}
    suggested = codes.get((entity["start"], entity["end"]))
    if suggested is not None:
        code["coding"] = [
            {"system": ICD_10_CM, "code": suggested["code"], "display": suggested["description"]}
        ]
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": status}]},
        "code": code,
        "subject": subject,
        "evidence": [{"detail": [{"reference": urls["document"]}]}],
        "note": [
            {
                "text": f"Found at characters {entity['start']}–{entity['end']} of the note "
                f"({entity['section']}, {entity.get('assertion', 'present')}); suggested by "
                f"{record['model']} version {record['version']}. {record['warning']}"
            }
        ],
    }
    if status != "refuted":
        clinical = "resolved" if entity.get("assertion") == "historical" else "active"
        condition["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": clinical}]}
    return condition


def _medication(
    entity: dict[str, Any],
    entities: list[dict[str, Any]],
    subject: dict[str, str],
    urls: dict[str, str],
) -> dict[str, Any]:
    after = entities[entities.index(entity) + 1 :]
    attributes: dict[str, str] = {}
    for other in after:
        if other["type"] not in ("strength", "dosage", "route", "frequency"):
            break
        attributes.setdefault(other["type"], other["text"])
    dosage = " ".join(
        attributes[k] for k in ("strength", "dosage", "route", "frequency") if k in attributes
    )
    statement: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "status": "active" if entity.get("assertion") != "historical" else "completed",
        "medicationCodeableConcept": {"text": entity.get("normalized") or entity["text"]},
        "subject": subject,
        "derivedFrom": [{"reference": urls["document"]}],
    }
    if dosage:
        statement["dosage"] = [{"text": dosage}]
    return statement
