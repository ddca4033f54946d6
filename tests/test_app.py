"""App factory, configuration, home page, security headers, error pages."""

from __future__ import annotations

import pytest

from webapp import create_app
from webapp.config import ConfigError
from workflow.definitions.loader import definition_files, load_file


def test_home_lists_programs_with_open_calls(client, make):
    make.call("certification_reward")
    response = client.get("/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    program, _ = load_file(next(p for p in definition_files() if p.stem == "certification_reward"))
    assert program.name.zh in page
    assert "受理中" in page


def test_english_is_available(client, make):
    make.call("certification_reward")
    page = client.get("/?lang=en").get_data(as_text=True)
    assert "IP management standard certification reward" in page
    assert 'lang="en"' in page


def test_security_headers(client):
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_is_a_clear_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "不存在" in response.get_data(as_text=True)


def test_secret_key_required_outside_development(monkeypatch):
    monkeypatch.setenv("SHENBAO_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHENBAO_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s3cret-value")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/shenbao")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("STORAGE_DIR", str(tmp_path))
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/shenbao"
    assert app.config["REDIS_URL"] == "redis://cache:6379/2"
    assert app.config["STORAGE_DIR"] == str(tmp_path)
    assert app.config["SESSION_COOKIE_SECURE"] is True


def test_default_database_is_sqlite_in_instance_folder(monkeypatch):
    monkeypatch.setenv("SHENBAO_ENV", "development")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    app = create_app()
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("instance/shenbao.db")
    assert app.config["REDIS_URL"] is None
