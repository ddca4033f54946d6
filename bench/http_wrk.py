"""The status page under wrk: the same 32 logged-in applicants as ``bench/http.py``, but
the load comes from wrk (C, epoll; Debian's ``wrk``), which costs the two cores far less
than 32 Python client threads do. So the two figures bracket the server: the thread
client's includes its own share of the CPU, wrk's nearly none.

wrk keeps 32 connections open and sends each request as soon as the answer to the last
one on that connection has arrived (no think time), as the thread client does. A Lua
script rotates through the applicants: each request carries one applicant's session
cookie and asks for that applicant's own application, so every request is a real,
permitted page view. The script reports p50 / p95 and the number of answers that were
not 200 (wrk's own count includes redirects as successes; a redirect here would be a
lost session, so it counts as an error).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPT = r"""
local items = {%(items)s}
local n = #items
local next_item = 0
bad = 0  -- a global: the main state reads it with thread:get("bad")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  next_item = math.random(n) - 1
  bad = 0
end

function request()
  next_item = next_item %% n + 1
  local item = items[next_item]
  return wrk.format("GET", item[1], {["Cookie"] = item[2]})
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do total_bad = total_bad + (t:get("bad") or 0) end
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, '
    .. '"not_200": %%d, "socket_errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    total_bad, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def available() -> str | None:
    """None if wrk can be run, else why not."""
    return None if shutil.which("wrk") else "wrk is not installed (apt-get install wrk)"


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def script(items: list[tuple[str, str]]) -> str:
    """The Lua script for (path, cookie header) pairs."""
    rows = ", ".join(f"{{{_lua_string(p)}, {_lua_string(c)}}}" for p, c in items)
    return SCRIPT % {"items": rows}


def parse(output: str) -> dict[str, Any]:
    """The figures the script's ``done`` wrote."""
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            raw = json.loads(line[len("WRKJSON ") :])
            seconds = raw["duration_us"] / 1e6
            return {
                "requests": raw["requests"],
                "errors": raw["not_200"] + raw["socket_errors"],
                "p50_ms": raw["p50_us"] / 1000,
                "p95_ms": raw["p95_us"] / 1000,
                "rps": raw["requests"] / seconds if seconds else 0.0,
                "error_kinds": (["not 200"] if raw["not_200"] else [])
                + (["socket error or timeout"] if raw["socket_errors"] else []),
            }
    raise RuntimeError(f"wrk printed no results: {output[-300:]!r}")


def run_status(
    port: int,
    items: list[tuple[str, str]],
    *,
    seconds: float,
    connections: int = 32,
    threads: int = 2,
) -> dict[str, Any]:
    """One wrk run of ``seconds`` against the status pages in ``items``."""
    with tempfile.TemporaryDirectory(prefix="shenbao-wrk-") as tmp:
        lua = Path(tmp) / "status.lua"
        lua.write_text(script(items), encoding="utf-8")
        proc = subprocess.run(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(lua),
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return parse(proc.stdout)
