"""Decisions (决定书): numbering and freezing at transition time, rendering by a job.

``create_decision`` runs inside the transition's transaction: it allocates the document
number (gapless per prefix and year), freezes the plain data the letter is rendered from,
and records a render job in the outbox. ``render_decision`` (the job) renders that frozen
data once; if a PDF is already stored it does nothing, so a retried or duplicated job
never produces a second, different document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from . import outbox
from .definitions.schema import DocumentSpec
from .errors import ValidationFailed
from .models import Decision

if TYPE_CHECKING:
    from .effects import EffectContext
    from .storage import Storage

DEFAULT_AUTHORITY = "长春市市场监督管理局"
TITLES = {
    "approval": ("关于给予{org}{program}的决定", "Decision to grant {program} to {org}"),
    "rejection": ("关于不予给予{org}{program}的决定", "Decision not to grant {program} to {org}"),
    "recognition": ("关于认定{org}专利密集型产品的决定", "Recognition decision for {org}"),
}


def create_decision(ctx: EffectContext, spec: DocumentSpec) -> Decision:
    from .domain import format_chinese_date, format_doc_number, format_yuan, rmb_upper
    from .effects import allocate_seq, fen_to_yuan, new_verification_code

    app = ctx.application
    params = ctx.names["params"]
    prefix = str(getattr(params, ctx.program.doc_prefix_param))
    year = ctx.today.year
    seq = allocate_seq(ctx.session, prefix, year)
    number = format_doc_number(prefix, year, seq)
    org = app.organization
    program_name = ctx.program.name.zh
    amount_fen = app.award_fen if spec.kind in ("approval", "recognition") else None
    title_zh = TITLES[spec.kind][0].format(org=org.name, program=program_name)
    paragraphs = _body(spec.kind, app, program_name, ctx.reason)
    data: dict[str, Any] = {
        "authority": str(params.issuing_authority)
        if "issuing_authority" in ctx.program.parameters
        else DEFAULT_AUTHORITY,
        "doc_number": number,
        "title": title_zh,
        "addressee": org.name,
        "credit_code": org.credit_code,
        "program_name": program_name,
        "call_title": app.call.title,
        "application_number": app.number,
        "body_paragraphs": paragraphs,
        "reason": ctx.reason or "",
        "date_text": format_chinese_date(ctx.today),
        "lang": "zh",
        "items": _items(app, params, ctx.today) if spec.kind == "recognition" else [],
    }
    # Refuse now, in the transition, what the letter could not be rendered from later.
    if spec.kind == "rejection" and not data["reason"]:
        raise ValidationFailed(
            "不予决定书须写明理由，请填写理由。",
            "A rejection letter states its reason: please give one.",
            {"reason": ["required"]},
        )
    if spec.kind == "recognition" and not data["items"]:
        raise ValidationFailed(
            "认定决定书须列明认定的产品，该申报没有产品。",
            "A recognition letter lists the recognized products; this application has none.",
        )
    # A recognition without money (reward 0) says nothing about an amount.
    if amount_fen is not None and (spec.kind != "recognition" or amount_fen > 0):
        data["amount_figures"] = format_yuan(amount_fen)
        data["amount_capitals"] = rmb_upper(fen_to_yuan(amount_fen))
    decision = Decision(
        application_id=app.id,
        kind=spec.kind,
        doc_prefix=prefix,
        doc_year=year,
        doc_seq=seq,
        doc_number=number,
        amount_fen=amount_fen,
        template=spec.template,
        render_data=data,
        verification_code=new_verification_code(),
    )
    ctx.session.add(decision)
    ctx.session.flush()
    outbox.enqueue(
        ctx.session,
        "render_decision",
        {"decision_id": decision.id},
        queue="documents",
        job_id=f"render-decision-{decision.id}",
    )
    return decision


def _body(kind: str, app: Any, program_name: str, reason: str | None) -> list[str]:
    call = app.call.title
    if kind == "approval":
        return [
            f"你单位于{app.submitted_at:%Y年%-m月%-d日}提交的{call}申报（申报编号 {app.number}），"
            f"经资格审查、审定和公示，符合{program_name}的条件。",
            "经研究，决定给予你单位奖励（资助）如下。资金将拨付至你单位登记的银行账户。",
        ]
    if kind == "recognition":
        return [
            f"你单位于{app.submitted_at:%Y年%-m月%-d日}提交的{call}申报（申报编号 {app.number}），"
            "经审查、评审和公示，下列产品认定为专利密集型产品。",
        ]
    return [
        f"你单位提交的{call}申报（申报编号 {app.number or '—'}），经审查，不予支持。",
        "如对本决定不服，可以自收到本决定书之日起六十日内依法申请行政复议，"
        "或者在六个月内依法提起行政诉讼。",
    ]


def _items(app: Any, params: Any, today: Any) -> list[dict[str, str]]:
    """The recognized products as the letter lists them: name (and model), the patents
    the applicant listed for the product, and the end of a local recognition's validity
    (``recognition_validity_years`` after the decision; a product on the national list
    is valid as the national list says, so that column stays empty)."""
    from datetime import timedelta

    from .domain import format_chinese_date

    form = (app.snapshot or {}).get("form", {})
    patents: dict[str, list[str]] = {}
    for row in form.get("patents") or []:
        if isinstance(row, dict) and row.get("patent_no"):
            name = str(row.get("product_name", "")).strip()
            patents.setdefault(name, []).append(str(row["patent_no"]))
    valid_until = ""
    years = getattr(params, "recognition_validity_years", None)
    if years and str(getattr(params, "mode", "local")) == "local":
        try:
            end = today.replace(year=today.year + int(years)) - timedelta(days=1)
        except ValueError:  # 29 February
            end = today.replace(year=today.year + int(years), day=28)
        valid_until = format_chinese_date(end)
    items = []
    for row in form.get("products") or []:
        if not isinstance(row, dict) or not str(row.get("product_name", "")).strip():
            continue
        name = str(row["product_name"]).strip()
        model = str(row.get("model", "") or "").strip()
        items.append(
            {
                "name": f"{name}（{model}）" if model else name,
                "patent_numbers": "、".join(patents.get(name, [])),
                "valid_until": valid_until,
            }
        )
    return items


def render_decision(
    session: Session, decision_id: int, storage: Storage, public_base_url: str
) -> str | None:
    """Render and store a decision's PDF once. Returns the sha256, or None if missing."""
    from .documents import render_pdf
    from .documents.qr import qr_data_uri

    decision = session.get(Decision, decision_id, with_for_update=True)
    if decision is None:
        return None
    if (
        decision.pdf_sha256
        and decision.pdf_storage_key
        and storage.exists(decision.pdf_storage_key)
    ):
        return decision.pdf_sha256
    data = dict(decision.render_data)
    verify_url = f"{public_base_url.rstrip('/')}/verify/{decision.verification_code}"
    data["verification_code"] = decision.verification_code
    data["verify_url"] = verify_url
    data["qr_data_uri"] = qr_data_uri(verify_url)
    pdf = render_pdf(decision.template, data)
    # A key derived from the decision: a retry after a crash between writing the file and
    # committing rewrites the same file instead of leaving an orphan beside it.
    key = f"decisions/{decision.doc_year}/{decision.id}-{decision.verification_code}.pdf"
    digest = storage.put_at(key, pdf)
    decision.pdf_storage_key = key
    decision.pdf_sha256 = digest
    return digest
