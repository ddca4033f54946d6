"""Uploaded materials: type by content, extension agreeing with it, size and count limits,
safe names, ZIP bombs and unsafe archives refused, nothing written outside the storage
folder, changes only while editable, downloads only by those entitled."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import object_session

from tests.audit_events import audit_events
from tests.conftest import login as _login
from tests.test_portal import FreshClient
from workflow.engine import fire
from workflow.errors import PermissionDenied, ValidationFailed
from workflow.models import Attachment
from workflow.operations import attachments as ops
from workflow.operations.applications import submit_application
from workflow.storage import LocalStorage

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20


def _zip(members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


DOCX = _zip(
    {
        "[Content_Types].xml": b"<Types/>",
        "_rels/.rels": b"<Relationships/>",
        "word/document.xml": b"<w:document/>",
    }
)
XLSX = _zip(
    {
        "[Content_Types].xml": b"<Types/>",
        "_rels/.rels": b"<Relationships/>",
        "xl/workbook.xml": b"<workbook/>",
    }
)


@pytest.fixture
def client(app, session):
    return FreshClient(app, app.response_class, use_cookies=True)


def login(client, user) -> None:
    object_session(user).commit()
    _login(client, user)


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def applicant(make):
    return make.applicant()


@pytest.fixture
def draft(make, applicant, cert_form):
    call = make.call("certification_reward")
    return make.application(call, applicant, cert_form, materials=False)


def _add(session, draft, kind, name, data, storage, user=None):
    return ops.add_attachment(
        session, draft, user or draft.organization.users[0], kind, name, data, storage
    )


def _message(exc: pytest.ExceptionInfo) -> str:
    return exc.value.message("zh") + " | " + exc.value.message("en")


# ---------------------------------------------------------------- accepted files


def test_a_pdf_is_stored_with_its_sha256_and_an_audit_event(session, draft, storage):
    att = _add(session, draft, "application_form", "申请表.pdf", PDF, storage)
    assert att.sha256 == hashlib.sha256(PDF).hexdigest() and att.size == len(PDF)
    assert att.content_type == "application/pdf" and att.filename == "申请表.pdf"
    assert storage.read(att.storage_key) == PDF
    (event,) = audit_events(session, "attachment.add", entity_id=att.id)
    assert event.data["sha256"] == att.sha256 and event.application_id == draft.id


@pytest.mark.parametrize(
    ("kind", "name", "data", "content_type"),
    [
        ("business_licence", "licence.PNG", PNG, "image/png"),
        ("business_licence", "licence.jpeg", JPG, "image/jpeg"),
        ("business_licence", "licence.jpg", JPG, "image/jpeg"),
    ],
)
def test_images_are_recognised_by_content(session, draft, storage, kind, name, data, content_type):
    assert _add(session, draft, kind, name, data, storage).content_type == content_type


def test_office_files_are_recognised_inside_the_zip(session, make, applicant, storage):
    call = make.call("branded_agency")
    agency = make.applicant(org_type="patent_agency")
    app = make.application(call, agency, materials=False)
    xlsx = _add(session, app, "filing_statistics", "统计.xlsx", XLSX, storage)
    assert xlsx.content_type.endswith("spreadsheetml.sheet")
    archive = _add(session, app, "agent_proof", "证明.zip", _zip({"a.pdf": PDF}), storage)
    assert archive.content_type == "application/zip"
    dense = make.application(make.call("patent_dense_product"), applicant, materials=False)
    docx = _add(session, dense, "patent_product_mapping", "对照.docx", DOCX, storage)
    assert docx.content_type.endswith("wordprocessingml.document")


# ---------------------------------------------------------------- refused files


def test_wrong_magic_bytes_are_refused(session, draft, storage):
    with pytest.raises(ValidationFailed) as exc:
        _add(session, draft, "application_form", "form.pdf", b"MZ\x90\x00 not a pdf", storage)
    assert "无法识别文件类型" in _message(exc) and "checked by content" in _message(exc)
    assert exc.value.status == 422


def test_the_extension_must_match_the_content(session, draft, storage):
    with pytest.raises(ValidationFailed) as exc:
        _add(session, draft, "business_licence", "licence.pdf", PNG, storage)
    assert "扩展名与文件内容不符" in _message(exc) and ".png" in _message(exc)
    with pytest.raises(ValidationFailed):
        _add(session, draft, "application_form", "no_extension", PDF, storage)


def test_a_type_the_material_does_not_accept_is_refused(session, draft, storage):
    with pytest.raises(ValidationFailed) as exc:
        _add(session, draft, "application_form", "form.png", PNG, storage)
    assert "只接受PDF文件" in _message(exc)


def test_office_file_disguised_as_zip_is_refused(session, make, applicant, storage):
    dense = make.application(make.call("patent_dense_product"), applicant, materials=False)
    with pytest.raises(ValidationFailed) as exc:
        _add(session, dense, "patent_product_mapping", "mapping.zip", DOCX, storage)
    assert "扩展名与文件内容不符" in _message(exc)


def test_oversize_files_are_refused(session, draft, storage):
    big = b"%PDF-1.4\n" + b"0" * (20 * 1024 * 1024)
    with pytest.raises(ValidationFailed) as exc:
        _add(session, draft, "application_form", "big.pdf", big, storage)
    assert "20MB" in _message(exc)
    with pytest.raises(ValidationFailed):
        _add(session, draft, "application_form", "empty.pdf", b"", storage)


def test_too_many_files_for_a_material_are_refused(session, draft, storage):
    for i in range(5):  # application_form: max_files defaults to 5
        _add(session, draft, "application_form", f"p{i}.pdf", PDF + bytes([i]), storage)
    with pytest.raises(ValidationFailed) as exc:
        _add(session, draft, "application_form", "p6.pdf", PDF, storage)
    assert "最多上传5个文件" in _message(exc)


def test_unknown_material_is_refused(session, draft, storage):
    with pytest.raises(ValidationFailed):
        _add(session, draft, "no_such_kind", "x.pdf", PDF, storage)


def test_path_traversal_names_are_only_labels(session, draft, storage, tmp_path):
    att = _add(session, draft, "application_form", "../../etc/passwd.pdf", PDF, storage)
    assert att.filename == "passwd.pdf"
    windows = _add(session, draft, "application_form", "..\\..\\boot.ini.pdf", PDF, storage)
    assert windows.filename == "boot.ini.pdf"
    odd = _add(session, draft, "application_form", "\x00..\x1f/.hidden.pdf", PDF, storage)
    assert odd.filename == "hidden.pdf"
    long = _add(session, draft, "application_form", "长" * 300 + ".pdf", PDF, storage)
    assert len(long.filename) <= ops.MAX_FILENAME and long.filename.endswith(".pdf")
    _nothing_outside(tmp_path, tmp_path / "storage")


def _nothing_outside(tmp_path: Path, root: Path) -> None:
    for dirpath, _dirs, files in os.walk(tmp_path):
        for name in files:
            path = Path(dirpath, name).resolve()
            assert root.resolve() in path.parents, f"written outside storage: {path}"


def test_a_zip_bomb_is_refused(session, make, storage, tmp_path):
    agency = make.applicant(org_type="patent_agency")
    app = make.application(make.call("branded_agency"), agency, materials=False)
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("zeros.bin", "w") as member,
    ):
        chunk = b"\0" * (1024 * 1024)
        for _ in range(64):
            member.write(chunk)
    bomb = buf.getvalue()
    assert len(bomb) < 200 * 1024  # 64 MiB in a small file
    with pytest.raises(ValidationFailed) as exc:
        _add(session, app, "agent_proof", "bomb.zip", bomb, storage)
    assert "压缩炸弹" in _message(exc) and "decompression bomb" in _message(exc)
    _nothing_outside(tmp_path, tmp_path / "storage")
    assert not list((tmp_path / "storage").rglob("*.tmp"))


def test_a_zip_whose_headers_lie_about_sizes_is_measured(monkeypatch, session, make, storage):
    agency = make.applicant(org_type="patent_agency")
    app = make.application(make.call("branded_agency"), agency, materials=False)
    monkeypatch.setattr(ops, "ZIP_MAX_UNCOMPRESSED", 1024 * 1024)
    data = _zip({"big.bin": b"\1" * (2 * 1024 * 1024)})
    with pytest.raises(ValidationFailed) as exc:
        _add(session, app, "agent_proof", "big.zip", data, storage)
    assert "压缩炸弹" in _message(exc)


@pytest.mark.parametrize(
    "member", ["../evil.txt", "/etc/passwd", "a/../../b", "C:/x.txt", "a\\..\\b"]
)
def test_archives_with_unsafe_member_names_are_refused(session, make, storage, member):
    agency = make.applicant(org_type="patent_agency")
    app = make.application(make.call("branded_agency"), agency, materials=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(member), b"x")
    with pytest.raises(ValidationFailed) as exc:
        _add(session, app, "agent_proof", "x.zip", buf.getvalue(), storage)
    assert "不安全的路径" in _message(exc)


def test_archives_with_too_many_members_or_broken_are_refused(session, make, storage):
    agency = make.applicant(org_type="patent_agency")
    app = make.application(make.call("branded_agency"), agency, materials=False)
    many = _zip(
        {f"f{i}.txt": b"" for i in range(ops.ZIP_MAX_MEMBERS + 1)}, compression=zipfile.ZIP_STORED
    )
    with pytest.raises(ValidationFailed) as exc:
        _add(session, app, "agent_proof", "many.zip", many, storage)
    assert "文件过多" in _message(exc)
    with pytest.raises(ValidationFailed) as exc:
        _add(session, app, "agent_proof", "broken.zip", b"PK\x03\x04" + b"\0" * 50, storage)
    assert "已损坏" in _message(exc)


# ---------------------------------------------------------------- replace / delete


def test_replace_and_delete_while_editable(session, draft, storage):
    user = draft.organization.users[0]
    old = _add(session, draft, "certificate", "old.pdf", PDF, storage)
    new = ops.replace_attachment(session, old, user, "new.pdf", PDF + b"2", storage)
    kinds = session.scalars(
        select(Attachment.filename).where(Attachment.application_id == draft.id)
    ).all()
    assert kinds == ["new.pdf"]
    (replaced,) = audit_events(session, "attachment.replace", entity_id=new.id)
    assert replaced.data["replaced"]["id"] == old.id
    ops.delete_attachment(session, new, user)
    assert session.get(Attachment, new.id) is None
    assert audit_events(session, "attachment.delete")


def _submitted(session, draft, storage):
    for m in (
        "application_form",
        "business_licence",
        "certificate",
        "cost_evidence",
        "credit_commitment",
    ):
        _add(session, draft, m, f"{m}.pdf", PDF, storage)
    submit_application(session, draft, draft.organization.users[0], today=date.today())
    return draft


def test_nothing_changes_after_submitting(session, draft, storage):
    _submitted(session, draft, storage)
    user = draft.organization.users[0]
    att = draft.attachments[0]
    with pytest.raises(PermissionDenied) as exc:
        _add(session, draft, "surveillance_notice", "late.pdf", PDF, storage)
    assert "当前状态下不能修改申报材料" in _message(exc)
    with pytest.raises(PermissionDenied):
        ops.delete_attachment(session, att, user)
    with pytest.raises(PermissionDenied):
        ops.replace_attachment(session, att, user, "x.pdf", PDF, storage)


def test_a_supplement_opens_only_the_requested_materials(session, make, draft, storage):
    _submitted(session, draft, storage)
    officer = make.user("district_officer", district=draft.district)
    fire(
        session,
        draft,
        "district_return",
        officer,
        reason="证书扫描件不清晰",
        payload={"supplement": {"fields": [], "materials": ["certificate"]}},
    )
    user = draft.organization.users[0]
    cert = next(a for a in draft.attachments if a.kind == "certificate")
    ops.replace_attachment(session, cert, user, "清晰版.pdf", PDF + b"clear", storage)
    with pytest.raises(PermissionDenied) as exc:
        _add(session, draft, "application_form", "x.pdf", PDF, storage)
    assert "只能修改要求补正的材料" in _message(exc)


def test_another_organization_cannot_add_or_delete(session, make, draft, storage):
    stranger = make.applicant()
    with pytest.raises(PermissionDenied):
        _add(session, draft, "application_form", "x.pdf", PDF, storage, user=stranger)
    att = _add(session, draft, "application_form", "mine.pdf", PDF, storage)
    with pytest.raises(PermissionDenied):
        ops.delete_attachment(session, att, stranger)


# ---------------------------------------------------------------- through the web


def _upload(client, app_id, kind, name, data, replace=None):
    body = {"kind": kind, "file": (io.BytesIO(data), name)}
    if replace is not None:
        body["replace"] = str(replace)
    return client.post(
        f"/applications/{app_id}/materials", data=body, content_type="multipart/form-data"
    )


def test_upload_list_preview_replace_and_delete_in_the_browser(client, session, app, draft):
    login(client, draft.organization.users[0])
    response = _upload(client, draft.id, "application_form", "申请表.pdf", PDF)
    assert response.status_code == 302 and response.headers["Location"].endswith(
        "#material-application_form"
    )
    att = session.scalar(select(Attachment).where(Attachment.application_id == draft.id))
    page = client.get(f"/applications/{draft.id}/materials").get_data(as_text=True)
    assert "申请表.pdf" in page and att.sha256 in page and "文件已上传" in page
    root = Path(app.config["STORAGE_DIR"]).resolve()
    assert root in (root / att.storage_key).resolve().parents

    preview = client.get(f"/attachments/{att.id}")
    assert preview.status_code == 200 and preview.data == PDF
    assert preview.mimetype == "application/pdf"
    assert preview.headers["Content-Disposition"].startswith("inline")
    assert preview.headers["X-Content-Type-Options"] == "nosniff"
    download = client.get(f"/attachments/{att.id}?download=1")
    assert download.headers["Content-Disposition"].startswith("attachment")

    assert (
        _upload(
            client, draft.id, "application_form", "v2.pdf", PDF + b"v2", replace=att.id
        ).status_code
        == 302
    )
    names = session.scalars(
        select(Attachment.filename).where(Attachment.application_id == draft.id)
    ).all()
    assert names == ["v2.pdf"]
    new = session.scalar(select(Attachment).where(Attachment.application_id == draft.id))
    assert client.post(f"/attachments/{new.id}/delete").status_code == 302
    assert session.scalar(select(Attachment).where(Attachment.application_id == draft.id)) is None


def test_office_files_are_downloaded_not_shown(client, session, make):
    agency = make.applicant(org_type="patent_agency")
    app = make.application(make.call("branded_agency"), agency, materials=False)
    login(client, agency)
    assert _upload(client, app.id, "filing_statistics", "统计.xlsx", XLSX).status_code == 302
    att = session.scalar(select(Attachment).where(Attachment.application_id == app.id))
    response = client.get(f"/attachments/{att.id}")
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]
    assert response.mimetype.endswith("spreadsheetml.sheet")


def test_bad_uploads_are_422_with_the_message_in_the_page(client, session, draft):
    login(client, draft.organization.users[0])
    response = _upload(client, draft.id, "application_form", "form.pdf", b"<html>not a pdf</html>")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "无法识别文件类型" in page and 'id="material-application_form-error"' in page
    english = client.post(
        f"/applications/{draft.id}/materials?lang=en",
        data={"kind": "application_form", "file": (io.BytesIO(PNG), "x.pdf")},
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "accepts PDF files only" in english
    missing = client.post(
        f"/applications/{draft.id}/materials?lang=zh", data={"kind": "application_form"}
    )
    assert missing.status_code == 422 and "请选择要上传的文件" in missing.get_data(as_text=True)
    unknown = _upload(client, draft.id, "no_such_material", "x.pdf", PDF)
    assert unknown.status_code == 400


def test_replacing_a_file_of_another_application_is_404(client, session, make, draft, storage):
    other_user = make.applicant()
    other = make.application(make.call("certification_reward"), other_user, materials=False)
    theirs = _add(session, other, "application_form", "theirs.pdf", PDF, storage)
    login(client, draft.organization.users[0])
    response = _upload(client, draft.id, "application_form", "x.pdf", PDF, replace=theirs.id)
    assert response.status_code == 404
    assert session.get(Attachment, theirs.id) is not None


def test_only_the_owner_and_entitled_staff_download(client, session, make, app, draft):
    login(client, draft.organization.users[0])
    _upload(client, draft.id, "application_form", "申请表.pdf", PDF)
    att = session.scalar(select(Attachment).where(Attachment.application_id == draft.id))
    login(client, make.applicant())
    assert client.get(f"/attachments/{att.id}").status_code == 403
    assert client.post(f"/attachments/{att.id}/delete").status_code == 403
    assert session.get(Attachment, att.id) is not None
    # Staff read drafts nowhere; after submission the district officer of the district may.
    officer = make.user("district_officer", district=draft.district)
    login(client, officer)
    assert client.get(f"/attachments/{att.id}").status_code == 403
    assert client.get("/attachments/99999999").status_code == 404
    for m in ("business_licence", "certificate", "cost_evidence", "credit_commitment"):
        _add(session, draft, m, f"{m}.pdf", PDF, LocalStorage(app.config["STORAGE_DIR"]))
    submit_application(session, draft, draft.organization.users[0], today=date.today())
    login(client, officer)
    assert client.get(f"/attachments/{att.id}").status_code == 200
    login(client, make.user("district_officer", district="另一区"))
    assert client.get(f"/attachments/{att.id}").status_code == 403


def test_deleting_after_submission_is_refused_in_the_browser(client, session, draft, storage):
    storage = LocalStorage(client.application.config["STORAGE_DIR"])
    _submitted(session, draft, storage)
    login(client, draft.organization.users[0])
    att = draft.attachments[0]
    assert client.post(f"/attachments/{att.id}/delete").status_code == 403
    page = client.get(f"/applications/{draft.id}/materials").get_data(as_text=True)
    assert "上传文件" not in page and 'type="file"' not in page
    response = _upload(client, draft.id, "surveillance_notice", "late.pdf", PDF)
    assert response.status_code == 403
