"""When the blob store cannot be written, a diagnosis is refused with a clear 503 and nothing
of it is kept; a blob is written whole (temporary name, fsync, rename) or not at all."""

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from dxserve.api.app import create_app
from dxserve.core.security.principal import Role
from dxserve.server import build_services
from dxserve.settings import Settings
from tests.api.conftest import auth
from tests.api.test_v1 import assert_problem, png


def test_an_unwritable_blob_store_is_a_503_and_keeps_nothing(
    tmp_path: Path, trained_repo: Path, phantom_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path, model_repository=trained_repo)
    with TestClient(create_app(build_services(settings))) as client:
        accounts = client.app.state.services.accounts  # type: ignore[attr-defined]
        accounts.create_tenant("clinic")
        key = accounts.create_key("clinic", Role.clinician)[1]
        headers = {**auth(key), "Content-Type": "image/png"}
        first = client.post("/v1/diagnoses", content=png(phantom_dir), headers=headers)
        assert first.status_code == 201
        shutil.rmtree(tmp_path / "blobs")
        (tmp_path / "blobs").write_text("a file where the blob store's folder should be")
        refused = client.post("/v1/diagnoses", content=png(phantom_dir, "normal"), headers=headers)
        assert_problem(refused, 503, "storage_unavailable")
        assert "blob store cannot be written" in refused.json()["detail"]
        listed = client.get("/v1/diagnoses", headers=auth(key)).json()["items"]
        assert [d["id"] for d in listed] == [first.json()["id"]]
    assert not list(tmp_path.glob("**/.tmp-*"))  # no half-written blob left behind
