"""Configuration from the environment, with embedded defaults for development.

DATABASE_URL   default: SQLite file in the instance folder
REDIS_URL      unset: jobs run in-process right after the commit, login throttle per process
SECRET_KEY     required unless SHENBAO_ENV=development (or testing)
STORAGE_BACKEND  "local" (default: files in STORAGE_DIR) or "s3" (an S3-compatible bucket)
STORAGE_DIR    attachments and documents with the local backend; default: <instance>/storage
S3_BUCKET / S3_ENDPOINT_URL / S3_PREFIX / S3_REGION / S3_ADDRESSING_STYLE
               the bucket for STORAGE_BACKEND=s3 (credentials: boto3's AWS_* environment)
S3_SSE / S3_SSE_KMS_KEY_ID  server-side encryption: "", "AES256" or "aws:kms"
PUBLIC_BASE_URL  used in QR codes and e-mails; default http://127.0.0.1:5000
MAIL_SERVER / MAIL_PORT / MAIL_FROM / MAIL_USERNAME / MAIL_PASSWORD / MAIL_USE_TLS
STAFF_2FA_REQUIRED  "1" to force TOTP for staff accounts
LOGIN_IP_FAILURES_PER_MINUTE  failed logins per client address per minute (default 10)
PROXY_FIX      "1" behind a reverse proxy: trust one X-Forwarded-For/Proto hop
"""

from __future__ import annotations

import os
from pathlib import Path

from workflow.storage import BACKENDS
from workflow.storage_s3 import ADDRESSING_STYLES, SSE_MODES


class ConfigError(RuntimeError):
    pass


def normalize_db_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def from_env(instance_path: str, overrides: dict | None = None) -> dict:
    env = os.environ.get("SHENBAO_ENV", "production")
    dev = env in ("development", "testing")
    instance = Path(instance_path)
    secret = os.environ.get("SECRET_KEY")
    if not secret:
        if not dev and not (overrides or {}).get("SECRET_KEY"):
            raise ConfigError("SECRET_KEY must be set outside development (SHENBAO_ENV).")
        secret = "dev-only-not-secret"  # noqa: S105 (development only, refused in production)
    db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{instance / 'shenbao.db'}"
    cfg = {
        "SHENBAO_ENV": env,
        "SECRET_KEY": secret,
        "SQLALCHEMY_DATABASE_URI": normalize_db_url(db_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": os.environ.get("REDIS_URL") or None,
        "STORAGE_BACKEND": os.environ.get("STORAGE_BACKEND", "local").strip().lower(),
        "STORAGE_DIR": os.environ.get("STORAGE_DIR") or str(instance / "storage"),
        "S3_BUCKET": os.environ.get("S3_BUCKET") or None,
        "S3_ENDPOINT_URL": os.environ.get("S3_ENDPOINT_URL") or None,
        "S3_PREFIX": os.environ.get("S3_PREFIX", ""),
        "S3_REGION": os.environ.get("S3_REGION") or None,
        "S3_ADDRESSING_STYLE": os.environ.get("S3_ADDRESSING_STYLE", "auto"),
        "S3_SSE": os.environ.get("S3_SSE", ""),
        "S3_SSE_KMS_KEY_ID": os.environ.get("S3_SSE_KMS_KEY_ID") or None,
        "PUBLIC_BASE_URL": os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:5000"),
        "MAIL_SERVER": os.environ.get("MAIL_SERVER") or None,
        "MAIL_PORT": int(os.environ.get("MAIL_PORT", "25")),
        "MAIL_FROM": os.environ.get("MAIL_FROM", "noreply@shenbao.local"),
        "MAIL_USERNAME": os.environ.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": os.environ.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _flag("MAIL_USE_TLS", False),
        "STAFF_2FA_REQUIRED": _flag("STAFF_2FA_REQUIRED", False),
        "LOGIN_IP_FAILURES_PER_MINUTE": int(os.environ.get("LOGIN_IP_FAILURES_PER_MINUTE", "10")),
        "PROXY_FIX": _flag("PROXY_FIX", False),
        "BABEL_DEFAULT_LOCALE": "zh",
        "BABEL_TRANSLATION_DIRECTORIES": str(Path(__file__).parent / "translations"),
        "BOOTSTRAP_SERVE_LOCAL": True,
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", not dev),
        "REMEMBER_COOKIE_SECURE": _flag("SESSION_COOKIE_SECURE", not dev),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "WTF_CSRF_TIME_LIMIT": None,
    }
    cfg.update(overrides or {})
    check_storage(cfg)
    return cfg


def check_storage(cfg: dict) -> None:
    """Refuse a storage configuration that could only fail at the first upload."""
    backend = cfg.get("STORAGE_BACKEND") or "local"
    if backend not in BACKENDS:
        raise ConfigError(f"STORAGE_BACKEND must be one of {BACKENDS}, not {backend!r}.")
    if backend != "s3":
        return
    if not cfg.get("S3_BUCKET"):
        raise ConfigError("STORAGE_BACKEND=s3 needs S3_BUCKET.")
    if (cfg.get("S3_SSE") or "") not in SSE_MODES:
        raise ConfigError(f"S3_SSE must be one of {SSE_MODES}.")
    if (cfg.get("S3_ADDRESSING_STYLE") or "auto") not in ADDRESSING_STYLES:
        raise ConfigError(f"S3_ADDRESSING_STYLE must be one of {ADDRESSING_STYLES}.")
