"""Scenario 2, graceful shutdown under load, five times.

Each round: a server under steady load (16 connections, each sending its next request, single
texts and batches, as soon as the last one is answered), then SIGTERM. Meanwhile `/readyz` is
polled every 20 ms. The load keeps going until the port refuses connections and for a moment
after, the harshest client there is (a load balancer would stop on the failing probe).

Every request is classified from the client's side and checked against the server's access log:
- `200`: served;
- refused at connect (`ECONNREFUSED`): clean, the port is closed;
- reset after connect: a new connection whose connect succeeded, whose request was sent, and
  that got no byte back; its request id is absent from the server's access log. The kernel's
  accept queue, reset when the listening socket closes, and a connection accepted but closed
  before its request was read, both gave these; the drain now avoids both (RELIABILITY.md);
- stale keep-alive: the same on a kept-alive connection, written as the server closed it as idle
  (RFC 9112 section 9.3.1: the server never saw it, a client may resend it);
- lost: sent and never answered although the server read it, or any answer other than 200.
Each reset after connect is listed with its local port, to match with a trace of the server's
connections when looking for a cause.

`--connections mixed` (default): half the callers on kept-alive connections, half on a new
connection per request; `--connections fresh`: all 16 on a new connection per request.
`--command uvicorn` runs README.md's classic `uvicorn ...` command instead of
`ml-prod-api serve` (it exits with SIGTERM's status once drained).

Expected per round: `/readyz` 503 within 1 s of SIGTERM, 0 lost, 0 reset after connect,
refusals only after the grace period, a clean exit within DRAIN_GRACE_SECONDS +
SHUTDOWN_TIMEOUT_SECONDS.

    python -m scripts.reliability.shutdown            # tfidf, 5 rounds
    python -m scripts.reliability.shutdown --quick    # stub, 1 round
    python -m scripts.reliability.shutdown --connections fresh --command uvicorn
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import (
    CONNECT_FAILED,
    LOST,
    REFUSED,
    STALE,
    TIMEOUT,
    Client,
    Stats,
    closed_loop,
)
from tests.support.servers import LoggedServer

GRACE_S = 2.0
SHUTDOWN_TIMEOUT_S = 10.0


async def one_round(srv: LoggedServer, load_s: float, fresh_only: bool) -> dict[str, Any]:
    texts = harness.make_texts(300)
    make = harness.mixed_maker(texts, batch_share=0.2)
    # Half the load on kept-alive connections, half on a new connection per request (all of it
    # on new connections with `fresh_only`).
    fresh = Client(
        "127.0.0.1", srv.port, max_conns=16, timeout_s=30, fresh_connections=True, stats=Stats()
    )
    load = Client("127.0.0.1", srv.port, max_conns=8, timeout_s=30, stats=fresh.stats)
    stop = asyncio.Event()
    if fresh_only:
        load_task = asyncio.gather(closed_loop(fresh, make, 16, 120.0, stop=stop))
    else:
        load_task = asyncio.gather(
            closed_loop(load, make, 8, 120.0, stop=stop),
            closed_loop(fresh, make, 8, 120.0, stop=stop),
        )
    await asyncio.sleep(load_s)

    ready_seen: list[tuple[float, int]] = []
    t_sig = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)

    async def poll_ready() -> None:
        probe = Client("127.0.0.1", srv.port, max_conns=1, timeout_s=5, stats=Stats())
        while srv.proc.poll() is None and time.monotonic() - t_sig < 60:
            r = await probe.send(harness.get("/readyz"))
            ready_seen.append((time.monotonic() - t_sig, r.status))
            if r.error == REFUSED:
                break
            await asyncio.sleep(0.02)
        await probe.close()

    poller = asyncio.create_task(poll_ready())
    deadline = GRACE_S + SHUTDOWN_TIMEOUT_S + 15
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, lambda: _wait(srv, deadline))
    t_exit = time.monotonic() - t_sig
    await asyncio.sleep(0.5)  # clients keep trying a little after the exit
    stop.set()
    await load_task
    await poller
    await load.close()
    await fresh.close()

    results = fresh.stats.results
    seen_ids = {r.get("request_id") for r in srv.log_records()}
    before = [r for r in results if r.started < t_sig]
    after = [r for r in results if r.started >= t_sig]
    served_after = [r for r in after if r.status == 200]
    refused = [r for r in after if r.error == REFUSED]
    # Sent, no byte back, and absent from the server's log: the server never read it. On a new
    # connection: reset after the connect succeeded (the kernel's accept queue reset when the
    # listening socket closed, or a connection accepted and closed before its request was read).
    # On a kept-alive connection: written as the server closed it as idle.
    unread = [r for r in results if r.error in (STALE, LOST) and r.request_id not in seen_ids]
    reset_after_connect = [r for r in unread if not r.reused]
    stale = [r for r in unread if r.reused]
    unread_ids = {id(r) for r in unread}
    lost = [
        r
        for r in results
        if (r.error in (STALE, LOST, TIMEOUT) and id(r) not in unread_ids)
        or (r.status and r.status != 200)
    ]
    first_503 = next((at for at, status in ready_seen if status == 503), None)
    first_refused = min((r.started - t_sig for r in refused), default=None)
    last_served = max((r.started + r.latency - t_sig for r in served_after), default=None)
    return {
        "requests_before_sigterm": len(before),
        "requests_after_sigterm": len(after),
        "served_after_sigterm": len(served_after),
        "refused_at_connect": len(refused),
        "connect_failed": sum(1 for r in results if r.error == CONNECT_FAILED),
        "reset_after_connect": len(reset_after_connect),
        "stale_keepalive": len(stale),
        # (seconds from SIGTERM, local port) of each: to match with a trace of the server's
        # connections when looking for the cause.
        "reset_after_connect_detail": [
            [round(r.started - t_sig, 3), r.local_port] for r in reset_after_connect
        ],
        "lost": len(lost),
        "lost_detail": harness.summarize(lost) if lost else None,
        "readyz_503_after_s": None if first_503 is None else round(first_503, 3),
        "last_200_after_s": None if last_served is None else round(last_served, 3),
        "first_refusal_after_s": None if first_refused is None else round(first_refused, 3),
        "exit_code": code,
        "exit_after_s": round(t_exit, 2),
        "drain_started_logged": bool(harness.log_events(srv, "drain_started")),
        # From SIGTERM (negative: before it), and when /readyz answered what.
        "timeline_100ms": harness.timeline(results, t_sig, 0.1),
        "readyz_polls": [[round(at, 3), status] for at, status in ready_seen],
    }


def _wait(srv: LoggedServer, timeout_s: float) -> int | None:
    try:
        return srv.proc.wait(timeout_s)
    except Exception:
        return None


# The classic start command as README.md gives it (its three flags), on a loopback port.
UVICORN_ARGV = [
    sys.executable,
    "-m",
    "uvicorn",
    "ml_prod_api.api:app",
    "--app-dir",
    "src",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    "--http",
    "ml_prod_api.http.protocol:HeaderTimeoutProtocol",
    "--no-proxy-headers",
    "--no-server-header",
    "--timeout-graceful-shutdown",
    str(int(SHUTDOWN_TIMEOUT_S)),
]


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument(
        "--provider", default=None, help="tfidf (default) or stub (default when --quick)"
    )
    p.add_argument("--rounds", type=int, default=None, help="5 (quick: 1)")
    p.add_argument(
        "--connections",
        choices=["mixed", "fresh"],
        default="mixed",
        help="mixed: half kept-alive, half a new connection per request (default);\n"
        "fresh: all 16 callers open a new connection per request",
    )
    p.add_argument(
        "--command",
        choices=["serve", "uvicorn"],
        default="serve",
        help="serve: `ml-prod-api serve` (default); uvicorn: README's classic command",
    )
    args = p.parse_args(argv)
    provider = args.provider or ("stub" if args.quick else "tfidf")
    rounds = args.rounds or (1 if args.quick else 5)
    name = f"shutdown-{provider}"
    if args.connections != "mixed":
        name += f"-{args.connections}"
    if args.command != "serve":
        name += f"-{args.command}"
    report = harness.Report(name, args.quick)
    if provider == "tfidf" and (why := harness.tfidf_available()):
        report.expect("tfidf model loads", False, why)
        return report.finish(args.out)
    settings = {
        "MODEL_PROVIDER": provider,
        "DRAIN_GRACE_SECONDS": str(GRACE_S),
        "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_S),
    }
    if provider == "stub":
        settings["STUB_DELAY_MS"] = "5"
    server_argv = UVICORN_ARGV if args.command == "uvicorn" else None
    # uvicorn's own command re-raises SIGTERM once drained (README.md): status -15 to Popen.
    clean_exit = 0 if args.command == "serve" else -signal.SIGTERM
    harness.print_header(
        f"graceful shutdown under load on {provider}, {rounds} rounds, "
        f"{args.connections} connections, {args.command}",
        settings,
    )
    run = harness.RunDir(report.scenario, args.keep_logs)
    all_rounds = []
    for i in range(rounds):
        with harness.server(run, f"round{i + 1}", argv=server_argv, **settings) as srv:
            figures = harness.run_async(
                lambda srv=srv: one_round(srv, 2.0, args.connections == "fresh")
            )
        all_rounds.append(figures)
        report.figure(f"round {i + 1}", figures)
        limit = GRACE_S + SHUTDOWN_TIMEOUT_S
        report.expect(f"round {i + 1}: no request lost", figures["lost"] == 0, figures["lost"])
        report.expect(
            f"round {i + 1}: no new connection reset after its connect",
            figures["reset_after_connect"] == 0,
            figures["reset_after_connect_detail"],
        )
        ready = figures["readyz_503_after_s"]
        report.expect(
            f"round {i + 1}: /readyz 503 within 1 s", ready is not None and ready <= 1.0, ready
        )
        report.expect(
            f"round {i + 1}: exit {clean_exit}",
            figures["exit_code"] == clean_exit,
            figures["exit_code"],
        )
        report.expect(
            f"round {i + 1}: exit within grace + shutdown timeout ({limit:.0f} s)",
            figures["exit_after_s"] <= limit,
            figures["exit_after_s"],
        )
        first = figures["first_refusal_after_s"]
        report.expect(
            f"round {i + 1}: connections refused only after the grace period",
            first is None or first >= GRACE_S - 0.05,
            first,
        )
        report.expect(
            f"round {i + 1}: predictions served during the grace period",
            figures["served_after_sigterm"] > 0,
            figures["served_after_sigterm"],
        )
    report.figure("total lost", sum(r["lost"] for r in all_rounds))
    report.figure("total reset after connect", sum(r["reset_after_connect"] for r in all_rounds))
    report.figure("total stale keep-alive", sum(r["stale_keepalive"] for r in all_rounds))
    report.figure("total served after SIGTERM", sum(r["served_after_sigterm"] for r in all_rounds))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
