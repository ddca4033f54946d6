"""What the portal's form pages show, built from a generated form and a definition:
sections, rows and fields with their labels, errors, visibility (``visible_if``) and
whether they may be changed now (a supplement opens only the requested keys), and
validation keys turned into anchors and words for error lists."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask_babel import gettext as _

from workflow.definitions.schema import FieldDef, Program, Section
from workflow.expressions import ExpressionError, Record, evaluate
from workflow.validation import clean_value
from workflow.values import typed_form, typed_params

from .builder import ProgramForm, attr_name, localize_fields


def field_anchor(program: Program, key: str) -> str:
    """The HTML id of the input behind a validation key (``unit_type``,
    ``invoices.2.amount``, ``invoices``, ``material.cost_evidence``)."""
    if key.startswith("material."):
        return "material-" + key.split(".", 1)[1]
    parts = key.split(".")
    if len(parts) == 3 and parts[1].isdigit():
        return f"{attr_name(parts[0])}-{int(parts[1]) - 1}-{attr_name(parts[2])}"
    for section in program.form.sections:
        if section.key == key:
            return f"section-{section.key}"
        if not section.repeatable and any(f.key == key for f in section.fields):
            return f"{attr_name(section.key)}-{attr_name(key)}"
    return "form-top"


def field_label(program: Program, key: str, lang: str) -> str:
    """A validation key in words: ``发票 第2行 金额``."""
    if key.startswith("material."):
        kind = key.split(".", 1)[1]
        for m in program.materials:
            if m.kind == kind:
                return m.label.get(lang)
        return kind
    parts = key.split(".")
    for section in program.form.sections:
        if section.key == parts[0]:
            if len(parts) == 3:
                f = next((f for f in section.fields if f.key == parts[2]), None)
                row = _("第%(n)s行", n=parts[1])
                return f"{section.title.get(lang)} {row} {f.label.get(lang) if f else parts[2]}"
            return section.title.get(lang)
        if not section.repeatable:
            for f in section.fields:
                if f.key == key:
                    return f.label.get(lang)
    return key


# ---------------------------------------------------------------- view model


@dataclass
class FieldView:
    fdef: FieldDef
    bound: Any  # the bound WTForms field, or None when read-only
    anchor: str
    error: str | None = None
    visible: bool = True
    show_when: dict[str, str] | None = None
    display: str = ""

    def input_attrs(self) -> dict[str, str]:
        """ARIA attributes linking the input to its help and error texts."""
        ids = [f"{self.anchor}-help"] if self.fdef.help else []
        if self.error:
            ids.append(f"{self.anchor}-error")
        out = {"aria-describedby": " ".join(ids)} if ids else {}
        if self.error:
            out["aria-invalid"] = "true"
        if self.fdef.required and self.fdef.type != "boolean":
            out["aria-required"] = "true"
        return out


@dataclass
class RowView:
    number: int  # counted from 1
    fields: list[FieldView]


@dataclass
class SectionView:
    section: Section
    editable: bool
    anchor: str
    fields: list[FieldView] = field(default_factory=list)
    rows: list[RowView] = field(default_factory=list)
    template: RowView | None = None  # a blank row for client-side "add row"
    error: str | None = None
    visible: bool = True


_SIMPLE = re.compile(r"^\s*(form|row)\.([a-z][a-z0-9_]*)\s*(==|!=)\s*('([^']*)'|true|false)\s*$")


def _show_when(expr: str | None, prefix: str, section_prefix: dict[str, str]) -> dict | None:
    """A visible_if simple enough for the browser to re-check as the user types
    (``form.x == 'v'``, ``row.y != true``); others are evaluated on the server only."""
    if not expr:
        return None
    m = _SIMPLE.match(expr)
    if not m:
        return None
    scope, key, op, literal, quoted = m.groups()
    if scope == "row":
        name = prefix + attr_name(key)
    elif key in section_prefix:
        name = section_prefix[key] + attr_name(key)
    else:
        return None
    value = quoted if quoted is not None else literal
    return {"name": name, "op": op, "value": value}


def _visible(expr: str | None, names: dict[str, Any]) -> bool:
    if not expr:
        return True
    try:
        return bool(evaluate(expr, names))
    except ExpressionError:
        return True


def display_value(f: FieldDef, value: Any, lang: str) -> str:
    """A stored value as read-only text."""
    if value is None or value == "" or value == []:
        return "—"
    if f.type == "boolean":
        return _("是") if value is True else _("否")
    if f.choices:
        labels = {c.value: c.label.get(lang) for c in f.choices}
        values = value if isinstance(value, list) else [value]
        return "、".join(labels.get(str(v), str(v)) for v in values)
    if f.type == "money":
        return _("%(amount)s 元", amount=value)
    if f.type == "percent":
        return f"{value} %"
    return str(value)


def layout(
    form: ProgramForm | None,
    program: Program,
    *,
    data: dict[str, Any],
    params: dict[str, Any] | None,
    editable: set[str] | None,
    errors: dict[str, str],
    lang: str,
) -> list[SectionView]:
    """Sections as the template shows them. ``data`` is what the page shows (stored or
    just typed) and decides which conditional fields are visible; ``editable`` is None
    for everything, else the keys that may change (a supplement); ``errors`` maps
    validation keys to messages already in the user's language."""
    typed = typed_form(program, _lenient(program, data))
    names = {
        "form": Record(typed, "form"),
        "params": Record(typed_params(program, params), "params"),
    }
    section_prefix = {
        f.key: f"{attr_name(s.key)}-"
        for s in program.form.sections
        if not s.repeatable
        for f in s.fields
    }
    out: list[SectionView] = []
    for section in program.form.sections:
        if section.repeatable:
            out.append(
                _group_view(
                    form,
                    program,
                    section,
                    data,
                    typed,
                    names,
                    editable,
                    errors,
                    lang,
                    section_prefix,
                )
            )
            continue
        view = SectionView(
            section,
            editable=editable is None or any(f.key in editable for f in section.fields),
            anchor=f"section-{section.key}",
            visible=_visible(section.visible_if, names),
        )
        sub = form[attr_name(section.key)].form if form is not None else None
        prefix = f"{attr_name(section.key)}-"
        for f in section.fields:
            can_edit = sub is not None and (editable is None or f.key in editable)
            view.fields.append(
                FieldView(
                    f,
                    sub[attr_name(f.key)] if can_edit else None,
                    anchor=prefix + attr_name(f.key),
                    error=errors.get(f.key),
                    visible=_visible(f.visible_if, names),
                    show_when=_show_when(f.visible_if, prefix, section_prefix),
                    display=display_value(f, data.get(f.key), lang),
                )
            )
        out.append(view)
    return out


def _group_view(
    form, program, section, data, typed, names, editable, errors, lang, section_prefix
) -> SectionView:
    can_edit = form is not None and (editable is None or section.key in editable)
    view = SectionView(
        section,
        editable=can_edit,
        anchor=f"section-{section.key}",
        error=errors.get(section.key),
        visible=_visible(section.visible_if, names),
    )
    typed_rows = typed.get(section.key) or []
    if can_edit:
        entries = form[attr_name(section.key)].entries
        for i, entry in enumerate(entries):
            row_names = dict(names)
            row_names["row"] = Record(typed_rows[i] if i < len(typed_rows) else {}, "row")
            view.rows.append(
                _row_view(
                    section, entry.form, entry.name + "-", i, row_names, errors, section_prefix
                )
            )
        blank_cls = form[attr_name(section.key)].unbound_field.args[0]
        blank = blank_cls(prefix=f"{attr_name(section.key)}-__index__-")
        localize_fields(blank, section, lang)
        view.template = _row_view(
            section,
            blank,
            f"{attr_name(section.key)}-__index__-",
            -1,
            {**names, "row": Record({}, "row")},
            {},
            section_prefix,
        )
    else:
        rows = [r for r in data.get(section.key) or [] if isinstance(r, dict)]
        for i, row in enumerate(rows):
            view.rows.append(
                RowView(
                    i + 1,
                    [
                        FieldView(
                            f,
                            None,
                            anchor=f"{attr_name(section.key)}-{i}-{attr_name(f.key)}",
                            display=display_value(f, row.get(f.key), lang),
                        )
                        for f in section.fields
                    ],
                )
            )
    return view


def _row_view(section, sub, prefix, index, row_names, errors, section_prefix) -> RowView:
    fields = []
    for f in section.fields:
        fields.append(
            FieldView(
                f,
                sub[attr_name(f.key)],
                anchor=prefix + attr_name(f.key),
                error=errors.get(f"{section.key}.{index + 1}.{f.key}"),
                visible=_visible(f.visible_if, row_names),
                show_when=_show_when(f.visible_if, prefix, section_prefix),
            )
        )
    return RowView(index + 1, fields)


def _lenient(program: Program, data: dict[str, Any]) -> dict[str, Any]:
    """Normalised values for deciding visibility from text just typed (a malformed value
    counts as empty). Unlike ``clean_form`` it keeps blank rows, so row numbers match."""
    out: dict[str, Any] = {}
    for section in program.form.sections:
        if section.repeatable:
            rows = [r for r in data.get(section.key) or [] if isinstance(r, dict)]
            out[section.key] = [_clean_row(section, r) for r in rows]
        else:
            out.update(_clean_row(section, data))
    return out


def _clean_row(section: Section, data: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for f in section.fields:
        value, error = clean_value(f, data.get(f.key))
        row[f.key] = None if error else value
    return row
