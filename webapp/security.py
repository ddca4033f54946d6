"""Passwords (Argon2id), password rules, login throttling and TOTP for staff."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters

MIN_LENGTH = 10
COMMON = {
    "password",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "abc123456",
    "password123",
    "admin12345",
    "iloveyou12",
    "shenbao123",
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def password_problems(password: str, *, email: str = "") -> list[dict[str, str]]:
    """Rules: at least 10 characters, at most 128, letters and digits, not a common or
    e-mail-derived password."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append(
            {"zh": f"密码至少{MIN_LENGTH}位。", "en": f"At least {MIN_LENGTH} characters."}
        )
    if len(password) > 128:
        problems.append({"zh": "密码不能超过128位。", "en": "At most 128 characters."})
    if not re.search(r"[A-Za-z]", password) or not re.search(r"\d", password):
        problems.append({"zh": "密码须同时包含字母和数字。", "en": "Use both letters and digits."})
    lowered = password.lower()
    local = email.split("@")[0].lower() if email else ""
    if lowered in COMMON or (local and len(local) >= 4 and local in lowered):
        problems.append(
            {"zh": "密码过于常见或与邮箱相同。", "en": "Too common or based on the e-mail."}
        )
    return problems
