"""Bad days of the metrics directory: two workers of a real `ml-prod-api serve` on 127.0.0.1 and
prometheus-client's multiprocess directory (PROMETHEUS_MULTIPROC_DIR).

1. full: the directory is a 64 KiB tmpfs filled to the last byte (mounted in the server's own
   user and mount namespace, so no root is needed; skipped where the kernel refuses unprivileged
   user namespaces). For a fixed window from the supervisor's start, `/healthz`, `/readyz` and
   `/metrics` are probed in turn; counted: their answers, uvicorn's "Child process [...] died"
   lines (a worker restart each) and the log lines that name the cause.
2. dead-worker: a worker is killed (SIGKILL) while it serves requests; once its replacement is
   ready, which of the dead worker's series `/metrics` still shows, and whether the counters kept
   what it counted.

    python -m scripts.reliability.metrics_dir [--quick]
    PYTHONPATH=<checkout of the old code>/src python -m scripts.reliability.metrics_dir   # before

Every loop is bounded in count and time; servers are stopped by their own pid.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2
from scripts.reliability import harness
from tests.support.full_disk import full_tmpfs_argv, user_namespaces_work
from tests.support.servers import LoggedServer, start_logged_server, stop_server

_DIED = re.compile(r"^Child process \[\d+\] died$")
_STARTED = re.compile(r"^Started parent process \[\d+\]$")


def stop(srv: LoggedServer) -> int | None:
    """SIGTERM (the workers drain and exit with the supervisor), then SIGKILL if need be."""
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(Exception):
            srv.proc.wait(30)
    code = srv.proc.poll()
    stop_server(srv)
    return code


def probe(url: str) -> tuple[int, float, str]:
    """(status, seconds, body); status 0 when nothing answered within 2 s."""
    t0 = time.monotonic()
    try:
        r = httpx2.get(url, timeout=2)
        status, body = r.status_code, r.text
    except httpx2.TransportError:
        status, body = 0, ""
    return status, round(time.monotonic() - t0, 3), body


def probe_predict(url: str) -> int:
    try:
        r = httpx2.post(url + "/v1/predict", json={"text": "have a nice day"}, timeout=10)
    except httpx2.TransportError:
        return 0
    return r.status_code


def sample(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def full(run: harness.RunDir, report: harness.Report, window_s: float) -> None:
    directory = run.path / "metrics"
    directory.mkdir()
    if not user_namespaces_work():
        # (The test suite's other way, a file-size limit, would cut the server's log file too.)
        report.note("full skipped: no unprivileged user namespaces to mount the tmpfs in")
        return
    srv = start_logged_server(
        run.log("full"),
        argv=full_tmpfs_argv(directory),
        MODEL_PROVIDER="stub",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        DRAIN_GRACE_SECONDS="0",
    )
    answers: dict[str, Counter[int]] = {p: Counter() for p in ("/healthz", "/readyz", "/metrics")}
    first_200: dict[str, float | None] = dict.fromkeys(answers)
    slowest: dict[str, float] = dict.fromkeys(answers, 0.0)
    lapses: Counter[str] = Counter()  # not 200 after a first 200
    metrics_text = ""
    try:
        # The window opens when the supervisor runs (on a loaded machine the interpreter alone
        # can take seconds to start).
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90 and srv.proc.poll() is None:
            if any(_STARTED.match(str(r.get("message", ""))) for r in srv.log_records()):
                break
            time.sleep(0.1)
        t0 = time.monotonic()
        while time.monotonic() - t0 < window_s and srv.proc.poll() is None:
            for path in answers:
                status, seconds, body = probe(srv.url + path)
                answers[path][status] += 1
                slowest[path] = max(slowest[path], seconds)
                if status == 200 and first_200[path] is None:
                    first_200[path] = round(time.monotonic() - t0, 2)
                elif status != 200 and first_200[path] is not None:
                    lapses[path] += 1
                if status == 200 and path == "/metrics":
                    metrics_text = body
            time.sleep(0.2)
        predict = probe_predict(srv.url)
    finally:
        exit_code = stop(srv)
    records = srv.log_records()
    deaths = sum(1 for r in records if _DIED.match(str(r.get("message", ""))))
    causes = [r for r in records if r.get("event") == "metrics_degraded"]
    report.figure(f"full: worker restarts in {window_s:.0f} s", deaths)
    for path, counts in answers.items():
        shown = {("no answer" if s == 0 else s): n for s, n in sorted(counts.items())}
        when = f"first 200 after {first_200[path]} s, slowest {slowest[path]} s"
        report.figure(f"full: {path}", f"{shown}, {when}")
    degraded = sample(metrics_text, "metrics_degraded_workers")
    report.figure("full: /v1/predict", predict)
    report.figure("full: metrics_degraded_workers", degraded)
    report.figure(
        "full: cause lines",
        [{k: r.get(k) for k in ("level", "errno", "free_bytes", "needed_bytes")} for r in causes],
    )
    report.figure("full: exit status after SIGTERM", exit_code)
    report.expect("full: no worker restarted", deaths == 0, deaths)
    report.expect(
        "full: every probe answered 200 from the start-up on, without a lapse",
        all(first_200.values()) and not lapses,
        {"first 200 after s": first_200, "lapses": dict(lapses)},
    )
    report.expect("full: one line naming the cause per worker", len(causes) == 2, len(causes))
    report.expect("full: the scrape says both workers' numbers are missing", degraded == 2.0)
    report.expect("full: predictions served", predict == 200, predict)


def dead_worker(run: harness.RunDir, report: harness.Report) -> None:
    directory = Path(tempfile.mkdtemp(prefix="metrics-", dir=run.path))
    with harness.server(
        run,
        "dead-worker",
        MODEL_PROVIDER="stub",
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        STUB_DELAY_MS="1500",
        DRAIN_GRACE_SECONDS="0",
    ) as srv:
        workers = {int(p.name.removeprefix("ready-")) for p in directory.glob("ready-*")}
        for _ in range(4):
            probe_predict(srv.url)
        threads = [threading.Thread(target=probe_predict, args=(srv.url,)) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the requests are in the model's 1.5 s
        text = httpx2.get(srv.url + "/metrics", timeout=10).text
        in_flight = {
            int(pid): float(v)
            for pid, v in re.findall(r'^http_requests_in_flight\{pid="(\d+)"\} (\S+)$', text, re.M)
        }
        victim = max(workers, key=lambda pid: in_flight.get(pid, 0.0))
        report.figure("dead-worker: in flight at the kill, by worker", in_flight)
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        for t in threads:
            t.join(30)
        while time.monotonic() - t0 < 90:
            ready = {int(p.name.removeprefix("ready-")) for p in directory.glob("ready-*")}
            if len(ready - {victim}) == 2 and probe(srv.url + "/readyz")[0] == 200:
                break
            time.sleep(0.2)
        report.figure(
            "dead-worker: s from the kill to a ready replacement", round(time.monotonic() - t0, 1)
        )
        left: set[str] = set()
        served: list[float | None] = []
        for _ in range(6):  # new connections: both workers answer some scrapes
            text = httpx2.get(srv.url + "/metrics", timeout=10).text
            left |= {line for line in text.splitlines() if f'pid="{victim}"' in line}
            served.append(sample(text, r'http_requests_total\{route="/v1/predict",status="200"\}'))
    report.figure("dead-worker: its series still in /metrics", sorted(left))
    report.figure("dead-worker: /v1/predict 200 counted (6 scrapes)", served)
    report.expect("dead-worker: none of its gauges left", not left, len(left))
    report.expect(
        "dead-worker: counters kept what it counted",
        all(s is not None and s >= 4 for s in served),
        served,
    )


SCENARIOS = ("full", "dead-worker")


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    p.add_argument("--only", choices=SCENARIOS, action="append", help="run only these")
    args = p.parse_args(argv)
    report = harness.Report("metrics-dir", args.quick)
    harness.print_header("metrics directory", {"WEB_CONCURRENCY": "2", "MODEL_PROVIDER": "stub"})
    run = harness.RunDir(report.scenario, args.keep_logs)
    for name in args.only or list(SCENARIOS):
        print(f"-- {name}", flush=True)
        if name == "full":
            full(run, report, window_s=20.0 if args.quick else 60.0)
        else:
            dead_worker(run, report)
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
