"""Form classes for accounts: one per use case (log in, second step, register, reset,
profile, password, TOTP, organization details, invitation). Labels and messages are
Chinese message ids translated by Flask-Babel; choices that depend on the language
(districts) are filled in when the form is made."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from flask_babel import get_locale
from flask_babel import lazy_gettext as _
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    HiddenField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    Length,
    Optional,
    ValidationError,
)

from webapp.districts import district_choices
from webapp.security import password_problems
from workflow.domain.credit_code import is_valid_credit_code, normalize_credit_code

ORG_TYPES = (
    ("enterprise", _("企业")),
    ("patent_agency", _("专利代理机构")),
    ("university", _("高等学校")),
    ("research_institute", _("科研组织")),
)
LOCALE_CHOICES = (("zh", "简体中文"), ("en", "English"))
MOBILE = re.compile(r"1[3-9]\d{9}")
BANK_ACCOUNT = re.compile(r"\d{8,30}")


def _choices(pairs: Any, *, placeholder: bool = True) -> list[SelectChoice]:
    """Select options (wtforms 3.3 objects), led by an empty "please choose" one."""
    head = [SelectChoice("", _("请选择"))] if placeholder else []
    return head + [SelectChoice(value, label) for value, label in pairs]


def _lang() -> str:
    return str(get_locale() or "zh")[:2]


def _required() -> DataRequired:
    return DataRequired(message=_("请填写此项。"))


def _choose() -> DataRequired:
    return DataRequired(message=_("请选择一项。"))


def _max(n: int) -> Length:
    return Length(max=n, message=_("不能超过%(max)d个字符。"))


def _email() -> Email:
    return Email(message=_("请输入有效的邮箱地址，例如 name@example.cn。"))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _strip(value: Any) -> Any:
    """Trim, and drop control characters (PostgreSQL refuses NUL in text)."""
    return _CONTROL.sub("", value).strip() if isinstance(value, str) else value


def normalize_mobile(value: Any) -> Any:
    """Drop spaces, hyphens and a +86 prefix: ``+86 139-0431-0001`` → ``13904310001``."""
    if not isinstance(value, str):
        return value
    digits = re.sub(r"[\s\-()]", "", unicodedata.normalize("NFKC", value))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix) :]
    return digits


def _normalize_code(value: Any) -> Any:
    return normalize_credit_code(value) if isinstance(value, str) else value


def _normalize_account(value: Any) -> Any:
    return re.sub(r"[\s\-]", "", value) if isinstance(value, str) else value


def validate_mobile(_form: Any, field: Any) -> None:
    if field.data and not MOBILE.fullmatch(field.data):
        raise ValidationError(_("请输入11位中国大陆手机号码，例如 13904310001。"))


def validate_credit_code(_form: Any, field: Any) -> None:
    code = field.data or ""
    if len(code) != 18 or not re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", code):
        raise ValidationError(
            _("统一社会信用代码为18位，由数字和大写字母组成（不使用I、O、S、V、Z）。")
        )
    if not re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}", code):
        raise ValidationError(_("统一社会信用代码第3–8位应为数字（登记管理机关行政区划码）。"))
    if not is_valid_credit_code(code):
        raise ValidationError(
            _(
                "统一社会信用代码校验不通过：第18位是由前17位计算出的校验码，与输入不符。请对照营业执照逐位核对。"
            )
        )


def validate_bank_account(_form: Any, field: Any) -> None:
    if field.data and not BANK_ACCOUNT.fullmatch(field.data):
        raise ValidationError(_("银行账号应为8–30位数字。"))


class StrongPassword:
    """The password rules of ``webapp.security`` (length, letters and digits, not common,
    not derived from the e-mail given in ``email_field`` or by ``email``)."""

    def __init__(self, email_field: str | None = None):
        self.email_field = email_field

    def __call__(self, form: Any, field: Any) -> None:
        email = ""
        if self.email_field and self.email_field in form:
            email = form[self.email_field].data or ""
        email = email or getattr(form, "account_email", "") or ""
        problems = password_problems(field.data or "", email=email)
        if problems:
            key = "en" if _lang() == "en" else "zh"
            raise ValidationError(("" if key == "zh" else " ").join(p[key] for p in problems))


def _password_confirm(other: str) -> EqualTo:
    return EqualTo(other, message=_("两次输入的密码不一致。"))


class LoginForm(FlaskForm):
    email = StringField(_("邮箱"), validators=[_required(), _max(200)], filters=[_strip])
    password = PasswordField(_("密码"), validators=[_required(), _max(200)])
    next = HiddenField()


class SecondFactorForm(FlaskForm):
    code = StringField(_("验证码"), validators=[_required(), _max(10)], filters=[_strip])


class RegistrationForm(FlaskForm):
    org_name = StringField(_("单位名称"), validators=[_required(), _max(200)], filters=[_strip])
    credit_code = StringField(
        _("统一社会信用代码"),
        validators=[_required(), validate_credit_code],
        filters=[_normalize_code],
    )
    org_type = SelectField(_("单位类型"), validators=[_choose()])
    district = SelectField(_("所在区县（开发区）"), validators=[_choose()])
    address = StringField(_("通讯地址"), validators=[_required(), _max(300)], filters=[_strip])
    legal_representative = StringField(
        _("法定代表人"), validators=[_required(), _max(100)], filters=[_strip]
    )
    contact_name = StringField(_("联系人"), validators=[_required(), _max(100)], filters=[_strip])
    mobile = StringField(
        _("联系人手机"), validators=[_required(), validate_mobile], filters=[normalize_mobile]
    )
    email = EmailField(
        _("邮箱（登录账号）"), validators=[_required(), _max(200), _email()], filters=[_strip]
    )
    password = PasswordField(_("密码"), validators=[_required(), StrongPassword("email")])
    password_confirm = PasswordField(
        _("确认密码"), validators=[_required(), _password_confirm("password")]
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.org_type.choices = _choices(ORG_TYPES)
        self.district.choices = _choices(district_choices(_lang()))


class ForgotPasswordForm(FlaskForm):
    email = EmailField(_("邮箱"), validators=[_required(), _max(200), _email()], filters=[_strip])


class ResetPasswordForm(FlaskForm):
    password = PasswordField(_("新密码"), validators=[_required(), StrongPassword()])
    password_confirm = PasswordField(
        _("确认新密码"), validators=[_required(), _password_confirm("password")]
    )

    def __init__(self, *args: Any, account_email: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.account_email = account_email


class ProfileForm(FlaskForm):
    """Name, language and one e-mail switch per notification kind (``email_<kind>``
    fields added by :func:`profile_form`)."""

    name = StringField(_("姓名"), validators=[_required(), _max(100)], filters=[_strip])
    locale = SelectField(
        _("界面语言"), choices=_choices(LOCALE_CHOICES, placeholder=False), validators=[_choose()]
    )


def profile_form_class(kinds: list[str] | tuple[str, ...]) -> type[ProfileForm]:
    """The profile form with a checkbox per notification kind (built once, at import)."""
    fields = {f"email_{kind}": BooleanField(default=True) for kind in kinds}
    return type("ProfileFormWithKinds", (ProfileForm,), fields)


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(_("当前密码"), validators=[_required()])
    new_password = PasswordField(_("新密码"), validators=[_required(), StrongPassword()])
    new_password_confirm = PasswordField(
        _("确认新密码"), validators=[_required(), _password_confirm("new_password")]
    )

    def __init__(self, *args: Any, account_email: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.account_email = account_email


class TotpConfirmForm(FlaskForm):
    code = StringField(_("验证码"), validators=[_required(), _max(10)], filters=[_strip])


class TotpDisableForm(FlaskForm):
    password = PasswordField(_("密码"), validators=[_required()])
    code = StringField(_("验证码"), validators=[_required(), _max(10)], filters=[_strip])


class OrganizationForm(FlaskForm):
    """What the owner may change. The credit code (identity) and the type (eligibility)
    are fixed after registration; staff correct them if needed."""

    name = StringField(_("单位名称"), validators=[_required(), _max(200)], filters=[_strip])
    district = SelectField(_("所在区县（开发区）"), validators=[_choose()])
    address = StringField(_("通讯地址"), validators=[_required(), _max(300)], filters=[_strip])
    legal_representative = StringField(
        _("法定代表人"), validators=[_required(), _max(100)], filters=[_strip]
    )
    contact_name = StringField(_("联系人"), validators=[_required(), _max(100)], filters=[_strip])
    contact_phone = StringField(
        _("联系人手机"), validators=[_required(), validate_mobile], filters=[normalize_mobile]
    )
    contact_email = EmailField(
        _("联系邮箱"), validators=[_required(), _max(200), _email()], filters=[_strip]
    )
    bank_name = StringField(_("开户银行"), validators=[Optional(), _max(200)], filters=[_strip])
    bank_account_name = StringField(
        _("账户名称"), validators=[Optional(), _max(200)], filters=[_strip]
    )
    bank_account_no = StringField(
        _("银行账号"),
        validators=[Optional(), validate_bank_account],
        filters=[_normalize_account],
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.district.choices = _choices(district_choices(_lang()))


class InviteForm(FlaskForm):
    email = EmailField(
        _("同事的邮箱"), validators=[_required(), _max(200), _email()], filters=[_strip]
    )


class AcceptInvitationForm(FlaskForm):
    name = StringField(_("姓名"), validators=[_required(), _max(100)], filters=[_strip])
    password = PasswordField(_("密码"), validators=[_required(), StrongPassword()])
    password_confirm = PasswordField(
        _("确认密码"), validators=[_required(), _password_confirm("password")]
    )

    def __init__(self, *args: Any, account_email: str = "", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.account_email = account_email
