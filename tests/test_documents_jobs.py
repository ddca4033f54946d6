"""Decision letters through the jobs that produce them (issue 6), in-process (no Redis):
an approval in each program gives its numbered PDF; the public verification page shows
the stored file's sha256; a job that fails once and is retried by the outbox gives one
document; hostile organization names print literally and make the renderer fetch
nothing; the batch render and the zip of a call run as one job with a progress row.

The helpers at the top (driving an application to 'approved' in each program with the
scenario runner, extracting PDF text) are shared with tests/test_rq_worker.py and
tests/test_faults.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import socket
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from tests import reliability
from tests.conftest import _code, login
from tests.documents.test_render import compact, pdftotext, pypdf_text
from webapp.jobs import relay
from workflow import batch_documents as batch
from workflow import outbox
from workflow.documents import render as render_module
from workflow.jobs import JOBS, JobEnv
from workflow.models import Application, Decision, JobRecord, OutboxJob, User
from workflow.simulate import run_scenario
from workflow.storage import LocalStorage

SCENARIOS = Path(__file__).parent / "scenarios"
# One scenario per program that ends with its applications approved (recognised).
APPROVAL_SCENARIOS = {
    "certification_reward": "certification_reward/approved.yaml",
    "pledge_loan_subsidy": "pledge_loan_subsidy/approved_pure_pledge.yaml",
    "branded_agency": "branded_agency/drop_extremes_on.yaml",
    "patent_dense_product": "patent_dense_product/n_approved_partial.yaml",
}
PROGRAMS = sorted(APPROVAL_SCENARIOS)
_codes = itertools.count(700_000)


# ---------------------------------------------------------------- shared helpers


def approval_data(
    program: str, *, org_name: str | None = None, scenario: str | None = None
) -> dict[str, Any]:
    """A scenario that stops once its applications are approved (before payment), with
    fresh credit codes and a unique call title, so runs can share a committed database."""
    path = SCENARIOS / (scenario or APPROVAL_SCENARIOS[program])
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    steps = []
    for step in data["steps"]:
        if step.get("trigger") == "pay":
            break
        steps.append(step)
    data["steps"], data["expect"] = steps, []
    data.setdefault("call", {})["title"] = f"测试批次-{uuid.uuid4().hex[:10]}"
    for spec in data["applications"]:
        org = spec.setdefault("organization", {})
        org["credit_code"] = _code(next(_codes))
        if org_name is not None:
            org["name"] = org_name
    return data


def drive_to_approved(session: Any, program: str, **kwargs: Any) -> list[Decision]:
    """Run the program's approval scenario in ``session`` (not committed) and return the
    decisions it produced. The runner's users (<role>.<n>@sim.local) get a unique prefix
    so a second run in the same committed database does not collide with them."""
    sc = run_scenario(session, approval_data(program, **kwargs), lambda _line: None)
    tag = uuid.uuid4().hex[:8]
    for user in session.scalars(select(User).where(User.email.like("%@sim.local"))):
        if not user.email.startswith("r-"):
            user.email = f"r-{tag}-{user.email}"
    session.flush()
    ids = [a.id for a in sc.apps]
    return list(
        session.scalars(
            select(Decision).where(Decision.application_id.in_(ids)).order_by(Decision.id)
        )
    )


def pdf_texts(pdf: bytes) -> dict[str, str]:
    """The PDF's text by pypdf and by pdftotext, without whitespace."""
    return {"pypdf": compact(pypdf_text(pdf)), "pdftotext": compact(pdftotext(pdf))}


def assert_letter_text(pdf: bytes, decision: Decision, *, amounts: bool = True) -> None:
    """The PDF text (pypdf and pdftotext) shows the number, the applicant and, for a letter
    with money, the amount in figures and in capitals."""
    data = decision.render_data
    wanted = [decision.doc_number, data["addressee"]]
    if amounts and decision.amount_fen is not None:
        wanted += [data["amount_figures"], data["amount_capitals"]]
    for tool, text in pdf_texts(pdf).items():
        for value in wanted:
            assert compact(value) in text, f"{tool}: {value!r} not in the PDF text"


@contextmanager
def relay_disabled() -> Iterator[None]:
    """Commit without relaying, as if the process died right after the commit."""
    saved = outbox._relay
    outbox.set_relay(None)
    try:
        yield
    finally:
        outbox.set_relay(saved)


def stored_files(storage_dir: str, prefix: str = "decisions") -> list[Path]:
    root = Path(storage_dir) / prefix
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier in the session may have switched the
    module-level relay off)."""
    monkeypatch.setattr(outbox, "_relay", relay)


@pytest.fixture
def storage(app) -> LocalStorage:
    return LocalStorage(app.config["STORAGE_DIR"])


def _approve(session: Any, program: str, **kwargs: Any) -> list[Decision]:
    decisions = drive_to_approved(session, program, **kwargs)
    outbox.commit(session)  # commit, then the relay runs the render jobs in-process
    for d in decisions:
        session.refresh(d)
    return decisions


# ---------------------------------------------------------------- letters


# The recognition template prints no amount yet (lead: decision_recognition.html, see the
# hand-over); strict, so the mark must go when it does.
AMOUNT_PROGRAMS = [p for p in PROGRAMS]


@pytest.mark.parametrize("program", PROGRAMS)
def test_approval_in_each_program_renders_its_numbered_letter(session, storage, program):
    decisions = _approve(session, program)
    assert decisions and all(d.kind in ("approval", "recognition") for d in decisions)
    for decision in decisions:
        assert decision.pdf_sha256 and storage.exists(decision.pdf_storage_key)
        pdf = storage.read(decision.pdf_storage_key)
        assert hashlib.sha256(pdf).hexdigest() == decision.pdf_sha256
        assert_letter_text(pdf, decision, amounts=False)


@pytest.mark.parametrize("program", AMOUNT_PROGRAMS)
def test_letter_with_money_shows_the_amount_in_figures_and_capitals(session, storage, program):
    for decision in _approve(session, program):
        assert decision.amount_fen
        assert_letter_text(storage.read(decision.pdf_storage_key), decision)


def test_verification_page_matches_the_stored_file(client, session, storage):
    (decision,) = _approve(session, "certification_reward")
    digest = hashlib.sha256(storage.read(decision.pdf_storage_key)).hexdigest()
    assert digest == decision.pdf_sha256
    page = client.get(f"/verify/{decision.verification_code}")
    assert page.status_code == 200 and page.headers["X-Robots-Tag"] == "noindex"
    html = page.get_data(as_text=True)
    assert f'<code class="text-break" id="pdf-sha256">{digest}</code>' in html
    data = decision.render_data
    for value in (decision.doc_number, data["addressee"], data["amount_figures"]):
        assert value in html
    assert data["amount_capitals"] in html and data["date_text"] in html
    # Lower case and grouped codes are the same code; English labels in English.
    code = decision.verification_code.lower()
    grouped = "-".join(code[i : i + 4] for i in range(0, 16, 4))
    english = client.get(f"/verify/{grouped}?lang=en").get_data(as_text=True)
    assert digest in english and "Document number" in english


@pytest.mark.parametrize("code", ["0000000000000000", "not-a-code", "X" * 300, "%3Cscript%3E"])
def test_unknown_verification_code_says_so(client, code):
    page = client.get(f"/verify/{code}")
    assert page.status_code == 404
    html = page.get_data(as_text=True)
    assert "不对应任何已出具的决定书" in html and "<script>" not in html


def test_render_job_run_twice_keeps_one_document(app, session, storage):
    (decision,) = _approve(session, "certification_reward")
    before = (decision.pdf_sha256, decision.pdf_storage_key, decision.doc_number)
    files = stored_files(app.config["STORAGE_DIR"])
    env = JobEnv(session=session, storage=storage, settings={"PUBLIC_BASE_URL": "http://x"})
    assert JOBS["render_decision"](env, decision_id=decision.id) == decision.pdf_sha256
    session.commit()
    session.refresh(decision)
    assert (decision.pdf_sha256, decision.pdf_storage_key, decision.doc_number) == before
    assert stored_files(app.config["STORAGE_DIR"]) == files


def test_job_failing_once_is_retried_by_the_outbox_into_one_document(
    app, session, storage, monkeypatch
):
    real = JOBS["render_decision"]
    calls: list[str] = []

    def fails_once(env, **args):
        calls.append("call")
        if len(calls) == 1:
            raise RuntimeError("injected failure: renderer unavailable")
        return real(env, **args)

    monkeypatch.setitem(JOBS, "render_decision", fails_once)
    files_before = len(stored_files(app.config["STORAGE_DIR"]))
    (decision,) = _approve(session, "certification_reward")
    row = session.scalar(
        select(OutboxJob).where(OutboxJob.job_id == f"render-decision-{decision.id}")
    )
    assert decision.pdf_sha256 is None
    assert row.attempts == 1 and row.relayed_at is None and "injected failure" in row.last_error
    # What `flask outbox relay` (and `flask sweep`) do: send the unrelayed rows again.
    assert outbox.relay_pending(session) >= 1
    session.refresh(decision)
    assert decision.pdf_sha256 and storage.exists(decision.pdf_storage_key)
    assert outbox.relay_pending(session) == 0
    assert len(calls) == 2
    assert len(stored_files(app.config["STORAGE_DIR"])) == files_before + 1
    reliability.record(
        "test_job_failing_once_is_retried_by_the_outbox_into_one_document",
        faults_injected=1,
        attempts=len(calls),
        documents=1,
    )


# ---------------------------------------------------------------- hostile input


def test_hostile_organization_name_prints_literally_and_fetches_nothing(
    session, storage, monkeypatch
):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    hostile = (
        f'<img src="file:///etc/passwd"><link rel=stylesheet href="http://127.0.0.1:{port}/x.css">'
    )
    fetched: list[str] = []
    real_fetch = render_module.AssetURLFetcher.fetch

    def spy(self, url, *args, **kwargs):
        fetched.append(url)
        return real_fetch(self, url, *args, **kwargs)

    monkeypatch.setattr(render_module.AssetURLFetcher, "fetch", spy)
    # A fresh thread would reload fonts through the fetcher; here the cache is warm, so
    # every fetch we see comes from this document.
    try:
        (decision,) = _approve(session, "certification_reward", org_name=hostile)
        pdf = storage.read(decision.pdf_storage_key)
        for tool, text in pdf_texts(pdf).items():
            assert compact(hostile) in text, tool
            assert "root:" not in text, tool
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert any(u.startswith("data:") for u in fetched)  # the spy saw the QR code
    assert all(u.startswith(("data:", "shenbao-asset:")) for u in fetched), fetched
    assert not any("passwd" in u or "127.0.0.1" in u for u in fetched)
    reliability.record(
        "test_hostile_organization_name_prints_literally_and_fetches_nothing",
        inputs_tried=1,
        network_connections=0,
        files_read=0,
    )


# ---------------------------------------------------------------- batch jobs


def _unrendered_call(session: Any, monkeypatch) -> tuple[Any, list[Decision]]:
    """A call with several decisions whose PDFs were never rendered (relay disabled, the
    render jobs left in the outbox)."""
    with relay_disabled():
        decisions = drive_to_approved(
            session, "branded_agency", scenario="branded_agency/fewer_than_five_pass.yaml"
        )
        outbox.commit(session)
    assert len(decisions) == 4 and all(d.pdf_sha256 is None for d in decisions)
    call = session.get(Application, decisions[0].application_id).call
    return call, decisions


def test_batch_render_is_one_job_with_progress(client, session, make, storage, monkeypatch):
    call, decisions = _unrendered_call(session, monkeypatch)
    officer = make.user("city_officer")
    login(client, officer)
    page = client.get(f"/review/calls/{call.id}/documents")
    assert page.status_code == 200 and "尚未生成" in page.get_data(as_text=True)
    response = client.post(f"/review/calls/{call.id}/documents/render")
    assert response.status_code == 302
    job_id = f"render-call-{call.id}-1"
    assert response.headers["Location"].endswith(f"/jobs/{job_id}")
    progress = client.get(f"/jobs/{job_id}/progress").get_json()
    assert progress["status"] == "done" and progress["done"] == progress["total"] == 4
    assert progress["percent"] == 100 and progress["download_url"] is None
    for d in decisions:
        session.refresh(d)
        assert d.pdf_sha256 and storage.exists(d.pdf_storage_key)
        assert_letter_text(storage.read(d.pdf_storage_key), d)
    page = client.get(f"/jobs/{job_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'role="progressbar"' in html and "js/jobs.js" in html
    assert "<script>" not in html and "style=" not in html
    # Nothing left to render: a clear message, no job.
    again = client.post(f"/review/calls/{call.id}/documents/render", follow_redirects=True)
    assert "均已生成" in again.get_data(as_text=True)
    assert (
        session.scalar(select(JobRecord).where(JobRecord.job_id == f"render-call-{call.id}-2"))
        is None
    )
    # The render jobs still in the outbox find their PDFs and do nothing.
    shas = [d.pdf_sha256 for d in decisions]
    outbox.relay_pending(session)
    for d in decisions:
        session.refresh(d)
    assert [d.pdf_sha256 for d in decisions] == shas


def test_zip_of_a_calls_letters_with_manifest(client, session, make, storage, monkeypatch):
    call, decisions = _unrendered_call(session, monkeypatch)
    officer = make.user("approver", program="branded_agency")
    login(client, officer)
    response = client.post(f"/review/calls/{call.id}/decisions.zip")
    job_id = f"zip-call-{call.id}-1"
    assert response.status_code == 302 and response.headers["Location"].endswith(job_id)
    progress = client.get(f"/jobs/{job_id}/progress").get_json()
    assert progress["status"] == "done" and progress["done"] == 4
    assert progress["download_url"].endswith(f"/jobs/{job_id}/download")
    download = client.get(progress["download_url"])
    assert download.status_code == 200 and download.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.data))
    manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8-sig"))))
    assert len(manifest) == 4
    for d in decisions:
        session.refresh(d)
        row = next(r for r in manifest if r["doc_number"] == d.doc_number)
        pdf = archive.read(row["file"])
        assert hashlib.sha256(pdf).hexdigest() == d.pdf_sha256 == row["sha256"]
        assert row["applicant"] == d.render_data["addressee"]
        amount = "" if d.amount_fen is None else f"{d.amount_fen / 100:.2f}"
        assert row["amount_yuan"] == amount
    # The same letters give the same zip: a retried job stores identical bytes.
    record = session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))
    env = JobEnv(session=session, storage=storage, settings={})
    assert (
        JOBS["zip_call_decisions"](env, call_id=call.id, job_id=job_id) == record.result_storage_key
    )
    record.status = "running"
    session.commit()
    key = JOBS["zip_call_decisions"](env, call_id=call.id, job_id=job_id)
    assert storage.read(key) == download.data


def test_zip_refuses_a_changed_stored_letter(session, make, storage, monkeypatch):
    call, decisions = _unrendered_call(session, monkeypatch)
    env = JobEnv(session=session, storage=storage, settings={})
    JOBS["render_call_decisions"](env, call_id=call.id, job_id="none")  # no record: no-op
    officer = make.user("city_officer")
    record = batch.start_render_batch(session, call, officer, storage)
    session.commit()
    assert JOBS["render_call_decisions"](env, call_id=call.id, job_id=record.job_id) == 4
    session.refresh(decisions[1])
    storage.path_for(decisions[1].pdf_storage_key).write_bytes(b"%PDF-1.7 tampered")
    record = batch.start_zip(session, call, officer)
    session.commit()
    with pytest.raises(batch.StoredFileCorrupt):
        JOBS["zip_call_decisions"](env, call_id=call.id, job_id=record.job_id)
    session.refresh(record)
    assert record.status == "failed" and "does not match" in record.error
    assert record.result_storage_key is None


def test_render_batch_resumes_after_a_failure(session, make, storage, monkeypatch):
    call, decisions = _unrendered_call(session, monkeypatch)
    officer = make.user("city_officer")
    record = batch.start_render_batch(session, call, officer, storage)
    assert batch.start_render_batch(session, call, officer, storage) is record  # double click
    session.commit()
    env = JobEnv(session=session, storage=storage, settings={})
    real = batch.render_decision
    seen: list[int] = []

    def third_fails(session_, decision_id, *args):
        seen.append(decision_id)
        if len(seen) == 3:
            raise RuntimeError("injected failure on the third letter")
        return real(session_, decision_id, *args)

    monkeypatch.setattr(batch, "render_decision", third_fails)
    with pytest.raises(RuntimeError):
        JOBS["render_call_decisions"](env, call_id=call.id, job_id=record.job_id)
    session.refresh(record)
    assert (record.status, record.done, record.total) == ("failed", 2, 4)
    assert "third letter" in record.error
    # The retry renders the two that are left, and reports 4 of 4.
    assert JOBS["render_call_decisions"](env, call_id=call.id, job_id=record.job_id) == 2
    session.refresh(record)
    assert (record.status, record.done, record.total, record.error) == ("done", 4, 4, None)
    assert JOBS["render_call_decisions"](env, call_id=call.id, job_id=record.job_id) == 0
    for d in decisions:
        session.refresh(d)
        assert d.pdf_sha256


# ---------------------------------------------------------------- access


def test_document_pages_refuse_who_may_not(client, session, make, storage, monkeypatch):
    call, _decisions = _unrendered_call(session, monkeypatch)
    owner = make.user("city_officer")
    record = batch.start_render_batch(session, call, owner, storage)
    session.commit()
    urls = [
        ("get", f"/review/calls/{call.id}/documents"),
        ("get", "/review/documents"),
        ("post", f"/review/calls/{call.id}/documents/render"),
        ("post", f"/review/calls/{call.id}/decisions.zip"),
    ]
    job_urls = [
        ("get", f"/jobs/{record.job_id}"),
        ("get", f"/jobs/{record.job_id}/progress"),
    ]
    # Anonymous: to the login page.
    for method, url in urls + job_urls:
        assert getattr(client, method)(url).status_code == 302
    applicant = session.scalar(
        select(User)
        .join(Application, Application.organization_id == User.organization_id)
        .where(Application.call_id == call.id)
    )
    district = make.user("district_officer", district="朝阳区")
    other_program = make.user("city_officer", program="certification_reward")
    for user in (applicant, district, other_program):
        login(client, user)
        for method, url in urls + job_urls:
            if user is other_program and url == "/review/documents":
                continue  # their own calls' list, without this one (below)
            assert getattr(client, method)(url).status_code == 403, (user.email, url)
    listing = client.get("/review/documents")
    assert listing.status_code == 200 and call.title not in listing.get_data(as_text=True)
    # Another city officer of the program manages the call but does not follow the job.
    colleague = make.user("city_officer", program="branded_agency")
    login(client, colleague)
    assert client.get(urls[0][1]).status_code == 200
    listing = client.get("/review/documents").get_data(as_text=True)
    assert call.title in listing
    for _method, url in job_urls:
        assert client.get(url).status_code == 403
    admin = make.user("admin")
    login(client, admin)
    assert client.get(job_urls[1][1]).status_code == 200
    # Bad ids and unknown jobs: 404, never a 500.
    login(client, owner)
    for url in (
        "/review/calls/999999/documents",
        "/jobs/no-such-job/progress",
        "/jobs/%2E%2E%2Fetc/progress",
        "/jobs/" + "x" * 200,
        f"/jobs/{record.job_id}/download",  # not a zip, and not finished
    ):
        assert client.get(url).status_code == 404, url
    assert client.post("/review/calls/999999/decisions.zip").status_code == 404


def test_recognition_letter_lists_products_with_their_patents_and_validity(session, storage):
    """The 认定决定书 table: each product (with its model), the patents the applicant
    listed for it, and the end of the local recognition's validity."""
    (decision,) = _approve(session, "patent_dense_product")
    assert decision.kind == "recognition"
    form = decision.application.snapshot["form"]
    items = decision.render_data["items"]
    assert [i["name"].split("（")[0] for i in items] == [
        p["product_name"] for p in form["products"]
    ]
    listed = {p["patent_no"] for p in form["patents"]}
    assert listed and any(i["patent_numbers"] for i in items)
    assert {n for i in items for n in i["patent_numbers"].split("、") if n} <= listed
    text = pdf_texts(storage.read(decision.pdf_storage_key))["pypdf"]
    for item in items:
        assert compact(item["name"]) in text
        for number in filter(None, item["patent_numbers"].split("、")):
            assert compact(number) in text
    params = decision.application.call.params
    if params.get("mode", "local") == "local":
        assert items[0]["valid_until"] and compact(items[0]["valid_until"]) in text


def test_local_recognition_is_valid_for_the_configured_years():
    from datetime import date
    from types import SimpleNamespace

    from workflow.decisions import _items

    app = SimpleNamespace(
        snapshot={
            "form": {
                "products": [{"product_name": "编码器", "model": ""}, {"product_name": " "}],
                "patents": [
                    {"patent_no": "ZL202010123456.7", "product_name": "编码器"},
                    {"patent_no": "ZL202120654321.X", "product_name": "编码器"},
                ],
            }
        }
    )
    local = SimpleNamespace(mode="local", recognition_validity_years=3)
    (item,) = _items(app, local, date(2026, 3, 8))
    assert item == {
        "name": "编码器",
        "patent_numbers": "ZL202010123456.7、ZL202120654321.X",
        "valid_until": "2029年3月7日",
    }
    national = SimpleNamespace(mode="national_list", recognition_validity_years=3)
    assert _items(app, national, date(2026, 3, 8))[0]["valid_until"] == ""
