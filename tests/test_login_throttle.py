"""The per-address login throttle across processes and hosts: with ``REDIS_URL`` two app
instances (two hosts) share one count in a real Redis; without it each keeps its own;
a Redis that fails at run time neither refuses logins nor turns them into errors (fail
open to the process's own count, with a warning).

Needs ``TEST_REDIS_URL`` for the Redis tests (the keys they write are deleted after).
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from tests.conftest import make_app
from webapp.access import AddressThrottle, RedisThrottle, throttle_client

REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis (TEST_REDIS_URL)")
LIMIT = 3


RUN = secrets.token_hex(2)  # this run's addresses: 2001:db8:<RUN>::<n>


def fresh_address() -> str:
    """A documentation-range address no other test (or run) uses."""
    return f"2001:db8:{RUN}::{secrets.token_hex(2)}"


@pytest.fixture(scope="module", autouse=True)
def _forget_this_runs_counts() -> Iterator[None]:
    """Delete the counts this module wrote (they would expire within two minutes anyway)."""
    yield
    if REDIS_URL:
        client = throttle_client(REDIS_URL)
        keys = list(client.scan_iter(f"{RedisThrottle.PREFIX}:2001:db8:{RUN}::*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def address() -> str:
    return fresh_address()


def host(committed_app: Flask, **overrides) -> Flask:
    """Another app instance on the same database, as a second web host would be."""
    return make_app(
        committed_app.config["SQLALCHEMY_DATABASE_URI"],
        committed_app.config["STORAGE_DIR"],
        LOGIN_IP_FAILURES_PER_MINUTE=LIMIT,
        **overrides,
    )


def fail_login(app: Flask, address: str) -> int:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    email = f"nobody-{secrets.token_hex(4)}@nowhere.cn"
    return client.post("/login", data={"email": email, "password": "Wrong2026password"}).status_code


# ---------------------------------------------------------------- RedisThrottle itself


@pytest.mark.redis
@needs_redis
def test_two_throttles_share_one_count(address):
    first, second = (
        RedisThrottle(throttle_client(REDIS_URL)),
        RedisThrottle(throttle_client(REDIS_URL)),
    )
    now = 1_000_000 * 60.0 + 10  # ten seconds into a window
    first.record_failure(address, now=now)
    second.record_failure(address, now=now + 1)
    assert not first.blocked(address, LIMIT, now=now + 2)
    first.record_failure(address, now=now + 2)
    assert first.blocked(address, LIMIT, now=now + 3)
    assert second.blocked(address, LIMIT, now=now + 3)
    assert not second.blocked(fresh_address(), LIMIT, now=now + 3)
    key = f"{RedisThrottle.PREFIX}:{address}:{1_000_000}"
    assert 0 < first.client.ttl(key) <= 121  # the count expires by itself


@pytest.mark.redis
@needs_redis
def test_the_previous_window_counts_for_the_part_still_inside_the_minute(address):
    limiter = RedisThrottle(throttle_client(REDIS_URL))
    start = 2_000_000 * 60.0
    for second in (50, 55, 58):  # three failures late in one window
        limiter.record_failure(address, now=start + second)
    # Just after the boundary most of the last minute is the previous window: blocked,
    # where a plain fixed window would have let the address start again from zero.
    assert limiter.blocked(address, LIMIT, now=start + 61)
    assert not limiter.blocked(address, LIMIT, now=start + 60 + 45)
    assert not limiter.blocked(address, LIMIT, now=start + 125)


@pytest.mark.redis
@needs_redis
def test_concurrent_failures_are_all_counted(address):
    limiters = [RedisThrottle(throttle_client(REDIS_URL)) for _ in range(2)]
    now = 3_000_000 * 60.0 + 1

    def hammer(limiter: RedisThrottle) -> None:
        for _ in range(25):
            limiter.record_failure(address, now=now)

    threads = [threading.Thread(target=hammer, args=(limiters[i % 2],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert int(limiters[0].client.get(f"{RedisThrottle.PREFIX}:{address}:3000000")) == 200


# ---------------------------------------------------------------- two hosts, one count


@pytest.mark.redis
@needs_redis
def test_two_app_instances_share_the_count_through_redis(committed_app, address):
    host_a, host_b = (
        host(committed_app, REDIS_URL=REDIS_URL),
        host(committed_app, REDIS_URL=REDIS_URL),
    )
    try:
        assert [fail_login(host_a, address), fail_login(host_a, address)] == [401, 401]
        assert fail_login(host_b, address) == 401
        # Three failures in all: both hosts now refuse the address, before any password check.
        assert fail_login(host_a, address) == 429
        assert fail_login(host_b, address) == 429
        assert fail_login(host_b, fresh_address()) == 401  # other addresses are not affected
        with host_a.app_context():
            from webapp.access import throttle

            assert isinstance(throttle(), RedisThrottle)
    finally:
        for h in (host_a, host_b):
            _dispose(h)


def test_without_redis_each_instance_counts_alone(committed_app, address):
    host_a, host_b = host(committed_app), host(committed_app)
    try:
        for _ in range(LIMIT):
            assert fail_login(host_a, address) == 401
        assert fail_login(host_a, address) == 429
        assert fail_login(host_b, address) == 401  # the gap Redis closes
    finally:
        for h in (host_a, host_b):
            _dispose(h)


def test_a_failing_redis_fails_open_to_the_process_count(committed_app, address, caplog):
    broken = host(committed_app, REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens
    try:
        with caplog.at_level(logging.WARNING, logger="webapp.access"):
            codes = [fail_login(broken, address) for _ in range(LIMIT + 1)]
        assert codes == [401] * LIMIT + [429]  # no 500, nobody locked out, still throttled
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not once per attempt
        assert fail_login(broken, fresh_address()) == 401
    finally:
        _dispose(broken)


def test_the_memory_throttle_is_kept_for_single_host_installs():
    limiter = AddressThrottle()
    for t in (0.0, 1.0, 2.0):
        limiter.record_failure("192.0.2.1", now=t)
    assert limiter.blocked("192.0.2.1", LIMIT, now=3.0)
    assert not limiter.blocked("192.0.2.1", LIMIT, now=61.0)


def _dispose(app: Flask) -> None:
    from webapp.extensions import db

    with app.app_context():
        db.engine.dispose()
