r"""Scenario 1, overload: offer about 4x the measured capacity for 30 s (RELIABILITY.md).

1. Capacity: a closed loop of 32 connections for a few seconds; accepted requests per second.
2. Normal latency: an open loop at half that rate.
3. Overload: an open loop at 4x capacity for 30 s (single texts, keep-alive connections).
4. Recovery: from the moment the overload stops sending, one connection sends a request after
   another; recovered = the first moment after which every probe is back within normal latency
   (2x the p99 of step 2, at least p99 + 5 ms).

Expected: the excess gets `429 overloaded` with `Retry-After`, fast; no answer later than the
deadline (REQUEST_TIMEOUT_MS); no 5xx other than `503 timeout`; no connection error; recovery
within 2 s.

    python -m scripts.reliability.overload                   # tfidf, 30 s
    python -m scripts.reliability.overload --provider onnx
    python -m scripts.reliability.overload --provider onnx --model-instances 2 \
        --queue-batch-max-size 8
    python -m scripts.reliability.overload --quick           # 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, Stats, closed_loop, open_loop, percentile

MAX_CONNS = 512


def settings_for(args: argparse.Namespace) -> dict[str, str]:
    provider = args.provider
    settings = {
        "MODEL_PROVIDER": provider,
        "QUEUE_MAX_ITEMS": str(args.queue_max_items),
        "REQUEST_TIMEOUT_MS": str(args.timeout_ms),
        "QUEUE_BATCH_MAX_SIZE": str(args.queue_batch_max_size),
        "MODEL_INSTANCES": str(args.model_instances),
        "DRAIN_GRACE_SECONDS": "0",
        "LOG_LEVEL": "INFO",
    }
    if provider == "stub":
        settings["STUB_DELAY_MS"] = str(args.stub_delay_ms)
    return settings


async def drill(port: int, seconds: float, factor: float, report: harness.Report) -> None:
    texts = harness.make_texts(500)
    make = harness.single_maker(texts)

    warm = Client("127.0.0.1", port, max_conns=32)
    await closed_loop(warm, make, 16, 2.0)
    await warm.close()

    cap_client = Client("127.0.0.1", port, max_conns=32)
    cap_s = 3.0 if report.quick else 6.0
    t0 = time.monotonic()
    stats = await closed_loop(cap_client, make, 32, cap_s)
    elapsed = time.monotonic() - t0
    await cap_client.close()
    ok = sum(1 for r in stats.results if r.status == 200)
    capacity = ok / elapsed
    report.figure("capacity_rps", round(capacity, 1))
    report.figure("capacity_run", harness.summarize(stats.results))

    base = Client("127.0.0.1", port, max_conns=64)
    await open_loop(base, make, capacity * 0.5, 3.0)
    await base.close()
    base_sum = harness.summarize(base.stats.results)
    report.figure("normal_latency_at_half_capacity", base_sum)
    normal_ms = max(2 * base_sum["p99_ms"], base_sum["p99_ms"] + 5)

    rate = capacity * factor
    report.figure("offered_rps", round(rate, 1))
    load = Client("127.0.0.1", port, max_conns=MAX_CONNS, timeout_s=30)
    t_start = time.monotonic()
    stop_at = t_start + seconds
    probes: list[tuple[float, float, int]] = []

    async def probe() -> None:
        await asyncio.sleep(max(0.0, stop_at - time.monotonic()))
        client = Client("127.0.0.1", port, max_conns=1, timeout_s=30, stats=Stats())
        end = time.monotonic() + 5.0
        i = 0
        while time.monotonic() < end:
            r = await client.send(make(i))
            probes.append((r.started + r.latency - stop_at, r.latency * 1000, r.status))
            i += 1
            await asyncio.sleep(0.01)
        await client.close()

    probe_task = asyncio.create_task(probe())
    await open_loop(load, make, rate, seconds, drain_s=35)
    await probe_task
    await load.close()
    results = load.stats.results
    wall = time.monotonic() - t_start

    accepted = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    timeouts = [r for r in results if r.status == 503 and r.code == "timeout"]
    other_5xx = [
        r for r in results if r.status >= 500 and not (r.status == 503 and r.code == "timeout")
    ]
    net_errors = [r for r in results if r.error]
    report.figure("overload_run", harness.summarize(results))
    # From the start of the overload; the load stops at `seconds`.
    report.figure("timeline_1s", harness.timeline(results, t_start, 1.0))
    report.figure("accepted_rps", round(len(accepted) / seconds, 1))
    report.figure("refused_rps", round(len(refused) / seconds, 1))
    report.figure("deadline_503_rps", round(len(timeouts) / seconds, 1))
    acc_ms = [r.latency * 1000 for r in accepted]
    ref_ms = [r.latency * 1000 for r in refused]
    report.figure(
        "accepted_p50_p99_max_ms", [round(percentile(acc_ms, q), 1) for q in (50, 99, 100)]
    )
    report.figure(
        "refused_p50_p99_max_ms", [round(percentile(ref_ms, q), 1) for q in (50, 99, 100)]
    )
    # The same from the moment each request was written, without the generator's own lag (a
    # busy client, a connection being opened): what the kernel's buffers and the server took.
    acc_sent = [(r.latency - r.send_lag) * 1000 for r in accepted]
    ref_sent = [(r.latency - r.send_lag) * 1000 for r in refused]
    lag = [r.send_lag * 1000 for r in results if r.status]
    report.figure(
        "accepted_after_send_p50_p99_max_ms",
        [round(percentile(acc_sent, q), 1) for q in (50, 99, 100)],
    )
    report.figure(
        "refused_after_send_p50_p99_max_ms",
        [round(percentile(ref_sent, q), 1) for q in (50, 99, 100)],
    )
    report.figure(
        "generator_lag_p50_p99_max_ms", [round(percentile(lag, q), 1) for q in (50, 99, 100)]
    )
    report.figure("unsent_client_at_max_conns", load.stats.unsent)
    report.figure("connections_opened", load.stats.connections_opened)
    report.figure("overload_wall_s", round(wall, 1))

    recovered_at = _recovery(probes, normal_ms)
    report.figure("normal_latency_bound_ms", round(normal_ms, 1))
    report.figure(
        "probe_latency_ms_by_half_second",
        _by_window(probes, 0.5),
    )
    report.figure("recovered_after_s", None if recovered_at is None else round(recovered_at, 2))

    report.expect(
        "the generator offered the load (no request left unsent)",
        load.stats.unsent == 0,
        f"{load.stats.unsent} unsent",
    )
    report.expect(
        "excess refused with 429 overloaded",
        len(refused) > 0 and all(r.code == "overloaded" for r in refused),
        f"{len(refused)} refusals",
    )
    report.expect("every 429 carries Retry-After", all(r.retry_after for r in refused))
    report.expect(
        "no 5xx other than deadline 503s",
        not other_5xx,
        f"{len(other_5xx)}: {harness.summarize(other_5xx)['by_code']}",
    )
    report.expect(
        "no connection errors",
        not net_errors,
        harness.summarize(net_errors)["errors"] if net_errors else "",
    )
    deadline_ms = report.figures["settings"]["timeout_ms"]
    slowest = max(((r.latency - r.send_lag) * 1000 for r in results if r.status), default=0.0)
    report.expect(
        "no answer later than the deadline (+250 ms of HTTP) after the request was sent",
        slowest <= deadline_ms + 250,
        f"slowest {slowest:.0f} ms, deadline {deadline_ms} ms",
    )
    report.expect(
        "refusals are fast (p99 < 50 ms after the request was sent)",
        percentile(ref_sent, 99) < 50,
        f"p99 {percentile(ref_sent, 99):.1f} ms",
    )
    report.expect(
        "normal latency within 2 s of the load stopping",
        recovered_at is not None and recovered_at <= 2.0,
        recovered_at,
    )


def _recovery(probes: list[tuple[float, float, int]], normal_ms: float) -> float | None:
    """Seconds after the load stopped from which every later probe is 200 and within normal."""
    last_bad = 0.0
    for at, ms, status in probes:
        if status != 200 or ms > normal_ms:
            last_bad = at
    if probes and probes[-1][0] - last_bad < 1.0:
        return None  # never settled for a full second
    return max(0.0, last_bad)


def _by_window(probes: list[tuple[float, float, int]], width: float) -> list[Any]:
    windows: dict[int, list[float]] = {}
    for at, ms, _ in probes:
        windows.setdefault(int(at // width), []).append(ms)
    return [
        {"from_s": k * width, "n": len(v), "max_ms": round(max(v), 1)}
        for k, v in sorted(windows.items())
        if k < 8
    ]


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--provider", default="tfidf", help="tfidf (default), onnx or stub")
    p.add_argument("--seconds", type=float, default=None, help="overload duration (30; quick 5)")
    p.add_argument("--factor", type=float, default=4.0, help="offered load / capacity (4)")
    p.add_argument("--queue-max-items", type=int, default=256)
    p.add_argument("--timeout-ms", type=int, default=2000)
    # --batch-max-size: the flag's name before QUEUE_BATCH_MAX_SIZE was renamed, still accepted.
    p.add_argument("--queue-batch-max-size", "--batch-max-size", type=int, default=64)
    p.add_argument("--model-instances", type=int, default=1)
    p.add_argument(
        "--uvicorn-limit-concurrency",
        type=int,
        default=0,
        help="experiment: serve with `uvicorn --limit-concurrency N` instead",
    )
    p.add_argument("--stub-delay-ms", type=float, default=20.0, help="stub only: per model call")
    args = p.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    name = f"overload-{args.provider}"
    report = harness.Report(name, args.quick)
    if args.provider == "tfidf" and (why := harness.tfidf_available()):
        report.expect("tfidf model loads", False, why)
        return report.finish(args.out)
    if args.provider == "onnx" and harness.onnx_model_dir() is None:
        report.expect("onnx model present", False, "models/onnx/model.onnx not found")
        return report.finish(args.out)
    settings = settings_for(args)
    harness.print_header(
        f"overload on {args.provider}: {args.factor}x capacity for {seconds:.0f} s", settings
    )
    report.figures["settings"] = {
        "provider": args.provider,
        "queue_max_items": args.queue_max_items,
        "timeout_ms": args.timeout_ms,
        "seconds": seconds,
        "factor": args.factor,
        "model_instances": args.model_instances,
        "queue_batch_max_size": args.queue_batch_max_size,
    }
    argv = None
    if args.uvicorn_limit_concurrency:
        # An experiment, not the shipped command: uvicorn's own admission limit, which answers
        # a plain-text 503 to requests beyond N concurrent connections/tasks.
        argv = [
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
            "--no-access-log",
            "--limit-concurrency",
            str(args.uvicorn_limit_concurrency),
        ]
        report.figures["settings"]["uvicorn_limit_concurrency"] = args.uvicorn_limit_concurrency
    run = harness.RunDir(name, args.keep_logs)
    with harness.server(run, "server", argv=argv, **settings) as srv:
        harness.run_async(lambda: drill(srv.port, seconds, args.factor, report))
        codes = harness.server_5xx(srv)
        report.figure("server_log_5xx", dict(codes))
        report.expect("server alive after the overload", srv.proc.poll() is None)
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
