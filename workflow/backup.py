"""Backup and restore of a whole instance: every table and every stored file.

The backup is logical and backend-neutral: one JSON-lines member per table (in dependency
order), the stored files under ``files/``, and a ``manifest.json`` with the schema revision,
row counts and the sha256 of every member. Restore goes into an EMPTY database migrated to
the same revision, inserts the rows in dependency order, re-seats PostgreSQL sequences and
copies the files back; every checksum is verified before anything is written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, Table, func, insert, select, text
from sqlalchemy.orm import Session

from .models import Base, utcnow

FORMAT = 1
SKIP_TABLES = {"alembic_version"}


class BackupError(Exception):
    pass


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "$dt":
            return datetime.fromisoformat(inner)
        if key == "$d":
            return date.fromisoformat(inner)
        if key == "$dec":
            return Decimal(inner)
        if key == "$b64":
            return base64.b64decode(inner)
    return value


def _tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIP_TABLES]


def schema_revision(session: Session) -> str | None:
    try:
        return session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # noqa: BLE001 - a database without Alembic has no revision
        session.rollback()
        return None


@dataclass
class BackupResult:
    path: Path
    tables: dict[str, int]
    files: int


def create_backup(session: Session, storage_root: Path, target: Path) -> BackupResult:
    """Write a backup archive of the database and the storage folder to ``target``."""
    counts: dict[str, int] = {}
    digests: dict[str, str] = {}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(utcnow().timestamp())
            tar.addfile(info, io.BytesIO(data))
            digests[name] = hashlib.sha256(data).hexdigest()

        for table in _tables():
            buf = io.StringIO()
            n = 0
            order = list(table.primary_key.columns) or list(table.columns)
            for row in session.execute(select(table).order_by(*order)).mappings():
                buf.write(json.dumps({k: _encode(v) for k, v in row.items()}, ensure_ascii=False))
                buf.write("\n")
                n += 1
            counts[table.name] = n
            add(f"tables/{table.name}.jsonl", buf.getvalue().encode("utf-8"))
        files = 0
        root = storage_root.resolve()
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    add(f"files/{path.relative_to(root).as_posix()}", path.read_bytes())
                    files += 1
        manifest = {
            "format": FORMAT,
            "created_at": utcnow().isoformat(),
            "revision": schema_revision(session),
            "tables": counts,
            "files": files,
            "sha256": digests,
        }
        data = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return BackupResult(target, counts, files)


def _read_archive(source: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    members: dict[str, bytes] = {}
    with tarfile.open(source, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                raise BackupError(f"unexpected member type: {member.name}")
            name = member.name
            if name.startswith("/") or ".." in Path(name).parts:
                raise BackupError(f"unsafe path in archive: {name}")
            fh = tar.extractfile(member)
            members[name] = fh.read() if fh else b""
    if "manifest.json" not in members:
        raise BackupError("not a Shenbao backup: manifest.json is missing")
    manifest = json.loads(members.pop("manifest.json"))
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unsupported backup format {manifest.get('format')}")
    expected = manifest.get("sha256", {})
    if set(expected) != set(members):
        raise BackupError("the archive's members do not match its manifest")
    for name, data in members.items():
        if hashlib.sha256(data).hexdigest() != expected[name]:
            raise BackupError(f"checksum mismatch for {name}")
    return manifest, members


def restore_backup(session: Session, storage_root: Path, source: Path) -> BackupResult:
    """Restore into an empty database at the backup's schema revision. Flushes and
    commits nothing itself except through the caller."""
    manifest, members = _read_archive(source)
    revision = schema_revision(session)
    if manifest.get("revision") != revision:
        raise BackupError(
            f"schema revision {revision} differs from the backup's {manifest.get('revision')}: "
            "migrate an empty database to the backup's revision first"
        )
    for table in _tables():
        if session.execute(select(func.count()).select_from(table)).scalar():
            raise BackupError(f"the database is not empty (table {table.name} has rows)")
    root = storage_root.resolve()
    for name in members:
        if name.startswith("files/"):
            dest = (root / name[len("files/") :]).resolve()
            if root not in dest.parents:
                raise BackupError(f"file outside the storage root: {name}")
    counts: dict[str, int] = {}
    for table in _tables():
        data = members.get(f"tables/{table.name}.jsonl", b"")
        rows = [
            {k: _decode(v) for k, v in json.loads(line).items()}
            for line in data.decode("utf-8").splitlines()
            if line.strip()
        ]
        for start in range(0, len(rows), 1000):
            session.execute(insert(table), rows[start : start + 1000])
        counts[table.name] = len(rows)
    if session.get_bind().dialect.name == "postgresql":
        for table in _tables():
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or not isinstance(pk[0].type, Integer):
                continue
            seq = session.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": pk[0].name}
            ).scalar()
            if seq:
                # Names come from the model metadata, never from the archive.
                session.execute(
                    text(
                        "SELECT setval(:s, COALESCE((SELECT MAX("  # noqa: S608
                        f"{pk[0].name}) FROM {table.name}), 0) + 1, false)"
                    ),
                    {"s": seq},
                )
    files = 0
    for name, data in members.items():
        if name.startswith("files/"):
            dest = root / name[len("files/") :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            files += 1
    session.flush()
    return BackupResult(source, counts, files)
