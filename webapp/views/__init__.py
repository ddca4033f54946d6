"""Blueprints. Each module owns one audience: the public, applicants, reviewers,
finance, administrators."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from . import public

    app.register_blueprint(public.bp)
    for name in ("auth", "portal", "workbench", "finance", "admin"):
        try:
            module = __import__(f"webapp.views.{name}", fromlist=["bp"])
        except ModuleNotFoundError as exc:
            if exc.name != f"webapp.views.{name}":
                raise
            continue
        app.register_blueprint(module.bp)
