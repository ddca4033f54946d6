"""Blueprints. Each module in this package owns one audience or area (the public,
applicants, reviewers, finance, administrators, ...) and exposes ``bp``; every such module
is registered, so adding an area is adding a module."""

from __future__ import annotations

import importlib
import pkgutil

from flask import Blueprint, Flask


def register_blueprints(app: Flask) -> None:
    # An area may span several modules sharing one ``bp``; register each blueprint once.
    seen: set[int] = set()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        bp = getattr(module, "bp", None)
        if isinstance(bp, Blueprint) and id(bp) not in seen:
            seen.add(id(bp))
            app.register_blueprint(bp)
