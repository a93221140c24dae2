"""Render the Grafana dashboard's panels to one PNG from a real Prometheus.

Each panel's PromQL targets (read from deploy/grafana/dashboards/ml-prod-api.json) are run
through Prometheus's `query_range` API and plotted with matplotlib, so a reader sees what the
dashboard shows without running Grafana.

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 5 \
        --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ml-prod-api.json"


def _legend(fmt: str, labels: dict[str, str]) -> str:
    out = fmt
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def query_range(prom: str, expr: str, start: float, end: float, step: float) -> list[Any]:
    r = httpx2.get(
        f"{prom}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    )
    r.raise_for_status()
    result: list[Any] = r.json()["data"]["result"]
    return result


def render(prom: str, minutes: float, out: Path, title: str) -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 240)
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6, rows * 3.4), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for target in panel["targets"]:
            for series in query_range(prom, target["expr"], start, end, step):
                xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=_legend(target.get("legendFormat", ""), series["metric"]))
        ax.set_title(panel["title"], fontsize=10)
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_xlabel("minutes")
        ax.set_ylabel({"s": "seconds", "reqps": "req/s", "percentunit": "ratio"}.get(unit, ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--title", default="ml-prod-api dashboard (real Prometheus data)")
    args = parser.parse_args()
    render(args.prometheus, args.minutes, args.out, args.title)


if __name__ == "__main__":
    main()
