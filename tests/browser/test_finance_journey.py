"""In the browser: the finance user (finance@demo.cn) builds a disbursement batch from
approved decisions, locks it, downloads the XLSX and CSV payment files and reads them
back, records one payment by hand and the others from a bank result file, and sees the
batch settled; then the reconciliation and the dashboards. The demo data has no approved
decision, so this module runs its own server whose database is seeded with the demo
data plus three approvals driven through the engine (approve, notice period ended).
Screenshots: test-artifacts/screenshots/finance-*.png."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.browser.conftest import login_as, shot
from tests.conftest import CERT_FORM, make_app

pytestmark = pytest.mark.browser

EXTRA = [
    ("长春华信光电有限公司", "中国银行长春分行", "4200201109000070001"),
    ("长春启明新材料有限公司", "吉林银行长春朝阳支行", "0701010210000080002"),
]


def _seed_approved(session, today: date) -> list[str]:
    """Approve the demo application waiting for the meeting and two more, then let the
    notice period end: three approved decisions awaiting payment."""
    from sqlalchemy import select

    from tests.conftest import _code
    from webapp.demo import _minimal_pdf
    from workflow.engine import fire
    from workflow.models import Application, Attachment, Call, Organization, RoleGrant, User
    from workflow.operations.applications import (
        save_draft,
        start_application,
        submit_application,
    )
    from workflow.scheduler import sweep_deadlines
    from workflow.storage import LocalStorage

    def staff(email: str) -> User:
        return session.scalar(select(User).where(User.email == email))

    district, city, approver = (
        staff("district@demo.cn"),
        staff("city@demo.cn"),
        staff("approver@demo.cn"),
    )
    call = session.scalar(select(Call).where(Call.program_code == "certification_reward"))
    storage = LocalStorage(session.info.get("storage_dir", "."))
    pdf = _minimal_pdf("finance journey")
    for i, (name, bank, account) in enumerate(EXTRA):
        org = Organization(
            name=name,
            credit_code=_code(90_000 + i),
            org_type="enterprise",
            district="朝阳区",
            bank_name=bank,
            bank_account_name=name,
            bank_account_no=account,
        )
        session.add(org)
        session.flush()
        owner = User(email=f"finance-journey-{i}@demo.cn", name=name, password_hash="x")
        owner.organization_id = org.id
        owner.grants.append(RoleGrant(role="applicant"))
        session.add(owner)
        session.flush()
        app = start_application(session, user=owner, call=call, today=today)
        form = dict(CERT_FORM, cert_number=f"165IP2590{i}R0M", cert_cost_paid="20000.00")
        save_draft(session, app, owner, form)
        for m in _materials(session, app):
            key, digest = storage.put(pdf, prefix="att")
            session.add(
                Attachment(
                    application_id=app.id,
                    kind=m,
                    filename=f"{m}.pdf",
                    content_type="application/pdf",
                    size=len(pdf),
                    sha256=digest,
                    storage_key=key,
                    uploaded_by_id=owner.id,
                )
            )
        session.flush()
        session.refresh(app)
        submit_application(session, app, owner, today=today)
        fire(session, app, "district_pass", district, today=today)
        fire(session, app, "pass_eligibility", city, today=today)
    waiting = session.scalars(
        select(Application).where(Application.state == "approval", Application.call_id == call.id)
    ).all()
    for app in waiting:
        fire(session, app, "approve", approver, today=today)
    session.commit()
    last = max(a.deadline_on for a in waiting)
    sweep_deadlines(session, last + timedelta(days=1))
    approved = session.scalars(select(Application).where(Application.state == "approved")).all()
    return [a.number for a in approved]


def _materials(session, app) -> list[str]:
    from workflow.engine import compiled

    return [m.kind for m in compiled(session, app.definition_id).program.materials]


@pytest.fixture(scope="module")
def finance_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from flask_migrate import upgrade

    from webapp.demo import seed_demo
    from webapp.extensions import db
    from workflow import outbox

    base = tmp_path_factory.mktemp("finance-live")
    app = make_app(
        f"sqlite:///{base / 'live.db'}", str(base / "storage"), PUBLIC_BASE_URL="http://127.0.0.1"
    )
    with app.app_context():
        upgrade()
        seed_demo(db.session, date.today())
        outbox.commit(db.session)
        db.session.info["storage_dir"] = str(base / "storage")
        relay = outbox._relay
        outbox.set_relay(None)  # decision PDFs are not needed to pay; skip rendering them
        try:
            approved = _seed_approved(db.session, date.today())
        finally:
            outbox.set_relay(relay)
        assert len(approved) == 3, approved
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def fpage(browser, finance_server):
    context = browser.new_context(
        base_url=finance_server,
        locale="zh-CN",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    pg = context.new_page()
    pg.set_default_timeout(20000)
    pg.on("dialog", lambda dialog: dialog.accept())  # the lock button asks to confirm
    yield pg
    context.close()


def test_finance_user_builds_exports_and_settles_a_batch(fpage, tmp_path):
    page = fpage
    login_as(page, "finance@demo.cn")
    page.goto("/finance/")
    expect(page.locator("h1", has_text="资金拨付概览")).to_be_visible()
    assert "3 笔" in page.locator("main").inner_text()
    shot(page, "finance-01-overview")

    page.get_by_role("link", name="新建拨付批次").first.click()
    page.wait_for_url("**/finance/batches/new")
    page.select_option("select[name=district]", "朝阳区")
    page.get_by_role("button", name="预览").click()
    page.wait_for_url(re.compile(r"/finance/batches/new\?.*district="))
    expect(page.get_by_text("符合条件：3 笔，合计 ¥65,000.00。")).to_be_visible()
    shot(page, "finance-02-preview")
    page.get_by_role("button", name="生成拨付批次（3 笔）").click()
    page.wait_for_url(re.compile(r"/finance/batches/\d+$"))
    expect(page.locator(".alert-success", has_text="已生成拨付批次")).to_be_visible()
    expect(page.locator("h1 .badge", has_text="草稿")).to_be_visible()
    shot(page, "finance-03-draft")

    page.get_by_role("button", name="锁定批次").click()
    expect(page.locator("h1 .badge", has_text="已锁定")).to_be_visible()
    number = page.locator("h1 .mono").inner_text().strip()
    shot(page, "finance-04-locked")

    with page.expect_download() as info:
        page.get_by_role("link", name="导出Excel").click()
    download = info.value
    assert number in download.suggested_filename and download.suggested_filename.endswith(".xlsx")
    xlsx_path = tmp_path / "batch.xlsx"
    download.save_as(xlsx_path)
    rows = list(load_workbook(xlsx_path).active.iter_rows(values_only=True))
    assert rows[0][0] == "收款单位" and rows[-1][0] == "合计" and rows[-1][1] == "3笔"
    lines = rows[1:-1]
    assert len(lines) == 3
    assert sum(round(r[5] * 100) for r in lines) == 6_500_000  # 25,000 + 2 × 20,000
    assert {r[0] for r in lines} >= {name for name, *_ in EXTRA}
    assert all(r[6].startswith("人民币") for r in lines)

    with page.expect_download() as info:
        page.get_by_role("link", name="导出CSV").click()
    csv_bytes = _read(info.value, tmp_path)
    assert csv_bytes.startswith(b"\xef\xbb\xbf")
    csv_rows = list(csv.reader(io.StringIO(csv_bytes.decode("utf-8-sig"))))
    assert [r[7] for r in csv_rows[1:-1]] == [r[7] for r in lines]

    # One payment recorded by hand ...
    first_number = lines[0][7]
    page.get_by_role("link", name=f"登记结果 {first_number}").click()
    page.fill("input[name=paid_on]", date.today().isoformat())
    page.fill("input[name=voucher_no]", "GK2026-000101")
    shot(page, "finance-05-result-form")
    page.get_by_role("button", name="保存结果").click()
    page.wait_for_url(re.compile(r"/finance/batches/\d+$"))
    expect(page.locator(".alert-success", has_text="已登记").first).to_be_visible()

    # ... the other two from the bank's result file (GBK, as many bank systems write).
    bank = "决定书文号,状态,日期,凭证号,原因,金额\n" + "".join(
        f"{r[7]},成功,{date.today():%Y-%m-%d},GK2026-00010{i},,{r[5]:.2f}\n"
        for i, r in enumerate(lines[1:], start=2)
    )
    bank_file = tmp_path / "bank.csv"
    bank_file.write_bytes(bank.encode("gbk"))
    page.get_by_role("link", name="导入银行回单").click()
    page.set_input_files("input[name=file]", str(bank_file))
    page.get_by_role("button", name="导入").click()
    expect(page.get_by_text("已登记 2 笔")).to_be_visible()
    shot(page, "finance-06-import-report")

    page.get_by_role("link", name="返回批次").first.click()
    expect(page.locator("h1 .badge", has_text="已办结")).to_be_visible()
    expect(page.locator("td .badge", has_text="已支付")).to_have_count(3)
    shot(page, "finance-07-settled")

    page.goto("/finance/reconciliation?group=call")
    expect(page.locator("h1", has_text="对账报表")).to_be_visible()
    expect(page.locator("tr.row-flagged")).to_have_count(0)
    shot(page, "finance-08-reconciliation")
    page.goto("/finance/dashboards")
    expect(page.locator("svg.chart")).to_have_count(5)
    shot(page, "finance-09-dashboards")
    page.goto("/finance/")
    assert number in page.locator("main").inner_text()


def _read(download, tmp_path) -> bytes:
    path = tmp_path / "batch.csv"
    download.save_as(path)
    return path.read_bytes()
