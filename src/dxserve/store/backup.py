"""Backups a hospital can take while dxserve serves, check, and restore into an empty place.

A backup is one tar file:

- ``manifest.json`` — when, which schema revision, the database kind, and the sha256 and size
  of every other member;
- ``database/dxserve.db`` — SQLite through its online backup API, a consistent snapshot even
  while the server writes (WAL), or ``database/dxserve.pgdump`` — ``pg_dump`` in its custom
  format, one transaction's snapshot of PostgreSQL;
- ``blobs/ab/cdef…`` — every stored input and output, as sealed on disk;
- ``secrets/audit.key.sealed`` — the audit chain's key (``DATA_DIR/audit.key``), sealed under
  the master key like a blob (absent when the key comes from ``DXSERVE_AUDIT_KEY``).

Never the master key: blobs, pseudonym keys and the audit key stay sealed under it, so a
restore needs the same key (kept apart from the data, as the README says). Blobs are copied after the database
snapshot, so every blob the snapshot points at is in the backup (blobs are never deleted).
"""

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from dxserve import __version__
from dxserve.core.security.envelope import KeyRing
from dxserve.errors import InvalidInput
from dxserve.store.database import current_revision, make_engine

MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/dxserve.db"
AUDIT_KEY = "audit.key"
AUDIT_KEY_MEMBER = "secrets/audit.key.sealed"
POSTGRES_MEMBER = "database/dxserve.pgdump"


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    database: str
    revision: str | None
    blobs: int
    bytes: int


def _libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq takes it (no ``+driver``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def backup(database_url: str, data_dir: Path, keys: KeyRing, out: Path) -> BackupSummary:
    """Write a backup of the database at ``database_url`` and, from ``data_dir``, the blobs
    and the audit key (sealed with ``keys``)."""
    blob_root = data_dir / "blobs"
    kind = make_url(database_url).get_backend_name()
    engine = make_engine(database_url)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    with tempfile.TemporaryDirectory(prefix="dxserve-backup-") as folder:
        work = Path(folder)
        if kind == "sqlite":
            snapshot = work / "dxserve.db"
            source = sqlite3.connect(make_url(database_url).database or "")
            target = sqlite3.connect(snapshot)
            try:
                source.backup(target)  # SQLite's online backup: consistent while others write
            finally:
                target.close()
                source.close()
            member = SQLITE_MEMBER
        elif kind == "postgresql":
            snapshot = work / "dxserve.pgdump"
            _run(
                [
                    "pg_dump",
                    "--format=custom",
                    "--no-owner",
                    f"--file={snapshot}",
                    f"--dbname={_libpq(database_url)}",
                ]
            )
            member = POSTGRES_MEMBER
        else:
            raise InvalidInput(f"dxserve backs up SQLite and PostgreSQL, not {kind}")
        files = {member: snapshot}
        if (data_dir / AUDIT_KEY).is_file():
            sealed = work / "audit.key.sealed"
            sealed.write_bytes(keys.seal((data_dir / AUDIT_KEY).read_bytes(), AUDIT_KEY.encode()))
            files[AUDIT_KEY_MEMBER] = sealed
        for path in sorted(blob_root.glob("??/*")) if blob_root.is_dir() else []:
            if not path.name.startswith("."):  # never a half-written temporary file
                files[f"blobs/{path.parent.name}/{path.name}"] = path
        listed: dict[str, dict[str, Any]] = {
            name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for name, p in files.items()
        }
        manifest: dict[str, Any] = {
            "dxserve": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": kind,
            "schema_revision": revision,
            "master_key_included": False,
            "files": {
                name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for name, p in files.items()
            },
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        with tarfile.open(partial, "w") as archive:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            for name, path in files.items():
                archive.add(path, arcname=name)
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, out)
    size = sum(int(f["bytes"]) for f in listed.values())
    blobs = sum(1 for name in files if name.startswith("blobs/"))
    return BackupSummary(out, kind, revision, blobs, size)


def read_manifest(archive: tarfile.TarFile) -> dict[str, Any]:
    member = archive.extractfile(MANIFEST)
    if member is None:
        raise InvalidInput("not a dxserve backup: it has no manifest.json")
    return dict(json.loads(member.read()))


def verify(path: Path) -> dict[str, Any]:
    """The backup's manifest, after checking every member's size and sha256 against it;
    :class:`InvalidInput` naming what is missing, extra or altered."""
    try:
        return _verified(path)
    except (tarfile.TarError, OSError) as exc:
        raise InvalidInput(f"cannot read the backup: {exc}") from None


def _verified(path: Path) -> dict[str, Any]:
    problems: list[str] = []
    with tarfile.open(path, "r") as archive:
        manifest = read_manifest(archive)
        seen = set()
        for member in archive.getmembers():
            if member.name == MANIFEST:
                continue
            seen.add(member.name)
            expected = manifest["files"].get(member.name)
            handle = archive.extractfile(member)
            if expected is None or handle is None:
                problems.append(f"unexpected member {member.name}")
                continue
            digest = hashlib.sha256()
            for chunk in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023
                digest.update(chunk)
            if digest.hexdigest() != expected["sha256"] or member.size != expected["bytes"]:
                problems.append(f"{member.name} does not match the manifest")
        problems += [f"{name} is missing" for name in set(manifest["files"]) - seen]
    if problems:
        raise InvalidInput("the backup is damaged: " + "; ".join(sorted(problems)[:10]))
    return manifest


def restore(
    path: Path, data_dir: Path, keys: KeyRing, database_url: str | None = None
) -> dict[str, Any]:
    """Restore a verified backup into ``data_dir`` (which must be empty or absent); a
    PostgreSQL backup goes into the empty database at ``database_url``. ``keys``: the master
    key ring the backup's secrets are sealed under."""
    manifest = verify(path)
    if data_dir.exists() and any(data_dir.iterdir()):
        raise InvalidInput(f"restore needs an empty data dir; {data_dir} has files")
    data_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "r") as archive, tempfile.TemporaryDirectory() as folder:
        archive.extractall(folder, filter="data")
        unpacked = Path(folder)
        if (unpacked / AUDIT_KEY_MEMBER).is_file():
            audit_key = keys.open((unpacked / AUDIT_KEY_MEMBER).read_bytes(), AUDIT_KEY.encode())
            fd = os.open(data_dir / AUDIT_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(audit_key)
        if (unpacked / "blobs").is_dir():
            shutil.copytree(unpacked / "blobs", data_dir / "blobs")
        if manifest["database"] == "sqlite":
            shutil.copyfile(unpacked / SQLITE_MEMBER, data_dir / "dxserve.db")
        else:
            if database_url is None or make_url(database_url).get_backend_name() != "postgresql":
                raise InvalidInput("a PostgreSQL backup restores into DXSERVE_DATABASE_URL")
            _run(
                [
                    "pg_restore",
                    "--no-owner",
                    "--exit-on-error",
                    f"--dbname={_libpq(database_url)}",
                    str(unpacked / POSTGRES_MEMBER),
                ]
            )
    return manifest


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise InvalidInput(f"{command[0]} is not installed (PostgreSQL's client tools)") from None
    except subprocess.CalledProcessError as exc:
        # pg tools may echo the connection string: report their last line, not the command
        last = (exc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        raise InvalidInput(f"{command[0]}: {last[0]}") from None
