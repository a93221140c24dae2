"""What every reliability drill shares: servers, request mixes, figures and expectations.

Servers are real `ml-prod-api serve` processes on 127.0.0.1, started by the same helper the test
suite uses (`tests/support/servers.py`), with their JSON log in a file of the run's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from scripts.reliability.loadgen import Request, Result, percentile
from tests.support.servers import ROOT, LoggedServer, start_logged_server, stop_server

RESULTS_DIR = ROOT / "reliability-results"

# A word list for synthetic comments: ordinary words, some insults, some noise, so the tfidf
# model sees texts of realistic shape and length (tweets to paragraphs).
_WORD_LIST = (
    "the a to and of you i it is that in this for on my with be not are have just but so "
    "what all your at me do if like was can get they we no people one out about how when "
    "think good know time really would now more make go see want why there some he she love "
    "great thanks article page edit wikipedia talk please help source sources section delete "
    "stupid idiot hate awful moron dumb ugly loser trash pathetic shut up fuck shit damn "
    "lol omg u r ur im dont cant wont 2 4 !!! ?? ... :) http www com"
)
_WORDS = _WORD_LIST.split()


def make_texts(n: int, seed: int = 9) -> list[str]:
    """`n` synthetic comments: mostly 3-40 words, one in ten a 60-300 word paragraph."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.randint(60, 300) if rng.random() < 0.1 else rng.randint(3, 40)
        texts.append(" ".join(rng.choice(_WORDS) for _ in range(words)))
    return texts


def single(text: str) -> Request:
    return Request("POST", "/v1/predict", json.dumps({"text": text}).encode(), "single")


def batch(texts: Sequence[str]) -> Request:
    return Request(
        "POST", "/v1/predict_batch", json.dumps({"texts": list(texts)}).encode(), "batch"
    )


def get(path: str) -> Request:
    return Request("GET", path, kind=path.strip("/"))


def single_maker(texts: Sequence[str]) -> Callable[[int], Request]:
    bodies = [single(t) for t in texts]
    return lambda i: bodies[i % len(bodies)]


def mixed_maker(
    texts: Sequence[str], batch_share: float = 0.2, seed: int = 3, batch_max: int = 32
) -> Callable[[int], Request]:
    """Mostly single texts; `batch_share` of requests are batches of 2-`batch_max` texts."""
    rng = random.Random(seed)
    pool: list[Request] = []
    for i in range(1000):
        if rng.random() < batch_share:
            pool.append(batch(rng.sample(list(texts), rng.randint(2, batch_max))))
        else:
            pool.append(single(texts[i % len(texts)]))
    return lambda i: pool[i % len(pool)]


# --- servers ---------------------------------------------------------------------------------
class RunDir:
    """A run's folder: server logs, and the figures as JSON at the end."""

    def __init__(self, name: str, keep: bool) -> None:
        self.name = name
        self.keep = keep
        self.path = Path(tempfile.mkdtemp(prefix=f"reliability-{name}-"))

    def log(self, label: str) -> Path:
        return self.path / f"{label}.log"

    def cleanup(self, failed: bool) -> None:
        if self.keep or failed:
            print(f"  (server logs kept in {self.path})")
            return
        shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def server(
    run: RunDir,
    label: str,
    *,
    port: int | None = None,
    ready_timeout_s: float = 90.0,
    argv: Sequence[str] | None = None,
    **settings: str,
) -> Iterator[LoggedServer]:
    srv = start_logged_server(run.log(label), port, argv, **settings)
    try:
        srv.wait_ready(timeout_s=ready_timeout_s)
        yield srv
    finally:
        stop_server(srv)


def tfidf_available() -> str | None:
    """None when the tfidf artifact loads here, else the reason (it may be being retrained)."""
    from ml_prod_api.errors import ModelLoadError
    from ml_prod_api.providers.tfidf import TfidfSettings, load_artifact

    settings = TfidfSettings(_env_file=None)  # type: ignore[call-arg]
    try:
        load_artifact(settings.resolved_model_path)
    except ModelLoadError as exc:
        return exc.message
    return None


def onnx_model_dir() -> Path | None:
    from ml_prod_api.providers.onnx import OnnxSettings

    path = OnnxSettings(_env_file=None).resolved_model_path  # type: ignore[call-arg]
    return path if (path / "model.onnx").is_file() else None


@dataclass(frozen=True)
class ProcessSample:
    at: float
    rss_mb: float
    fds: int
    threads: int
    connections: int


def sample(proc_pid: int) -> ProcessSample:
    p = psutil.Process(proc_pid)
    with p.oneshot():
        return ProcessSample(
            at=time.monotonic(),
            rss_mb=p.memory_info().rss / 2**20,
            fds=p.num_fds(),
            threads=p.num_threads(),
            connections=len(p.net_connections(kind="tcp")),
        )


# --- figures ---------------------------------------------------------------------------------
def summarize(results: Iterable[Result]) -> dict[str, Any]:
    """Counts by status and error, and latency percentiles (ms) of the answered requests."""
    results = list(results)
    answered = [r for r in results if r.status]
    lat = [r.latency * 1000 for r in answered]
    served = [(r.latency - r.send_lag) * 1000 for r in answered]
    return {
        "requests": len(results),
        "by_status": dict(sorted(Counter(r.status for r in answered).items())),
        "by_code": dict(Counter(r.code for r in answered if r.code)),
        "errors": dict(Counter(r.error for r in results if r.error)),
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else 0.0,
        # from the moment the request was written (without the generator's own lag)
        "after_send_p99_ms": round(percentile(served, 99), 2),
        "after_send_max_ms": round(max(served), 2) if served else 0.0,
    }


def timeline(results: Iterable[Result], origin: float, width_s: float) -> list[dict[str, Any]]:
    """Requests by the window (of `width_s`, from `origin`) in which they were due or sent: how
    many got 200, 429, 503 or another status, how many no answer, and the p99 latency (ms) of the
    answered ones. What RELIABILITY.md plots over time (scripts/reliability/plots.py)."""
    windows: dict[int, list[Result]] = {}
    for r in results:
        windows.setdefault(int((r.started - origin) // width_s), []).append(r)
    out = []
    for k, rs in sorted(windows.items()):
        statuses = Counter(r.status for r in rs if r.status)
        lat = [r.latency * 1000 for r in rs if r.status]
        out.append({
            "from_s": round(k * width_s, 3),
            "200": statuses.pop(200, 0),
            "429": statuses.pop(429, 0),
            "503": statuses.pop(503, 0),
            "other": sum(statuses.values()),
            "no_answer": sum(1 for r in rs if not r.status),
            "p99_ms": round(percentile(lat, 99), 1) if lat else None,
        })
    return out


def fmt_summary(s: dict[str, Any]) -> str:
    return (
        f"{s['requests']} requests, status {s['by_status']}, codes {s['by_code']}, "
        f"network errors {s['errors'] or 0}, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
        f"max {s['max_ms']} ms (after send: p99 {s['after_send_p99_ms']} ms, "
        f"max {s['after_send_max_ms']} ms)"
    )


@dataclass
class Report:
    """Figures and expectations of one scenario; `finish` prints them and gives the exit code."""

    scenario: str
    quick: bool
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def expect(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.checks.append((name, bool(ok), str(detail)))
        mark = "ok  " if ok else "FAIL"
        print(f"  [{mark}] {name}" + (f": {detail}" if detail != "" else ""), flush=True)
        return bool(ok)

    def figure(self, name: str, value: Any) -> None:
        self.figures[name] = value
        shown = fmt_summary(value) if isinstance(value, dict) and "by_status" in value else value
        print(f"  {name}: {shown}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    @property
    def failed(self) -> bool:
        return any(not ok for _, ok, _ in self.checks)

    def finish(self, out_dir: Path | None) -> int:
        failed = [name for name, ok, _ in self.checks if not ok]
        verdict = "FAILED: " + "; ".join(failed) if failed else "all expectations met"
        print(f"== {self.scenario}: {verdict} ({time.time() - self.started:.0f} s)", flush=True)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            suffix = "-quick" if self.quick else ""
            payload = {
                "scenario": self.scenario,
                "quick": self.quick,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "seconds": round(time.time() - self.started, 1),
                "machine": {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]},
                "figures": self.figures,
                "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in self.checks],
                "notes": self.notes,
            }
            path = out_dir / f"{self.scenario}{suffix}.json"
            path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return 1 if failed else 0


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short version (seconds, not minutes)")
    p.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="where the figures go as JSON (default: %(default)s)",
    )
    p.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    return p


def run_async(main: Callable[[], Any]) -> Any:
    """Run a coroutine function on uvloop when available (a cheaper client), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        import asyncio

        return asyncio.run(main())
    return uvloop.run(main())


def log_events(srv: LoggedServer, event: str) -> list[dict[str, object]]:
    return [r for r in srv.log_records() if r.get("event") == event]


def server_5xx(srv: LoggedServer) -> Counter[int]:
    """Status codes >= 500 of predictions in the server's access log."""
    codes: Counter[int] = Counter()
    for r in srv.log_records():
        status = r.get("status_code")
        route = str(r.get("route", ""))
        if isinstance(status, int) and status >= 500 and route.startswith("/v1/"):
            codes[status] += 1
    return codes


def print_header(title: str, settings: dict[str, str]) -> None:
    print(f"== {title}", flush=True)
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    print(f"  settings: {shown}", flush=True)
    print(
        f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
