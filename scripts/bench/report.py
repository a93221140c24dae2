"""Tables and plots from one benchmark result file (scripts/bench/run.py's JSON).

    python scripts/bench/report.py benchmark-results/full-<time>.json

Writes the markdown tables next to the JSON (same name, .md), the plots under docs/benchmark/,
and replaces the part of BENCHMARK.md between `<!-- results:start -->` and
`<!-- results:end -->` with the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PLOTS = ROOT / "docs" / "benchmark"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def tables(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"Run `{result['mode']}` at {result['started_at']} ({result['wall_seconds']:.0f} s), "
        f"{result['repetitions']} repetition(s) of {result['seconds_per_run']} s per cell, "
        f"on {result['machine']['cores']} cores ({result['machine']['cpu']}), "
        "load generator on the same cores.",
        "",
    ]
    for c in result["concurrencies"]:
        lines += [
            f"**Concurrency {c}** (median of repetitions; min-max in brackets)",
            "",
            "| configuration | items/s | req/s | p50 ms | p99 ms | errors | CPU ms/req | RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, per in s.items():
            row = per.get(str(c))
            if row is None:
                continue
            spread = f" ({row['items_min']:.0f}-{row['items_max']:.0f})" if result[
                "repetitions"] > 1 else ""
            lines.append(
                f"| {name} | {row['items_per_s']:.0f}{spread} | {row['rps']:.0f} | "
                f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']:.0f} | "
                f"{row['cpu_ms_per_request']:.2f} | {row['rss_mb']:.0f} |"
            )
        lines.append("")
    raw = result.get("inprocess_items_per_s") or {}
    if raw:
        lines += [
            "**In-process throughput** (items/s, no HTTP; median of one pass per repetition, run"
            " between the served cells, min-max in brackets; unsorted onnx in the first pass only)",
            "",
            "| model | batch 1 | batch 8 | batch 32 | batch 64 |",
            "|---|---:|---:|---:|---:|",
        ]

        def cell(v: dict[str, float]) -> str:
            if v["passes"] < 2:
                return f"{v['median']:.0f}"
            return f"{v['median']:.0f} ({v['min']:.0f}-{v['max']:.0f})"

        for name, per in raw.items():
            lines.append(f"| {name} | " + " | ".join(cell(per[b]) for b in
                                                     ("1", "8", "32", "64")) + " |")
        lines.append("")
    lines += ["**Cold start to ready** (s)", "", "| configuration | s |", "|---|---:|"]
    for name, value in result["cold_start_s"].items():
        if value is not None:
            lines.append(f"| {name} | {value:.2f} |")
    lines += ["", "**Targets** (ratios within this run)", "", "```json",
              json.dumps(result["targets"], indent=2), "```", ""]
    return "\n".join(lines)


def styles(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One colour per configuration (matplotlib's 10-colour cycle repeats after ten, so two
    configurations would share one), and the line style by group: this service solid, the
    reference servers dashed."""
    names = list(result["summary"])
    groups = {r["config"]: r.get("group", "ours") for r in result.get("runs", [])}
    palette = plt.get_cmap("tab20").colors
    markers = "osD^v<>pPX*hH8d"
    return {
        name: {
            "color": palette[i % len(palette)],
            "marker": markers[i % len(markers)],
            "linestyle": "-" if groups.get(name, "ours") == "ours" else "--",
        }
        for i, name in enumerate(names)
    }


def plots(result: dict[str, Any]) -> list[Path]:
    PLOTS.mkdir(parents=True, exist_ok=True)
    s = result["summary"]
    style = styles(result)
    run = f"run {result['mode']} of {result['started_at']}"
    c = 32 if 32 in result["concurrencies"] else result["concurrencies"][-1]
    names = [n for n in s if str(c) in s[n]]
    vals = [s[n][str(c)]["items_per_s"] for n in names]
    lo = [v - s[n][str(c)]["items_min"] for n, v in zip(names, vals, strict=True)]
    hi = [s[n][str(c)]["items_max"] - v for n, v in zip(names, vals, strict=True)]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(names, vals, xerr=[lo, hi], color=[style[n]["color"] for n in names])
    for name, value in zip(names, vals, strict=True):
        ax.annotate(f" {value:,.0f}", (value, name), va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"items/s at concurrency {c} (log scale; min-max bars)")
    ax.set_title(f"Throughput by configuration ({run})", fontsize=10)
    fig.tight_layout()
    out1 = PLOTS / "throughput.png"
    fig.savefig(out1, dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    for name in names:
        cs = sorted(int(k) for k in s[name])
        for ax, key in zip(axes, ("p50_ms", "p99_ms"), strict=True):
            ax.plot(cs, [s[name][str(k)][key] for k in cs], label=name, **style[name])
    for ax, key in zip(axes, ("p50", "p99"), strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel(f"{key} latency (ms, log)")
        ax.set_title(f"{key} latency vs concurrency", fontsize=10)
        ax.grid(alpha=0.3)
    # One legend for both panels, under them: every series is named once, in both panels.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Latency by configuration ({run}; dashed: reference servers)", fontsize=10)
    fig.tight_layout(rect=(0, 0.17, 1, 1))
    out2 = PLOTS / "latency.png"
    fig.savefig(out2, dpi=90)
    plt.close(fig)
    return [out1, out2]


def main() -> None:
    path = Path(sys.argv[1])
    result = json.loads(path.read_text())
    md = tables(result)
    path.with_suffix(".md").write_text(md)
    written = plots(result)
    bench = ROOT / "BENCHMARK.md"
    if bench.exists():
        text = bench.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            bench.write_text(f"{head}{START}\n{md}\n{END}{tail}")
    print(f"wrote {path.with_suffix('.md')} and {', '.join(str(p) for p in written)}")


if __name__ == "__main__":
    main()
