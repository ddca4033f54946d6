"""Who gets in: the ``login_required_mfa`` decorator the other areas put on their views,
login throttling per client address, and TOTP codes (RFC 6238).

Throttling has two layers. The per-account lockout (5 failures → 15 minutes) lives in
the database (``User.failed_logins`` / ``User.locked_until``) and so holds across
processes. The per-address limit below is kept in memory, per process: it counts
*failed* attempts (wrong password, unknown e-mail, wrong second-factor code) from one
client address in a sliding 60-second window, and refuses every login attempt from
that address (429) while the count is at the limit (``LOGIN_IP_FAILURES_PER_MINUTE``,
default 10). Successful logins are not counted, so an office behind one NAT address is
not locked out by its own staff. With N worker processes an attacker gets at most N×
the limit per minute, which the account lockout bounds anyway. Behind a reverse proxy
the app must see the real client address (werkzeug's ``ProxyFix``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from flask import current_app, redirect, request, session, url_for
from flask_login import current_user

from workflow.permissions import is_staff

from .extensions import login_manager

# ---------------------------------------------------------------- second factor gate


def mfa_redirect_target(user: Any) -> str | None:
    """Where ``user`` must go before seeing protected pages, or ``None`` if nowhere.

    A user who enrolled TOTP must have passed it in this session; a staff user must have
    enrolled TOTP when ``STAFF_2FA_REQUIRED`` is on.
    """
    if session.get("mfa_ok"):
        return None
    if getattr(user, "totp_secret", None):
        return url_for("auth.login_2fa")
    if current_app.config.get("STAFF_2FA_REQUIRED") and is_staff(user):
        return url_for("auth.totp_setup")
    return None


def login_required_mfa(view: Callable[..., Any]) -> Callable[..., Any]:
    """Like ``flask_login.login_required``, and also sends users who still owe a second
    factor (or, for staff under ``STAFF_2FA_REQUIRED``, its enrolment) to that step."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        target = mfa_redirect_target(current_user)
        if target is not None:
            return redirect(target)
        return view(*args, **kwargs)

    return wrapped


# Endpoints a user who still owes the second factor may reach (the backstop below).
MFA_EXEMPT_BLUEPRINTS = {"auth", "public", "bootstrap"}


def enforce_mfa_backstop() -> Any:
    """Before every request: a logged-in user who owes the second factor is sent to it
    from any page outside the public and account areas, even a view that only uses
    ``login_required``. ``login_required_mfa`` remains the documented way."""
    if not current_user.is_authenticated or request.endpoint is None:
        return None
    if request.endpoint == "static" or request.blueprint in MFA_EXEMPT_BLUEPRINTS:
        return None
    target = mfa_redirect_target(current_user)
    return redirect(target) if target is not None else None


# ---------------------------------------------------------------- per-address throttle


class AddressThrottle:
    """Failed attempts per client address in a sliding window (in memory, thread-safe)."""

    def __init__(self, window_seconds: float = 60.0):
        self.window = window_seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, address: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(address, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def blocked(self, address: str, limit: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._prune(address, now)
            if not hits:
                self._hits.pop(address, None)
            return len(hits) >= limit

    def record_failure(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(address, now).append(now)

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


def throttle() -> AddressThrottle:
    """The app's throttle (one per app object, so separate test apps do not share)."""
    ext = current_app.extensions
    if "shenbao_login_throttle" not in ext:
        ext["shenbao_login_throttle"] = AddressThrottle()
    return ext["shenbao_login_throttle"]


def client_address() -> str:
    return request.remote_addr or "unknown"


def address_blocked() -> bool:
    limit = int(current_app.config.get("LOGIN_IP_FAILURES_PER_MINUTE", 10))
    return throttle().blocked(client_address(), limit)


def note_failed_attempt() -> None:
    throttle().record_failure(client_address())


# ---------------------------------------------------------------- TOTP (RFC 6238)

TOTP_DIGITS = 6
TOTP_PERIOD = 30
TOTP_ISSUER = "Shenbao"


def new_totp_secret() -> str:
    """160 random bits in base32 without padding (what authenticator apps expect)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def _hotp(secret: str, counter: int) -> str:
    """RFC 4226 HOTP with HMAC-SHA1 and dynamic truncation."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**TOTP_DIGITS).zfill(TOTP_DIGITS)


def totp_now(secret: str, at: float | None = None) -> str:
    """The current code (used by tests and by nothing else)."""
    return _hotp(secret, int((time.time() if at is None else at) // TOTP_PERIOD))


def totp_matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step ``code`` belongs to (current ±1 for clock drift), or ``None``."""
    code = "".join(code.split())
    if not secret or len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    step = int((time.time() if at is None else at) // TOTP_PERIOD)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(_hotp(secret, candidate), code):
            return candidate
    return None


class UsedCodes:
    """Time steps already used per user, so one code cannot be replayed (RFC 6238 §5.2).
    In memory and per process; entries older than a few periods are forgotten."""

    def __init__(self) -> None:
        self._used: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()

    def claim(self, user_id: int, step: int) -> bool:
        now = time.monotonic()
        with self._lock:
            for key, at in list(self._used.items()):
                if at < now - 4 * TOTP_PERIOD:
                    del self._used[key]
            if (user_id, step) in self._used:
                return False
            self._used[(user_id, step)] = now
            return True


def used_codes() -> UsedCodes:
    ext = current_app.extensions
    if "shenbao_totp_used" not in ext:
        ext["shenbao_totp_used"] = UsedCodes()
    return ext["shenbao_totp_used"]


def check_totp(user_id: int, secret: str, code: str) -> bool:
    """A valid code for ``secret`` that has not been used before by this user."""
    step = totp_matching_step(secret, code)
    return step is not None and used_codes().claim(user_id, step)


def provisioning_uri(secret: str, account: str) -> str:
    """The otpauth:// URI authenticator apps read from the QR code."""
    label = quote(f"{TOTP_ISSUER}:{account}")
    query = urlencode(
        {
            "secret": secret,
            "issuer": TOTP_ISSUER,
            "algorithm": "SHA1",
            "digits": TOTP_DIGITS,
            "period": TOTP_PERIOD,
        }
    )
    return f"otpauth://totp/{label}?{query}"


def qr_data_uri(text: str) -> str:
    """An inline SVG QR code (``data:`` images are allowed by the CSP)."""
    import segno

    return segno.make(text, error="m").svg_data_uri(scale=5, border=2)
