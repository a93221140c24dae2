"""Scenario 7, Redis loss under load: rate limits in Redis, Redis killed, frozen, restarted
(RELIABILITY.md).

Two callers with API keys: `steady` (a limit it never reaches, 100 requests/s of load) and
`capped` (5 requests per second, sent 20/s, so a quarter is served and the rest get 429 while
Redis is up). Phases, each a few seconds, under that load:

1. Redis up: `steady` 200, `capped` 200 + 429 `rate_limited`.
2. Redis killed (connections refused at once).
3. Redis back (a fresh, empty instance on the same port).
4. Redis frozen (SIGSTOP: connections hang, so only RATE_LIMIT_TIMEOUT_MS bounds a request).
5. Redis thawed (SIGCONT).

Run once fail-open and once fail-closed. Expected: while Redis is away, fail-open serves every
request (no limit), fail-closed answers `503 rate_limit_unavailable` with Retry-After; nothing
waits much longer than 2 x RATE_LIMIT_TIMEOUT_MS; once Redis is back, `capped` gets 429 again.

    python -m scripts.reliability.redis_loss [--quick]
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, Request, open_loop
from tests.support.servers import RedisServer

KEYS = {"steady": "steady-key-0123456789abcdef", "capped": "capped-key-0123456789abcdef"}
TIMEOUT_MS = 250  # the default RATE_LIMIT_TIMEOUT_MS; --timeout-ms changes it


def _with_key(req: Request, caller: str) -> Request:
    return Request(req.method, req.path, req.body, caller, (("X-API-Key", KEYS[caller]),))


async def phase(port: int, seconds: float) -> dict[str, Any]:
    make = harness.single_maker(harness.make_texts(100))
    steady = Client("127.0.0.1", port, max_conns=64, timeout_s=30)
    capped = Client("127.0.0.1", port, max_conns=32, timeout_s=30)
    await asyncio.gather(
        open_loop(steady, lambda i: _with_key(make(i), "steady"), 100, seconds),
        open_loop(capped, lambda i: _with_key(make(i), "capped"), 20, seconds),
    )
    await steady.close()
    await capped.close()
    return {
        "steady": harness.summarize(steady.stats.results),
        "capped": harness.summarize(capped.stats.results),
        "retry_after_on_503": all(
            r.retry_after for r in steady.stats.results + capped.stats.results if r.status == 503
        ),
    }


async def drill(port: int, redis: RedisServer, fail_open: bool, secs: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["1 redis up"] = await phase(port, secs)
    redis.kill()
    out["2 redis killed"] = await phase(port, secs)
    redis.start()
    await asyncio.sleep(0.2)
    out["3 redis back"] = await phase(port, secs)
    assert redis.proc is not None
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        out["4 redis frozen"] = await phase(port, secs)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    await asyncio.sleep(0.2)
    out["5 redis thawed"] = await phase(port, secs)
    return out


def check(
    report: harness.Report, mode: str, fail_open: bool, out: dict[str, Any], timeout_ms: int
) -> None:
    for name, figures in out.items():
        report.figure(f"{mode} {name} steady", figures["steady"])
        report.figure(f"{mode} {name} capped", figures["capped"])
    for name in ("1 redis up", "3 redis back", "5 redis thawed"):
        s, c = out[name]["steady"], out[name]["capped"]
        report.expect(
            f"{mode} {name}: steady all 200", set(s["by_status"]) == {200}, s["by_status"]
        )
        report.expect(
            f"{mode} {name}: capped limited (200 and 429 rate_limited)",
            set(c["by_status"]) == {200, 429} and set(c["by_code"]) == {"rate_limited"},
            c["by_status"],
        )
    for name in ("2 redis killed", "4 redis frozen"):
        s, c = out[name]["steady"], out[name]["capped"]
        statuses = set(s["by_status"]) | set(c["by_status"])
        if fail_open:
            report.expect(
                f"{mode} {name}: everything served (limit off)", statuses == {200}, statuses
            )
        else:
            codes = set(s["by_code"]) | set(c["by_code"])
            report.expect(
                f"{mode} {name}: refused 503 rate_limit_unavailable",
                statuses <= {503, 200} and 503 in statuses and codes <= {"rate_limit_unavailable"},
                f"{statuses} {codes}",
            )
            report.expect(f"{mode} {name}: 503s carry Retry-After", out[name]["retry_after_on_503"])
        slowest = max(s["max_ms"], c["max_ms"])
        report.expect(
            f"{mode} {name}: nothing hangs (max < 2 x timeout + 1 s)",
            slowest < 2 * timeout_ms + 1000,
            f"{slowest} ms",
        )
        errors = s["errors"] or c["errors"]
        report.expect(f"{mode} {name}: no connection errors", not errors, errors)


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--timeout-ms", type=int, default=TIMEOUT_MS, help="RATE_LIMIT_TIMEOUT_MS")
    p.add_argument("--modes", nargs="*", default=["fail-open", "fail-closed"])
    args = p.parse_args(argv)
    secs = 2.0 if args.quick else 6.0
    suffix = "" if args.timeout_ms == TIMEOUT_MS else f"-timeout{args.timeout_ms}"
    report = harness.Report("redis-loss" + suffix, args.quick)
    run = harness.RunDir(report.scenario, args.keep_logs)
    for mode in args.modes:
        fail_open = mode == "fail-open"
        redis = RedisServer(Path(tempfile.mkdtemp(dir=run.path)))
        redis.start()
        settings = {
            "MODEL_PROVIDER": "stub",
            "API_KEYS": ",".join(f"{k}:{v}" for k, v in KEYS.items()),
            "RATE_LIMIT": "100000/minute",
            "RATE_LIMIT_OVERRIDES": json.dumps({"capped": "5/second"}),
            "RATE_LIMIT_STORAGE_URI": redis.uri,
            "RATE_LIMIT_STRATEGY": "fixed-window",
            "RATE_LIMIT_FAIL_OPEN": "true" if fail_open else "false",
            "RATE_LIMIT_TIMEOUT_MS": str(args.timeout_ms),
        }
        shown = {k: v for k, v in settings.items() if k != "API_KEYS"}
        harness.print_header(f"Redis loss under load, {mode}", shown)
        try:
            with harness.server(run, mode, **settings) as srv:
                t0 = time.monotonic()
                out = harness.run_async(
                    lambda srv=srv, redis=redis, fo=fail_open: drill(srv.port, redis, fo, secs)
                )
                report.figure(f"{mode} wall s", round(time.monotonic() - t0, 1))
                check(report, mode, fail_open, out, args.timeout_ms)
                report.expect(f"{mode}: server alive", srv.proc.poll() is None)
        finally:
            redis.kill()
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
