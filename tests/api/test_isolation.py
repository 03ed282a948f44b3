"""Tenant isolation, walked: every route of the OpenAPI schema, every method, called with each
of tenant B's keys on tenant A's resources. None may read A's data or change it."""

import datetime as dt
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from dxserve.core.results.dicom_sr import uid
from dxserve.core.security.principal import Role
from tests.api.conftest import auth
from tests.api.test_v1 import png, post_png

# Bodies that would be valid for the owner, so a refusal is isolation, not validation.
BODIES: dict[str, Any] = {
    "/v1/diagnoses/{diagnosis_id}/feedback": {"agree": False, "correct_label": "normal"},
    "/v1/admin/keys/{key_id}/rotate": {"grace_hours": 0},
    "/v1/admin/keys": {"role": "service"},
    "/v1/admin/tenants": {"name": "walker-made", "plan": "standard"},
    "/v1/admin/models/{name}/promotion": {"version": 2, "stage": "production"},
    "/v1/admin/models/{name}/versions/{version}/intended-use": {
        "intended_use": "Walker's own reading of apical views.",
        "evaluation": "tenant data",
    },
}


def test_no_route_lets_another_tenant_read_or_change_data(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    accounts = services.accounts
    # Tenant A: a diagnosis with a heatmap and feedback, keys, usage, audit events.
    made = post_png(client, keys["clinician"], png(phantom_dir), "?explain=true").json()
    feedback = (
        {"agree": True, "correct_label": made["label"]}
        if made["label"] != ("indeterminate")
        else {"agree": False, "correct_label": "normal"}
    )
    url = f"/v1/diagnoses/{made['id']}/feedback"
    assert client.post(url, json=feedback, headers=auth(keys["clinician"])).status_code == 201
    note = client.post(
        "/v1/notes",
        content=b"Patient: Walker Testerly  MRN: 771234\nNo chest pain. Possible pneumonia.",
        headers={**auth(keys["clinician"]), "Content-Type": "text/plain"},
    ).json()
    # A's labelled dataset and a fine-tuning job on it (queued: no worker runs here).
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in phantom_dir.rglob("*.png"):
            if path.parent.name in ("normal", "abnormal"):
                zipped.write(path, path.relative_to(phantom_dir).as_posix())
    dataset = client.post(
        "/v1/admin/datasets?name=walker-set",
        content=archive.getvalue(),
        headers={**auth(keys["admin"]), "Content-Type": "application/zip"},
    ).json()
    job = client.post(
        "/v1/admin/training-jobs",
        json={"base": "echo-cnn:1", "datasets": [dataset["id"]], "epochs": 1},
        headers=auth(keys["admin"]),
    ).json()
    BODIES["/v1/admin/training-jobs"] = {"base": "echo-cnn:1", "datasets": [dataset["id"]]}
    tenant_a = accounts.tenant_id("hospital-a")
    a_keys = accounts.list_keys(tenant_a)
    target_key = next(k["id"] for k in a_keys if k["role"] == "service")
    # Markers of A's data that B never sends: any of them in a response to B is a leak.
    secret_markers = {tenant_a, "hospital-a", made["input"]["sha256"], note["patient"], "Walker"}
    secret_markers |= {dataset["sha256"], "walker-set"}
    secret_markers |= {k["id"] for k in a_keys if k["id"] != target_key}
    before = {
        "diagnosis": client.get(f"/v1/diagnoses/{made['id']}", headers=auth(keys["admin"])).json(),
        "keys": accounts.list_keys(tenant_a),
        "model": client.get("/v1/models/echo-cnn", headers=auth(keys["admin"])).json()["feedback"],
    }

    accounts.create_tenant("hospital-c")  # B's keys of every role
    b_keys = {
        role: accounts.create_key("hospital-b", role)[1]
        for role in (Role.admin, Role.clinician, Role.service)
    }
    values = {
        "diagnosis_id": made["id"],
        "note_id": note["id"],
        "key_id": target_key,
        "month": dt.datetime.now(dt.UTC).strftime("%Y-%m"),
        "name": "echo-cnn",
        "version": "1",
        "dataset_id": dataset["id"],
        "job_id": job["id"],
        "study": uid(made["id"], "study"),  # A's results, as DICOMweb files them
        "series": uid(made["id"], "sr-series"),
        "sop": uid(made["id"], "sr"),
    }
    own = client.get(f"/dicomweb/studies/{values['study']}", headers=auth(keys["admin"]))
    assert own.status_code == 200  # A retrieves its results: B's 404s below are isolation
    schema = client.get("/openapi.json").json()
    walked: list[tuple[str, str, str, int]] = []
    for template, operations in schema["paths"].items():
        if template.startswith("/v2/repository/models"):
            continue  # platform-wide model control: forbidden to tenants, tested in test_v2
        path = template.format(**values)
        for method in operations:
            for role, token in b_keys.items():
                body = BODIES.get(template)
                headers = auth(token)
                content = None
                if template == "/v1/diagnoses":
                    headers["Content-Type"] = "image/png"
                    # B's own image: a response may carry the hash of what B itself sent
                    content = png(phantom_dir, "normal") if method == "post" else None
                for _ in range(5):  # over the plan's rate: wait as told, as a client does
                    response = client.request(
                        method.upper(),
                        path,
                        headers=headers,
                        json=body if content is None and method != "get" else None,
                        content=content,
                    )
                    if response.status_code != 429:
                        break
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                walked.append((method.upper(), template, role.value, response.status_code))
                assert response.status_code < 500, (method, template, response.text)
                text = response.text
                leaked = [m for m in secret_markers if m in text]
                assert not leaked, (method, template, role.value, leaked)
                retrieval = "{study}" in template and not template.endswith(
                    ("/series", "instances")
                )
                if method == "get" and retrieval:  # WADO-RS of A's results
                    assert response.status_code == 404, (template, role.value, response.text)
                owned = ("diagnosis_id", "key_id", "note_id", "dataset_id", "job_id")
                if any(f"{{{k}}}" in template for k in owned):
                    assert response.status_code in (403, 404), (
                        method,
                        template,
                        role.value,
                        response.text,
                    )

    # Nothing of A's changed.
    after_keys = accounts.list_keys(tenant_a)
    assert [(k["id"], k["revoked"], k["expires_at"]) for k in after_keys] == [
        (k["id"], k["revoked"], k["expires_at"]) for k in before["keys"]
    ]
    again = client.get(f"/v1/diagnoses/{made['id']}", headers=auth(keys["admin"])).json()
    assert again == before["diagnosis"]
    model = client.get("/v1/models/echo-cnn", headers=auth(keys["admin"])).json()
    assert model["feedback"] == before["model"]
    assert "walker-made" not in {t["name"] for t in accounts.tenants()}
    assert services.customisation.datasets.get(tenant_a, dataset["id"])["name"] == "walker-set"
    assert services.blobs.exists(dataset["sha256"])
    unchanged = services.customisation.jobs.get(tenant_a, job["id"])
    assert unchanged["status"] == "queued" and not unchanged["cancel_requested"]
    # The walk covered every route of the schema and every role of B.
    routes = {(m, t) for m, t, _, _ in walked}
    assert len(routes) == sum(
        len(ops) for t, ops in schema["paths"].items() if not t.startswith("/v2/repository/models")
    )
    assert len(walked) == 3 * len(routes)
    print(json.dumps(sorted({(m, t, s) for m, t, _, s in walked})))  # pytest -s: the walk
