"""Scenario 2, graceful shutdown under load, five times.

Each round: a server under steady load (16 connections, each sending its next request, single
texts and batches, as soon as the last one is answered), then SIGTERM. Meanwhile `/readyz` is
polled every 20 ms. The load keeps going until the port refuses connections and for a moment
after, the harshest client there is (a load balancer would stop on the failing probe).

Every request is classified from the client's side and checked against the server's access log:
- `200`: served;
- refused at connect (`ECONNREFUSED`): clean, the listening socket is closed;
- never read by the server: sent, no byte came back, and its request id is absent from the
  server's access log. Two ways: written to a kept-alive connection at the instant the server
  closed it as idle, or a new connection still waiting in the kernel's accept queue when the
  listening socket closed (the kernel resets those). The server never saw it, so a proxy may
  resend it (RFC 9112 section 9.3.1); it happens only to clients that keep connecting after
  readiness turned 503;
- lost: sent and never answered although the server read it, or any answer other than 200.

Half of the load uses kept-alive connections, half a new connection per request.

Expected per round: `/readyz` 503 within 1 s of SIGTERM, 0 lost, refusals only after the grace
period, exit status 0 within DRAIN_GRACE_SECONDS + SHUTDOWN_TIMEOUT_SECONDS.

    python -m scripts.reliability.shutdown            # tfidf, 5 rounds
    python -m scripts.reliability.shutdown --quick    # stub, 1 round
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import (
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


async def one_round(srv: LoggedServer, load_s: float, report: harness.Report) -> dict[str, Any]:
    texts = harness.make_texts(300)
    make = harness.mixed_maker(texts, batch_share=0.2)
    # Half the load on kept-alive connections, half on a new connection per request.
    load = Client("127.0.0.1", srv.port, max_conns=8, timeout_s=30)
    fresh = Client(
        "127.0.0.1", srv.port, max_conns=8, timeout_s=30, fresh_connections=True, stats=load.stats
    )
    stop = asyncio.Event()
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

    seen_ids = {r.get("request_id") for r in srv.log_records()}
    before = [r for r in load.stats.results if r.started < t_sig]
    after = [r for r in load.stats.results if r.started >= t_sig]
    served_after = [r for r in after if r.status == 200]
    refused = [r for r in after if r.error == REFUSED]
    # Sent, no answer, and absent from the server's log: the server never read it (a kept-alive
    # connection it closed as idle, or a connection still in the kernel's accept queue when the
    # listening socket closed, which the kernel resets).
    unread = [
        r for r in load.stats.results if r.error in (STALE, LOST) and r.request_id not in seen_ids
    ]
    unread_ids = {id(r) for r in unread}
    lost = [
        r
        for r in load.stats.results
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
        "never_read_by_server": len(unread),
        "never_read_detail": dict(Counter(r.error for r in unread)),
        "lost": len(lost),
        "lost_detail": harness.summarize(lost) if lost else None,
        "readyz_503_after_s": None if first_503 is None else round(first_503, 3),
        "last_200_after_s": None if last_served is None else round(last_served, 3),
        "first_refusal_after_s": None if first_refused is None else round(first_refused, 3),
        "exit_code": code,
        "exit_after_s": round(t_exit, 2),
        "drain_started_logged": bool(harness.log_events(srv, "drain_started")),
        # From SIGTERM (negative: before it), and when /readyz answered what.
        "timeline_100ms": harness.timeline(load.stats.results, t_sig, 0.1),
        "readyz_polls": [[round(at, 3), status] for at, status in ready_seen],
    }


def _wait(srv: LoggedServer, timeout_s: float) -> int | None:
    try:
        return srv.proc.wait(timeout_s)
    except Exception:
        return None


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument(
        "--provider", default=None, help="tfidf (default) or stub (default when --quick)"
    )
    p.add_argument("--rounds", type=int, default=None, help="5 (quick: 1)")
    args = p.parse_args(argv)
    provider = args.provider or ("stub" if args.quick else "tfidf")
    rounds = args.rounds or (1 if args.quick else 5)
    report = harness.Report(f"shutdown-{provider}", args.quick)
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
    harness.print_header(f"graceful shutdown under load on {provider}, {rounds} rounds", settings)
    run = harness.RunDir(report.scenario, args.keep_logs)
    all_rounds = []
    for i in range(rounds):
        with harness.server(run, f"round{i + 1}", **settings) as srv:
            figures = harness.run_async(lambda srv=srv: one_round(srv, 2.0, report))
        all_rounds.append(figures)
        report.figure(f"round {i + 1}", figures)
        limit = GRACE_S + SHUTDOWN_TIMEOUT_S
        report.expect(f"round {i + 1}: no request lost", figures["lost"] == 0, figures["lost"])
        ready = figures["readyz_503_after_s"]
        report.expect(
            f"round {i + 1}: /readyz 503 within 1 s", ready is not None and ready <= 1.0, ready
        )
        report.expect(f"round {i + 1}: exit 0", figures["exit_code"] == 0, figures["exit_code"])
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
    report.figure(
        "total never read by the server", sum(r["never_read_by_server"] for r in all_rounds)
    )
    report.figure("total served after SIGTERM", sum(r["served_after_sigterm"] for r in all_rounds))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
