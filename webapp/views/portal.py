"""The applicant portal (申报单位): program pages, my applications, the application form,
materials, pre-check, submit, status, withdraw, and downloads of attachments and
decisions.

Every application route loads the row or 404s, then checks ``can_use_portal`` (the
user applies for the owning organization) or 403s; staff reach applications through
their own areas. Attachment and decision downloads use the shared predicates
(``can_view_attachment``, ``can_view_decision``), which also admit the staff entitled
to them.
"""

from __future__ import annotations

import io
import re
from datetime import date
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from forms.builder import form_class_for, initial_data, with_rows_changed
from forms.layout import field_anchor, field_label, layout
from forms.portal import (
    DeleteAttachmentForm,
    StartApplicationForm,
    SubmitForm,
    UploadForm,
    WithdrawForm,
)
from workflow.definitions.loader import latest_definition
from workflow.engine import available_transitions, compiled
from workflow.errors import ConflictError, ValidationFailed
from workflow.loaders import load_application
from workflow.models import Application, Attachment, Call, Decision, User
from workflow.operations.applications import (
    CallClosed,
    check_submittable,
    editable_keys,
    resubmit_application,
    save_draft,
    start_application,
    submit_application,
    withdraw_application,
)
from workflow.operations.attachments import (
    INLINE_TYPES,
    add_attachment,
    delete_attachment,
    editable_materials,
)
from workflow.permissions import can_view_attachment, can_view_decision, roles_for
from workflow.storage import StorageError

from ..access import login_required_mfa
from ..extensions import db
from ..hooks import lang
from ..jobs import storage as app_storage
from ..portal_pages import (
    diagram_mermaid,
    diagram_svg,
    graphviz_available,
    local_time,
    material_rows,
    org_applications,
    org_type_label,
    precheck_results,
    program_calls,
    public_stages,
    status_facts,
)

bp = Blueprint("portal", __name__)

CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
MAX_ID = 2**31 - 1  # ids beyond the column type are simply not found


def can_use_portal(user: Any, application: Application) -> bool:
    """The user applies for the organization that owns ``application``."""
    return isinstance(user, User) and "applicant" in roles_for(user, application)


def _get(model: type, ident: int) -> Any:
    if ident > MAX_ID:
        abort(404)
    return db.get_or_404(model, ident)


def _own_application(app_id: int) -> Application:
    app = load_application(db.session, app_id)
    if app is None:
        abort(404)
    if not can_use_portal(current_user, app):
        abort(403)
    return app


def _user() -> User:
    return current_user._get_current_object()  # type: ignore[attr-defined]


def _program(app: Application):
    return compiled(db.session, app.definition_id).program


def _message(errors: dict[str, dict[str, str]]) -> dict[str, str]:
    current = lang()
    return {k: v.get(current) or v["zh"] for k, v in errors.items()}


# ---------------------------------------------------------------- catalogue


@bp.get("/programs/<code>")
def program(code: str):
    if not CODE_RE.match(code):
        abort(404)
    definition = latest_definition(db.session, code)
    if definition is None:
        abort(404)
    prog = compiled(db.session, definition.id).program
    user = current_user if current_user.is_authenticated else None
    return render_template(
        "portal/program.html",
        program=prog,
        definition=definition,
        calls=program_calls(code, user, date.today()),
        has_diagram=graphviz_available(),
        mermaid=None if graphviz_available() else diagram_mermaid(prog, lang()),
        start_form=StartApplicationForm(),
        stages=public_stages(prog),
        org_type_label=org_type_label,
        today=date.today(),
    )


@bp.get("/programs/<code>/diagram.svg")
def diagram(code: str):
    if not CODE_RE.match(code):
        abort(404)
    definition = latest_definition(db.session, code)
    if definition is None:
        abort(404)
    svg = diagram_svg(definition.id, compiled(db.session, definition.id).program, lang())
    if svg is None:
        abort(404)
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# ---------------------------------------------------------------- my applications


@bp.get("/my")
@login_required_mfa
def dashboard():
    user = _user()
    if user.organization_id is None:
        abort(403)
    return render_template(
        "portal/dashboard.html",
        rows=org_applications(user.organization_id, date.today()),
        organization=user.organization,
        today=date.today(),
    )


@bp.post("/calls/<int:call_id>/apply")
@login_required_mfa
def apply(call_id: int):
    call = _get(Call, call_id)
    app = start_application(db.session, user=_user(), call=call, today=date.today())
    flash(_("已进入申报：%(title)s。草稿可以随时保存，稍后继续填写。", title=call.title), "success")
    return redirect(url_for("portal.edit", app_id=app.id))


# ---------------------------------------------------------------- one application


@bp.get("/applications/<int:app_id>")
@login_required_mfa
def status(app_id: int):
    app = _own_application(app_id)
    prog = _program(app)
    today = date.today()
    triggers = {t.trigger for t in available_transitions(db.session, app, _user(), today)}
    withdraw_form = WithdrawForm(formdata=None, version=app.version)
    return render_template(
        "portal/status.html",
        app=app,
        program=prog,
        facts=status_facts(app, prog, today),
        can_withdraw="withdraw" in triggers,
        can_submit=bool(triggers & {"submit", "resubmit"}),
        editable=editable_keys(db.session, app) != set(),
        withdraw_form=withdraw_form,
        submit_form=SubmitForm(formdata=None, version=app.version),
        field_label=lambda key: field_label(prog, key, lang()),
        local_time=local_time,
    )


@bp.route("/applications/<int:app_id>/edit", methods=["GET", "POST"])
@login_required_mfa
def edit(app_id: int):
    app = _own_application(app_id)
    prog = _program(app)
    allowed = editable_keys(db.session, app)
    stored = dict(app.form_data or {})
    if request.method == "GET":
        if allowed == set():
            # Submitted: the form as it stands, read-only.
            return _render_form(app, prog, None, stored, set(), {}, 200)
        form = form_class_for(app.definition_id, prog)(
            formdata=None, data=initial_data(prog, stored)
        )
        form.version.data = str(app.version)
        check = request.args.get("check")
        errors = _message(check_submittable(db.session, app)) if check else {}
        return _render_form(app, prog, form, stored, allowed, errors, 200)

    form = form_class_for(app.definition_id, prog)()
    action = request.form.get("action", "save")
    if action.startswith(("add_row:", "remove_row:")):
        changed = with_rows_changed(form, action, allowed)
        if changed is None:
            abort(400)
        return _render_form(app, prog, changed, _shown(changed, stored, allowed), allowed, {}, 200)
    if form.expected_version() is None:
        abort(400)
    try:
        field_errors = save_draft(
            db.session, app, _user(), form.to_raw(), expected_version=form.expected_version()
        )
    except ConflictError as exc:
        # Keep what was typed; the form now carries the current version, so saving again
        # deliberately replaces the other change.
        flash(exc.message(lang()), "error")
        form.version.data = str(app.version)
        return _render_form(app, prog, form, _shown(form, stored, allowed), allowed, {}, 409)
    if field_errors:
        errors = _message(field_errors)
        flash(_("有%(n)s处填写格式不正确，请修改后再保存。", n=len(errors)), "error")
        return _render_form(app, prog, form, _shown(form, stored, allowed), allowed, errors, 422)
    flash(_("草稿已保存。"), "success")
    if action == "save_materials":
        return redirect(url_for("portal.materials", app_id=app.id))
    return redirect(url_for("portal.edit", app_id=app.id))


def _shown(form, stored: dict[str, Any], allowed: set[str] | None) -> dict[str, Any]:
    """What the page shows after a POST: what was typed, and (in a supplement) the
    stored values of everything that may not change."""
    raw = form.to_raw()
    return raw if allowed is None else {**stored, **{k: raw.get(k) for k in allowed}}


def _render_form(app, prog, form, data, allowed, errors: dict[str, str], status: int):
    if form is not None:
        form.localize(lang())
    sections = layout(
        form, prog, data=data, params=app.call.params, editable=allowed, errors=errors, lang=lang()
    )
    return render_template(
        "portal/edit.html",
        app=app,
        program=prog,
        form=form,
        sections=sections,
        errors=errors,
        supplement=form is not None and allowed is not None,
        readonly=form is None,
        field_label=lambda key: field_label(prog, key, lang()),
        field_anchor=lambda key: field_anchor(prog, key),
    ), status


@bp.route("/applications/<int:app_id>/materials", methods=["GET", "POST"])
@login_required_mfa
def materials(app_id: int):
    app = _own_application(app_id)
    prog = _program(app)
    errors: dict[str, str] = {}
    status_code = 200
    if request.method == "POST":
        upload = UploadForm()
        kind = upload.kind.data or ""
        if kind not in {m.kind for m in prog.materials}:
            abort(400)
        replace = None
        if upload.replace.data:
            try:
                replace = _get(Attachment, int(upload.replace.data))
            except ValueError:
                abort(404)
            if replace.application_id != app.id:
                abort(404)
        file = upload.file.data
        if file is None or not getattr(file, "filename", None):
            errors[kind] = _("请选择要上传的文件。")
            status_code = 422
        else:
            try:
                add_attachment(
                    db.session,
                    app,
                    _user(),
                    kind,
                    file.filename,
                    file.read(),
                    app_storage(),
                    replace=replace,
                )
            except ValidationFailed as exc:
                errors[kind] = exc.message(lang())
                status_code = 422
            else:
                flash(_("文件已上传。") if replace is None else _("文件已替换。"), "success")
                return redirect(url_for("portal.materials", app_id=app.id) + f"#material-{kind}")
    return render_template(
        "portal/materials.html",
        app=app,
        program=prog,
        rows=material_rows(app, prog, editable_materials(db.session, app)),
        errors=errors,
        upload_form=UploadForm(formdata=None),
        delete_form=DeleteAttachmentForm(formdata=None),
    ), status_code


@bp.post("/attachments/<int:attachment_id>/delete")
@login_required_mfa
def delete_material(attachment_id: int):
    attachment = _get(Attachment, attachment_id)
    app = attachment.application
    if not can_use_portal(current_user, app):
        abort(403)
    kind = attachment.kind
    delete_attachment(db.session, attachment, _user())
    flash(_("文件已删除。"), "success")
    return redirect(url_for("portal.materials", app_id=app.id) + f"#material-{kind}")


@bp.get("/attachments/<int:attachment_id>")
@login_required_mfa
def attachment(attachment_id: int):
    att = _get(Attachment, attachment_id)
    if not can_view_attachment(current_user, att):
        abort(403)
    return _send(att.storage_key, att.content_type, att.filename)


@bp.get("/decisions/<int:decision_id>/pdf")
@login_required_mfa
def decision_pdf(decision_id: int):
    decision = _get(Decision, decision_id)
    if not can_view_decision(current_user, decision):
        abort(403)
    if not decision.pdf_storage_key:
        abort(404)
    return _send(decision.pdf_storage_key, "application/pdf", f"{decision.doc_number}.pdf")


def _send(key: str, content_type: str, filename: str):
    try:
        data = app_storage().read(key)
    except (StorageError, OSError):
        abort(404)
    inline = content_type in INLINE_TYPES and request.args.get("download") != "1"
    response = send_file(
        io.BytesIO(data),
        mimetype=content_type if content_type in _SERVABLE else "application/octet-stream",
        as_attachment=not inline,
        download_name=filename,
        max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


_SERVABLE = INLINE_TYPES | {
    "application/zip",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}


@bp.get("/applications/<int:app_id>/precheck")
@login_required_mfa
def precheck(app_id: int):
    app = _own_application(app_id)
    return _render_precheck(app, SubmitForm(formdata=None, version=app.version), None, 200)


def _render_precheck(app: Application, form: SubmitForm, failure: str | None, code: int):
    prog = _program(app)
    today = date.today()
    triggers = {t.trigger for t in available_transitions(db.session, app, _user(), today)}
    return render_template(
        "portal/precheck.html",
        app=app,
        program=prog,
        check=precheck_results(app, prog, today),
        problems=_message(check_submittable(db.session, app)),
        can_submit=bool(triggers & {"submit", "resubmit"}),
        submit_form=form,
        failure=failure,
        field_label=lambda key: field_label(prog, key, lang()),
        field_anchor=lambda key: field_anchor(prog, key),
    ), code


@bp.post("/applications/<int:app_id>/submit")
@login_required_mfa
def submit(app_id: int):
    app = _own_application(app_id)
    form = SubmitForm()
    if form.expected_version() is None:
        abort(400)
    stage = _program(app).state(app.state).stage
    operation = resubmit_application if stage == "supplement" else submit_application
    try:
        operation(
            db.session, app, _user(), today=date.today(), expected_version=form.expected_version()
        )
    except CallClosed:
        raise
    except ValidationFailed as exc:
        return _render_precheck(app, form, exc.message(lang()), 422)
    flash(_("申报已提交，申报编号：%(number)s。", number=app.number), "success")
    return redirect(url_for("portal.status", app_id=app.id))


@bp.post("/applications/<int:app_id>/withdraw")
@login_required_mfa
def withdraw(app_id: int):
    app = _own_application(app_id)
    form = WithdrawForm()
    if form.expected_version() is None:
        abort(400)
    if not form.validate():
        flash(" ".join(form.reason.errors), "error")
        return redirect(url_for("portal.status", app_id=app.id))
    withdraw_application(
        db.session,
        app,
        _user(),
        today=date.today(),
        reason=form.reason.data,
        expected_version=form.expected_version(),
    )
    flash(_("申报已撤回。"), "success")
    return redirect(url_for("portal.status", app_id=app.id))
