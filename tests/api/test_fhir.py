"""GET /v1/diagnoses/{id}/fhir: a FHIR R4 Bundle that fhir.resources accepts, resource by
resource, with the diagnosis's values and references that resolve inside the bundle."""

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from PIL import Image

from tests.api.conftest import auth
from tests.api.test_v1 import png, post_png

MODELS = {
    "DiagnosticReport": DiagnosticReport,
    "Observation": Observation,
    "Device": Device,
    "ImagingStudy": ImagingStudy,
    "Patient": Patient,
}


def test_fhir_bundle_of_a_diagnosis(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    made = post_png(client, keys["clinician"], png(phantom_dir)).json()
    response = client.get(f"/v1/diagnoses/{made['id']}/fhir", headers=auth(keys["clinician"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/fhir+json"
    bundle = response.json()
    Bundle.model_validate(bundle)
    resources = {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}
    assert set(resources) == set(MODELS)
    for kind, resource in resources.items():
        MODELS[kind].model_validate(resource)
    urls = {e["resource"]["resourceType"]: e["fullUrl"] for e in bundle["entry"]}

    report, observation = resources["DiagnosticReport"], resources["Observation"]
    assert report["status"] == observation["status"] == "preliminary"
    assert report["result"] == [{"reference": urls["Observation"]}]
    assert report["imagingStudy"] == [{"reference": urls["ImagingStudy"]}]
    assert report["subject"]["reference"] == urls["Patient"]
    assert report["issued"] == made["created"]
    assert "Not for clinical use" in report["conclusion"]
    assert observation["valueQuantity"]["value"] == round(made["probability"], 6)
    assert observation["valueQuantity"]["unit"] == "1"
    assert observation["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    interpretation = observation["interpretation"][0]["coding"][0]["code"]
    assert interpretation == {"abnormal": "A", "normal": "N", "indeterminate": "IND"}[made["label"]]
    assert observation["device"]["reference"] == urls["Device"]
    assert observation["derivedFrom"] == [{"reference": urls["ImagingStudy"]}]
    device = resources["Device"]
    assert device["manufacturer"] == "dxserve"
    assert device["deviceName"][0]["name"] == "echo-cnn" and device["version"][0]["value"] == "1"
    assert resources["ImagingStudy"]["identifier"][0]["value"] == made["input"]["sha256"]
    assert resources["Patient"] == {"resourceType": "Patient"}
    again = client.get(f"/v1/diagnoses/{made['id']}/fhir", headers=auth(keys["clinician"]))
    assert again.json() == bundle  # stable ids: the same report every time
    other = client.get(f"/v1/diagnoses/{made['id']}/fhir", headers=auth(keys["other"]))
    assert other.status_code == 404


def test_fhir_of_a_study_not_assessed_has_no_value(
    client: TestClient, keys: dict[str, str]
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    made = post_png(client, keys["clinician"], out.getvalue()).json()
    assert made["assessed"] is False
    bundle = client.get(f"/v1/diagnoses/{made['id']}/fhir", headers=auth(keys["clinician"])).json()
    observation = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    assert "valueQuantity" not in observation
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "unsupported"
    assert observation["interpretation"][0]["coding"][0]["code"] == "IND"
