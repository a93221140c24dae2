"""Scenario 5, bad artifacts: the process stays up and says why, or exits with fail-fast.

Artifacts (built by `tests/support/bad_artifacts.py`): a tfidf folder without its model file, a
truncated pickle, metadata from another scikit-learn version, the real tfidf model cut in half
(sha256 mismatch) and cut in half with a matching sha256 (unpickling fails), an onnx folder with a
tokenizer but no model, and a `model.onnx` that is not ONNX.

Expected for each: the process stays alive, `/healthz` 200, `/readyz` 503 `failed: <reason>`,
predictions `503 model_not_ready`, exactly one `model_load_failed` log line; with
STARTUP_FAIL_FAST=true the process exits non-zero after that same line.

    python -m scripts.reliability.bad_artifacts [--quick]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from scripts.reliability import harness
from tests.support.bad_artifacts import BAD_ARTIFACTS, build_bad_artifact, build_from_real
from tests.support.servers import run_logged_server


def probe(run: harness.RunDir, kind: str, provider: str, path: Path, reason: str) -> dict[str, Any]:
    settings = {"MODEL_PROVIDER": provider, "MODEL_PATH": str(path)}
    out: dict[str, Any] = {"provider": provider}
    with run_logged_server(run.log(kind), **settings) as srv:
        t0 = time.monotonic()
        ready: httpx2.Response | None = None
        while time.monotonic() - t0 < 90 and srv.proc.poll() is None:
            try:
                ready = httpx2.get(srv.url + "/readyz", timeout=2)
                if ready.json()["status"] != "loading":
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        out["failed_after_s"] = round(time.monotonic() - t0, 2)
        out["readyz"] = (ready.status_code, ready.json()["status"]) if ready else None
        try:
            out["healthz"] = httpx2.get(srv.url + "/healthz", timeout=2).status_code
            r = httpx2.post(srv.url + "/v1/predict", json={"text": "hello"}, timeout=5)
            out["predict"] = (r.status_code, r.json()["error"]["code"])
        except httpx2.TransportError as exc:
            out["healthz"] = out["predict"] = f"no answer: {type(exc).__name__}"
        lines = harness.log_events(srv, "model_load_failed")
        out["log_lines"] = len(lines)
        out["log_message"] = lines[0]["message"] if lines else None
        out["alive"] = srv.proc.poll() is None
    with run_logged_server(
        run.log(kind + "-fail-fast"), STARTUP_FAIL_FAST="true", **settings
    ) as srv:
        t0 = time.monotonic()
        code = srv.proc.wait(90)
        out["fail_fast_exit"] = code
        out["fail_fast_exit_after_s"] = round(time.monotonic() - t0, 2)
        fast = harness.log_events(srv, "model_load_failed")
        out["fail_fast_log_lines"] = len(fast)
        out["fail_fast_same_line"] = bool(fast) and fast[0]["message"] == out["log_message"]
    out["reason_expected"] = reason
    return out


def main(argv: list[str] | None = None) -> int:
    p = harness.parser(__doc__)
    args = p.parse_args(argv)
    report = harness.Report("bad-artifacts", args.quick)
    harness.print_header("bad artifacts", {"MODEL_PATH": "<a broken artifact per case>"})
    run = harness.RunDir(report.scenario, args.keep_logs)
    root = Path(tempfile.mkdtemp(prefix="bad-artifacts-", dir=run.path))
    cases = [(kind, *build_bad_artifact(kind, root)) for kind in BAD_ARTIFACTS]
    real = harness.ROOT / "models" / "tfidf"
    if (real / "model.joblib").is_file() and not args.quick:
        for kind in ("real_model_truncated", "real_model_truncated_sha_matching"):
            cases.append((kind, *build_from_real(kind, real, root)))
    else:
        report.note("models/tfidf not present or --quick: the real-artifact variants were skipped")
    if args.quick:
        cases = cases[:1] + cases[-1:]
    for kind, provider, path, reason in cases:
        out = probe(run, kind, provider, path, reason)
        report.figure(kind, json.dumps(out))
        status = out["readyz"][1] if out["readyz"] else ""
        ok = (
            out["alive"]
            and out["healthz"] == 200
            and out["readyz"] is not None
            and out["readyz"][0] == 503
            and status.startswith("failed: ")
            and reason in status
            and out["predict"] == (503, "model_not_ready")
            and out["log_lines"] == 1
        )
        report.expect(
            f"{kind}: stays up, /readyz 503 with the reason, predict 503, one log line", ok
        )
        report.expect(
            f"{kind}: fail-fast exits non-zero with the same one line",
            out["fail_fast_exit"] not in (0, None)
            and out["fail_fast_log_lines"] == 1
            and out["fail_fast_same_line"],
            out["fail_fast_exit"],
        )
    run.cleanup(report.failed)
    return report.finish(args.out)


if __name__ == "__main__":
    raise SystemExit(main())
