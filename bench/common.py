"""Shared helpers for the benchmarks: the bench database, the app, statistics and the
machine description printed with every table.

The bench database is a dedicated PostgreSQL database (``shenbao_bench`` by default,
``BENCH_DATABASE_URL`` to change it); it is created and migrated on demand and never
shared with the test or development databases.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/shenbao_bench"
BENCH_PASSWORD = "Bench2026password"  # every generated account; printed in the docs
SECRET_KEY = "bench-secret-key-not-for-production"


def bench_url() -> str:
    from webapp.config import normalize_db_url

    return normalize_db_url(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database named in ``url`` if missing. True if created."""
    if not is_postgres(url):
        return False
    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": u.database}
            )
            if exists:
                return False
            conn.execute(text(f'CREATE DATABASE "{u.database}"'))
            return True
    finally:
        admin.dispose()


def drop_schema(url: str) -> None:
    """Empty the bench database (PostgreSQL: drop the public schema; SQLite: the file)."""
    if is_postgres(url):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    else:
        path = make_url(url).database
        if path and Path(path).exists():
            Path(path).unlink()


def make_app(url: str, **overrides: Any):
    """A Flask app bound to ``url`` (for migrations and the in-process request checks)."""
    from webapp import create_app

    config = {
        "SQLALCHEMY_DATABASE_URI": url,
        "SECRET_KEY": SECRET_KEY,
        "REDIS_URL": None,
        "MAIL_SERVER": None,
        "STORAGE_DIR": str(ROOT / "instance" / "bench-storage"),
    }
    config.update(overrides)
    return create_app(config)


def migrate(url: str) -> None:
    """Bring the schema to the latest migration (``flask_migrate.upgrade``).

    The app here has only the database extensions: the full factory imports every view
    module, and the schema must not depend on the web layer importing cleanly.
    """
    from flask import Flask
    from flask_migrate import upgrade

    from webapp.extensions import db
    from webapp.extensions import migrate as migrate_ext
    from webapp.hooks import MIGRATIONS_DIR

    app = Flask("bench")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, SQLALCHEMY_ENGINE_OPTIONS={})
    db.init_app(app)
    migrate_ext.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    with app.app_context():
        upgrade()
        db.session.remove()
        db.engine.dispose()


def engine_for(url: str, **kwargs: Any) -> Engine:
    return create_engine(url, **kwargs)


# ---------------------------------------------------------------- statistics


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def spread(values: Iterable[float]) -> str:
    """min-max of the runs, for the table (shows how noisy a median is)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    return f"{min(vals):.4g}-{max(vals):.4g}"


# ---------------------------------------------------------------- machine


def cpu_calibration_ms(loops: int = 2_000_000, runs: int = 5) -> float:
    """CPU ms of a fixed pure-Python loop (median of ``runs``): how fast this machine runs
    Python today, so that figures from different machines, or days, can be compared. A
    recent x86 core at 2.5-3.5 GHz takes about 100-150 ms."""
    times = []
    for _ in range(runs):
        t = time.process_time()
        total = 0
        for i in range(loops):
            total += i
        times.append((time.process_time() - t) * 1000)
    return median(times)


def cpu_ticks() -> tuple[int, int]:
    """(all, stolen) CPU ticks since boot from /proc/stat; (0, 0) where there is none.
    Stolen ticks are time the hypervisor gave this VM's virtual CPUs to someone else."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[0] - before[0]
    return (after[1] - before[1]) / total if total > 0 else None


def machine_info(url: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if url and is_postgres(url):
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                info["postgres"] = conn.scalar(text("SHOW server_version"))
                settings = dict(
                    conn.execute(
                        text(
                            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE "
                            "name IN ('shared_buffers', 'synchronous_commit', 'work_mem')"
                        )
                    ).all()
                )
                info["postgres_settings"] = settings
        finally:
            engine.dispose()
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return info
