"""The Flask application factory. It only wires: configuration, extensions, blueprints,
request hooks and CLI commands. No queries, migrations or Redis calls happen here."""

from __future__ import annotations

from typing import Any

from flask import Flask

from . import hooks
from .config import from_env
from .extensions import babel, bootstrap, csrf, db, login_manager, migrate


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(from_env(app.instance_path, overrides))

    db.init_app(app)
    migrate.init_app(
        app, db, directory=str(hooks.MIGRATIONS_DIR), render_as_batch=True, compare_type=True
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=hooks.select_locale)
    bootstrap.init_app(app)

    if app.config.get("PROXY_FIX"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    hooks.register(app)

    from .views import register_blueprints

    register_blueprints(app)

    from .cli import register_cli

    register_cli(app)
    return app
