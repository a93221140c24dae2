"""Scenario 3, rolling restart: two replicas behind a round-robin proxy, each restarted in turn
under steady load (RELIABILITY.md).

The proxy (`proxy.py`) checks `/readyz` every 100 ms, like a load balancer's readiness probe;
DRAIN_GRACE_SECONDS (1 s) is longer than that interval, so a replica that got SIGTERM leaves the
rotation while it still serves. Each restart: SIGTERM, wait for exit status 0, start it again on
the same port, wait until it is ready, then one second before the next.

Figure: failed requests seen by the client (target 0), and the proxy's own retries.

    python -m scripts.reliability.rolling_restart            # tfidf, 2 rounds of restarts
    python -m scripts.reliability.rolling_restart --quick    # stub, 1 round
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, open_loop
from scripts.reliability.proxy import RoundRobinProxy
from tests.support.servers import LoggedServer, free_port, start_logged_server, stop_server


async def drill(
    run: harness.RunDir,
    settings: dict[str, str],
    rounds: int,
    rate: float,
    report: harness.Report,
) -> None:
    loop = asyncio.get_running_loop()
    ports = [free_port(), free_port()]
    servers: list[LoggedServer] = []
    for i, port in enumerate(ports):
        servers.append(start_logged_server(run.log(f"replica{i}"), port, **settings))
    try:
        for srv in servers:
            await loop.run_in_executor(None, srv.wait_ready, 90.0)
        proxy = RoundRobinProxy([("127.0.0.1", p) for p in ports])
        proxy_port = await proxy.start()
        client = Client("127.0.0.1", proxy_port, max_conns=64, timeout_s=30)
        make = harness.mixed_maker(harness.make_texts(300), batch_share=0.1, batch_max=8)
        restarts: list[dict[str, Any]] = []

        async def restart_all() -> None:
            await asyncio.sleep(2.0)
            for r in range(rounds):
                for i, port in enumerate(ports):
                    t0 = time.monotonic()
                    servers[i].proc.send_signal(signal.SIGTERM)
                    code = await loop.run_in_executor(None, servers[i].proc.wait, 60)
                    stopped = time.monotonic() - t0
                    servers[i] = start_logged_server(run.log(f"replica{i}"), port, **settings)
                    await loop.run_in_executor(None, servers[i].wait_ready, 90.0)
                    restarts.append(
                        {
                            "round": r + 1,
                            "replica": i,
                            "exit_code": code,
                            "stopped_after_s": round(stopped, 2),
                            "ready_again_after_s": round(time.monotonic() - t0, 2),
                        }
                    )
                    await asyncio.sleep(1.0)

        t_start = time.monotonic()
        restarter = asyncio.create_task(restart_all())
        load = asyncio.create_task(open_loop(client, make, rate, 600.0))
        await restarter
        duration = time.monotonic() - t_start + 2.0
        await asyncio.sleep(2.0)
        load.cancel()
        # open_loop is cancelled mid-way: wait for its requests still in flight to finish.
        end = time.monotonic() + 30
        while client.busy and time.monotonic() < end:
            await asyncio.sleep(0.05)
        await client.close()
        await proxy.close()
        results = client.stats.results
        failed = [r for r in results if r.status != 200]
        report.figure("requests", harness.summarize(results))
        report.figure("offered_rps", rate)
        report.figure("duration_s", round(duration, 1))
        report.figure("failed_requests", len(failed))
        report.figure("unsent_client_at_max_conns", client.stats.unsent)
        report.figure("proxy", dict(proxy.counts))
        report.figure("restarts", restarts)
        report.expect("no failed request", not failed, harness.summarize(failed) if failed else 0)
        report.expect("every replica exited 0", all(r["exit_code"] == 0 for r in restarts))
        report.expect("the generator offered the load", client.stats.unsent == 0)
        report.expect(
            "no request needed the proxy to resend it",
            proxy.counts["retry_stale"] == 0 and proxy.counts["retry_failed"] == 0,
            dict(proxy.counts),
        )
    finally:
        for srv in servers:
            stop_server(srv)


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--provider", default=None, help="tfidf (default) or stub (default if --quick)")
    p.add_argument(
        "--rounds", type=int, default=None, help="restarts of both replicas (2; quick 1)"
    )
    p.add_argument("--rate", type=float, default=None, help="requests per second (100; quick 80)")
    args = p.parse_args(argv)
    provider = args.provider or ("stub" if args.quick else "tfidf")
    report = harness.Report(f"rolling-restart-{provider}", args.quick)
    if provider == "tfidf" and (why := harness.tfidf_available()):
        report.expect("tfidf model loads", False, why)
        return report.finish(args.out)
    settings = {
        "MODEL_PROVIDER": provider,
        "DRAIN_GRACE_SECONDS": "1",
        "SHUTDOWN_TIMEOUT_SECONDS": "10",
    }
    if provider == "stub":
        settings["STUB_DELAY_MS"] = "5"
    rounds = args.rounds or (1 if args.quick else 2)
    # One replica must carry the whole load while the other restarts (tfidf takes seconds to
    # load).
    rate = args.rate or (80.0 if args.quick else 100.0)
    harness.print_header(
        f"rolling restart of 2 replicas on {provider}, {rounds} round(s)", settings
    )
    run = harness.RunDir(report.scenario, args.keep_logs)
    harness.run_async(lambda: drill(run, settings, rounds, rate, report))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
