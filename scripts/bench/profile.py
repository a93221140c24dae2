"""Where a prediction's time goes: py-spy on one of this service's configurations under wrk load,
the event-loop thread's samples grouped by the part of the stack they are in (BENCHMARK.md).

    python scripts/bench/profile.py                      # stub, full stack, concurrency 32
    python scripts/bench/profile.py --config "ours tfidf, full stack" --seconds 10

A sample counts for the first group, in the order below, that any of its frames belongs to
(logging, rate limiting, metrics, the hand-off and body parsing are leaves called from several
places), otherwise for the innermost frame's layer (our route, our middleware, FastAPI/Starlette,
uvicorn). Needs py-spy (requirements-bench.txt) and permission to read the server's memory
(root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the benchmark's own server and load helpers)

Rule = tuple[str, Callable[[str], bool]]

ANYWHERE: list[Rule] = [
    (
        "access log (logging + python-json-logger)",
        lambda f: (
            f.startswith(("info (logging", "_log (logging", "handle (logging"))
            or "pythonjsonlogger" in f
        ),
    ),
    (
        "rate limit (limits, in-memory)",
        lambda f: "ml_prod_api/http/ratelimit.py" in f or "limits/" in f,
    ),
    ("API key check", lambda f: "ml_prod_api/http/auth.py" in f and "__call__" not in f),
    (
        "Prometheus metrics",
        lambda f: "prometheus_client" in f or "ml_prod_api/metrics.py" in f,
    ),
    ("hand-off to the inference thread and back", lambda f: "ml_prod_api/serving/" in f),
    (
        "body read, JSON parse, validation",
        lambda f: "ml_prod_api/http/validation.py" in f or "body (starlette/requests.py" in f,
    ),
]
INNERMOST: list[Rule] = [
    ("route code (routes.py)", lambda f: "ml_prod_api/http/routes.py" in f),
    ("our pure-ASGI middleware", lambda f: "ml_prod_api/http/" in f),
    (
        "FastAPI / Starlette request handling and sending",
        lambda f: "fastapi/" in f or "starlette/" in f,
    ),
    ("uvicorn HTTP protocol (parse, write)", lambda f: "uvicorn/protocols" in f),
]
OTHER = "event loop (uvloop, sockets) and other"


def group(frames: list[str]) -> str:
    for name, rule in ANYWHERE:
        if any(rule(f) for f in frames):
            return name
    for frame in reversed(frames):
        for name, rule in INNERMOST:
            if rule(frame):
                return name
    return OTHER


def breakdown(raw: Path) -> tuple[collections.Counter[str], int]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0]:
            continue
        counts[group(frames[1:])] += int(n)
        total += int(n)
    return counts, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="ours stub, full stack")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10, help="sampling time (wrk: whole s)")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    configs = {c.name: c for c in run.configs(have_onnx=True)}
    cfg = configs[args.config]
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        bodies = run.write_bodies(Path(tmp))[cfg.bodies]
        run.start(cfg, Path(tmp))
        try:
            run.wrk(cfg, bodies, args.concurrency, 2)  # warm-up
            load = threading.Thread(
                target=run.wrk, args=(cfg, bodies, args.concurrency, args.seconds + 3)
            )
            load.start()
            raw = Path(tmp) / "profile.txt"
            assert cfg.proc is not None
            subprocess.run(
                [spy, "record", "-p", str(cfg.proc.pid), "-r", "250", "-d", str(args.seconds),
                 "-f", "raw", "--threads", "-o", str(raw)],
                check=True, capture_output=True, timeout=args.seconds + 60,
            )  # fmt: skip
            load.join()
        finally:
            run.stop(cfg)
        counts, total = breakdown(raw)
    print(f"{cfg.name}, concurrency {args.concurrency}: {total} event-loop samples")
    print("| part of the stack | share of the event loop's time |\n|---|---:|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
