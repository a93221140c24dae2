"""Run every reliability drill (RELIABILITY.md), one process each, and print a summary.

    python -m scripts.reliability.run_all --quick    # a few minutes
    python -m scripts.reliability.run_all            # the long versions (about 25 minutes here)
    python -m scripts.reliability.run_all --only shutdown overload-tfidf

Each drill prints its figures and writes them to reliability-results/<scenario>.json (with a
`-quick` suffix for quick runs); this exits non-zero if any drill missed an expectation. The
onnx overload runs only when models/onnx/model.onnx exists.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from scripts.reliability import harness

# (name, module, extra arguments, timeout of the long version in seconds)
DRILLS: list[tuple[str, str, list[str], int]] = [
    ("bad-artifacts", "bad_artifacts", [], 600),
    ("provider-faults", "provider_faults", [], 300),
    ("shutdown", "shutdown", [], 600),
    ("rolling-restart", "rolling_restart", [], 600),
    ("redis-loss", "redis_loss", [], 300),
    ("slow-clients", "slow_clients", [], 300),
    ("metrics-dir", "metrics_dir", [], 300),
    # The inference queue as the bottleneck: a slow model (20 ms a call, 4 texts a call).
    (
        "overload-slow-model",
        "overload",
        ["--provider", "stub", "--queue-batch-max-size", "4", "--stub-delay-ms", "20"],
        300,
    ),
    ("overload-tfidf", "overload", ["--provider", "tfidf"], 300),
    ("overload-onnx", "overload", ["--provider", "onnx"], 300),
    ("soak", "soak", [], 3600),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="*", help="drill names to run (default: all)")
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR)
    args = p.parse_args(argv)
    summary: list[tuple[str, str, float]] = []
    for name, module, extra, timeout in DRILLS:
        if args.only and name not in args.only:
            continue
        if name == "overload-onnx" and harness.onnx_model_dir() is None:
            summary.append((name, "skipped: models/onnx/model.onnx not found", 0.0))
            continue
        cmd = [
            sys.executable,
            "-m",
            f"scripts.reliability.{module}",
            *extra,
            "--out",
            str(args.out),
        ]
        if args.quick:
            cmd.append("--quick")
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            code = subprocess.run(cmd, cwd=harness.ROOT, timeout=timeout).returncode
            verdict = "ok" if code == 0 else f"FAILED (exit {code})"
        except subprocess.TimeoutExpired:
            verdict = f"FAILED (timed out after {timeout} s)"
        summary.append((name, verdict, time.monotonic() - t0))
    print("\n== summary")
    for name, verdict, seconds in summary:
        print(f"  {name:22} {verdict:45} {seconds:6.0f} s")
    return 1 if any(v.startswith("FAILED") for _, v, _ in summary) else 0


if __name__ == "__main__":
    raise SystemExit(main())
