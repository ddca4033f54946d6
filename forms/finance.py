"""Finance forms, one class per use case: batch filters (a GET form) and building a batch,
line results, the bank result upload, clawbacks, report filters, and a CSRF-only form for
the plain buttons (lock, verify, remove, discard, rebatch). Choices that come from the
database (programs, calls, districts) are filled in by the view when it makes the form."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from flask_babel import lazy_gettext as _
from flask_wtf import FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired, FileSize
from wtforms import (
    DateField,
    DecimalField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError

LINE_STATUS_CHOICES = [
    SelectChoice("paid", _("已支付")),
    SelectChoice("failed", _("支付失败")),
    SelectChoice("returned", _("退回（退票）")),
]


def _choices(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """An "any" option first, then the pairs (value, label)."""
    return [SelectChoice("", _("全部"))] + [SelectChoice(v, label) for v, label in pairs]


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class _BatchFilterFields(FlaskForm):
    """Which approved decisions a batch takes."""

    program = SelectField(
        _("项目"), choices=[], default="", validators=[Optional()], validate_choice=True
    )
    call = SelectField(
        _("申报批次"), choices=[], default="", validators=[Optional()], validate_choice=True
    )
    district = SelectField(
        _("区县"), choices=[], default="", validators=[Optional()], validate_choice=True
    )
    issued_from = DateField(_("决定日期自"), validators=[Optional()])
    issued_to = DateField(_("决定日期至"), validators=[Optional()])

    def set_choices(
        self,
        programs: list[tuple[str, str]],
        calls: list[tuple[str, str]],
        districts: list[tuple[str, str]],
    ) -> None:
        self.program.choices = _choices(programs)
        self.call.choices = _choices(calls)
        self.district.choices = _choices(districts)

    def validate_issued_to(self, field: DateField) -> None:
        start = self.issued_from.data
        if field.data and start and field.data < start:
            raise ValidationError(_("结束日期不能早于开始日期。"))


class BatchFilterForm(_BatchFilterFields):
    """The filters in the query string, for the preview (nothing is changed)."""

    class Meta:
        csrf = False


class BuildBatchForm(_BatchFilterFields):
    """The same filters, posted (with the CSRF token) to build the batch."""


class LineResultForm(FlaskForm):
    status = SelectField(_("拨付结果"), choices=LINE_STATUS_CHOICES, validators=[DataRequired()])
    paid_on = DateField(_("支付日期"), validators=[Optional()])
    voucher_no = StringField(_("凭证号"), validators=[Optional(), Length(max=60)])
    reason = TextAreaField(_("失败或退回原因"), validators=[Optional(), Length(max=1000)])

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        if self.status.data == "paid":
            if not self.paid_on.data and not self.paid_on.errors:
                self.paid_on.errors = [*self.paid_on.errors, _("已支付须填写支付日期。")]
                ok = False
            elif self.paid_on.data and self.paid_on.data > date.today():
                self.paid_on.errors = [*self.paid_on.errors, _("支付日期不能晚于今天。")]
                ok = False
            if not (self.voucher_no.data or "").strip():
                self.voucher_no.errors = [*self.voucher_no.errors, _("已支付须填写凭证号。")]
                ok = False
        elif self.status.data in ("failed", "returned") and not (self.reason.data or "").strip():
            self.reason.errors = [*self.reason.errors, _("失败或退回须填写原因。")]
            ok = False
        return ok


class BankImportForm(FlaskForm):
    file = FileField(
        _("银行回单文件（CSV）"),
        validators=[
            FileRequired(_("请选择要导入的文件。")),
            FileAllowed(["csv", "txt"], _("请上传CSV文件。")),
            FileSize(10 * 1024 * 1024, message=_("文件不能超过10MB。")),
        ],
    )


class ClawbackForm(FlaskForm):
    decision_number = StringField(
        _("决定书文号"), validators=[DataRequired(_("请填写决定书文号。")), Length(max=60)]
    )
    amount = DecimalField(
        _("追回金额（元）"),
        places=2,
        validators=[
            DataRequired(_("请填写追回金额。")),
            NumberRange(min=Decimal("0.01"), message=_("金额须大于零。")),
        ],
    )
    reason = TextAreaField(
        _("追回原因"), validators=[DataRequired(_("请填写追回原因。")), Length(max=2000)]
    )
    recovered_on = DateField(_("资金收回日期"), validators=[Optional()])

    def validate_amount(self, field: DecimalField) -> None:
        if field.data is not None and field.data.as_tuple().exponent < -2:
            raise ValidationError(_("金额最多两位小数。"))


class ReportFilterForm(FlaskForm):
    """Dashboard filters (query string)."""

    class Meta:
        csrf = False

    program = SelectField(
        _("项目"), choices=[], default="", validators=[Optional()], validate_choice=True
    )
    district = SelectField(
        _("区县"), choices=[], default="", validators=[Optional()], validate_choice=True
    )
    year = SelectField(
        _("年度"), choices=[], default="", validators=[Optional()], validate_choice=True
    )

    def set_choices(
        self,
        programs: list[tuple[str, str]],
        districts: list[tuple[str, str]],
        years: list[int],
    ) -> None:
        self.program.choices = _choices(programs)
        self.district.choices = _choices(districts)
        self.year.choices = _choices([(str(y), str(y)) for y in years])
