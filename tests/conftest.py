"""Shared fixtures: one app per test session (migrated once, on SQLite or on the
PostgreSQL named by TEST_DATABASE_URL), a transaction rolled back after each test, small
factories and a helper to log in as each role.

Environment:
  TEST_DATABASE_URL  e.g. postgresql://postgres@127.0.0.1/shenbao_test (default: SQLite)
  TEST_REDIS_URL     e.g. redis://127.0.0.1:6379/15 (tests marked `redis` need it)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, g, has_app_context
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FsaSession
from sqlalchemy import create_engine, text

os.environ.setdefault("SHENBAO_ENV", "testing")

from webapp import create_app  # noqa: E402
from webapp.config import normalize_db_url  # noqa: E402
from webapp.extensions import db  # noqa: E402
from webapp.security import hash_password  # noqa: E402
from workflow.definitions.loader import sync_definitions  # noqa: E402
from workflow.models import Organization, RoleGrant, User  # noqa: E402

PASSWORD = "Test2026password"
_PW_HASH: dict[str, str] = {}
CREDIT_CODES = [
    "91110000600037341L",
    "91350200776049653A",
    "91440101MA5CJQ4N59",
    "913502000728319549",
    "9135021359498494XQ",
    "91350213678251743X",
    "91350100M000100Y43",
    "123502001549897397",
]


def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return normalize_db_url(url)
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


def is_postgres() -> bool:
    return bool(os.environ.get("TEST_DATABASE_URL", "").startswith("postgres"))


def reset_database(url: str) -> None:
    """Empty the test database once per test session (never per test)."""
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()


def make_app(url: str, storage: str, **overrides: Any) -> Flask:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": url,
        "STORAGE_DIR": storage,
        "WTF_CSRF_ENABLED": False,
        "REDIS_URL": None,
        "PUBLIC_BASE_URL": "http://verify.test",
        "MAIL_SERVER": None,
        "SESSION_COOKIE_SECURE": False,
    }
    config.update(overrides)
    return create_app(config)


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> Flask:
    from flask_migrate import upgrade

    url = database_url(tmp_path_factory)
    reset_database(url)
    application = make_app(url, str(tmp_path_factory.mktemp("storage")))
    with application.app_context():
        upgrade()
        sync_definitions(db.session)
        db.session.commit()
        db.session.remove()
    return application


class _BoundSession(FsaSession):
    """Flask-SQLAlchemy picks engines itself; in tests the session must use the one
    connection whose outer transaction is rolled back after the test."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):  # type: ignore[override]
        if self.bind is not None:
            return self.bind
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


@pytest.fixture
def session(app: Flask) -> Iterator[Any]:
    """The app's ``db.session`` inside a transaction rolled back after the test; code
    under test may commit (it commits a savepoint). A refused request rolls back to the last
    commit: the ``client`` commits the test's set-up before each request for that reason."""
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        scoped = db._make_scoped_session(
            {
                "bind": connection,
                "join_transaction_mode": "create_savepoint",
                "class_": _BoundSession,
            }
        )
        original = db.session
        db.session = scoped
        try:
            yield scoped
        finally:
            scoped.remove()
            db.session = original
            if outer.is_active:
                outer.rollback()
            connection.close()


class _Client(FlaskClient):
    """Test client for the shared app context: before each request, commit what the test
    has set up (a refused request then rolls back only its own work, as in production) and
    forget the user Flask-Login cached for the previous request."""

    def open(self, *args, **kwargs):
        if has_app_context():
            db.session.commit()
            g.pop("_login_user", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app: Flask, session: Any):
    app.test_client_class = _Client
    return app.test_client()


# ---------------------------------------------------------------- factories


class Factory:
    """Small builders for test data, all going through the real operations."""

    def __init__(self, session: Any):
        self.session = session
        self.n = 0

    def org(
        self, *, district: str = "朝阳区", org_type: str = "enterprise", name: str | None = None
    ) -> Organization:
        self.n += 1
        org = Organization(
            name=name or f"测试单位{self.n}有限公司",
            credit_code=_code(self.n),
            org_type=org_type,
            district=district,
            bank_name="测试银行",
            bank_account_name=name or f"测试单位{self.n}有限公司",
            bank_account_no=f"62220000{self.n:08d}",
        )
        self.session.add(org)
        self.session.flush()
        return org

    def user(
        self,
        role: str,
        *,
        org: Organization | None = None,
        program: str | None = None,
        district: str | None = None,
        lead: bool = False,
        email: str | None = None,
    ) -> User:
        self.n += 1
        if PASSWORD not in _PW_HASH:
            _PW_HASH[PASSWORD] = hash_password(PASSWORD)
        user = User(
            email=email or f"{role}{self.n}@test.cn",
            name=f"{role}{self.n}",
            password_hash=_PW_HASH[PASSWORD],
            organization_id=org.id if org else None,
            is_org_owner=bool(org),
        )
        user.grants.append(
            RoleGrant(role=role, program_code=program, district=district, is_lead=lead)
        )
        self.session.add(user)
        self.session.flush()
        return user

    def applicant(self, **org_kwargs: Any) -> User:
        return self.user("applicant", org=self.org(**org_kwargs))

    def call(
        self,
        program: str,
        *,
        budget: str = "1000000",
        params: dict | None = None,
        opens: date | None = None,
        closes: date | None = None,
        year: int | None = None,
    ):
        from workflow.operations.calls import create_call

        today = date.today()
        self.n += 1
        return create_call(
            self.session,
            program_code=program,
            year=year or today.year,
            title=f"测试批次{self.n}",
            opens_on=opens or today - timedelta(days=10),
            closes_on=closes or today + timedelta(days=30),
            budget_yuan=budget,
            params=params,
        )

    def application(
        self, call: Any, user: User, form: dict | None = None, *, materials: bool = True
    ):
        from workflow.engine import compiled
        from workflow.models import Attachment
        from workflow.operations.applications import save_draft, start_application

        app = start_application(self.session, user=user, call=call, today=date.today())
        if form:
            save_draft(self.session, app, user, form)
        if materials:
            program = compiled(self.session, app.definition_id).program
            for m in program.materials:
                self.session.add(
                    Attachment(
                        application_id=app.id,
                        kind=m.kind,
                        filename=f"{m.kind}.pdf",
                        content_type="application/pdf",
                        size=10,
                        sha256="0" * 64,
                        storage_key=f"test/{app.id}/{m.kind}/{self.n}",
                        uploaded_by_id=user.id,
                    )
                )
            self.session.flush()
            self.session.refresh(app)
        return app


def _code(n: int) -> str:
    """A valid unified social credit code derived from n (check digit computed)."""
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = f"91220101{n:09d}"[:17]
    weights = [pow(3, i, 31) for i in range(17)]
    total = sum(chars.index(c) * w for c, w in zip(body, weights, strict=True))
    check = (31 - total % 31) % 31
    return body + chars[check]


@pytest.fixture
def make(session: Any) -> Factory:
    return Factory(session)


CERT_FORM = {
    "unit_type": "enterprise",
    "registered_in_changchun": True,
    "contact_name": "王敏",
    "contact_phone": "13904310001",
    "valid_invention_patents": "3",
    "valid_other_patents": "5",
    "standard": "gbt29490_2023",
    "cert_number": "165IP250001R0M",
    "cert_body": "中知（北京）认证有限公司",
    "cert_body_accredited": True,
    "first_issue_date": "2025-06-18",
    "issue_date": "2025-06-18",
    "cert_valid_until": "2028-06-17",
    "cert_status": "valid",
    "contract_amount": "28000.00",
    "cert_cost_paid": "25000.00",
    "invoices": [
        {"invoice_no": "25220000000012345678", "invoice_date": "2025-06-20", "amount": "25000.00"}
    ],
    "rewarded_before": False,
    "no_ip_violation": True,
    "truthful": True,
}


@pytest.fixture
def cert_form() -> dict[str, Any]:
    import copy

    return copy.deepcopy(CERT_FORM)


def login(client: Any, user: User) -> None:
    """Log a test client in as ``user`` (through the real session cookie)."""
    if has_app_context():
        g.pop("_login_user", None)
    with client.session_transaction() as sess:
        sess["_user_id"] = user.get_id()
        sess["_fresh"] = True
        sess["mfa_ok"] = True


def yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else Decimal(fen) / 100


@pytest.fixture(scope="session", autouse=True)
def _reliability_figures():
    """Write the reliability figures recorded by the property tests at the end of the run."""
    yield
    from tests import reliability

    reliability.flush()


@pytest.fixture(scope="module")
def committed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app on its OWN database, for tests whose threads commit for real (concurrency,
    faults): PostgreSQL database ``<test db>_committed`` recreated per module, or a fresh
    SQLite file. The shared test database stays free of committed rows."""
    from flask_migrate import upgrade
    from sqlalchemy.engine import make_url

    storage = str(tmp_path_factory.mktemp("committed-storage"))
    admin = None
    if is_postgres():
        base = make_url(normalize_db_url(os.environ["TEST_DATABASE_URL"]))
        name = f"{base.database}_committed"
        admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('committed') / 'committed.db'}"
    application = make_app(url, storage)
    with application.app_context():
        upgrade()
        sync_definitions(db.session)
        db.session.commit()
        db.session.remove()
    yield application
    with application.app_context():
        db.engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
