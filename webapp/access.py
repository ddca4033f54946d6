"""Who gets in: the ``login_required_mfa`` decorator the other areas put on their views,
login throttling per client address, and TOTP codes (RFC 6238).

Throttling has two layers. The per-account lockout (5 failures → 15 minutes) lives in
the database (``User.failed_logins`` / ``User.locked_until``) and so holds across
processes. The per-address limit below counts *failed* attempts (wrong password, unknown
e-mail, wrong second-factor code) from one client address over the last 60 seconds, and
refuses every login attempt from that address (429) while the count is at the limit
(``LOGIN_IP_FAILURES_PER_MINUTE``, default 10). Successful logins are not counted, so an
office behind one NAT address is not locked out by its own staff. Behind a reverse proxy
the app must see the real client address (werkzeug's ``ProxyFix``).

Where the count lives:

* ``REDIS_URL`` unset: in the memory of each process (``AddressThrottle``). With N
  processes an attacker gets at most N× the limit, which the account lockout bounds.
* ``REDIS_URL`` set: in Redis (``RedisThrottle``), shared by every process on every host.
* Redis configured but failing (down, timing out): the request is **not** refused. The
  throttle fails open to this process's memory count and logs a warning (at most once a
  minute per process). Refusing every login while Redis is away would let one broken
  cache lock out the whole province, staff included; failing open costs only the
  cross-host precision of a second line of defence, while the per-account lockout in the
  database keeps working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
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
from sqlalchemy import or_, update

from workflow.models import User
from workflow.permissions import is_staff

from .extensions import db, login_manager

log = logging.getLogger(__name__)

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


class RedisThrottle:
    """Failed attempts per client address, counted in Redis for every process and host.

    Each failure is an ``INCR`` of the address's key for the current fixed window plus an
    ``EXPIRE`` of two windows, sent together in one ``MULTI``/``EXEC``. ``blocked`` reads
    the current and the previous window and weights the previous one by the part of it
    still inside the last 60 seconds, which approximates the in-memory sliding window: a
    window boundary does not reset an address to zero, a block lasts about a minute, and
    over any stretch longer than a minute an address gets at most the limit per minute
    (failures bunched at the very end of a window can still give up to about twice the
    limit within one sliding minute). Window numbers come from each host's clock (NTP
    keeps them within a fraction of a window).
    """

    PREFIX = "shenbao:login-failures"

    def __init__(
        self, client: Any, window_seconds: float = 60.0, fallback: AddressThrottle | None = None
    ):
        self.client = client
        self.window = window_seconds
        self.fallback = fallback or AddressThrottle(window_seconds)
        self._warned_at: float | None = None

    def _key(self, address: str, window: int) -> str:
        return f"{self.PREFIX}:{address}:{window}"

    def blocked(self, address: str, limit: int, now: float | None = None) -> bool:
        from redis.exceptions import RedisError

        now = time.time() if now is None else now
        window, elapsed = divmod(now, self.window)
        try:
            previous, current = self.client.mget(
                self._key(address, int(window) - 1), self._key(address, int(window))
            )
        except RedisError:
            self._degraded()
            return self.fallback.blocked(address, limit)
        # The previous window's failures, spread evenly, that fall inside the last minute;
        # rounded up (less a float epsilon), so a burst just before a boundary still counts.
        carried = math.ceil(int(previous or 0) * (self.window - elapsed) / self.window - 1e-9)
        return int(current or 0) + carried >= limit

    def record_failure(self, address: str, now: float | None = None) -> None:
        from redis.exceptions import RedisError

        now = time.time() if now is None else now
        key = self._key(address, int(now // self.window))
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, int(2 * self.window) + 1)
            pipe.execute()
        except RedisError:
            self._degraded()
            self.fallback.record_failure(address)

    def _degraded(self) -> None:
        now = time.monotonic()
        if self._warned_at is None or now - self._warned_at >= self.window:
            self._warned_at = now
            log.warning(
                "login throttle: Redis unavailable, counting failures in this process only",
                exc_info=True,
            )


def throttle_client(url: str) -> Any:
    """A Redis client of the throttle's own: short timeouts and no retries, so a Redis
    that hangs or is gone costs a login half a second, not the RQ client's patience."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


def throttle() -> AddressThrottle | RedisThrottle:
    """The app's throttle (one per app object, so separate test apps do not share): in
    Redis when ``REDIS_URL`` is set, else in this process's memory. Built on first use."""
    ext = current_app.extensions
    if "shenbao_login_throttle" not in ext:
        url = current_app.config.get("REDIS_URL")
        ext["shenbao_login_throttle"] = (
            RedisThrottle(throttle_client(url)) if url else AddressThrottle()
        )
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


def claim_totp_step(user_id: int, step: int) -> bool:
    """Record ``step`` as this user's last used time step, unless a code of that step or a
    later one was already used (RFC 6238 §5.2: a code is accepted once). One conditional
    UPDATE in the request's transaction: two hosts accepting the same code at the same
    moment queue on the row lock, and the second finds the step taken."""
    result = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def check_totp(user_id: int, secret: str, code: str) -> bool:
    """A valid code for ``secret`` that has not been used before by this user."""
    step = totp_matching_step(secret, code)
    return step is not None and claim_totp_step(user_id, step)


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
