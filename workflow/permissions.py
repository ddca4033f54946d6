"""Who may do what: named predicates, used by views, queues and the engine alike.

A role grant may be limited to a program and/or a district; a grant covers an
application only inside those limits. Applicants act only for their own organization;
experts only on applications assigned to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from .models import Application, Attachment, Decision, Review, RoleGrant, User

STAFF_ROLES = {"district_officer", "city_officer", "expert", "approver", "finance", "admin"}
REVIEW_ROLES = {"district_officer", "city_officer", "approver", "admin"}


@dataclass(frozen=True)
class SystemActor:
    """A transition fired by the scheduler ('system') or a member of the public."""

    role: str
    id: None = None
    name: str = "system"

    @property
    def grants(self) -> list[RoleGrant]:
        return []


Actor = User | SystemActor


def grant_covers(grant: RoleGrant, application: Application) -> bool:
    if grant.program_code and grant.program_code != application.program_code:
        return False
    return not (grant.district and grant.district != application.district)


def is_staff(user: Any) -> bool:
    return isinstance(user, User) and any(g.role in STAFF_ROLES for g in user.grants)


def has_role(user: Any, role: str) -> bool:
    return isinstance(user, User) and any(g.role == role for g in user.grants)


def is_assigned_expert(user: User, application: Application) -> bool:
    session = object_session(application)
    if session is None or application.id is None:
        return False
    return (
        session.scalar(
            select(Review.id).where(
                Review.application_id == application.id,
                Review.reviewer_id == user.id,
                Review.kind == "expert",
                Review.status != "recused",
            )
        )
        is not None
    )


def roles_for(actor: Actor, application: Application) -> set[str]:
    """The roles ``actor`` holds that cover this application."""
    if isinstance(actor, SystemActor):
        return {actor.role}
    if not actor.active:
        return set()
    roles: set[str] = set()
    for g in actor.grants:
        if g.role == "applicant":
            if (
                actor.organization_id is not None
                and actor.organization_id == application.organization_id
            ):
                roles.add("applicant")
        elif g.role == "expert":
            if grant_covers(g, application) and is_assigned_expert(actor, application):
                roles.add("expert")
        elif grant_covers(g, application):
            roles.add(g.role)
    return roles


def can_view_application(user: Any, application: Application) -> bool:
    if not isinstance(user, User):
        return False
    roles = roles_for(user, application)
    if "applicant" in roles:
        return True
    if application.state == "draft":
        # Staff do not read drafts: nothing has been submitted to them yet.
        return False
    return bool(roles & (STAFF_ROLES - {"expert"})) or "expert" in roles


def can_edit_application(user: Any, application: Application, editable: bool) -> bool:
    """Applicants of the owning organization, while the state lets them edit."""
    return editable and "applicant" in roles_for(user, application)


def can_fire(actor: Actor, application: Application, allowed_roles: list[str]) -> bool:
    return bool(roles_for(actor, application) & set(allowed_roles))


def can_view_attachment(user: Any, attachment: Attachment) -> bool:
    return can_view_application(user, attachment.application)


def can_view_decision(user: Any, decision: Decision) -> bool:
    if has_role(user, "finance"):
        return True
    return can_view_application(user, decision.application)


def can_use_workbench(user: Any) -> bool:
    return isinstance(user, User) and any(g.role in REVIEW_ROLES | {"expert"} for g in user.grants)


def can_assign(user: Any, application: Application) -> bool:
    """Lead officers (a grant with is_lead) assign work inside their scope."""
    return isinstance(user, User) and any(
        g.is_lead and g.role in REVIEW_ROLES and grant_covers(g, application) for g in user.grants
    )


def can_claim(user: Any, application: Application) -> bool:
    return bool(roles_for(user, application) & REVIEW_ROLES)


def can_manage_finance(user: Any) -> bool:
    return has_role(user, "finance")


def can_view_finance(user: Any) -> bool:
    return has_role(user, "finance") or has_role(user, "admin") or has_role(user, "approver")


def can_administer(user: Any) -> bool:
    return has_role(user, "admin")


def can_manage_panels(user: Any, program_code: str) -> bool:
    return isinstance(user, User) and any(
        g.role in ("city_officer", "admin") and (g.program_code in (None, program_code))
        for g in user.grants
    )
