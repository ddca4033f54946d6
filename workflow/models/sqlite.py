"""SQLite settings for every engine: real SAVEPOINT support (SQLAlchemy's documented
pysqlite recipe: the driver's own transaction handling is turned off and SQLAlchemy
emits BEGIN), foreign keys on, WAL and a busy timeout for the embedded server."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    with contextlib.suppress(sqlite3.DatabaseError):  # in-memory databases have no WAL
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")
