"""The benchmark script itself, run for a few seconds against the stub so it cannot rot."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed "
                       "(scripts/install_test_services.sh)"),
]


def test_quick_benchmark_against_the_stub(tmp_path: Path) -> None:
    pytest.importorskip("psutil", reason="psutil not installed (requirements-dev.txt)")
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "scripts/bench/run.py", "--quick", "--seconds", "1",
         "--only", "ours stub,floor", "--no-inprocess", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "quick" and result["concurrencies"] == [32]
    names = set(result["summary"])
    assert names == {"floor (bare ASGI)", "ours stub, full stack", "ours stub, bare"}
    for per in result["summary"].values():
        row = per["32"]
        assert row["items_per_s"] > 0 and row["errors"] == 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["rss_mb"] > 10
    assert all(v and v > 0 for v in result["cold_start_s"].values())
    assert result["targets"]["stub_full_vs_fastapi_min"] is None  # not run: no ratio made up
