"""WTForms classes built from a program definition (the YAML ``form:``), once per stored
definition version (what the pages make of them is :mod:`forms.layout`).

The classes only carry what was typed: every value stays the text the user entered, and
all checking is done by :mod:`workflow.validation` (``clean_form`` for drafts,
``submission_errors`` before submitting), whose bilingual messages :mod:`forms.layout` puts back
next to the fields. So the rules live in one place, and a draft is never blocked by a missing
field.

Field names: a section is a ``FormField`` (``applicant-unit_type``), a repeatable group a
``FieldList(FormField(row))`` (``invoices-0-amount``). Labels, help and choice labels are
set per request in the user's language by :meth:`ProgramForm.localize`; the classes
themselves are language-free, so one class per definition version serves everyone.
"""

from __future__ import annotations

import threading
from typing import Any

from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.widgets import CheckboxInput, DateInput, EmailInput, ListWidget, TelInput

from workflow.definitions.schema import FieldDef, Program, Section

# Names a WTForms form already uses; a definition key equal to one gets a trailing "_".
_RESERVED = {
    "data",
    "errors",
    "meta",
    "process",
    "validate",
    "populate_obj",
    "version",
    "csrf_token",
    "hidden_tag",
    "is_submitted",
    "validate_on_submit",
    "localize",
    "program",
}
_NUMERIC_INPUT = {
    "integer": "numeric",
    "decimal": "decimal",
    "money": "decimal",
    "percent": "decimal",
}


def attr_name(key: str) -> str:
    return f"{key}_" if key in _RESERVED or key.startswith("_") else key


class ProgramForm(FlaskForm):
    """Base of every generated application form. ``version`` is the optimistic lock: the
    application version the user saw, sent back as ``expected_version``."""

    version = HiddenField()
    program: Program  # set on each generated subclass

    def localize(self, lang: str) -> None:
        """Labels, help texts and choice labels in the user's language."""
        for section in self.program.form.sections:
            container = self[attr_name(section.key)]
            forms = (
                [entry.form for entry in container.entries]
                if section.repeatable
                else [container.form]
            )
            for sub in forms:
                localize_fields(sub, section, lang)

    def to_raw(self) -> dict[str, Any]:
        """What was typed, shaped like ``form_data`` (the input of ``save_draft``)."""
        raw: dict[str, Any] = {}
        for section in self.program.form.sections:
            container = self[attr_name(section.key)]
            if section.repeatable:
                raw[section.key] = [_row_raw(section, entry.form) for entry in container.entries]
            else:
                raw.update(_row_raw(section, container.form))
        return raw

    def expected_version(self) -> int | None:
        try:
            return int(self.version.data)
        except (TypeError, ValueError):
            return None


def localize_fields(sub: Form, section: Section, lang: str) -> None:
    for f in section.fields:
        bound = sub[attr_name(f.key)]
        bound.label.text = f.label.get(lang)
        bound.description = f.help.get(lang) if f.help else ""
        if f.choices:
            choices = [SelectChoice(c.value, c.label.get(lang)) for c in f.choices]
            if f.type == "choice":
                choices.insert(0, SelectChoice("", _("请选择")))
            bound.choices = choices


def _row_raw(section: Section, sub: Form) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in section.fields:
        value = sub[attr_name(f.key)].data
        if f.type == "boolean":
            value = bool(value)
        elif f.type == "multichoice":
            value = list(value or []) or None
        out[f.key] = value
    return out


# ---------------------------------------------------------------- building the classes


def _unbound(f: FieldDef):
    kw: dict[str, Any] = {"label": f.label.zh, "description": f.help.zh if f.help else ""}
    render_kw: dict[str, Any] = {}
    if f.type == "textarea":
        render_kw["rows"] = 4
        if f.max_length:
            render_kw["maxlength"] = f.max_length
        return TextAreaField(render_kw=render_kw, **kw)
    if f.type == "boolean":
        return BooleanField(**kw)
    choices = [SelectChoice(c.value, c.label.zh) for c in f.choices or []]
    if f.type == "choice":
        # validate_choice=False: an unknown value is reported by clean_form, in both languages.
        return SelectField(choices=[SelectChoice(""), *choices], validate_choice=False, **kw)
    if f.type == "multichoice":
        return SelectMultipleField(
            choices=choices,
            validate_choice=False,
            widget=ListWidget(prefix_label=False),
            option_widget=CheckboxInput(),
            **kw,
        )
    widget = {"date": DateInput(), "email": EmailInput(), "phone": TelInput()}.get(f.type)
    if f.type in _NUMERIC_INPUT:
        # Text with a numeric keyboard, not type=number: what was typed is never dropped.
        render_kw["inputmode"] = _NUMERIC_INPUT[f.type]
    if f.type == "credit_code":
        render_kw.update(maxlength=18, autocapitalize="characters", spellcheck="false")
    elif f.type in ("text", "email", "phone") and f.max_length:
        render_kw["maxlength"] = f.max_length
    if f.type == "email":
        render_kw["autocomplete"] = "email"
    if f.type == "phone":
        render_kw["autocomplete"] = "tel"
    if widget is not None:
        kw["widget"] = widget
    return StringField(render_kw=render_kw, **kw)


def _section_form(program: Program, section: Section) -> type[Form]:
    attrs = {attr_name(f.key): _unbound(f) for f in section.fields}
    return type(f"{program.code}_{section.key}", (Form,), attrs)


def build_form_class(program: Program, definition_id: int) -> type[ProgramForm]:
    attrs: dict[str, Any] = {"program": program}
    for section in program.form.sections:
        sub = FormField(_section_form(program, section), label=section.title.zh)
        if section.repeatable:
            # One entry more than allowed reaches clean_form, which reports "at most N rows".
            attrs[attr_name(section.key)] = FieldList(
                sub, min_entries=section.min_rows, max_entries=section.max_rows + 1
            )
        else:
            attrs[attr_name(section.key)] = sub
    return type(f"{program.code}_v{definition_id}_Form", (ProgramForm,), attrs)


_CLASSES: dict[int, type[ProgramForm]] = {}
_LOCK = threading.Lock()


def form_class_for(definition_id: int, program: Program) -> type[ProgramForm]:
    """The form class of a stored definition version (rows are immutable: cache by id)."""
    hit = _CLASSES.get(definition_id)
    if hit is None:
        built = build_form_class(program, definition_id)
        with _LOCK:
            hit = _CLASSES.setdefault(definition_id, built)
    return hit


# ---------------------------------------------------------------- data in and out


def initial_data(program: Program, data: dict[str, Any]) -> dict[str, Any]:
    """Stored ``form_data`` (or a raw dict) shaped for the form's ``data=`` argument."""
    out: dict[str, Any] = {}
    for section in program.form.sections:
        if section.repeatable:
            rows = [r for r in data.get(section.key) or [] if isinstance(r, dict)]
            out[attr_name(section.key)] = [_row_initial(section, r) for r in rows]
        else:
            out[attr_name(section.key)] = _row_initial(section, data)
    return out


def _row_initial(section: Section, data: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for f in section.fields:
        value = data.get(f.key)
        if f.type == "boolean":
            value = value is True or str(value).lower() in ("1", "true", "y", "yes", "on")
        elif f.type == "multichoice":
            value = list(value) if isinstance(value, list) else []
        elif value is not None:
            value = str(value)
        row[attr_name(f.key)] = value
    return row


def formdata_for(program: Program, data: dict[str, Any]) -> MultiDict:
    """The POST body a browser would send for ``data`` (tests and round trips)."""
    out: MultiDict = MultiDict()
    for section in program.form.sections:
        if section.repeatable:
            for i, row in enumerate(data.get(section.key) or []):
                _post_row(out, f"{attr_name(section.key)}-{i}-", section, row)
        else:
            _post_row(out, f"{attr_name(section.key)}-", section, data)
    return out


def _post_row(out: MultiDict, prefix: str, section: Section, data: dict[str, Any]) -> None:
    for f in section.fields:
        name = prefix + attr_name(f.key)
        value = data.get(f.key)
        if f.type == "boolean":
            if value is True or str(value).lower() in ("1", "true", "y", "yes", "on"):
                out.add(name, "y")
        elif f.type == "multichoice":
            for v in value or []:
                out.add(name, str(v))
        else:
            out.add(name, "" if value is None else str(value))


def with_rows_changed(
    form: ProgramForm, action: str, allowed: set[str] | None
) -> ProgramForm | None:
    """'Add row' / 'remove row N' without JavaScript (``add_row:<group>``,
    ``remove_row:<group>:<n>``): a new form showing what was typed with one row more or
    less, or None for an action that names no changeable group. Nothing is saved."""
    program = form.program
    parts = action.split(":")
    section = (
        next((s for s in program.repeatable_sections() if s.key == parts[1]), None)
        if len(parts) > 1
        else None
    )
    if section is None or (allowed is not None and section.key not in allowed):
        return None
    raw = form.to_raw()
    rows = list(raw.get(section.key) or [])
    if parts[0] == "add_row" and len(parts) == 2:
        if len(rows) < section.max_rows:
            rows.append({})
    elif parts[0] == "remove_row" and len(parts) == 3 and parts[2].isdigit():
        index = int(parts[2]) - 1
        if 0 <= index < len(rows):
            rows.pop(index)
    else:
        return None
    new = type(form)(formdata=None, data=initial_data(program, {**raw, section.key: rows}))
    new.version.data = form.version.data
    return new
