"""Plots for RELIABILITY.md from the drills' result files.

    python -m scripts.reliability.plots      # reads reliability-results/, writes docs/reliability/

- `overload.png`: each overload drill's answers per second by status, and the p99 latency of
  what was answered, from the start of the 4x load (`timeline_1s` of overload-<provider>.json).
- `drain.png`: the first graceful-shutdown round, per 100 ms around SIGTERM: answers by status,
  requests without one, and what `/readyz` said (`timeline_100ms` of shutdown-tfidf.json).
- `soak.png`: RSS, file descriptors and TCP connections over the 200,000 requests of the soak.

A result file written before the drills recorded timelines has none: its plot is skipped, with
the reason printed. Needs matplotlib (requirements-bench.txt).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scripts.reliability.shutdown import GRACE_S  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "reliability-results"
# Runs made for their timelines (`--out reliability-results/timelines`), looked at first.
TIMELINES = RESULTS / "timelines"
OUT = ROOT / "docs" / "reliability"
# One colour per outcome, the same in every plot.
COLOURS = {"200": "#2a9d8f", "429": "#e9c46a", "503": "#e76f51", "other": "#6d597a",
           "no_answer": "#264653"}
LABELS = {"200": "200", "429": "429 overloaded", "503": "503", "other": "other status",
          "no_answer": "no answer (refused at connect, or reset)"}


def load(name: str, key: str) -> dict[str, Any] | None:
    """The first result file of drill `name` (long, then quick version; timelines folder first)
    whose figures carry `key` (or one of its rounds does)."""
    for folder in (TIMELINES, RESULTS):
        for stem in (name, f"{name}-quick"):
            path = folder / f"{stem}.json"
            if not path.exists():
                continue
            result: dict[str, Any] = json.loads(path.read_text())
            figures = result["figures"]
            if key in figures or any(isinstance(v, dict) and key in v for v in figures.values()):
                return result
    return None


def save(fig: Any, name: str) -> Path:
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / name
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def stacked(ax: Any, windows: list[dict[str, Any]], width: float) -> None:
    xs = [w["from_s"] for w in windows]
    bottom = [0.0] * len(windows)
    for key in ("200", "429", "503", "other", "no_answer"):
        values = [w[key] / width for w in windows]
        if any(values):
            ax.bar(xs, values, width=width, bottom=bottom, align="edge", color=COLOURS[key],
                   label=LABELS[key])
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]


def overload() -> Path | None:
    runs = [
        (p, d) for p in ("stub", "onnx", "tfidf") if (d := load(f"overload-{p}", "timeline_1s"))
    ]
    if not runs:
        print("overload: no result file with a timeline (re-run the overload drill)")
        return None
    fig, axes = plt.subplots(2, len(runs), figsize=(5.2 * len(runs), 6.5), squeeze=False,
                             sharex="col")
    for col, (provider, d) in enumerate(runs):
        f = d["figures"]
        windows = f["timeline_1s"]
        top, bottom = axes[0][col], axes[1][col]
        stacked(top, windows, 1.0)
        top.axhline(f["capacity_rps"], color="black", linestyle=":", linewidth=1,
                    label=f"measured capacity ({f['capacity_rps']:.0f}/s)")
        kind = "quick run" if d["quick"] else "run"
        top.set_title(f"{provider}: 4x capacity for {f['settings']['seconds']:.0f} s\n"
                      f"{kind} of {d['when']}", fontsize=9)
        top.set_ylabel("answers per second, by status")
        top.legend(fontsize=7, loc="upper right")
        xs = [w["from_s"] + 0.5 for w in windows if w["p99_ms"] is not None]
        ys = [w["p99_ms"] for w in windows if w["p99_ms"] is not None]
        bottom.plot(xs, ys, marker=".", color="#264653", label="p99 of answered requests")
        bottom.axhline(f["settings"]["timeout_ms"], color="#e76f51", linestyle="--",
                       linewidth=1, label=f"deadline ({f['settings']['timeout_ms']} ms)")
        bottom.set_yscale("log")
        bottom.set_ylabel("latency, ms (log)")
        bottom.set_xlabel("seconds since the overload started")
        bottom.legend(fontsize=7, loc="lower right")
        for ax in (top, bottom):
            ax.axvline(f["settings"]["seconds"], color="grey", linewidth=1)
            ax.grid(alpha=0.3)
    return save(fig, "overload.png")


def drain() -> Path | None:
    d = load("shutdown-tfidf", "timeline_100ms") or load("shutdown-stub", "timeline_100ms")
    if d is None:
        print("drain: no shutdown result with a timeline (re-run the shutdown drill)")
        return None
    rounds = [v for k, v in d["figures"].items() if k.startswith("round")]
    first = next(r for r in rounds if "timeline_100ms" in r)
    grace = GRACE_S  # the drill's DRAIN_GRACE_SECONDS
    windows = [w for w in first["timeline_100ms"] if -1.0 <= w["from_s"] <= first["exit_after_s"]
               + 0.5]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    stacked(ax, windows, 0.1)
    ax.axvline(0, color="black", linewidth=1.2, label="SIGTERM")
    ax.axvline(first["readyz_503_after_s"], color="#e76f51", linestyle="--", linewidth=1,
               label=f"/readyz 503 ({first['readyz_503_after_s']:.3f} s)")
    ax.axvline(grace, color="grey", linestyle=":", linewidth=1,
               label=f"end of DRAIN_GRACE_SECONDS ({grace:g} s)")
    ax.axvline(first["exit_after_s"], color="#264653", linewidth=1.2,
               label=f"exit {first['exit_code']} ({first['exit_after_s']} s)")
    ax.set_xlabel("seconds since SIGTERM (requests by when they were sent)")
    ax.set_ylabel("requests per second, by outcome")
    kind = "quick run" if d["quick"] else "run"
    ax.set_title(f"Graceful shutdown under load ({d['scenario']}), round 1 of {len(rounds)}: "
                 f"{first['lost']} lost; refused at connect once the listener closed "
                 f"({kind} of {d['when']})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return save(fig, "drain.png")


def soak() -> Path | None:
    key = "samples (requests done, rss MB, fds, threads, tcp)"
    d = load("soak-tfidf", key)
    if d is None:
        print("soak: no soak-tfidf.json with samples")
        return None
    samples = d["figures"][key]
    done = [s[0] / 1000 for s in samples]
    fig, (mem, fds) = plt.subplots(1, 2, figsize=(11, 3.8))
    mem.plot(done, [s[1] for s in samples], marker="o", color="#2a9d8f")
    mem.set_ylim(0, max(s[1] for s in samples) * 1.25)
    mem.set_ylabel("server RSS, MB")
    mem.set_title(f"Memory: {d['figures']['rss_growth_pct']:+.2f}% after warm-up", fontsize=9)
    fds.plot(done, [s[2] for s in samples], marker="o", color="#264653", label="open fds")
    fds.plot(done, [s[4] for s in samples], marker=".", color="#e9c46a", label="TCP connections")
    fds.plot(done, [s[3] for s in samples], marker=".", color="#6d597a", label="threads")
    fds.set_title("Descriptors follow the connections; threads constant", fontsize=9)
    fds.set_ylim(0, max(s[2] for s in samples) * 1.3)
    fds.legend(fontsize=7, loc="lower right")
    for ax in (mem, fds):
        ax.set_xlabel("thousands of requests done")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Soak, tfidf, {d['figures']['requests']['requests']:,} requests at "
                 f"{d['figures']['achieved_rps']:.0f}/s (run {d['when']})", fontsize=10)
    return save(fig, "soak.png")


def main() -> int:
    written = [p for p in (overload(), drain(), soak()) if p is not None]
    print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
