"""Notifications (issue 6 item 6): the in-app list (unread first, mark read, the count for
the badge) and e-mail received by a real SMTP server (aiosmtpd on loopback): a state
change that commits sends its mail through the ``send_email`` job, a transaction that
rolls back sends nothing, and a user who opted out gets the in-app message only.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from datetime import date

import pytest
from flask_login import login_user
from sqlalchemy import func, select

from tests import reliability
from tests.conftest import login
from webapp import notification_ops
from workflow import outbox
from workflow.engine import compiled, fire
from workflow.models import Notification, OutboxJob, utcnow
from workflow.operations.applications import submit_application

# ---------------------------------------------------------------- a real SMTP server


class Inbox:
    """aiosmtpd handler keeping what it received."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, seconds: float = 10) -> list:
        deadline = time.monotonic() + seconds
        with self.arrived:
            while len(self.messages) < count and time.monotonic() < deadline:
                self.arrived.wait(0.1)
        return list(self.messages)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier may have switched the relay off)."""
    from webapp.jobs import relay

    monkeypatch.setattr(outbox, "_relay", relay)


@pytest.fixture
def smtp(app, monkeypatch):
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", controller.port)
    try:
        yield inbox
    finally:
        controller.stop()


def _submitted(make, cert_form):
    applicant = make.applicant(district="朝阳区")
    call = make.call("certification_reward", params={"district_prereview": True})
    application = make.application(call, applicant, cert_form)
    submit_application(make.session, application, applicant, today=date.today())
    officer = make.user("district_officer", district="朝阳区")
    return applicant, application, officer


def _title(session, application, state: str, lang: str = "zh") -> str:
    program = compiled(session, application.definition_id).program
    return f"{program.name.get(lang)}：{program.state(state).public_label.get(lang)}"


# ---------------------------------------------------------------- e-mail


def test_state_change_mail_reaches_a_real_smtp_server(session, make, cert_form, smtp):
    applicant, application, officer = _submitted(make, cert_form)
    outbox.commit(session)
    already = len(smtp.wait_for(1, seconds=2))  # the submission's own mail
    fire(session, application, "district_pass", officer, today=date.today())
    outbox.commit(session)  # commit, then the send_email job runs (in-process)
    messages = smtp.wait_for(already + 1)
    assert len(messages) == already + 1
    message = messages[-1]
    assert message["Subject"] == _title(session, application, "city_review")
    assert message["To"] == applicant.email
    assert f"/applications/{application.id}" in message.get_content()
    assert smtp.envelopes[-1][1] == [applicant.email]


def test_mail_through_a_request_that_commits(client, session, make, cert_form, smtp):
    applicant, application, officer = _submitted(make, cert_form)
    outbox.commit(session)
    already = len(smtp.wait_for(1, seconds=2))
    login(client, officer)
    response = client.post(
        f"/review/applications/{application.id}/fire/district_pass",
        data={"district_pass-reason": "材料齐全"},
    )
    assert response.status_code == 302
    messages = smtp.wait_for(already + 1)
    assert messages[-1]["Subject"] == _title(session, application, "city_review")


def test_no_mail_for_a_transaction_that_rolled_back(session, make, cert_form, smtp):
    applicant, application, officer = _submitted(make, cert_form)
    outbox.commit(session)
    already = len(smtp.wait_for(1, seconds=2))
    jobs_before = session.scalar(select(func.count(OutboxJob.id)))
    fire(session, application, "district_pass", officer, today=date.today())
    assert session.info.get("outbox_new")  # the mail job was recorded...
    outbox.rollback(session)  # ...and the transaction rolled back
    outbox.commit(session)  # a later commit must not send it either
    time.sleep(1.0)
    assert len(smtp.messages) == already
    assert session.scalar(select(func.count(OutboxJob.id))) == jobs_before
    reliability.record("test_no_mail_for_a_transaction_that_rolled_back", rollbacks=1, mails_sent=0)


def test_opted_out_user_gets_the_message_in_app_only(session, make, cert_form, smtp):
    applicant, application, officer = _submitted(make, cert_form)
    applicant.email_preferences = {"state_change": False}
    outbox.commit(session)
    already = len(smtp.wait_for(1, seconds=2))
    fire(session, application, "district_pass", officer, today=date.today())
    outbox.commit(session)
    time.sleep(1.0)
    assert len(smtp.messages) == already
    titles = session.scalars(
        select(Notification.title).where(Notification.user_id == applicant.id)
    ).all()
    assert _title(session, application, "city_review") in titles


# ---------------------------------------------------------------- in-app list


def _note(session, user, title: str, *, read: bool = False, link: str | None = None):
    n = Notification(
        user_id=user.id,
        kind="state_change",
        title=title,
        body="",
        link=link,
        read_at=utcnow() if read else None,
    )
    session.add(n)
    session.flush()
    return n


def test_list_shows_own_messages_unread_first(client, session, make):
    user = make.applicant()
    other = make.applicant()
    _note(session, user, "旧消息-已读", read=True)
    _note(session, user, "新消息-未读")
    _note(session, other, "别人的消息")
    login(client, user)
    html = client.get("/notifications").get_data(as_text=True)
    assert "别人的消息" not in html
    assert html.index("新消息-未读") < html.index("旧消息-已读")
    assert "1 条未读" in html


def test_mark_read_and_mark_all(client, session, make):
    user = make.applicant()
    first = _note(session, user, "第一条", link="/applications/1")
    _note(session, user, "第二条")
    login(client, user)
    response = client.post(f"/notifications/{first.id}/read", data={"open": "1"})
    assert response.status_code == 302 and response.headers["Location"] == "/applications/1"
    session.refresh(first)
    assert first.read_at is not None
    assert notification_ops.unread_count(session, user) == 1
    response = client.post("/notifications/read-all", follow_redirects=True)
    assert "已将 1 条消息标为已读" in response.get_data(as_text=True)
    assert notification_ops.unread_count(session, user) == 0


def test_someone_elses_message_is_not_found(client, session, make):
    owner, intruder = make.applicant(), make.applicant()
    note = _note(session, owner, "私信")
    login(client, intruder)
    assert client.post(f"/notifications/{note.id}/read").status_code == 404
    assert client.post("/notifications/999999/read").status_code == 404
    session.refresh(note)
    assert note.read_at is None


def test_anonymous_is_sent_to_login(client):
    assert client.get("/notifications").status_code == 302
    assert client.post("/notifications/read-all").status_code == 302


def test_stored_links_only_point_inside_the_site(client, session, make):
    user = make.applicant()
    for link in ("//evil.example/x", "javascript:alert(1)", "https://evil.example", "/\\evil"):
        _note(session, user, f"链接 {link}", link=link)
    _note(session, user, "<script>alert(1)</script>")
    login(client, user)
    html = client.get("/notifications?page=abc").get_data(as_text=True)
    for bad in ('href="//evil', 'href="https://evil', 'href="javascript:', 'href="/\\evil'):
        assert bad not in html, bad
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_badge_count_helper(app, session, make):
    user = make.applicant()
    _note(session, user, "一")
    _note(session, user, "二")
    _note(session, user, "三", read=True)
    session.commit()
    with app.test_request_context("/"):
        login_user(user)
        context: dict = {}
        app.update_template_context(context)
        assert context["unread_notifications"]() == 2
