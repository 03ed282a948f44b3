"""WFDB records (PhysioNet's format: a ``.hea`` header and its ``.dat`` signal files), sent
as a zip or as the files of a multipart upload → :class:`Signal`, read by the ``wfdb`` package.

The files are written under a fresh temporary folder by their base names only, and the header
may name no signal file that was not sent: nothing outside the upload is ever read.
"""

import io
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from dxserve.core.intake.signal import Signal, millivolts
from dxserve.errors import InvalidInput, PayloadTooLarge

ZIP_MAGIC = b"PK\x03\x04"
MAX_FILES = 16
MAX_UNZIPPED_BYTES = 256 << 20
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def is_zip(data: bytes) -> bool:
    return data.startswith(ZIP_MAGIC)


def unzip(data: bytes) -> dict[str, bytes]:
    """The files of a zip by base name, bounded in number and unzipped size."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise InvalidInput(f"a WFDB zip may hold at most {MAX_FILES} files")
        if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
            raise PayloadTooLarge(f"the zip unpacks to over {MAX_UNZIPPED_BYTES:,} bytes")
        return {Path(m.filename).name: archive.read(m) for m in members}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError):
        raise InvalidInput("the zip archive cannot be read") from None


def decode_wfdb(files: dict[str, bytes]) -> Signal:
    """The one record among ``files`` (file name → bytes) as a signal in millivolts."""
    import wfdb

    headers = [name for name in files if name.lower().endswith(".hea")]
    if len(headers) != 1:
        raise InvalidInput("a WFDB record needs exactly one .hea header file")
    for name in files:
        if not SAFE_NAME.match(name):
            raise InvalidInput("WFDB file names may use letters, digits, '.', '_' and '-' only")
    record_name = headers[0][: -len(".hea")]
    with tempfile.TemporaryDirectory(prefix="dxserve-wfdb-") as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        base = str(Path(folder) / record_name)
        try:
            header = wfdb.rdheader(base)
            wanted = set(header.file_name or [])
            if not wanted <= set(files):
                raise InvalidInput("the header names signal files that were not sent")
            record = wfdb.rdrecord(base)
        except InvalidInput:
            raise
        except Exception as exc:  # wfdb raises bare ValueError, IndexError, …
            raise InvalidInput(f"cannot read the WFDB record: {type(exc).__name__}") from None
    if record.p_signal is None or not record.sig_name:
        raise InvalidInput("the WFDB record has no signals")
    units = record.units or ["mV"] * len(record.sig_name)
    to_mv = np.array([millivolts(str(u)) for u in units])
    return Signal.of(record.p_signal * to_mv, float(record.fs), list(record.sig_name), "mV")
