"""Every DICOM file that ships with pydicom, sent as a user would: it is decoded and
de-identified, or refused with a 4xx-class error that says why — never anything else."""

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from dxserve.core.intake.decode import decode_dicom, read_dicom
from dxserve.core.intake.deidentify import Options, Pseudonyms, deidentify
from dxserve.errors import InvalidInput

CORPUS = Path(get_testdata_file("CT_small.dcm", download=False) or ".").parent
FILES = sorted(CORPUS.rglob("*.dcm"))


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_decoded_and_deidentified_or_refused(path: Path) -> None:
    data = path.read_bytes()
    try:
        dataset = read_dicom(data)
        if dataset is None:
            pytest.skip("not DICOM a user could send (no header, no pixel data)")
        frames_before = decode_dicom(dataset).shape
        done = deidentify(read_dicom(data), Pseudonyms(b"corpus" * 6), Options())
    except InvalidInput as refused:  # 400/413/415/422 with its reason
        assert str(refused.detail)
        return
    out = io.BytesIO()
    done.dataset.save_as(out, enforce_file_format=True)
    again = pydicom.dcmread(io.BytesIO(out.getvalue()))
    assert again.PatientIdentityRemoved == "YES"
    assert decode_dicom(again).shape == frames_before
