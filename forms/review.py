"""Forms of the reviewer workbench, the expert score sheet and the public notice.

One form class per use case. Choices that depend on the program (supplement items,
assignees, rubric criteria) are set by the view, or the class is built from the
definition (``score_sheet_form``). Query-string filters of the queue are parsed by
``parse_queue_args``: a bad value is ignored and reported, never an error page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from flask_babel import gettext, lazy_gettext
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DecimalField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
    widgets,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from workflow.queues import DEFAULT_PER_PAGE, PER_PAGE_CHOICES, SORTS, STAGE_ORDER, QueueQuery

REASON_MAX = 5000


def choices(pairs: Iterable[tuple]) -> list[SelectChoice]:
    """(value, label) pairs as the SelectChoice objects WTForms expects."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ActionForm(FlaskForm):
    """Fire one transition from the application page (reason, supplement sub-form)."""

    reason = TextAreaField(lazy_gettext("理由"), validators=[Optional(), Length(max=REASON_MAX)])
    version = HiddenField()
    fields = MultiCheckboxField(lazy_gettext("需补正的填报内容"), choices=[])
    materials = MultiCheckboxField(lazy_gettext("需补正的材料"), choices=[])


class SimpleForm(FlaskForm):
    """A button that posts (claim, release, rank, complete scoring): CSRF only."""


class AssignForm(FlaskForm):
    assignee = SelectField(lazy_gettext("分派给"), coerce=int, choices=[])


class AwardCorrectionForm(FlaskForm):
    amount = StringField(
        lazy_gettext("更正后的奖励金额（元）"),
        validators=[DataRequired(message=lazy_gettext("请填写金额。")), Length(max=20)],
    )
    reason = TextAreaField(
        lazy_gettext("更正理由"),
        validators=[DataRequired(message=lazy_gettext("请填写更正理由。")), Length(max=2000)],
    )
    version = HiddenField()


class BatchForm(FlaskForm):
    """The queue's batch bar: selected rows and what to do with them."""

    ids = SelectMultipleField(coerce=int, choices=[], validate_choice=False)
    action = StringField(validators=[DataRequired(), Length(max=60)])


class BatchConfirmForm(FlaskForm):
    """Second step of a batch: the reason, the assignee or the supplement items."""

    ids = SelectMultipleField(coerce=int, choices=[], validate_choice=False)
    action = HiddenField(validators=[DataRequired(), Length(max=60)])
    reason = TextAreaField(lazy_gettext("理由"), validators=[Optional(), Length(max=REASON_MAX)])
    assignee = SelectField(lazy_gettext("分派给"), coerce=int, choices=[], validate_choice=False)
    fields = MultiCheckboxField(lazy_gettext("需补正的填报内容"), choices=[])
    materials = MultiCheckboxField(lazy_gettext("需补正的材料"), choices=[])


class RecuseForm(FlaskForm):
    reason = TextAreaField(
        lazy_gettext("回避理由"),
        validators=[DataRequired(message=lazy_gettext("请说明回避理由。")), Length(max=2000)],
    )


class ScoreSheetBase(FlaskForm):
    comment = TextAreaField(lazy_gettext("评审意见"), validators=[Optional(), Length(max=5000)])
    no_conflict = BooleanField(
        lazy_gettext("本人声明与该申报单位不存在利害关系，能够独立、公正地评审。"),
        validators=[
            DataRequired(message=lazy_gettext("请声明无利害关系，或选择回避。")),
        ],
    )

    criteria: list[str] = []


def score_sheet_form(rubric: Iterable) -> type[ScoreSheetBase]:
    """A form class with one score field per rubric criterion (0 to its maximum)."""
    attrs: dict = {"criteria": []}
    for c in rubric:
        name = f"score_{c.key}"
        attrs["criteria"].append(name)
        attrs[name] = DecimalField(
            c.label.zh,
            places=None,
            validators=[
                InputRequired(message=lazy_gettext("请填写分数。")),
                NumberRange(
                    min=Decimal(0),
                    max=Decimal(c.max_points),
                    message=lazy_gettext("分数应在%(min)s到%(max)s之间。"),
                ),
            ],
        )
    return type("ScoreSheetForm", (ScoreSheetBase,), attrs)


class PanelForm(FlaskForm):
    size = IntegerField(
        lazy_gettext("每件申报的专家人数"),
        default=3,
        validators=[
            InputRequired(message=lazy_gettext("请填写人数。")),
            NumberRange(min=1, max=15, message=lazy_gettext("人数应在1到15之间。")),
        ],
    )


class MeetingForm(FlaskForm):
    """The approval meeting (审定): which applications, which decision, under which
    meeting reference."""

    ids = SelectMultipleField(coerce=int, choices=[], validate_choice=False)
    meeting_ref = StringField(
        lazy_gettext("会议纪要文号"),
        validators=[DataRequired(message=lazy_gettext("请填写会议纪要文号。")), Length(max=100)],
    )
    decision = RadioField(
        lazy_gettext("审定结论"),
        choices=[
            SelectChoice("approve", lazy_gettext("审定通过")),
            SelectChoice("reject", lazy_gettext("审定不通过")),
        ],
        default="approve",
        validators=[InputRequired(message=lazy_gettext("请选择审定结论。"))],
    )
    reason = TextAreaField(
        lazy_gettext("不通过理由"), validators=[Optional(), Length(max=REASON_MAX)]
    )


class AllocationForm(FlaskForm):
    meeting_ref = StringField(
        lazy_gettext("会议纪要文号"),
        validators=[DataRequired(message=lazy_gettext("请填写会议纪要文号。")), Length(max=100)],
    )


class ObjectionForm(FlaskForm):
    """A member of the public objects (异议) to one application of a notice."""

    application_id = SelectField(
        lazy_gettext("对哪一项提出异议"), coerce=int, choices=[], validate_choice=True
    )
    name = StringField(
        lazy_gettext("真实姓名或单位名称"),
        validators=[
            DataRequired(message=lazy_gettext("请填写真实姓名或单位名称，匿名异议不予受理。")),
            Length(max=100),
        ],
    )
    contact = StringField(
        lazy_gettext("联系方式（电话或电子邮箱）"),
        validators=[
            DataRequired(message=lazy_gettext("请填写联系方式。")),
            Length(max=100),
        ],
    )
    reason = TextAreaField(
        lazy_gettext("异议理由"),
        validators=[
            DataRequired(message=lazy_gettext("请填写异议理由。")),
            Length(min=10, max=5000, message=lazy_gettext("异议理由应为10至5000字。")),
        ],
    )
    evidence = FileField(lazy_gettext("证明材料（可选，PDF或图片，不超过10MB）"))


class ObjectionDecisionForm(FlaskForm):
    decision = RadioField(
        lazy_gettext("核查结论"),
        choices=[
            SelectChoice("dismiss", lazy_gettext("异议不成立，恢复公示")),
            SelectChoice("uphold", lazy_gettext("异议成立，不予支持")),
        ],
        validators=[InputRequired(message=lazy_gettext("请选择核查结论。"))],
    )
    reason = TextAreaField(
        lazy_gettext("核查意见"),
        validators=[DataRequired(message=lazy_gettext("请填写核查意见。")), Length(max=5000)],
    )


# ---------------------------------------------------------------- queue filters


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "on", "yes")


def parse_queue_args(
    args: Mapping[str, str],
    *,
    programs: Iterable[str],
    call_ids: Iterable[int],
    districts: Iterable[str],
    states: Iterable[str],
) -> tuple[QueueQuery, list[str]]:
    """The queue's query string as a QueueQuery; unknown values are dropped and named in
    the returned messages (shown to the reviewer), never a 400 or a 500."""
    problems: list[str] = []
    values: dict = {}

    def pick(name: str, allowed: Iterable, convert=str) -> None:
        raw = (args.get(name) or "").strip()
        if not raw:
            return
        try:
            value = convert(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or value not in set(allowed):
            problems.append(gettext("已忽略无效的筛选条件：%(name)s", name=name))
            return
        values[name] = value

    pick("program", programs)
    pick("call_id", call_ids, int)
    pick("district", districts)
    pick("state", states)
    pick("stage", STAGE_ORDER)
    pick("sort", SORTS)
    values["overdue"] = _flag(args.get("overdue"))
    values["mine"] = _flag(args.get("mine"))
    direction = (args.get("dir") or "asc").lower()
    if direction not in ("asc", "desc"):
        problems.append(gettext("已忽略无效的筛选条件：%(name)s", name="dir"))
        direction = "asc"
    values["descending"] = direction == "desc"
    per_page = args.get("per_page")
    if per_page:
        try:
            n = int(per_page)
        except ValueError:
            n = -1
        if n in PER_PAGE_CHOICES:
            values["per_page"] = n
        else:
            problems.append(gettext("已忽略无效的筛选条件：%(name)s", name="per_page"))
            values["per_page"] = DEFAULT_PER_PAGE
    q = (args.get("q") or "").strip()
    if len(q) > 100:
        problems.append(gettext("搜索词过长，已截断为100个字符。"))
        q = q[:100]
    if q:
        values["q"] = q
    cursor = (args.get("cursor") or "").strip()
    if cursor:
        values["cursor"] = cursor
    return QueueQuery(**values), problems


# ---------------------------------------------------------------- uploads

EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
EVIDENCE_TYPES = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


def sniff_evidence(head: bytes) -> str | None:
    """The content type of an accepted evidence file from its first bytes (the name and
    the browser's claimed type are not trusted), or None."""
    for magic, content_type in EVIDENCE_TYPES.items():
        if head.startswith(magic):
            return content_type
    return None
