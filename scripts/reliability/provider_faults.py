"""Scenario 6, provider faults: a model that raises on one input, a model that hangs.

A. Raise on one input (`STUB_FAIL_MARKER`): 16 connections of steady load, one request in 20
   carrying the marker; concurrent requests are gathered into one model call, so a poisoned text
   shares its call with innocent ones. Expected: every poisoned request `500 inference_error`,
   every other request `200`, and the service keeps serving.
B. Under steady load, one input makes the model call hang for 3 s (`REQUEST_TIMEOUT_MS` = 500;
   injected by `tests/faultinject/sitecustomize.py`): that request is answered `503 timeout` at its
   deadline, nobody waits past a deadline, `/healthz` answers meanwhile, and requests are served
   again as soon as the call returns.
C. A call that hangs for 10 minutes when SIGTERM arrives: the in-flight
   requests get `503 timeout`, and the process exits within DRAIN_GRACE_SECONDS +
   SHUTDOWN_TIMEOUT_SECONDS instead of waiting for the call.

    python -m scripts.reliability.provider_faults [--quick]
"""

from __future__ import annotations

import asyncio
import signal
import time

from scripts.reliability import harness
from scripts.reliability.loadgen import Client, Request, Stats, closed_loop

MARKER = "@@poison@@"


async def raise_on_one_input(port: int, seconds: float, report: harness.Report) -> None:
    texts = harness.make_texts(200)
    plain = harness.single_maker(texts)

    def make(i: int) -> Request:
        if i % 20 == 7:
            r = harness.single(f"{MARKER} this one breaks the model")
            r.kind = "poisoned"
            return r
        return plain(i)

    client = Client("127.0.0.1", port, max_conns=16)
    await closed_loop(client, make, 16, seconds)
    await client.close()
    results = client.stats.results
    bad = [r for r in results if r.kind == "poisoned"]
    good = [r for r in results if r.kind != "poisoned"]
    report.figure("A poisoned requests", harness.summarize(bad))
    report.figure("A other requests", harness.summarize(good))
    innocent = [r for r in good if r.status != 200]
    report.expect(
        "A: every poisoned request answered 500 inference_error",
        bad and all(r.status == 500 and r.code == "inference_error" for r in bad),
    )
    report.expect(
        "A: no other request failed (innocent requests sharing a model call)",
        not innocent,
        f"{len(innocent)} of {len(good)} failed",
    )
    after = Client("127.0.0.1", port, max_conns=1, stats=Stats())
    r = await after.send(plain(1))
    await after.close()
    report.expect("A: still serving afterwards", r.status == 200, r.status)


HANG = "@@hang@@"
FAULTS = str(harness.ROOT / "tests" / "faultinject")


def hang_settings(**extra: str) -> dict[str, str]:
    # The fault-injection module makes the stub hang on texts carrying HANG (see its docstring).
    return {
        "MODEL_PROVIDER": "stub",
        "PYTHONPATH": FAULTS,
        "RELIABILITY_HANG_MARKER": HANG,
        **extra,
    }


async def hang_past_deadline(port: int, report: harness.Report) -> None:
    texts = harness.make_texts(50)
    plain = harness.single_maker(texts)
    client = Client("127.0.0.1", port, max_conns=8, timeout_s=30)
    live = Client("127.0.0.1", port, max_conns=1, timeout_s=5, stats=Stats())
    # Steady load; one request hangs the model for 3 s, 1 s in.
    work = asyncio.create_task(closed_loop(client, plain, 4, 6.0))
    await asyncio.sleep(1.0)
    hung = Client("127.0.0.1", port, max_conns=1, timeout_s=30, stats=Stats())
    t_hang = time.monotonic()
    hung_result = await hung.send(harness.single(f"{HANG} this one hangs the model"))
    health: list[float] = []
    while not work.done():
        r = await live.send(harness.get("/healthz"))
        if r.status == 200:
            health.append(r.latency * 1000)
        await asyncio.sleep(0.1)
    await work
    for c in (client, live, hung):
        await c.close()
    results = client.stats.results
    during = [r for r in results if t_hang - 0.6 <= r.started < t_hang + 3.0]
    outside = [r for r in results if r not in during]
    after = [r for r in results if r.started >= t_hang + 3.2]
    report.figure("B the hanging request", harness.summarize([hung_result]))
    report.figure("B others sent while the model hung", harness.summarize(during))
    report.figure("B others sent before or after the hang", harness.summarize(outside))
    report.figure("B /healthz max latency ms", round(max(health, default=0), 1))
    report.expect(
        "B: the hanging request answered 503 timeout at its deadline",
        hung_result.status == 503 and hung_result.code == "timeout" and hung_result.latency < 1.5,
        f"{hung_result.status} after {hung_result.latency * 1000:.0f} ms",
    )
    slowest = max((r.latency for r in results), default=0.0)
    report.expect(
        "B: no request waited past its deadline (+1 s)",
        slowest < 0.5 + 1.0,
        f"slowest {slowest * 1000:.0f} ms",
    )
    report.expect(
        "B: every request outside the hang answered 200",
        outside and all(r.status == 200 for r in outside),
        harness.summarize(outside)["by_status"],
    )
    report.expect("B: served again once the call returned", any(r.status == 200 for r in after))
    report.expect("B: liveness answered throughout", len(health) >= 10, len(health))
    report.note(
        "one thread owns the model, so requests that arrive while a call hangs wait behind it "
        "and get 503 timeout at their own deadline; no request waits longer than its deadline"
    )


async def hang_at_shutdown(srv: harness.LoggedServer, report: harness.Report) -> None:
    texts = harness.make_texts(20)
    client = Client("127.0.0.1", srv.port, max_conns=4, timeout_s=60)
    hung = asyncio.create_task(client.send(harness.single(f"{HANG} hangs for good")))
    await asyncio.sleep(0.3)  # inside the model call
    queued = [asyncio.create_task(client.send(harness.single(t))) for t in texts[:3]]
    await asyncio.sleep(0.2)
    t_sig = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, lambda: srv.proc.wait(60))
    exit_s = time.monotonic() - t_sig
    results = [await hung, *await asyncio.gather(*queued)]
    report.figure("C in-flight requests", harness.summarize(results))
    report.figure("C exit after SIGTERM s", round(exit_s, 2))
    report.figure("C exit code", code)
    stopped = harness.log_events(srv, "shutdown")
    report.figure("C shutdown log clean", stopped[-1].get("clean") if stopped else None)
    report.expect(
        "C: in-flight requests answered (503 timeout), none dropped",
        all(r.status == 503 and r.code == "timeout" for r in results),
        harness.summarize(results)["by_code"],
    )
    report.expect("C: exited within grace + shutdown timeout + 2 s", exit_s <= 1 + 3 + 2, exit_s)
    report.expect("C: exit status 0", code == 0, code)


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    args = p.parse_args(argv)
    report = harness.Report("provider-faults", args.quick)
    run = harness.RunDir(report.scenario, args.keep_logs)
    a = {"MODEL_PROVIDER": "stub", "STUB_FAIL_MARKER": MARKER, "STUB_DELAY_MS": "5"}
    harness.print_header("A: a model that raises on one input", a)
    with harness.server(run, "raise", **a) as srv:
        harness.run_async(lambda: raise_on_one_input(srv.port, 3 if args.quick else 15, report))
        errors = harness.log_events(srv, "inference_error")
        report.figure("A inference_error log lines", len(errors))
        leaked = [e for e in errors if MARKER in str(e)]
        report.expect("A: the input is not quoted in the log", not leaked)
    b = hang_settings(RELIABILITY_HANG_SECONDS="3", REQUEST_TIMEOUT_MS="500")
    harness.print_header("B: a model call that hangs past the deadline on one input", b)
    with harness.server(run, "hang", **b) as srv:
        harness.run_async(lambda: hang_past_deadline(srv.port, report))
    c = hang_settings(
        RELIABILITY_HANG_SECONDS="600",
        REQUEST_TIMEOUT_MS="2000",
        DRAIN_GRACE_SECONDS="1",
        SHUTDOWN_TIMEOUT_SECONDS="3",
    )
    harness.print_header("C: SIGTERM while a model call hangs for good", c)
    with harness.server(run, "hang-shutdown", **c) as srv:
        harness.run_async(lambda: hang_at_shutdown(srv, report))
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
