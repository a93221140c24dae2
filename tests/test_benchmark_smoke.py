"""The benchmark script itself, run for a few seconds against the stub so it cannot rot."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("wrk") is None, reason="wrk not installed (scripts/install_test_services.sh)"
    ),
]


LITSERVE = "LitServe + tfidf (batch 16, 5 ms)"


def processes_carrying(marker: str) -> list[int]:
    """Pids of live processes whose environment holds `marker` (every process the benchmark
    starts inherits its environment, whoever its parent is by now)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_quick_benchmark_against_the_stub(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="psutil not installed (requirements-dev.txt)")
    out = tmp_path / "result.json"
    only = "ours stub,floor"
    expected = {"floor (bare ASGI)", "ours stub, full stack", "ours stub, bare"}
    if importlib.util.find_spec("litserve") is not None:  # requirements-bench.txt
        # The peer whose inference worker ignores SIGTERM: the one most likely to be left over.
        only += ",LitServe"
        expected.add(LITSERVE)
    marker = f"BENCH_SMOKE_RUN={uuid.uuid4().hex}"
    name, value = marker.split("=")
    proc = subprocess.run(
        [
            sys.executable,
            "scripts/bench/run.py",
            "--quick",
            "--seconds",
            "1",
            "--only",
            only,
            "--no-inprocess",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, name: value},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # Nothing the benchmark started outlives it (it has only just returned: no waiting).
    assert processes_carrying(marker) == []
    result = json.loads(out.read_text())
    assert result["mode"] == "quick" and result["concurrencies"] == [32]
    names = set(result["summary"])
    assert names == expected
    for per in result["summary"].values():
        row = per["32"]
        assert row["items_per_s"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["rss_mb"] > 10
    assert all(v and v > 0 for v in result["cold_start_s"].values())
    assert result["targets"]["stub_full_vs_fastapi_min"] is None  # not run: no ratio made up
