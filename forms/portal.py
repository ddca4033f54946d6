"""The applicant portal's small forms: one class per use case. The application form
itself is generated from the definition (:mod:`forms.builder`)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import HiddenField, TextAreaField
from wtforms.validators import Length, Optional


class StartApplicationForm(FlaskForm):
    """ "Start" on a call: nothing to fill in, the CSRF token is the point."""


class VersionedForm(FlaskForm):
    """A button acting on an application, carrying the version the user saw."""

    version = HiddenField()

    def expected_version(self) -> int | None:
        try:
            return int(self.version.data)
        except (TypeError, ValueError):
            return None


class SubmitForm(VersionedForm):
    pass


class WithdrawForm(VersionedForm):
    reason = TextAreaField(
        _l("撤回原因（选填）"),
        validators=[Optional(), Length(max=500, message=_l("撤回原因不能超过500字。"))],
        render_kw={"rows": 2, "maxlength": 500},
    )


class UploadForm(FlaskForm):
    kind = HiddenField()
    # The id of the attachment this file replaces (empty: a new file).
    replace = HiddenField()
    file = FileField(_l("选择文件"))


class DeleteAttachmentForm(FlaskForm):
    pass
