"""The ECG parts of a diagnosis's FHIR R4 Bundle: one Observation a rhythm statement (its
calibrated probability, present or absent) and one a measurement (heart rate, RR, PR, QRS, QT,
QTc by Bazett and by Fridericia), coded in LOINC and in ISO/IEEE 11073 MDC (the codes of DICOM's
CID 3687–3689 and 3227), in UCUM units; a measurement that could not be made carries a
data-absent reason with its text."""

from typing import Any

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"
ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
EKG_STUDY = {"system": LOINC, "code": "11524-6", "display": "EKG study"}
# measurement key → LOINC code, MDC context-free code, display, UCUM unit
MEASURES: dict[str, tuple[str | None, str, str, str]] = {
    "heart_rate": ("8867-4", "147842", "Heart rate", "/min"),
    "rr_ms": (None, "147072", "RR time period, global", "ms"),
    "pr_ms": ("8625-6", "146944", "P-R interval", "ms"),
    "qrs_ms": ("8633-0", "147228", "QRS duration", "ms"),
    "qt_ms": ("8634-8", "147232", "Q-T interval", "ms"),
    "qtc_bazett_ms": ("8636-3", "146952", "Q-T interval corrected (Bazett)", "ms"),
    "qtc_fridericia_ms": ("8636-3", "146964", "Q-T interval corrected (Fridericia)", "ms"),
}


def _category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}]


def measurement_observations(
    record: dict[str, Any], common: dict[str, Any]
) -> list[dict[str, Any]]:
    """An Observation a measurement of ``record`` (``common``: subject, device, issued)."""
    measured = (record.get("measurements") or {}).get("ecg-intervals") or {}
    method = measured.get("method", "")
    out = []
    for key, (loinc, mdc, display, unit) in MEASURES.items():
        if key not in measured:
            continue
        coding = [{"system": MDC, "code": mdc, "display": display}]
        if loinc:
            coding.insert(0, {"system": LOINC, "code": loinc, "display": display})
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "preliminary",
            "category": _category("procedure", "Procedure"),
            "code": {"coding": coding, "text": display},
            **common,
            "method": {"text": method},
        }
        value = measured[key]
        if value.get("value") is None:
            observation["dataAbsentReason"] = {
                "coding": [{"system": ABSENT, "code": "not-performed", "display": "Not Performed"}],
                "text": value.get("absent_reason", "not measurable"),
            }
        else:
            observation["valueQuantity"] = {
                "value": value["value"],
                "unit": unit,
                "system": UCUM,
                "code": unit,
            }
        out.append(observation)
    return out


def finding_observations(record: dict[str, Any], common: dict[str, Any]) -> list[dict[str, Any]]:
    """An Observation a statement the model answers (present or absent, its probability)."""
    out = []
    for finding in record.get("findings") or []:
        present = finding["present"]
        unsure = finding.get("refer_to_clinician")
        code, display = (
            ("IND", "Indeterminate")
            if unsure
            else (("POS", "Positive") if present else ("NEG", "Negative"))
        )
        out.append(
            {
                "resourceType": "Observation",
                "status": "preliminary",
                "category": _category("procedure", "Procedure"),
                "code": {
                    "coding": [
                        {
                            "system": "urn:dxserve:finding",
                            "code": f"{record['model']}:{finding['label']}",
                            "display": finding["label"].replace("_", " "),
                        }
                    ],
                    "text": finding["label"].replace("_", " "),
                },
                **common,
                "interpretation": [
                    {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}
                ],
                "valueQuantity": {
                    "value": round(float(finding["probability"]), 6),
                    "unit": "1",
                    "system": UCUM,
                    "code": "1",
                },
                "note": [{"text": f"threshold {finding['threshold']}; calibrated probability"}],
            }
        )
    return out
