"""The alerting config checked by promtool, and a real Prometheus scraping the real service."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx2
import pytest

from tests.support.servers import ROOT, free_port, run_server

PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "ml-prod-api.json"
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (scripts/install_test_services.sh)"
)


def _promtool(*args: str, cwd: Path = ROOT) -> str:
    assert PROMTOOL is not None
    proc = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@needs_promtool
def test_promtool_check_config() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")


@needs_promtool
def test_promtool_check_rules() -> None:
    out = _promtool("check", "rules", *sorted(str(p) for p in RULES.glob("*.yml")))
    assert out.count("SUCCESS") == 2


@needs_promtool
def test_promtool_unit_tests_for_every_alert() -> None:
    tests = ROOT / "deploy" / "prometheus" / "tests" / "alerts_test.yml"
    alerts = {
        line.split(":", 1)[1].strip()
        for line in (RULES / "alerts.yml").read_text().splitlines()
        if line.strip().startswith("- alert:")
    }
    tested = tests.read_text()
    for alert in alerts:  # every alert has a firing and a not-firing case
        assert tested.count(f"alertname: {alert}\n") >= 2, alert
    assert "SUCCESS" in _promtool("test", "rules", tests.name, cwd=tests.parent)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (scripts/install_test_services.sh)"
)
def test_real_prometheus_counts_exactly_what_was_sent(tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    sent = 37
    with run_server() as server:
        server.wait_ready()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}/*.yml']\n"
            "scrape_configs:\n"
            "  - job_name: ml-prod-api\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        )
        prom_port = free_port()
        prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for i in range(sent):
                r = httpx2.post(server.url + "/v1/predict", json={"text": f"hello number {i}"})
                assert r.status_code == 200
            api = f"http://127.0.0.1:{prom_port}/api/v1"
            query = 'sum(http_requests_total{job="ml-prod-api",route="/v1/predict",status="200"})'
            value = None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    r = httpx2.get(api + "/query", params={"query": query}, timeout=5)
                    result = r.json()["data"]["result"]
                    if result:
                        value = float(result[0]["value"][1])
                        if value == sent:
                            break
                except httpx2.TransportError:
                    pass
                time.sleep(0.5)
            assert value == sent
            groups = httpx2.get(api + "/rules", timeout=5).json()["data"]["groups"]
            assert {g["name"] for g in groups} == {"ml-prod-api-recording", "ml-prod-api-alerts"}
            assert all(rule["health"] in ("ok", "unknown") for g in groups for rule in g["rules"])
            # Every dashboard query is valid PromQL against this real server.
            dashboard = json.loads(DASHBOARD.read_text())
            exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
            assert len(exprs) >= 9
            for expr in exprs:
                r = httpx2.get(api + "/query", params={"query": expr}, timeout=5)
                assert r.json()["status"] == "success", expr
        finally:
            prom.terminate()
            prom.wait(30)
