"""Attachment and document storage on the local filesystem, content-addressed keys.

Keys are generated here (never taken from user input), so a filename such as
``../../etc/passwd`` cannot steer a write. ``path_for`` refuses any key that would
resolve outside the storage root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path


class StorageError(Exception):
    pass


class LocalStorage:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()

    def path_for(self, key: str) -> Path:
        if not key or "\x00" in key or key.startswith("/") or "\\" in key:
            raise StorageError("invalid storage key")
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError("storage key outside the storage root")
        return path

    def put(self, data: bytes, *, prefix: str = "att") -> tuple[str, str]:
        """Store bytes under a fresh random key; returns (key, sha256)."""
        digest = hashlib.sha256(data).hexdigest()
        key = f"{prefix}/{digest[:2]}/{digest}-{secrets.token_hex(6)}"
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

    def exists(self, key: str) -> bool:
        try:
            return self.path_for(key).is_file()
        except StorageError:
            return False

    def delete(self, key: str) -> None:
        with contextlib.suppress(StorageError):
            self.path_for(key).unlink(missing_ok=True)
