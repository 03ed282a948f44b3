"""A corpus of hostile and malformed inputs: each refused with a clear 4xx problem (never a
500), and the server healthy afterwards."""

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from tests.api.conftest import auth
from tests.api.test_v1 import PROBLEM, png, post_png


def dicom_file(name: str) -> bytes:
    return Path(str(get_testdata_file(name, download=False))).read_bytes()


def dicom_with(name: str, **elements: object) -> bytes:
    """A pydicom test file with some elements overwritten (e.g. impossible dimensions)."""
    dataset = dcmread(io.BytesIO(dicom_file(name)))
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def dicom_without_pixels(name: str) -> bytes:
    dataset = dcmread(io.BytesIO(dicom_file(name)))
    del dataset.PixelData
    out = io.BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def png_bomb() -> bytes:
    """30 000 × 30 000 pixels (900 MP) in a few hundred kilobytes."""
    out = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(out, "PNG", optimize=True)
    return out.getvalue()


def image_as(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 90, 90)).save(out, fmt)
    return out.getvalue()


YBR = "examples_ybr_color.dcm"  # a real multi-frame ultrasound
CORPUS: dict[str, tuple[Callable[[], bytes], str, set[int]]] = {
    "empty body": (lambda: b"", "image/png", {400}),
    "text as PNG": (lambda: b"hello" * 100, "image/png", {415}),
    "PNG truncated": (lambda: image_as("PNG")[:60], "image/png", {400, 415}),
    "PNG decompression bomb": (png_bomb, "image/png", {413}),
    "TIFF sent as PNG": (lambda: image_as("TIFF"), "image/png", {415}),
    "GIF sent as JPEG": (lambda: image_as("GIF"), "image/jpeg", {415}),
    "BMP sent as PNG": (lambda: image_as("BMP"), "image/png", {415}),
    "DICOM preamble only": (lambda: dicom_file(YBR)[:132], "application/dicom", {400, 415}),
    "DICOM cut mid-header": (lambda: dicom_file(YBR)[:400], "application/dicom", {400, 415}),
    "DICOM cut mid-pixels": (
        lambda: dicom_file(YBR)[: len(dicom_file(YBR)) // 2],
        "application/dicom",
        {400, 415},
    ),
    "DICOM pixels overwritten with noise": (
        lambda: dicom_file(YBR)[:2000] + np.random.default_rng(0).bytes(50_000),
        "application/dicom",
        {400, 415},
    ),
    "DICOM declaring 65535 x 65535": (
        lambda: dicom_with(YBR, Rows=65535, Columns=65535),
        "application/dicom",
        {413, 415},
    ),
    "DICOM declaring a million frames": (
        lambda: dicom_with(YBR, NumberOfFrames=1_000_000),
        "application/dicom",
        {413, 415},
    ),
    "DICOM with no pixel data (SR)": (
        lambda: dicom_file("test-SR.dcm"),
        "application/dicom",
        {422},  # refused as modality SR
    ),
    "ultrasound DICOM with no pixel data": (
        lambda: dicom_without_pixels(YBR),
        "application/dicom",
        {415},
    ),
    "DICOM declaring explicit VR but compressed": (
        lambda: _relabelled(dicom_file(YBR)),
        "application/dicom",
        {400, 415},
    ),
}


def _relabelled(data: bytes) -> bytes:
    dataset = dcmread(io.BytesIO(data))
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    dataset.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize("case", list(CORPUS))
def test_bad_images_are_clear_4xx(client: TestClient, keys: dict[str, str], case: str) -> None:
    make, media, expected = CORPUS[case]
    response = client.post(
        "/v1/diagnoses", content=make(), headers={**auth(keys["service"]), "Content-Type": media}
    )
    assert response.status_code in expected, (case, response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["detail"]


def test_bad_requests_around_the_image(
    client: TestClient, keys: dict[str, str], phantom_dir: Path, tmp_path: Path
) -> None:
    key = auth(keys["service"])
    image = png(phantom_dir)
    for content_type in ("text/plain", "application/json", "image/gif", ""):
        response = client.post(
            "/v1/diagnoses", content=image, headers={**key, "Content-Type": content_type}
        )
        assert response.status_code == 415, content_type
    # a multipart file name is never a path: nothing is written where it points
    name = "../../../../" + str(tmp_path / "escaped.png")
    files = {"file": (name, image, "image/png")}
    assert client.post("/v1/diagnoses", files=files, headers=key).status_code == 201
    assert not (tmp_path / "escaped.png").exists()
    missing = client.post("/v1/diagnoses", files={"other": ("a", image)}, headers=key)
    assert missing.status_code == 400
    garbage = client.post(
        "/v1/diagnoses",
        content=b"--x\r\nnot multipart",
        headers={**key, "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert garbage.status_code == 400
    too_big = client.post(
        "/v1/diagnoses", content=b"0" * (3 << 20), headers={**key, "Content-Type": "image/png"}
    )
    assert too_big.status_code == 413
    for query in ("?limit=0", "?limit=100000", "?cursor=" + "x" * 500, "?cursor=%ff%fe"):
        response = client.get(f"/v1/diagnoses{query}", headers=key)
        assert response.status_code in (400, 422), query


def test_hostile_json(client: TestClient, keys: dict[str, str], phantom_dir: Path) -> None:
    clinician = auth(keys["clinician"])
    made = post_png(client, keys["clinician"], png(phantom_dir)).json()
    url = f"/v1/diagnoses/{made['id']}/feedback"
    deep = "[" * 100_000 + "]" * 100_000
    for body in (
        deep,
        '{"agree": ' + deep + "}",
        "{" * 50_000,
        '{"agree": true, "x": 1}',
        json.dumps({"agree": True, "comment": "x" * 10_000}),
        "\xff\xfe",
        "null",
    ):
        response = client.post(
            url, content=body, headers={**clinician, "Content-Type": "application/json"}
        )
        assert response.status_code in (400, 422), (body[:20], response.status_code)
        assert response.headers["content-type"] == PROBLEM
    service = auth(keys["service"])
    infer = "/v2/models/echo-cnn/infer"

    def tensor(shape: list[int], data: object) -> str:
        spec = {"name": "image", "datatype": "FP32", "shape": shape, "data": data}
        return json.dumps({"inputs": [spec]})

    for body in (
        deep,
        tensor([10**9] * 4, []),
        tensor([2**62, 2**62], [1]),
        tensor([1, 3, 128, 128], deep),
        tensor([-1], []),
    ):
        response = client.post(infer, content=body, headers=service)
        assert response.status_code == 400, (body[:40], response.status_code, response.text[:200])
        assert set(response.json()) == {"error"}
    huge_header = {**service, "Inference-Header-Content-Length": "99999999999999999999"}
    assert client.post(infer, content=b"{}", headers=huge_header).status_code == 400


def test_still_healthy_after_the_corpus(
    client: TestClient, keys: dict[str, str], phantom_dir: Path
) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    assert post_png(client, keys["clinician"], png(phantom_dir)).status_code == 201
