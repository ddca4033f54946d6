"""Attachment and document storage: content-addressed keys, two backends, one factory.

Keys are generated here (never taken from user input), so a filename such as
``../../etc/passwd`` cannot steer a write. Every backend refuses a key that is empty,
absolute, or has a ``.``/``..`` or empty segment; ``LocalStorage.path_for`` also refuses
any key that would resolve outside the storage root.

``LocalStorage`` keeps the files in a folder (one host, or a shared mount);
``workflow.storage_s3.S3Storage`` keeps them in an S3-compatible bucket (several hosts).
``storage_from_config`` is the one place that chooses between them (``STORAGE_BACKEND``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

BACKENDS = ("local", "s3")
MAX_KEY_LENGTH = 512


class StorageError(Exception):
    pass


class Storage(Protocol):
    """What the operations, jobs and views use; both backends implement it."""

    def put(self, data: bytes, *, prefix: str = "att") -> tuple[str, str]: ...

    def put_at(self, key: str, data: bytes) -> str: ...

    def read(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """``key`` if it is a well-formed relative key, else ``StorageError``. An object store
    has no directories to escape, but a ``..`` segment could still be normalised by a
    proxy or gateway into another object, so it is refused everywhere."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise StorageError("invalid storage key")
    if key.startswith("/") or "\\" in key or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise StorageError("invalid storage key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError("invalid storage key")
    return key


def new_key(prefix: str, digest: str) -> str:
    """A fresh key for content with this sha256: never derived from anything a user typed."""
    return check_key(f"{prefix}/{digest[:2]}/{digest}-{secrets.token_hex(6)}")


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        """The file of ``key``. Local only: callers that must work on both backends use
        ``read`` or ``open``."""
        check_key(key)
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError("storage key outside the storage root")
        return path

    def put(self, data: bytes, *, prefix: str = "att") -> tuple[str, str]:
        """Store bytes under a fresh random key; returns (key, sha256)."""
        digest = hashlib.sha256(data).hexdigest()
        key = new_key(prefix, digest)
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return key, digest

    def put_at(self, key: str, data: bytes) -> str:
        """Store bytes under a key the caller derives (never user input), atomically;
        writing the same key again replaces the file. Returns the sha256."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()

    def read(self, key: str) -> bytes:
        return self.path_for(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        """The stored bytes as a file to stream from (the caller closes it)."""
        return open(self.path_for(key), "rb")  # noqa: SIM115 (returned to the caller)

    def exists(self, key: str) -> bool:
        try:
            return self.path_for(key).is_file()
        except StorageError:
            return False

    def delete(self, key: str) -> None:
        with contextlib.suppress(StorageError):
            self.path_for(key).unlink(missing_ok=True)


def storage_from_config(config: Mapping[str, Any]) -> Storage:
    """The storage the configuration asks for (``STORAGE_BACKEND``, default ``local``).

    The one factory: the web app (``webapp.jobs.storage``), the job runner and the CLI
    all go through it, so every host writes where every other host reads."""
    backend = str(config.get("STORAGE_BACKEND") or "local").strip().lower()
    if backend == "local":
        return LocalStorage(config["STORAGE_DIR"])
    if backend == "s3":
        from .storage_s3 import S3Storage

        return S3Storage.from_config(config)
    raise StorageError(f"unknown STORAGE_BACKEND {backend!r}; expected one of {BACKENDS}")
