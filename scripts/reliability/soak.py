"""Scenario 4, soak: 200,000 requests, single texts and batches, at a steady rate (RELIABILITY.md).

An open loop at a fixed rate (default 250 requests/s, well below what one tfidf worker serves),
90% single texts and 10% batches of 2-8. The server's RSS, open file descriptors, threads and TCP
connections are sampled every 5 s. The first 10% of the requests are the warm-up (allocator
pools, caches, connection pool); growth is measured from the end of the warm-up to the end of
the run, and once more after the load stops.

Expected: RSS growth under 5%, fds (other than connections) and threads flat, zero errors.

    python -m scripts.reliability.soak                       # tfidf, 200,000 requests
    python -m scripts.reliability.soak --quick               # tfidf, 10,000 requests
    python -m scripts.reliability.soak --requests 50000 --rate 300
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, open_loop


async def drill(pid: int, port: int, n: int, rate: float, report: harness.Report) -> None:
    make = harness.mixed_maker(harness.make_texts(2000), batch_share=0.1, batch_max=8)
    # Enough connections to ride out a few seconds' stall of this shared machine at full rate.
    client = Client("127.0.0.1", port, max_conns=1024, timeout_s=30)
    samples: list[tuple[int, harness.ProcessSample]] = []
    done = asyncio.Event()

    async def sampler() -> None:
        while not done.is_set():
            samples.append((len(client.stats.results), harness.sample(pid)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 5.0)

    t0 = time.monotonic()
    sampling = asyncio.create_task(sampler())
    await open_loop(client, make, rate, n / rate)
    done.set()
    await sampling
    wall = time.monotonic() - t0
    await client.close()
    await asyncio.sleep(2.0)
    idle = harness.sample(pid)

    results = client.stats.results
    warm = [s for count, s in samples if count >= n // 10]
    start, end = (warm[0], warm[-1]) if warm else (samples[0][1], samples[-1][1])
    growth = (end.rss_mb - start.rss_mb) / start.rss_mb * 100
    idle_growth = (idle.rss_mb - start.rss_mb) / start.rss_mb * 100
    fds = [s.fds for s in warm] or [0]
    # Each client connection is one fd; what must stay flat is everything else.
    other_fds = [s.fds - s.connections for s in warm] or [0]
    threads = [s.threads for s in warm] or [0]
    report.figure("requests", harness.summarize(results))
    report.figure("batch_requests", sum(1 for r in results if r.kind == "batch"))
    report.figure("wall_s", round(wall, 1))
    report.figure("achieved_rps", round(len(results) / wall, 1))
    report.figure("unsent_client_at_max_conns", client.stats.unsent)
    report.figure("connections_opened", client.stats.connections_opened)
    report.figure("rss_mb_after_warmup", round(start.rss_mb, 1))
    report.figure("rss_mb_at_end", round(end.rss_mb, 1))
    report.figure("rss_mb_idle_after", round(idle.rss_mb, 1))
    report.figure("rss_growth_pct", round(growth, 2))
    report.figure("fds_min_max", [min(fds), max(fds)])
    report.figure("fds_other_than_tcp_min_max", [min(other_fds), max(other_fds)])
    report.figure("fds_at_start_and_idle_after", [samples[0][1].fds, idle.fds])
    report.figure("threads_min_max", [min(threads), max(threads)])
    report.figure(
        "samples (requests done, rss MB, fds, threads, tcp)",
        [
            (c, round(s.rss_mb, 1), s.fds, s.threads, s.connections)
            for c, s in samples[:: max(1, len(samples) // 12)]
        ],
    )
    errors = [r for r in results if r.status != 200]
    report.expect("zero errors", not errors, harness.summarize(errors) if errors else 0)
    report.expect("the generator kept the rate", client.stats.unsent == 0, client.stats.unsent)
    report.expect("RSS growth after warm-up under 5%", growth < 5.0, f"{growth:.2f}%")
    report.expect(
        "RSS once idle within 5% of the warm-up figure", idle_growth < 5.0, f"{idle_growth:.2f}%"
    )
    # Sockets follow the load's connections (a stall of the machine makes the generator open
    # more); a leak shows as fds that are not connections, or fds left once the load is gone.
    report.expect(
        "open fds flat (other than connections; back to the start value once idle)",
        max(other_fds) - min(other_fds) <= 2 and idle.fds <= samples[0][1].fds + 2,
        f"other {min(other_fds)}..{max(other_fds)}, start {samples[0][1].fds}, idle {idle.fds}",
    )
    report.expect(
        "threads flat", max(threads) - min(threads) <= 2, f"{min(threads)}..{max(threads)}"
    )


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--provider", default="tfidf")
    p.add_argument("--requests", type=int, default=None, help="200,000 (quick: 10,000)")
    p.add_argument("--rate", type=float, default=250.0, help="requests per second (250)")
    args = p.parse_args(argv)
    n = args.requests or (10_000 if args.quick else 200_000)
    report = harness.Report(f"soak-{args.provider}", args.quick)
    if args.provider == "tfidf" and (why := harness.tfidf_available()):
        report.expect("tfidf model loads", False, why)
        return report.finish(args.out)
    settings = {"MODEL_PROVIDER": args.provider}
    harness.print_header(f"soak: {n} requests at {args.rate:.0f}/s on {args.provider}", settings)
    run = harness.RunDir(report.scenario, args.keep_logs)
    with harness.server(run, "server", **settings) as srv:
        harness.run_async(lambda: drill(srv.proc.pid, srv.port, n, args.rate, report))
        report.figure("server_log_5xx", dict(harness.server_5xx(srv)))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
