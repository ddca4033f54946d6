"""Pages anyone may see: home (programs and open calls), health check."""

from __future__ import annotations

from datetime import date

from flask import Blueprint, render_template
from sqlalchemy import text

from ..catalog import program_cards
from ..extensions import db

bp = Blueprint("public", __name__)


@bp.get("/")
def index():
    return render_template(
        "public/index.html", cards=program_cards(date.today()), today=date.today()
    )


@bp.get("/healthz")
def healthz():
    db.session.execute(text("SELECT 1"))
    return {"status": "ok"}
