"""Demo data for the embedded run command: organizations, one open call per program,
one user per role, and applications in several states. Idempotent: a second run finds
the demo users and does nothing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.definitions.loader import definition_files, load_file, sync_definitions
from workflow.engine import compiled, fire
from workflow.models import Attachment, Call, Organization, RoleGrant, User
from workflow.operations.applications import save_draft, start_application, submit_application
from workflow.operations.calls import create_call
from workflow.storage import Storage

from .security import hash_password

DEMO_PASSWORD = "Shenbao2026demo"  # noqa: S105 (printed demo login)
DATA_FILE = Path(__file__).parent / "demo_data.yaml"

STAFF = [
    ("district@demo.cn", "朝阳区初审员", "district_officer", "朝阳区", False),
    ("city@demo.cn", "市局审查员", "city_officer", None, True),
    ("expert1@demo.cn", "评审专家一", "expert", None, False),
    ("expert2@demo.cn", "评审专家二", "expert", None, False),
    ("expert3@demo.cn", "评审专家三", "expert", None, False),
    ("approver@demo.cn", "审定会议", "approver", None, False),
    ("finance@demo.cn", "财务人员", "finance", None, False),
    ("admin@demo.cn", "系统管理员", "admin", None, False),
]


def _minimal_pdf(title: str) -> bytes:
    body = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode("latin-1", "replace")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(body)).encode() + b" >>stream\n" + body + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer << /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def seed_demo(session: Session, today: date, storage: Storage | None = None) -> list[str]:
    from .jobs import storage as app_storage

    lines: list[str] = []
    if session.scalar(select(User).where(User.email == "admin@demo.cn")) is not None:
        return ["demo data already present"]
    storage = storage or app_storage()
    sync_definitions(session)
    data: dict[str, Any] = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    pw = hash_password(DEMO_PASSWORD)
    for email, name, role, district, lead in STAFF:
        user = User(email=email, name=name, password_hash=pw)
        user.grants.append(RoleGrant(role=role, district=district, is_lead=lead))
        session.add(user)
    session.flush()

    calls: dict[str, Call] = {}
    for path in definition_files():
        program, _ = load_file(path)
        calls[program.code] = create_call(
            session,
            program_code=program.code,
            year=today.year,
            title=f"{today.year}年度{program.name.zh}",
            opens_on=today - timedelta(days=30),
            closes_on=today + timedelta(days=60),
            budget_yuan=str(data.get("budgets", {}).get(program.code, "1000000")),
            params=data.get("call_params", {}).get(program.code, {}),
        )
        lines.append(f"call: {calls[program.code].title}")

    pdf = _minimal_pdf("Shenbao demo material")
    for spec in data["organizations"]:
        org = Organization(**spec["organization"])
        session.add(org)
        session.flush()
        owner = User(
            email=spec["email"],
            name=spec["contact"],
            password_hash=pw,
            organization_id=org.id,
            is_org_owner=True,
        )
        owner.grants.append(RoleGrant(role="applicant"))
        session.add(owner)
        session.flush()
        lines.append(f"applicant: {owner.email} ({org.name})")
        for app_spec in spec.get("applications", []):
            call = calls.get(app_spec["program"])
            if call is None:
                continue
            app = start_application(session, user=owner, call=call, today=today)
            save_draft(session, app, owner, app_spec.get("form", {}))
            program = compiled(session, app.definition_id).program
            for m in program.materials:
                key, digest = storage.put(pdf, prefix="att")
                session.add(
                    Attachment(
                        application_id=app.id,
                        kind=m.kind,
                        filename=f"{m.kind}.pdf",
                        content_type="application/pdf",
                        size=len(pdf),
                        sha256=digest,
                        storage_key=key,
                        uploaded_by_id=owner.id,
                    )
                )
            session.flush()
            session.refresh(app)
            _advance(session, app, owner, app_spec.get("advance", []), today)
            lines.append(f"  {program.code}: {app.number or 'draft'} -> {app.state}")
    lines.append(f"demo password for every account: {DEMO_PASSWORD}")
    for email, _name, role, _d, _l in STAFF:
        lines.append(f"  {role:17} {email}")
    return lines


def _advance(session: Session, app, owner: User, steps: list[dict[str, Any]], today: date) -> None:
    users = {
        role: session.scalar(select(User).join(RoleGrant).where(RoleGrant.role == role))
        for role in ("district_officer", "city_officer", "approver", "finance")
    }
    for step in steps:
        trigger = step["trigger"]
        if trigger == "submit":
            submit_application(session, app, owner, today=today)
        else:
            fire(session, app, trigger, users[step["as"]], reason=step.get("reason"), today=today)
