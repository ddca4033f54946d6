"""Request-level wiring: locale, login loading, the one commit per request, security
headers and error pages."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, g, render_template, request, session
from flask_babel import get_locale, get_translations, refresh
from flask_login import current_user
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from workflow import loaders, outbox
from workflow.errors import WorkflowError
from workflow.models import User

from .extensions import db, login_manager

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
LANGUAGES = ("zh", "en")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)


def select_locale() -> str:
    lang = request.args.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
        return lang
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    if getattr(current_user, "is_authenticated", False) and current_user.locale in LANGUAGES:
        return current_user.locale
    return "zh"


def _request_translations() -> Any:
    """The current locale's catalog, looked up once per request (``g.translations``)."""
    if not g:  # no app context (Flask-Babel then gives the untranslated catalog)
        return get_translations()
    cached = g.get("translations")
    if cached is None:
        cached = g.translations = get_translations()
    return cached


def lang() -> str:
    return str(get_locale() or "zh")[:2]


def text(value: Any) -> str:
    """Pick the current language from a bilingual label (dict or pydantic Text)."""
    if value is None:
        return ""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        current = lang()
        return value.get(current) or value.get("zh") or ""
    return str(value)


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    try:
        uid, epoch = (int(x) for x in user_id.split(":", 1))
    except ValueError:
        return None
    user = loaders.load_user(db.session, uid)
    if user is None or user.session_epoch != epoch or not user.active:
        return None
    return user


def register(app: Flask) -> None:
    from .jobs import relay

    outbox.set_relay(relay)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None

    app.jinja_env.globals.update(
        t=text, lang=lang, has_endpoint=lambda name: name in app.view_functions
    )
    # Templates call _() dozens of times per page; Flask-Babel looks the catalog up through
    # several context proxies on every call. Look it up once per request instead.
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _request_translations().ugettext(s),
        ngettext=lambda s, p, n: _request_translations().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _request_translations().upgettext(c, s),
        npgettext=lambda c, s, p, n: _request_translations().unpgettext(c, s, p, n),
    )

    @app.before_request
    def _fresh_request_state() -> None:
        # Flask-Babel caches the locale on the app context, and the commit decision lives
        # in g: start each request afresh (they share one app context in tests).
        refresh()
        g.pop("translations", None)
        g.pop("rolled_back", None)
        g.pop("commit_anyway", None)

    @app.after_request
    def _finish(response):
        # One commit per request, at the end; anything that failed rolls back.
        # Views may ask to keep their writes on an error status (a failed login must still
        # count the failure and its audit event): g.commit_anyway.
        wanted = response.status_code < 400 or g.get("commit_anyway")
        if wanted and not g.get("rolled_back"):
            try:
                outbox.commit(db.session)
            except (IntegrityError, StaleDataError):
                outbox.rollback(db.session)
                log.warning("commit failed: duplicate or concurrent change", exc_info=True)
                response = app.make_response(
                    (render_template("error.html", code=409, message=_conflict_text()), 409)
                )
            except OperationalError:
                outbox.rollback(db.session)
                log.exception("database error at commit")
                response = app.make_response(
                    (render_template("error.html", code=503, message=_db_text()), 503)
                )
        else:
            outbox.rollback(db.session)
        return _security_headers(response)

    @app.errorhandler(WorkflowError)
    def _workflow_error(exc: WorkflowError):
        g.rolled_back = True
        outbox.rollback(db.session)
        return render_template(
            "error.html", code=exc.status, message=exc.message(lang())
        ), exc.status

    @app.errorhandler(OperationalError)
    def _db_error(exc: OperationalError):
        g.rolled_back = True
        try:
            outbox.rollback(db.session)
        except Exception:  # the connection itself may be gone
            log.debug("rollback after database error failed", exc_info=True)
        log.exception("database unavailable")
        return render_template("error.html", code=503, message=_db_text()), 503

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        g.rolled_back = True
        code = exc.code or 500
        return render_template("error.html", code=code, message=_http_text(code)), code

    @app.teardown_appcontext
    def _teardown(exc: BaseException | None) -> None:
        if exc is not None:
            outbox.rollback(db.session)


def _security_headers(response):
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "SAMEORIGIN")
    h.setdefault("Referrer-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    return response


def _conflict_text() -> str:
    return {
        "zh": "数据已被他人修改或重复提交，请刷新后重试。",
        "en": "The data was changed by someone else or submitted twice. Reload and try again.",
    }[lang()]


def _db_text() -> str:
    return {
        "zh": "数据库暂时不可用，您的操作没有保存，请稍后重试。",
        "en": "The database is unavailable right now. Nothing was saved; please try again later.",
    }[lang()]


_HTTP = {
    400: ("请求无效。", "Bad request."),
    403: ("您没有权限访问该页面。", "You do not have access to this page."),
    404: ("页面或记录不存在。", "Page or record not found."),
    405: ("不支持该请求方式。", "Method not allowed."),
    413: ("上传的文件太大。", "The upload is too large."),
    429: ("请求过于频繁，请稍后再试。", "Too many requests; try again later."),
}


def _http_text(code: int) -> str:
    zh, en = _HTTP.get(code, ("出现错误。", "Something went wrong."))
    return en if lang() == "en" else zh
