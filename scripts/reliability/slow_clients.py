"""Scenario 8, slow clients: many connections that trickle their request.

Three kinds of slow connection, opened together (S in all, default 300):
- body trickle: complete headers with `Content-Length: 1000`, then one body byte per second;
- header trickle (slowloris): the request line, then one header byte per second;
- silent: connect and send nothing.

Meanwhile 8 connections send ordinary predictions as fast as they are answered. Measured: the
ordinary requests' latency and errors before and during; how many slow connections the server
closed, when, and with which answer; whether an idle kept-alive connection is closed after
TIMEOUT_KEEP_ALIVE; and how long SIGTERM takes while the slow connections are still open.

Uvicorn (0.54, the pinned version) enforces only `timeout_keep_alive`, armed after a response on
an idle kept-alive connection. The service adds the other two: HEADER_READ_TIMEOUT_SECONDS in its
HTTP protocol (`http/protocol.py`: a new connection that sends nothing, or headers that trickle)
and BODY_READ_TIMEOUT_SECONDS in its middleware (a body that trickles), both 10 s by default, so
a run must last longer than that to see them close (RELIABILITY.md).

    python -m scripts.reliability.slow_clients            # 300 slow connections, 30 s
    python -m scripts.reliability.slow_clients --quick    # 60 slow connections, 12 s
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, closed_loop

GRACE_S = 0.5
SHUTDOWN_TIMEOUT_S = 5


class Slow:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.closed_after: float | None = None
        self.answer: str | None = None  # the status line the server sent before closing


async def slow_connection(port: int, slow: Slow, t0: float, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        slow.closed_after = 0.0
        return
    if slow.kind == "body":
        writer.write(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        trickle = b'{"text": "' + b"a" * 2000
    elif slow.kind == "header":
        writer.write(b"POST /v1/predict HTTP/1.1\r\n")
        trickle = b"X-Slow: " + b"b" * 2000
    else:
        trickle = b""
    i = 0
    try:
        while not stop.is_set():
            if trickle:
                writer.write(trickle[i : i + 1])
                await writer.drain()
                i += 1
            # A closed connection shows up as EOF on read (or an error on the next write).
            try:
                data = await asyncio.wait_for(reader.read(1024), 1.0)
            except TimeoutError:
                continue
            if not data:
                break
            if slow.answer is None:
                slow.answer = data.split(b"\r\n", 1)[0].decode("latin-1")
    except OSError:
        pass
    if slow.closed_after is None and not stop.is_set():
        slow.closed_after = time.monotonic() - t0
    writer.close()


async def keepalive_timeout(port: int) -> float | None:
    """Seconds until the server closes an idle kept-alive connection after one request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    t0 = time.monotonic()
    try:
        while True:
            data = await asyncio.wait_for(reader.read(1024), 30)
            if not data:
                return time.monotonic() - t0
    except (TimeoutError, OSError):
        return None
    finally:
        writer.close()


async def drill(
    srv: harness.LoggedServer, n_slow: int, secs: float, report: harness.Report
) -> None:
    port = srv.port
    make = harness.single_maker(harness.make_texts(200))
    base = Client("127.0.0.1", port, max_conns=8)
    await closed_loop(base, make, 8, 3.0)
    await base.close()
    report.figure("others before", harness.summarize(base.stats.results))

    ka = asyncio.create_task(keepalive_timeout(port))
    t0 = time.monotonic()
    stop = asyncio.Event()
    slows = [Slow(("body", "header", "silent")[i % 3]) for i in range(n_slow)]
    tasks = [asyncio.create_task(slow_connection(port, s, t0, stop)) for s in slows]
    await asyncio.sleep(1.0)
    during = Client("127.0.0.1", port, max_conns=8)
    await closed_loop(during, make, 8, secs)
    await during.close()
    sample = harness.sample(srv.proc.pid)
    report.figure("others during", harness.summarize(during.stats.results))
    report.figure("server fds / tcp connections during", [sample.fds, sample.connections])
    by_kind: dict[str, Any] = {}
    for kind in ("body", "header", "silent"):
        group = [s for s in slows if s.kind == kind]
        closed = [s.closed_after for s in group if s.closed_after is not None]
        answers = Counter(s.answer or "none" for s in group if s.closed_after is not None)
        by_kind[kind] = {
            "opened": len(group),
            "closed_by_server": len(closed),
            "first_closed_after_s": round(min(closed), 1) if closed else None,
            "last_closed_after_s": round(max(closed), 1) if closed else None,
            "answers": dict(answers),
        }
    elapsed = time.monotonic() - t0
    report.figure(f"slow connections after {elapsed:.0f} s", by_kind)
    ka_s = await ka
    report.figure("idle kept-alive connection closed after s", ka_s and round(ka_s, 2))

    t_sig = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, srv.proc.wait, 60)
    exit_s = time.monotonic() - t_sig
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    report.figure(
        "SIGTERM with slow connections open: exit code, seconds", [code, round(exit_s, 2)]
    )

    errors = [r for r in during.stats.results if r.status != 200]
    report.expect("others served during (no errors)", not errors, len(errors))
    report.expect(
        "others' p99 under 1 s during",
        harness.summarize(during.stats.results)["p99_ms"] < 1000,
        harness.summarize(during.stats.results)["p99_ms"],
    )
    report.expect(
        "idle kept-alive connection closed after TIMEOUT_KEEP_ALIVE (5 s, +1)",
        ka_s is not None and ka_s <= 6.0,
        ka_s,
    )
    report.expect(
        "shutdown not held by slow connections (exit 0 within grace + timeout + 2 s)",
        code == 0 and exit_s <= GRACE_S + SHUTDOWN_TIMEOUT_S + 2,
        exit_s,
    )
    never = sum(v["opened"] - v["closed_by_server"] for v in by_kind.values())
    report.expect(
        "slow connections closed by the server's timeouts",
        never == 0,
        f"{never} of {len(slows)} still open after {elapsed:.0f} s (HEADER_READ_TIMEOUT_SECONDS "
        "and BODY_READ_TIMEOUT_SECONDS are 10 s: a shorter run cannot see them)",
    )


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--slow", type=int, default=None, help="slow connections (300; quick 60)")
    p.add_argument("--seconds", type=float, default=None, help="load while they trickle (30; 12)")
    args = p.parse_args(argv)
    n_slow = args.slow or (60 if args.quick else 300)
    secs = args.seconds or (12.0 if args.quick else 30.0)
    report = harness.Report("slow-clients", args.quick)
    settings = {
        "MODEL_PROVIDER": "stub",
        "TIMEOUT_KEEP_ALIVE": "5",
        "DRAIN_GRACE_SECONDS": str(GRACE_S),
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_S),
    }
    harness.print_header(f"{n_slow} slow connections for {secs:.0f} s", settings)
    run = harness.RunDir(report.scenario, args.keep_logs)
    with harness.server(run, "server", **settings) as srv:
        harness.run_async(lambda: drill(srv, n_slow, secs, report))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
