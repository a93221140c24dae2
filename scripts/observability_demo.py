"""Start the service and a real Prometheus on loopback, drive mixed traffic, render the dashboard.

    python scripts/observability_demo.py --seconds 150 --out docs/dashboard.png

Traffic (bounded in time, loopback only): single and batch predictions from 8 concurrent
clients, with a share of invalid requests (422), unknown paths (404) and, in the middle, a burst
that overfills a deliberately small queue (429). Needs `prometheus` on PATH
(scripts/install_test_services.sh) and matplotlib (requirements-train.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from render_dashboard import render  # noqa: E402

SENTENCES = [
    "have a wonderful day", "you are an idiot", "thanks for the help with the report",
    "what a stupid pathetic loser", "the meeting moved to three o'clock",
    "I hate you and your ugly face", "great game last night", "shut up you moron",
    "could you send me the slides", "this is trash and so are you",
]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(url: str, until: float, rng: random.Random) -> None:
    async with httpx2.AsyncClient(base_url=url, timeout=10) as c:
        while time.monotonic() < until:
            roll = rng.random()
            if roll < 0.6:
                await c.post("/v1/predict", json={"text": rng.choice(SENTENCES)})
            elif roll < 0.85:
                texts = rng.sample(SENTENCES, k=rng.randint(2, 8))
                await c.post("/v1/predict_batch", json={"texts": texts})
            elif roll < 0.95:
                await c.post("/v1/predict", json={"text": ""})
            else:
                await c.get("/no-such-page")
            await asyncio.sleep(rng.uniform(0.005, 0.03))


async def _burst(url: str, n: int) -> None:
    async with httpx2.AsyncClient(base_url=url, timeout=10) as c:
        await asyncio.gather(
            *(c.post("/v1/predict_batch", json={"texts": SENTENCES * 6}) for _ in range(n)),
            return_exceptions=True,
        )


async def _traffic(url: str, seconds: float) -> None:
    until = time.monotonic() + seconds
    rng = random.Random(7)
    clients = [asyncio.create_task(_client(url, until, random.Random(i))) for i in range(8)]
    await asyncio.sleep(seconds / 2)
    await _burst(url, 40)
    del rng
    await asyncio.gather(*clients)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--provider", default=None, help="MODEL_PROVIDER (default: the default)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        sys.exit("prometheus is not installed: run scripts/install_test_services.sh")

    work = Path(tempfile.mkdtemp(prefix="obs-demo-"))
    api_port, prom_port = _port(), _port()
    env = dict(os.environ, QUEUE_MAX_ITEMS="256", DRAIN_GRACE_SECONDS="0")
    if args.provider:
        env["MODEL_PROVIDER"] = args.provider
    api = subprocess.Popen(
        [sys.executable, "-m", "ml_prod_api.cli", "serve", "--host", "127.0.0.1",
         "--port", str(api_port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: ml-prod-api\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [prometheus, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx2.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            time.sleep(0.2)
        provider = httpx2.get(url + "/").json()["provider"]
        print(f"serving {provider} on {url}; Prometheus on 127.0.0.1:{prom_port}")
        asyncio.run(_traffic(url, args.seconds))
        time.sleep(3)  # one more scrape
        render(
            f"http://127.0.0.1:{prom_port}", args.seconds / 60 + 0.2, args.out,
            f"ml-prod-api ({provider}) under {args.seconds:.0f} s of mixed demo traffic, "
            "real Prometheus data",
        )
    finally:
        api.send_signal(signal.SIGTERM)
        prom.terminate()
        api.wait(30)
        prom.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
