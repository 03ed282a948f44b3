"""PHI injection: a distinct identifier in every attribute of PS3.15 Table E.1-1 (and in a
private tag, and burned into the pixels outside the ultrasound region) must not survive in
anything stored (database, blobs, logs) or returned to another tenant; the owner's own SR
points at its own patient and study again."""

import datetime as dt
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dxserve.api.app import create_app
from dxserve.core.intake.deidentify import TABLE
from dxserve.core.security.principal import Role
from dxserve.observability import JsonFormatter
from dxserve.phantoms.dicom import FakePatient, us_dataset
from dxserve.phantoms.study import make_study
from dxserve.server import build_services
from dxserve.services import Services
from dxserve.settings import Settings
from tests.api.conftest import auth

TEXT_VRS = {"LO", "SH", "PN", "ST", "LT", "UT", "UC", "CS", "AE", "UR"}
BINARY_VRS = {"OB", "UN", "OW"}
NUMERIC = {"US": 7, "SS": 7, "UL": 7, "SL": 7, "IS": "7", "DS": "7.5", "FL": 7.5, "FD": 7.5}
BAND = 24  # rows of burned-in text below the imaging region
HIDDEN_NAME = "ZQXJV BURNED"


class Injected:
    """What was injected: string markers (must appear nowhere), and every attribute's value."""

    def __init__(self) -> None:
        self.markers: list[str] = []
        self.values: dict[BaseTag, object] = {}
        self.dates: dict[BaseTag, str] = {}

    def marker(self, kind: str = "") -> str:
        text = f"PHI{len(self.markers):04d}{kind}"
        self.markers.append(text)
        return text

    def uid(self) -> str:
        value = f"1.2.826.0.1.3680043.10.999.{len(self.markers) + 1000}"
        self.markers.append(value)
        return value


def inject(dataset: Dataset, injected: Injected) -> None:
    """A distinct value in every attribute of the table that the dictionary (or the table's
    newer release) lets us write; times excepted (the Longitudinal option keeps them)."""
    day = dt.date(1931, 1, 1)
    for tag in sorted(TABLE):
        if tag.group in (0x0000, 0x0002, 0x0004):
            continue  # command, file meta and DICOMDIR groups are not in a stored dataset
        vr = dictionary_VR(tag) if dictionary_has_tag(tag) else "LO"
        if vr in TEXT_VRS:
            value: object = injected.marker("^X" if vr == "PN" else "")
            if vr == "UR":
                value = f"https://example.org/{value}"
        elif vr == "UI":
            value = injected.uid()
        elif vr in ("DA", "DT"):
            day += dt.timedelta(days=37)
            value = f"{day:%Y%m%d}" + ("101500" if vr == "DT" else "")
            injected.dates[tag] = str(value)
        elif vr in BINARY_VRS:
            value = injected.marker().encode()
        elif vr == "SQ":
            item = Dataset()
            item.PersonName = injected.marker("^SEQ")
            item.ReferencedSOPInstanceUID = injected.uid()
            value = Sequence([item])
        elif vr == "AS":
            value = "047Y"
        elif vr in NUMERIC:
            value = NUMERIC[vr]
        else:
            continue  # TM, and the ambiguous "US or SS"-style VRs
        dataset.add_new(tag, vr, value)
        injected.values[tag] = value
    block = dataset.private_block(0x0009, "ACME PHI", create=True)
    block.add_new(0x01, "LO", injected.marker("PRIVATE"))


def study_with_phi(injected: Injected) -> tuple[bytes, Dataset]:
    """A 3-frame phantom echo whose every table attribute carries injected PHI, with a name
    burned into a band below its ultrasound region."""
    rng = np.random.default_rng(11)
    frames = make_study(seed=11, index=1, size=128, frames=3).frames
    band = Image.new("L", (frames.shape[2], BAND))
    ImageDraw.Draw(band).text((2, 6), HIDDEN_NAME, fill=255)
    screen = np.concatenate(
        [frames, np.broadcast_to(np.asarray(band), (3, BAND, frames.shape[2]))], axis=1
    )
    dataset = us_dataset(screen, FakePatient.random(rng), rng)
    region = dataset.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMaxY1 = frames.shape[1] - 1  # the image only, not the band
    inject(dataset, injected)
    dataset.Modality, dataset.Rows = "US", screen.shape[1]  # not in the table: kept
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue(), dataset


@pytest.fixture
def app(tmp_path: Path, trained_repo: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", model_repository=trained_repo)
    with TestClient(create_app(build_services(settings))) as client:
        yield client


def services(client: TestClient) -> Services:
    return client.app.state.services  # type: ignore[attr-defined, no-any-return]


def stored_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file():
            yield path


def test_no_injected_phi_survives(app: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    svc = services(app)
    svc.accounts.create_tenant("owner")
    svc.accounts.create_tenant("stranger")
    owner = svc.accounts.create_key("owner", Role.clinician)[1]
    stranger = svc.accounts.create_key("stranger", Role.clinician)[1]
    injected = Injected()
    body, original = study_with_phi(injected)
    assert len(injected.markers) > 400  # every table attribute the dictionary lets us write

    caplog.set_level(logging.DEBUG)
    made = app.post(
        "/v1/diagnoses?explain=true",
        content=body,
        headers={**auth(owner), "Content-Type": "application/dicom"},
    )
    assert made.status_code == 201, made.text
    did = made.json()["id"]

    # What is stored: the de-identified object …
    stored = pydicom.dcmread(io.BytesIO(svc.blobs.get(made.json()["input"]["sha256"])))
    assert stored.PatientIdentityRemoved == "YES" and stored.BurnedInAnnotation == "NO"
    codes = {item.CodeValue for item in stored.DeidentificationMethodCodeSequence}
    assert {"113100", "113101", "113107"} <= codes
    for tag, value in injected.values.items():
        if tag in stored:
            assert stored[tag].value != value, f"{tag} kept its injected value"
    shift = dt.datetime.strptime(stored.StudyDate, "%Y%m%d") - dt.datetime.strptime(
        original.StudyDate, "%Y%m%d"
    )
    assert dt.timedelta(days=-3650) <= shift < dt.timedelta(0)
    birth = stored.PatientBirthDate
    assert birth == f"{dt.datetime.strptime(original.PatientBirthDate, '%Y%m%d') + shift:%Y%m%d}"
    # … its pixels: the band below the region is black, the region as it was.
    pixels, sent = stored.pixel_array, original.pixel_array
    image_rows = original.SequenceOfUltrasoundRegions[0].RegionLocationMaxY1 + 1
    assert not pixels[:, image_rows:].any()
    assert sent[:, image_rows:].max() > 200  # the name was there
    np.testing.assert_array_equal(pixels[:, :image_rows], sent[:, :image_rows])

    # Another tenant gets nothing; the owner's SR points at its own patient and study.
    for suffix in ("", "/sr.dcm", "/heatmap.dcm", "/fhir", "/heatmap.png"):
        assert app.get(f"/v1/diagnoses/{did}{suffix}", headers=auth(stranger)).status_code == 404
    assert did not in app.get("/v1/diagnoses", headers=auth(stranger)).text
    sr = pydicom.dcmread(
        io.BytesIO(app.get(f"/v1/diagnoses/{did}/sr.dcm", headers=auth(owner)).content)
    )
    assert sr.StudyInstanceUID == original.StudyInstanceUID
    assert sr.PatientID == original.PatientID and sr.PatientName == original.PatientName
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == original.SeriesInstanceUID
    instance = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert instance.ReferencedSOPInstanceUID == original.SOPInstanceUID

    # Nothing at rest holds a marker: every blob opened, the database's files, the blob files.
    svc.close_stores()  # commit what the ledger's writers (refusals' audit events) still hold
    data_dir = svc.settings.data_dir
    opened = [svc.blobs.get(d) for d in svc.blobs.digests()]
    at_rest = [p.read_bytes() for p in stored_files(data_dir)]
    logs = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    for marker in injected.markers:
        needle = marker.encode()
        assert not any(needle in blob for blob in opened), f"{marker} in a stored blob"
        assert not any(needle in raw for raw in at_rest), f"{marker} in a file at rest"
        assert marker not in logs, f"{marker} in the logs"
    assert HIDDEN_NAME.encode() not in b"".join(opened)


def test_pseudonyms_are_per_tenant_and_stable(app: TestClient) -> None:
    """The same study sent twice by one tenant lands in one pseudonymous study; sent by
    another tenant, in another."""
    svc = services(app)
    svc.accounts.create_tenant("twice")
    svc.accounts.create_tenant("elsewhere")
    sent: dict[str, list[str]] = {"twice": [], "elsewhere": []}
    body, _ = study_with_phi(Injected())
    for tenant, times in (("twice", 2), ("elsewhere", 1)):
        key = svc.accounts.create_key(tenant, Role.clinician)[1]
        for _ in range(times):
            made = app.post(
                "/v1/diagnoses",
                content=body,
                headers={**auth(key), "Content-Type": "application/dicom"},
            )
            assert made.status_code == 201, made.text
            stored = svc.blobs.get(made.json()["input"]["sha256"])
            sent[tenant].append(pydicom.dcmread(io.BytesIO(stored)).StudyInstanceUID)
    assert sent["twice"][0] == sent["twice"][1] != sent["elsewhere"][0]
