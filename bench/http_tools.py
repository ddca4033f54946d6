"""The mechanics of the HTTP benchmark: a keep-alive client with a cookie jar and a
form parser, gunicorn started on loopback against the bench database, a thread pool,
and a meter of the CPU the server side (gunicorn workers and their PostgreSQL backends,
all on this machine) spends over a run."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import create_engine, text

from .common import ROOT, SECRET_KEY

# ---------------------------------------------------------------- a small HTTP client


class _Inputs(HTMLParser):
    """Hidden inputs of the forms on a page, by form action."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self._action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._action = a.get("action") or ""
            self.forms.setdefault(self._action, {})
        elif tag == "input" and self._action is not None and a.get("name"):
            self.forms[self._action][a["name"] or ""] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


def hidden_inputs(html: str) -> dict[str, dict[str, str]]:
    parser = _Inputs()
    parser.feed(html)
    return parser.forms


class Client:
    """One browser: a keep-alive connection and a cookie jar."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, form: dict[str, Any] | None = None
    ) -> tuple[int, str, dict]:
        headers = {"Connection": "keep-alive"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (TimeoutError, http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        for value in resp.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]
        return resp.status, data.decode("utf-8", "replace"), dict(resp.headers)

    def login(self, email: str, password: str) -> bool:
        status, html, _h = self.request("GET", "/login")
        token = next(
            (f["csrf_token"] for f in hidden_inputs(html).values() if "csrf_token" in f), ""
        )
        status, _html, headers = self.request(
            "POST",
            "/login",
            {"email": email, "password": password, "csrf_token": token, "next": ""},
        )
        return status in (302, 303)

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- the server


def bench_redis_url() -> str | None:
    """The Redis the benchmark's web server sends jobs to, if one answers."""
    url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    if not url:
        return None
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001 (no Redis: jobs run in-process instead)
        return None
    return url


def _flush_redis(url: str) -> None:
    import redis

    with contextlib.suppress(Exception):
        redis.Redis.from_url(url).flushdb()


@contextlib.contextmanager
def server(
    url: str, *, workers: int = 2, threads: int = 4, port: int | None = None
) -> Iterator[int]:
    """gunicorn on loopback against the bench database; yields the port.

    Jobs go to Redis as in production (``BENCH_REDIS_URL``, default database 11 of the
    local Redis, emptied afterwards; no worker consumes them during the run), or, when no
    Redis answers, run in the request after the commit as the embedded defaults do.
    """
    port = port or _free_port()
    storage = tempfile.mkdtemp(prefix="shenbao-bench-storage-")
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    redis_url = bench_redis_url()
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(
        SHENBAO_ENV="production",
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://"),
        SESSION_COOKIE_SECURE="0",
        STORAGE_DIR=storage,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    cmd = [
        gunicorn,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--backlog",
        "256",
        "wsgi:app",
    ]
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in the finally below)
        prefix="shenbao-bench-gunicorn-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {log_file.name}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    c.close()
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError(f"gunicorn did not answer /healthz; see {log_file.name}")
        SERVER_PID["pid"] = proc.pid
        yield port
    finally:
        SERVER_PID.pop("pid", None)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log_file.close()
        shutil.rmtree(storage, ignore_errors=True)
        if redis_url:
            _flush_redis(redis_url)
        if os.path.getsize(log_file.name) == 0:  # keep the log only if gunicorn said something
            os.unlink(log_file.name)


SERVER_PID: dict[str, int] = {}


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cpu(pids: list[int]) -> float:
    from .engine_worker import cpu_seconds

    return sum(cpu_seconds(p) for p in pids)


def _backend_pids(url: str) -> list[int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                int(r[0])
                for r in conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
                )
            ]
    finally:
        engine.dispose()


class CpuMeter:
    """CPU seconds of the gunicorn workers and of the PostgreSQL backends serving them
    over a run (both run on this machine), to report CPU per request."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self) -> CpuMeter:
        self.app_pids = _children(SERVER_PID.get("pid", 0))
        self.db_pids = _backend_pids(self.url)
        self.app0, self.db0 = _cpu(self.app_pids), _cpu(self.db_pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.app = _cpu(self.app_pids) - self.app0
        self.db = _cpu(self.db_pids) - self.db0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parallel(tasks: list[Any], fn: Any, threads: int) -> list[Any]:
    """Run fn over tasks on ``threads`` threads; results in task order."""
    results: list[Any] = [None] * len(tasks)
    index = iter(range(len(tasks)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(index, None)
            if i is None:
                return
            results[i] = fn(tasks[i])

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results
