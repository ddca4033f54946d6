"""Backup and restore: an instance restored from an archive has the same rows, the same
files, a valid audit chain, and keeps working (new rows, new numbers)."""

from __future__ import annotations

import tarfile
from datetime import date
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import func, select

from tests.conftest import make_app
from webapp.demo import seed_demo
from webapp.extensions import db
from workflow import outbox
from workflow.audit import verify_chain
from workflow.backup import BackupError, create_backup, restore_backup
from workflow.models import Application, Attachment, AuditEvent, Organization


def _instance(tmp_path: Path, name: str):
    app = make_app(f"sqlite:///{tmp_path / name}.db", str(tmp_path / f"{name}-files"))
    with app.app_context():
        upgrade()
    return app


def test_backup_and_restore_round_trip(tmp_path):
    source = _instance(tmp_path, "source")
    archive = tmp_path / "backup.tar.gz"
    with source.app_context():
        seed_demo(db.session, date.today())
        outbox.commit(db.session)
        counts = {
            m.__tablename__: db.session.scalar(select(func.count()).select_from(m))
            for m in (Application, Attachment, AuditEvent, Organization)
        }
        result = create_backup(db.session, Path(source.config["STORAGE_DIR"]), archive)
        assert result.files >= counts["attachments"] > 0
        db.session.remove()

    target = _instance(tmp_path, "target")
    with target.app_context():
        restore_backup(db.session, Path(target.config["STORAGE_DIR"]), archive)
        db.session.commit()
        for model in (Application, Attachment, AuditEvent, Organization):
            assert (
                db.session.scalar(select(func.count()).select_from(model))
                == counts[model.__tablename__]
            )
        assert verify_chain(db.session).ok
        for att in db.session.scalars(select(Attachment)):
            path = Path(target.config["STORAGE_DIR"]) / att.storage_key
            assert path.is_file()
        # The restored instance keeps working: new rows get fresh ids and numbers.
        org = Organization(
            name="恢复后新单位",
            credit_code="912201010000099996",
            org_type="enterprise",
            district="朝阳区",
        )
        db.session.add(org)
        db.session.commit()
        assert org.id > 0
        with pytest.raises(BackupError, match="not empty"):
            restore_backup(db.session, Path(target.config["STORAGE_DIR"]), archive)
        db.session.remove()


def test_tampered_archive_is_refused(tmp_path):
    source = _instance(tmp_path, "src2")
    archive = tmp_path / "b.tar.gz"
    with source.app_context():
        create_backup(db.session, Path(source.config["STORAGE_DIR"]), archive)
        db.session.remove()
    tampered = tmp_path / "t.tar.gz"
    with tarfile.open(archive, "r:gz") as tin, tarfile.open(tampered, "w:gz") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name == "tables/organizations.jsonl":
                data += b'{"id": 999, "name": "x"}\n'
                member.size = len(data)
            import io

            tout.addfile(member, io.BytesIO(data))
    target = _instance(tmp_path, "tgt2")
    with target.app_context():
        with pytest.raises(BackupError, match="checksum"):
            restore_backup(db.session, Path(target.config["STORAGE_DIR"]), tampered)
        db.session.remove()


@pytest.mark.postgres
@pytest.mark.skipif(
    not __import__("tests.conftest", fromlist=["is_postgres"]).is_postgres(),
    reason="needs PostgreSQL (TEST_DATABASE_URL)",
)
def test_restore_into_postgresql_reseats_sequences(tmp_path):
    """SQLite backup restored into a fresh PostgreSQL database: ids continue after the
    restored ones (sequences re-seated), and the audit chain still verifies."""
    import os

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from webapp.config import normalize_db_url

    source = _instance(tmp_path, "pgsrc")
    archive = tmp_path / "pg.tar.gz"
    with source.app_context():
        seed_demo(db.session, date.today())
        outbox.commit(db.session)
        max_org = db.session.scalar(select(func.max(Organization.id)))
        create_backup(db.session, Path(source.config["STORAGE_DIR"]), archive)
        db.session.remove()
    base = make_url(normalize_db_url(os.environ["TEST_DATABASE_URL"]))
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS shenbao_restore_test"))
        conn.execute(text("CREATE DATABASE shenbao_restore_test"))
    try:
        target = make_app(
            base.set(database="shenbao_restore_test").render_as_string(False),
            str(tmp_path / "pgfiles"),
        )
        with target.app_context():
            upgrade()
            restore_backup(db.session, Path(target.config["STORAGE_DIR"]), archive)
            db.session.commit()
            assert verify_chain(db.session).ok
            org = Organization(
                name="恢复后新单位",
                credit_code="912201010000099996",
                org_type="enterprise",
                district="朝阳区",
            )
            db.session.add(org)
            db.session.commit()
            assert org.id == max_org + 1
            db.session.remove()
            db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS shenbao_restore_test WITH (FORCE)"))
        admin.dispose()
