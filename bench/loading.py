"""How generated rows get into the database fast: COPY (psycopg 3) into one open
transaction on PostgreSQL, executemany on SQLite; the JSON of applications copied
server-side from a small template table; indexes and unique constraints dropped before a
large load and rebuilt after; counters, budgets and sequences set; VACUUM ANALYZE."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from . import rows as rows_mod
from . import sample_data as sd

BIG_TABLES: tuple[str, ...] = (
    "applications",
    "attachments",
    "decisions",
    "budget_ledger",
    "reviews",
    "audit_events",
    "users",
    "role_grants",
    "organizations",
)
# Tables that grow with the number of applications.
APP_TABLES = (
    "applications",
    "attachments",
    "decisions",
    "budget_ledger",
    "reviews",
    "audit_events",
)
JSON_COLS = ["form_data", "snapshot", "eligibility", "award_trace"]


class Sink:
    """Writes rows into one open transaction: COPY on PostgreSQL, executemany elsewhere."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.pg = conn.dialect.name == "postgresql"
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        started = time.perf_counter()
        self.counts[table] = self.counts.get(table, 0) + len(rows)
        cols = ", ".join(columns)
        if self.pg:
            raw = self.conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - started
            return
        self._insert(table, columns, rows)
        self.seconds[table] = self.seconds.get(table, 0.0) + time.perf_counter() - started

    def _insert(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        cols = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        self.conn.exec_driver_sql(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})",  # noqa: S608 (our own names)
            [tuple(_sqlite_value(v) for v in row) for row in rows],
        )

    def prepare_templates(self, templates: dict[str, sd.ProgramTemplate]) -> None:
        """PostgreSQL: put the JSON variants in a temporary table, parsed once; each
        application row then copies the already-parsed (and compressed) values."""
        self.variants = {v.key: (t, v) for t in templates.values() for v in t.variants}
        if not self.pg:
            return
        self.conn.exec_driver_sql(
            "CREATE TEMP TABLE bench_json (tpl int PRIMARY KEY, form jsonb, draft_form jsonb, "
            "snapshot jsonb, eligibility jsonb, award_trace jsonb) ON COMMIT DROP"
        )
        self.write(
            "bench_json",
            ["tpl", "form", "draft_form", "snapshot", "eligibility", "award_trace"],
            [
                (k, v.form, v.draft_form, v.snapshot, t.eligibility, t.award_trace)
                for k, (t, v) in self.variants.items()
            ],
        )
        scalar = ", ".join(rows_mod.APP_COLS)
        self.conn.exec_driver_sql(
            f"CREATE TEMP TABLE bench_stage ON COMMIT DROP AS SELECT {scalar}, "  # noqa: S608
            "0 AS tpl, true AS full_form, true AS submitted FROM applications WHERE false"
        )

    def write_applications(self, rows: list[tuple]) -> None:
        cols = rows_mod.APP_COLS
        if not self.pg:
            n = len(cols)
            full = []
            for row in rows:
                tpl, variant = self.variants[row[n]]
                full_form, submitted = row[n + 1], row[n + 2]
                full.append(
                    row[:n]
                    + (
                        variant.form if full_form else variant.draft_form,
                        variant.snapshot if submitted else None,
                        tpl.eligibility if submitted else None,
                        tpl.award_trace if submitted else None,
                    )
                )
            self.counts["applications"] = self.counts.get("applications", 0) + len(rows)
            self._insert("applications", cols + JSON_COLS, full)
            return
        started = time.perf_counter()
        self.conn.exec_driver_sql("TRUNCATE bench_stage")
        self.write("bench_stage", cols + rows_mod.APP_EXTRA, rows)
        scalar = ", ".join(cols)
        staged = ", ".join(f"s.{c}" for c in cols)
        self.conn.exec_driver_sql(
            f"INSERT INTO applications ({scalar}, {', '.join(JSON_COLS)}) "  # noqa: S608
            f"SELECT {staged}, CASE WHEN s.full_form THEN j.form ELSE j.draft_form END, "
            "CASE WHEN s.submitted THEN j.snapshot END, CASE WHEN s.submitted THEN j.eligibility "
            "END, CASE WHEN s.submitted THEN j.award_trace END FROM bench_stage s "
            "JOIN bench_json j ON j.tpl = s.tpl"
        )
        self.counts["applications"] = self.counts.get("applications", 0) + len(rows)
        self.seconds["applications"] = (
            self.seconds.get("applications", 0.0) + time.perf_counter() - started
        )


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bool):
        return int(v)
    return v


def set_counter(conn: Connection, prefix: str, year: int, seq: int) -> None:
    updated = conn.execute(
        text("UPDATE doc_number_counters SET last_seq = :s WHERE prefix = :p AND year = :y"),
        {"s": seq, "p": prefix, "y": year},
    ).rowcount
    if not updated:
        conn.execute(
            text("INSERT INTO doc_number_counters (prefix, year, last_seq) VALUES (:p, :y, :s)"),
            {"s": seq, "p": prefix, "y": year},
        )


def finish_counters(conn: Connection) -> None:
    """Calls' committed money from the ledger (budget with headroom), and sequences."""
    conn.execute(
        text(
            "UPDATE calls SET committed_fen = t.c, budget_fen = CASE WHEN t.c * 5 / 4 + "
            "1000000000 > budget_fen THEN t.c * 5 / 4 + 1000000000 ELSE budget_fen END FROM "
            "(SELECT calls.id AS id, coalesce((SELECT sum(amount_fen) FROM budget_ledger b "
            "WHERE b.call_id = calls.id), 0) AS c FROM calls) AS t WHERE t.id = calls.id"
        )
    )
    if conn.dialect.name == "postgresql":
        for table in BIG_TABLES:
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )


def drop_indexes(conn: Connection, adding: int, existing: int) -> list[tuple[str, str]]:
    """Before a load that at least doubles the data, drop the secondary indexes and the
    unique constraints of the application tables (rebuilding by sort afterwards is far
    cheaper than maintaining them row by row). Returns the DDL that restores them; the
    restore runs in the same transaction, so a duplicate would still fail the load."""
    if conn.dialect.name != "postgresql" or adding < max(existing, 50_000):
        return []
    indexes = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(:t) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"
        ),
        {"t": list(APP_TABLES)},
    ).all()
    uniques = conn.execute(
        text(
            "SELECT k.conrelid::regclass::text, k.conname, pg_get_constraintdef(k.oid) "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "WHERE k.contype = 'u' AND c.relname = ANY(:t)"
        ),
        {"t": list(APP_TABLES)},
    ).all()
    restore: list[tuple[str, str]] = []
    for name, ddl in indexes:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
        restore.append((name, ddl))
    for table, name, definition in uniques:
        conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        restore.append((name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))
    return restore


def vacuum_analyze(engine: Any) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in BIG_TABLES + ("calls", "doc_number_counters"):
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
