"""Migrations: the models and the migration history agree (every schema change is a
migration), and the history applies cleanly from empty, down to empty and up again, on
the test database's backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from tests.conftest import make_app
from webapp.extensions import db
from workflow.models import Base


def _diff(connection):
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def test_models_match_migrations(app):
    with app.app_context():
        with db.engine.connect() as conn:
            diff = [
                d
                for d in _diff(conn)
                if not (
                    isinstance(d, tuple)
                    and d[0] == "remove_table"
                    and d[1].name == "alembic_version"
                )
            ]
        assert diff == [], f"models differ from migrations; run `flask db migrate`: {diff}"


def test_upgrade_downgrade_round_trip(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'mig.db'}", str(tmp_path / "files"))
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        with db.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert tables == set()
        upgrade()
        with db.engine.connect() as conn:
            assert _diff(conn) == []
        db.session.remove()
