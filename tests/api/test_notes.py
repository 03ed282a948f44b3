"""Clinical notes over HTTP: de-identified text, entities with assertions, ICD-10-CM codes, FHIR;
the original sealed for its owner; identifiers injected in every format the de-identifier
promises to catch appear nowhere at rest, in logs or in another tenant's answers."""

import base64
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle

from dxserve.api.app import create_app
from dxserve.core.text import known_words, medications, problems
from dxserve.observability import JsonFormatter
from dxserve.phantoms.notes.generate import notes
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth
from tests.api.test_deidentification import stored_files
from tests.on_ray import suite_settings


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, tagger_repo: Path) -> Iterator[Settings]:
    """The API's settings over a repository with a PHI tagger (conftest's has none)."""
    data = tmp_path_factory.mktemp("data")
    with suite_settings(Settings(data_dir=data, model_repository=tagger_repo)) as settings:
        yield settings


NOTE = """DISCHARGE SUMMARY
Zqxwv Memorial Hospital
Patient: Qorvath Belzinski   DOB: 03/14/1951   MRN: MRN80417263
Account: 5518830264
Admitted: 2024-02-11  Attending: Dr. Yxtrem Pallow

History of present illness: Mr. Belzinski presented with chest pain. Seen with his son
Dariusz Wroblewski. No fever. Possible
pneumonia. Mother had a stroke. History of atrial fibrillation.

Discharge medications:
- apixaban 5 mg PO twice daily
- metoprolol succinate 50 mg by mouth once daily

Follow-up: Call (617) 555-0187 or write to qbelz@zqxwv-mail.com. SSN 078-05-1120.
Lives at 4417 Quillfeather Lane, Boston, MA 02118.
"""
MARKERS = (
    "Zqxwv",
    "Qorvath",
    "Belzinski",
    "03/14/1951",
    "80417263",
    "5518830264",
    "2024-02-11",
    "Yxtrem",
    "Pallow",
    "555-0187",
    "qbelz",
    "078-05-1120",
    "Quillfeather",
    "02118",
    "Dariusz",
    "Wroblewski",
)


def post_note(client: TestClient, token: str, text: str, query: str = "") -> dict:
    made = client.post(
        f"/v1/notes{query}",
        content=text.encode(),
        headers={**auth(token), "Content-Type": "text/plain; charset=utf-8"},
    )
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == f"/v1/notes/{made.json()['id']}"
    return made.json()


def test_a_note_is_deidentified_and_analysed(client: TestClient, keys: dict[str, str]) -> None:
    record = post_note(client, keys["clinician"], NOTE)
    text = record["deidentified_text"]
    for marker in MARKERS:
        assert marker not in text, marker
    assert "not for clinical use" in record["warning"].lower()
    assert record["name_finder"] == "phi-tagger:1"  # names in running text are the tagger's
    entities = {e["text"].lower(): e for e in record["entities"]}
    assert entities["chest pain"]["assertion"] == "present"
    assert entities["chest pain"]["section"] == "history"
    assert entities["fever"]["assertion"] == "negated"
    assert entities["pneumonia"]["assertion"] == "possible"
    assert entities["stroke"]["assertion"] == "family"
    assert entities["atrial fibrillation"]["assertion"] == "historical"
    assert entities["apixaban"]["type"] == "medication"
    assert entities["apixaban"]["section"] == "medications"
    assert {"5 mg", "po", "twice daily"} <= set(entities)
    for entity in record["entities"]:  # offsets point into the de-identified text
        assert text[entity["start"] : entity["end"]] == entity["text"]
    codes = {c["code"]: c for c in record["codes"]}
    assert {"R07.9", "J18.9", "I48.91"} <= set(codes)
    assert not {"R50.9", "I63.9"} & set(codes)  # negated, a relative's: never coded
    assert codes["R07.9"]["evidence"][0]["text"] == "chest pain"
    assert 0 < codes["R07.9"]["score"] <= 1
    assert all(c["system"] == "http://hl7.org/fhir/sid/icd-10-cm" for c in record["codes"])

    again = client.get(f"/v1/notes/{record['id']}", headers=auth(keys["clinician"]))
    assert again.json() == record
    listed = client.get("/v1/notes", headers=auth(keys["clinician"])).json()["items"]
    assert record["id"] in [n["id"] for n in listed]


def test_fhir_bundle(client: TestClient, keys: dict[str, str]) -> None:
    record = post_note(client, keys["clinician"], NOTE)
    got = client.get(f"/v1/notes/{record['id']}/fhir", headers=auth(keys["clinician"]))
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/fhir+json")
    bundle = got.json()
    Bundle.model_validate(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    document = next(r for r in resources if r["resourceType"] == "DocumentReference")
    attached = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert attached == record["deidentified_text"]
    conditions = {
        r["code"]["text"].lower(): r for r in resources if r["resourceType"] == "Condition"
    }
    status = {k: c["verificationStatus"]["coding"][0]["code"] for k, c in conditions.items()}
    assert status["fever"] == "refuted"
    assert status["pneumonia"] == "provisional"
    assert status["chest pain"] == "confirmed"
    assert "stroke" not in conditions  # a relative's condition is not the patient's
    assert conditions["chest pain"]["code"]["coding"][0]["code"] == "R07.9"
    assert "coding" not in conditions["fever"]["code"]  # a refuted problem gets no code
    medications = [r for r in resources if r["resourceType"] == "MedicationStatement"]
    assert {m["medicationCodeableConcept"]["text"] for m in medications} == {
        "Apixaban",
        "Metoprolol",
    }
    assert any(m["dosage"][0]["text"] == "5 mg PO twice daily" for m in medications)


def test_fhir_documentreference_and_binary_in(client: TestClient, keys: dict[str, str]) -> None:
    data = base64.b64encode(NOTE.encode()).decode()
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"identifier": {"value": "MRN80417263"}},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": data}}],
    }
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": data}
    answers = []
    for resource in (document, binary):
        made = client.post(
            "/v1/notes",
            content=json.dumps(resource),
            headers={**auth(keys["clinician"]), "Content-Type": "application/fhir+json"},
        )
        assert made.status_code == 201, made.text
        answers.append(made.json())
    # The subject names the same patient as the note's MRN: the same stand-ins either way.
    assert answers[0]["deidentified_text"] == answers[1]["deidentified_text"]
    assert answers[0]["patient"] == answers[1]["patient"]


def test_tags_and_consistent_surrogates(client: TestClient, keys: dict[str, str]) -> None:
    tagged = post_note(client, keys["clinician"], NOTE, "?phi=tag")["deidentified_text"]
    assert "[MRN]" in tagged and "[PHONE]" in tagged and "[DATE]" in tagged
    first = post_note(client, keys["clinician"], NOTE)
    second = post_note(client, keys["clinician"], NOTE.replace("chest pain", "dyspnoea"))
    assert first["patient"] == second["patient"]
    assert (
        first["deidentified_text"].replace("chest pain", "dyspnoea") == second["deidentified_text"]
    )
    # Dates move by the patient's offset, in their own format: the stay's interval survives.
    dates = re.findall(r"DOB: (\S+).*?Admitted: (\S+)", first["deidentified_text"], re.S)[0]
    birth = dt.datetime.strptime(dates[0], "%m/%d/%Y")
    admitted = dt.datetime.strptime(dates[1], "%Y-%m-%d")
    assert admitted - birth == dt.datetime(2024, 2, 11) - dt.datetime(1951, 3, 14)
    other = post_note(client, keys["other"], NOTE)  # another tenant: other stand-ins
    assert other["deidentified_text"] != first["deidentified_text"]
    assert other["patient"] != first["patient"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"", "text/plain", 400),
        (b"   \n", "text/plain; charset=utf-8", 400),
        (b"\xff\xfe bad", "text/plain", 400),
        ("Patient note".encode("utf-16"), "text/plain; charset=utf-16", 415),
        (b"a note", "application/pdf", 415),
        (b"{not json", "application/fhir+json", 400),
        (b'{"resourceType": "Patient"}', "application/fhir+json", 400),
        (
            b'{"resourceType": "Binary", "contentType": "text/plain", "data": "!!"}',
            "application/fhir+json",
            400,
        ),
        (
            b'{"resourceType": "Binary", "contentType": "image/png", "data": "aGk="}',
            "application/fhir+json",
            415,
        ),
        (b"x" * 100_001, "text/plain", 400),
    ],
)
def test_bad_notes_are_refused_clearly(
    client: TestClient, keys: dict[str, str], body: bytes, content_type: str, status: int
) -> None:
    got = client.post(
        "/v1/notes", content=body, headers={**auth(keys["clinician"]), "Content-Type": content_type}
    )
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/problem+json"
    assert "!!" not in got.text  # the input is never echoed


def test_other_tenants_and_roles(client: TestClient, keys: dict[str, str]) -> None:
    record = post_note(client, keys["clinician"], NOTE)
    nid = record["id"]
    for suffix in ("", "/fhir", "/original"):
        assert (
            client.get(f"/v1/notes/{nid}{suffix}", headers=auth(keys["other"])).status_code == 404
        )
    assert nid not in client.get("/v1/notes", headers=auth(keys["other"])).text
    original = client.get(f"/v1/notes/{nid}/original", headers=auth(keys["clinician"]))
    assert original.status_code == 200 and original.text == NOTE
    assert original.headers["cache-control"] == "no-store"
    assert client.post("/v1/notes", content=b"x").status_code == 401


def test_phantom_notes_round_trip(client: TestClient, keys: dict[str, str]) -> None:
    """Every kind of phantom note is accepted and its format-bound identifiers are gone."""
    for note in notes(6, 5, held_out=True):
        record = post_note(client, keys["service"], note.text)
        for span in note.phi:
            if span.label in ("MRN", "PHONE", "EMAIL", "DATE", "SSN", "URL", "IP", "ZIP"):
                assert note.text[span.start : span.end] not in record["deidentified_text"]


def test_the_tagger_over_the_open_inference_protocol(
    client: TestClient, keys: dict[str, str]
) -> None:
    from dxserve.core.text.token_features import featurize

    meta = client.get("/v2/models/phi-tagger", headers=auth(keys["service"])).json()
    assert meta["inputs"] == [{"name": "tokens", "datatype": "INT64", "shape": [-1, 128, 14]}]
    _, windows = featurize("Thank you for referring Maria Kowalski.")
    body = {
        "inputs": [
            {
                "name": "tokens",
                "datatype": "INT64",
                "shape": list(windows.shape),
                "data": windows.ravel().tolist(),
            }
        ]
    }
    got = client.post("/v2/models/phi-tagger/infer", json=body, headers=auth(keys["service"]))
    assert got.status_code == 200, got.text
    outputs = {o["name"]: o for o in got.json()["outputs"]}
    assert outputs["probability"]["shape"] == [1, 128]


def test_the_lexicons_are_built_before_the_service_is_ready(
    tmp_path: Path, tagger_repo: Path
) -> None:
    """Where notes are served, the first note does not pay for the ICD-10-CM and drug lists."""
    problems.lexicon.cache_clear()
    medications.drug_finder.cache_clear()
    known_words.not_names.cache_clear()
    settings = Settings(data_dir=tmp_path, model_repository=tagger_repo)
    with TestClient(create_app(build_services(settings))) as started:
        assert started.get("/v2/health/ready").status_code == 200
        assert problems.lexicon.cache_info().currsize == 1
        assert medications.drug_finder.cache_info().currsize == 1
        assert known_words.not_names.cache_info().currsize == 1


def test_no_injected_identifier_is_at_rest_or_logged(
    client: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    post_note(client, keys["clinician"], NOTE)
    services = client.app.state.services  # type: ignore[attr-defined]
    services.close_stores()
    at_rest = [p.read_bytes() for p in stored_files(services.settings.data_dir)]
    logs = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for marker in MARKERS:
        assert not any(marker.encode() in raw for raw in at_rest), f"{marker} in a file at rest"
        assert marker not in logs, f"{marker} in the logs"
