"""How the hot paths load what they act on: one statement each.

A request that shows or moves an application needs its organization and call (names for
expressions, labels), and the logged-in user needs their role grants (permissions). Loading
them lazily costs a round trip and SQLAlchemy's per-statement work each; these loaders
join them in. The frozen JSON an application carries (snapshot, eligibility results, award
trace) is deferred on the model and arrives in one statement when first read.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, joinedload

from .models import Application, User

MAX_ID = 2**31 - 1  # ids beyond the column type are simply not found

APPLICATION_WITH_PARTIES = (
    joinedload(Application.organization),
    joinedload(Application.call),
)


def load_application(session: Session, app_id: int) -> Application | None:
    """The application with its organization and call, or None."""
    if not 0 < app_id <= MAX_ID:
        return None
    return session.get(Application, app_id, options=APPLICATION_WITH_PARTIES)


def load_user(session: Session, user_id: int) -> User | None:
    """The user with their role grants, or None."""
    if not 0 < user_id <= MAX_ID:
        return None
    return session.get(User, user_id, options=(joinedload(User.grants),))
