"""Uploaded materials (申报材料): add, replace and delete while the application may change.

The type of a file is decided by its content (magic bytes; for ZIP-based formats, the
archive's members), never by the name or the browser's content type, and the name's
extension must agree with it. ZIP archives (zip, docx, xlsx) are opened without being
extracted and refused when they look like a decompression bomb or carry unsafe member
names. The uploaded name is only a label: bytes are stored under a random key from
:mod:`workflow.storage` (either backend), so no name can steer where they are written.

Bytes of a replaced or deleted file stay in storage (the row is gone, the audit event
keeps its sha256): removing them before the transaction commits could lose a file that a
rolled-back request still references.
"""

from __future__ import annotations

import io
import unicodedata
import zipfile
import zlib

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..audit import record_event
from ..definitions.schema import Material, Program
from ..engine import compiled
from ..errors import PermissionDenied, ValidationFailed
from ..models import Application, Attachment, User
from ..permissions import can_edit_application
from ..storage import Storage
from .applications import editable_keys

# type -> (content type, accepted extensions, label)
FILE_TYPES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "pdf": ("application/pdf", ("pdf",), "PDF"),
    "png": ("image/png", ("png",), "PNG"),
    "jpg": ("image/jpeg", ("jpg", "jpeg"), "JPG"),
    "xlsx": (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ("xlsx",),
        "Excel (xlsx)",
    ),
    "docx": (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ("docx",),
        "Word (docx)",
    ),
    "zip": ("application/zip", ("zip",), "ZIP"),
}
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg"}

# Limits for ZIP-based files. The uncompressed size is measured by decompressing in
# chunks (headers can lie), and the ratio only counts for archives over 1 MiB unpacked,
# so a small, very regular file is not mistaken for a bomb.
ZIP_MAX_MEMBERS = 1000
ZIP_MAX_UNCOMPRESSED = 200 * 1024 * 1024
ZIP_MAX_RATIO = 100
ZIP_RATIO_FLOOR = 1024 * 1024
MAX_FILENAME = 120


def _fail(zh: str, en: str) -> ValidationFailed:
    return ValidationFailed(zh, en, {"file": [zh, en]})


def _types_text(types: list[str]) -> str:
    return "、".join(FILE_TYPES[t][2] for t in types)


# ---------------------------------------------------------------- content checks


def sniff(data: bytes) -> str | None:
    """The file type by content, or None. ZIP-based files are inspected (and refused
    with a ValidationFailed when unsafe)."""
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    return None


def _unsafe_member(name: str) -> bool:
    parts = name.split("/")
    return (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or ":" in parts[0]
        or ".." in parts
    )


def _zip_kind(data: bytes) -> str:
    broken = _fail("压缩文件已损坏或无法读取。", "The archive is damaged or cannot be read.")
    bomb = _fail(
        "压缩文件解压后过大或压缩比异常（疑似压缩炸弹），已拒绝。",
        "The archive unpacks to too much data (a possible decompression bomb); refused.",
    )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise broken from None
    if len(infos) > ZIP_MAX_MEMBERS:
        raise _fail(
            f"压缩文件中的文件过多（最多{ZIP_MAX_MEMBERS}个）。",
            f"The archive holds too many files (at most {ZIP_MAX_MEMBERS}).",
        )
    for info in infos:
        if _unsafe_member(info.filename):
            raise _fail(
                "压缩文件中含有不安全的路径（如“../”或绝对路径），已拒绝。",
                "The archive contains unsafe paths (such as '../' or absolute paths); refused.",
            )
        if info.flag_bits & 0x1:
            raise _fail(
                "不接受加密的压缩文件，请上传未加密的文件。",
                "Encrypted archives are not accepted; upload an unencrypted file.",
            )
    if sum(i.file_size for i in infos) > ZIP_MAX_UNCOMPRESSED:
        raise bomb
    total = 0
    try:
        for info in infos:
            if info.is_dir():
                continue
            with archive.open(info) as member:
                while chunk := member.read(256 * 1024):
                    total += len(chunk)
                    if total > ZIP_MAX_UNCOMPRESSED:
                        raise bomb
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, zlib.error):
        raise broken from None
    if total > ZIP_RATIO_FLOOR and total > ZIP_MAX_RATIO * max(len(data), 1):
        raise bomb
    names = {i.filename for i in infos}
    if "[Content_Types].xml" in names:
        if any(n.startswith("word/") for n in names):
            return "docx"
        if any(n.startswith("xl/") for n in names):
            return "xlsx"
    return "zip"


def safe_filename(name: str | None, fallback: str) -> str:
    """The uploaded name reduced to a display label: no directories, no control
    characters, no leading dots, at most MAX_FILENAME characters (extension kept)."""
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = text.strip().lstrip(".").strip()
    if not text:
        return fallback
    if len(text) > MAX_FILENAME:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 10:
            text = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            text = text[:MAX_FILENAME]
    return text


def check_file(material: Material, filename: str, data: bytes) -> tuple[str, str]:
    """Validate one file for a material; returns (type, safe filename)."""
    if not data:
        raise _fail("文件为空。", "The file is empty.")
    limit = material.max_size_mb * 1024 * 1024
    if len(data) > limit:
        raise _fail(
            f"文件超过{material.max_size_mb}MB的大小限制。",
            f"The file is larger than the {material.max_size_mb} MB limit.",
        )
    kind = sniff(data)
    allowed = _types_text(list(material.types))
    if kind is None:
        raise _fail(
            f"无法识别文件类型。该项材料只接受{allowed}文件（按文件内容检查，不只看扩展名）。",
            f"Unrecognised file type. This material accepts {allowed} files only "
            "(checked by content, not only by the extension).",
        )
    if kind not in material.types:
        raise _fail(
            f"该项材料只接受{allowed}文件，上传的文件是{FILE_TYPES[kind][2]}。",
            f"This material accepts {allowed} files only; the upload is {FILE_TYPES[kind][2]}.",
        )
    name = safe_filename(filename, f"{material.kind}.{FILE_TYPES[kind][1][0]}")
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    if ext not in FILE_TYPES[kind][1]:
        raise _fail(
            f"文件扩展名与文件内容不符：内容为{FILE_TYPES[kind][2]}，"
            f"扩展名应为 .{FILE_TYPES[kind][1][0]}。",
            f"The file extension does not match the content: the content is "
            f"{FILE_TYPES[kind][2]}, so the extension should be .{FILE_TYPES[kind][1][0]}.",
        )
    return kind, name


# ---------------------------------------------------------------- who may change what


def material_for(program: Program, kind: str) -> Material:
    for m in program.materials:
        if m.kind == kind:
            return m
    raise ValidationFailed("未知的材料类型。", f"Unknown material '{kind}'.", {"kind": [kind]})


def editable_materials(session: Session, app: Application) -> set[str] | None:
    """Material kinds the applicant may change now: None means all (draft); in a
    supplement state only the kinds the reviewer asked for."""
    keys = editable_keys(session, app)
    if keys is None:
        return None
    program = compiled(session, app.definition_id).program
    if not program.state(app.state).applicant_editable:
        return set()
    return set((app.supplement_request or {}).get("materials", []))


def can_change_material(session: Session, user: User, app: Application, kind: str) -> bool:
    allowed = editable_materials(session, app)
    return can_edit_application(user, app, allowed is None or kind in allowed)


def _must_be_changeable(session: Session, user: User, app: Application, kind: str) -> None:
    # Lock the row first (PostgreSQL): an upload and a concurrent submit of the same
    # application queue behind each other, so no file slips in after the snapshot.
    session.refresh(app, with_for_update=True)
    if can_change_material(session, user, app, kind):
        return
    if not can_edit_application(user, app, True):
        raise PermissionDenied("无权修改该申报。", "You cannot change this application.")
    if editable_materials(session, app) == set():
        raise PermissionDenied(
            "当前状态下不能修改申报材料。", "Materials cannot be changed in the current state."
        )
    raise PermissionDenied(
        "补正期间只能修改要求补正的材料。",
        "During a supplement only the requested materials can be changed.",
    )


# ---------------------------------------------------------------- operations


def add_attachment(
    session: Session,
    app: Application,
    user: User,
    kind: str,
    filename: str | None,
    data: bytes,
    storage: Storage,
    *,
    replace: Attachment | None = None,
) -> Attachment:
    """Check and store one file for material ``kind`` (replacing ``replace`` if given)."""
    program = compiled(session, app.definition_id).program
    material = material_for(program, kind)
    _must_be_changeable(session, user, app, kind)
    if replace is not None and (replace.application_id != app.id or replace.kind != kind):
        raise ValidationFailed(
            "要替换的文件不属于该项材料。", "The file to replace is not part of this material."
        )
    present = session.scalar(
        select(func.count())
        .select_from(Attachment)
        .where(Attachment.application_id == app.id, Attachment.kind == kind)
    )
    if replace is None and present >= material.max_files:
        raise _fail(
            f"该项材料最多上传{material.max_files}个文件；请先删除或替换已上传的文件。",
            f"At most {material.max_files} file(s) for this material; delete or replace one first.",
        )
    file_type, name = check_file(material, filename or "", data)
    key, digest = storage.put(data, prefix="att")
    attachment = Attachment(
        application_id=app.id,
        kind=kind,
        filename=name,
        content_type=FILE_TYPES[file_type][0],
        size=len(data),
        sha256=digest,
        storage_key=key,
        uploaded_by_id=user.id,
    )
    session.add(attachment)
    data_out = {"kind": kind, "filename": name, "sha256": digest, "size": len(data)}
    if replace is not None:
        data_out["replaced"] = {"id": replace.id, "sha256": replace.sha256}
        session.delete(replace)
    session.flush()
    record_event(
        session,
        action="attachment.replace" if replace is not None else "attachment.add",
        entity_type="attachment",
        entity_id=attachment.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role="applicant",
        data=data_out,
    )
    session.expire(app, ["attachments"])
    return attachment


def replace_attachment(
    session: Session,
    old: Attachment,
    user: User,
    filename: str | None,
    data: bytes,
    storage: Storage,
) -> Attachment:
    return add_attachment(
        session, old.application, user, old.kind, filename, data, storage, replace=old
    )


def delete_attachment(session: Session, attachment: Attachment, user: User) -> None:
    app = attachment.application
    _must_be_changeable(session, user, app, attachment.kind)
    record_event(
        session,
        action="attachment.delete",
        entity_type="attachment",
        entity_id=attachment.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role="applicant",
        data={
            "kind": attachment.kind,
            "filename": attachment.filename,
            "sha256": attachment.sha256,
        },
    )
    session.delete(attachment)
    session.flush()
    session.expire(app, ["attachments"])
