"""Side-by-side HTTP benchmark and the batching figures (BENCHMARK.md).

Every server is started once on loopback, one worker each, and kept stopped (SIGSTOP) except
while it is measured; the runs alternate between configurations (repetition -> concurrency ->
configuration), so slow drift of this shared machine hits all of them alike. The load is wrk
with a Lua script cycling through hundreds of distinct real sentences (Davidson et al., MIT) of
mixed length. Each measured run is preceded by a short warm-up at the same concurrency. Bounded:
every run has a fixed duration, every server is stopped by its PID at the end.

    python scripts/bench/run.py            # full: c = 1, 8, 32, 64, 3 repetitions (< 10 min)
    python scripts/bench/run.py --quick    # c = 32, 1 repetition (< 2 min)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psutil

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "scripts" / "bench"
RESULTS = ROOT / "benchmark-results"
PLOTS = ROOT / "docs" / "benchmark"
API_KEY = "bench-key-0123456789"
ONNX_X2 = "ours onnx, 2 instances"
MODERATIONS = "ours tfidf, /moderations x32"
BATCH32 = "ours tfidf, /predict_batch x32"
CASCADE = "ours cascade, bare"
CASCADE_X2 = "ours cascade, 2 instances"


@dataclass
class Config:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/readyz"
    path: str = "/v1/predict"
    api_key: str = ""
    bodies: str = "single"  # or "batch32", "moderations32" (32 texts a request)
    concurrencies: tuple[int, ...] = (8, 32)  # where bodies of 32 texts are measured
    group: str = "ours"
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    cold_start_s: float | None = None
    log: Any = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sentences() -> list[str]:
    return [line.strip() for line in (BENCH / "sentences.txt").read_text().splitlines() if line]


def mixed_texts() -> list[str]:
    """The served texts: mostly single tweets, one in seven a longer post made of 2-6 of them.
    The in-process figures use the very same list, so served and raw throughput compare."""
    rng = random.Random(8)
    texts = sentences()
    return [
        " ".join(rng.sample(texts, rng.randint(2, 6))) if i % 7 == 0 else text
        for i, text in enumerate(texts)
    ]


def write_bodies(tmp: Path) -> dict[str, Path]:
    """One JSON body per line (see mixed_texts); batches of 32 drawn from the same texts, the
    very same batches as `/v1/predict_batch` bodies and as `/v1/moderations` bodies."""
    rng = random.Random(9)
    texts = mixed_texts()
    singles = [json.dumps({"text": text}) for text in texts]
    samples = [rng.sample(texts, 32) for _ in range(200)]
    out = {name: tmp / f"{name}.jsonl" for name in ("single", "batch32", "moderations32")}
    out["single"].write_text("\n".join(singles) + "\n")
    out["batch32"].write_text("\n".join(json.dumps({"texts": b}) for b in samples) + "\n")
    out["moderations32"].write_text("\n".join(json.dumps({"input": b}) for b in samples) + "\n")
    return out


def ours(name: str, provider: str, *, full: bool, extra: dict[str, str] | None = None,
         bodies: str = "single", path: str = "/v1/predict",
         concurrencies: tuple[int, ...] = (8, 32)) -> Config:
    env = {"MODEL_PROVIDER": provider, "DRAIN_GRACE_SECONDS": "0", "LOG_LEVEL": "WARNING"}
    if full:
        env.update({"API_KEYS": f"bench:{API_KEY}", "RATE_LIMIT": "100000000/minute",
                    "LOG_LEVEL": "INFO"})
    env.update(extra or {})
    return Config(name, [sys.executable, "-m", "ml_prod_api.cli", "serve", "--host",
                         "127.0.0.1", "--port", "{port}"], env,
                  api_key=API_KEY if full else "", bodies=bodies, path=path,
                  concurrencies=concurrencies)


def uvicorn_app(name: str, module: str, group: str) -> Config:
    return Config(name, [sys.executable, "-m", "uvicorn", module, "--app-dir",
                         str(BENCH / "servers"), "--host", "127.0.0.1", "--port", "{port}",
                         "--log-level", "warning", "--no-access-log"],
                  ready_path="/healthz", group=group)


def configs(have_onnx: bool) -> list[Config]:
    out = [
        uvicorn_app("floor (bare ASGI)", "floor_asgi:app", "reference"),
        uvicorn_app("FastAPI minimal", "fastapi_min:app", "reference"),
        uvicorn_app("naive FastAPI + tfidf", "naive_tfidf:app", "reference"),
        Config("LitServe + tfidf (batch 16, 5 ms)",
               [sys.executable, str(BENCH / "servers" / "litserve_tfidf.py"), "{port}"],
               ready_path="/healthz", group="reference"),
        ours("ours stub, full stack", "stub", full=True),
        ours("ours stub, bare", "stub", full=False),
        ours("ours tfidf, full stack", "tfidf", full=True),
        ours("ours tfidf, bare", "tfidf", full=False),
        ours("ours tfidf, batching off", "tfidf", full=False, extra={"QUEUE_BATCH_MAX_SIZE": "1"}),
        ours(BATCH32, "tfidf", full=False, bodies="batch32", path="/v1/predict_batch"),
        # The same batches in OpenAI's moderation shape: what the shape costs over the native one.
        ours(MODERATIONS, "tfidf", full=False, bodies="moderations32", path="/v1/moderations"),
    ]
    if have_onnx:
        out += [
            # No onnx full stack: the stack's cost is the stub's and tfidf's rows, and the
            # full run must stay under 10 minutes.
            ours("ours onnx, bare", "onnx", full=False),
            ours("ours onnx, batching off", "onnx", full=False,
                 extra={"QUEUE_BATCH_MAX_SIZE": "1"}),
            # Two single-threaded model instances (DEPLOYMENT.md): batches of 8, since batching
            # does not speed this model up on a CPU and a batch of 64 on one thread holds its
            # requests too long.
            ours(ONNX_X2, "onnx", full=False,
                 extra={"MODEL_INSTANCES": "2", "QUEUE_BATCH_MAX_SIZE": "8"}),
            ours("ours onnx, /predict_batch x32", "onnx", full=False, bodies="batch32",
                 path="/v1/predict_batch", concurrencies=(32,)),
        ]
    if have_onnx and have_cascade():
        # tfidf first, onnx only for the texts inside the band: beside "ours onnx, bare".
        out.append(ours(CASCADE, "cascade", full=False))
        # As onnx's two instances: each stage-2 call holds the few texts tfidf is unsure of, and
        # one thread per instance wastes less of a small call than two threads on one.
        out.append(ours(CASCADE_X2, "cascade", full=False,
                        extra={"MODEL_INSTANCES": "2", "QUEUE_BATCH_MAX_SIZE": "16"}))
    return out


def have_cascade() -> bool:
    return (ROOT / "models" / "cascade" / "metadata.json").is_file()


def start(cfg: Config, logdir: Path) -> None:
    cfg.port = free_port()
    argv = [a.replace("{port}", str(cfg.port)) for a in cfg.argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **cfg.env)
    cfg.log = (logdir / f"{cfg.port}.log").open("wb")
    started = time.monotonic()
    # A session of its own: the server's process group then holds every process it starts, and
    # `stop` can end them all (see there).
    cfg.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=cfg.log, stderr=cfg.log,
                                start_new_session=True)
    deadline = started + 120
    while time.monotonic() < deadline:
        if cfg.proc.poll() is not None:
            raise RuntimeError(f"{cfg.name} exited with {cfg.proc.returncode}")
        with contextlib.suppress(httpx2.TransportError):
            if httpx2.get(f"http://127.0.0.1:{cfg.port}{cfg.ready_path}",
                          timeout=1).status_code == 200:
                cfg.cold_start_s = time.monotonic() - started
                return
        time.sleep(0.02)
    raise TimeoutError(f"{cfg.name} not ready")


def signal_group(cfg: Config, signum: int) -> bool:
    """Send `signum` to the server's process group (its own session); False when it is empty."""
    assert cfg.proc is not None
    try:
        os.killpg(cfg.proc.pid, signum)
    except ProcessLookupError:
        return False
    return True


def pause(cfg: Config, paused: bool) -> None:
    """SIGSTOP (or SIGCONT) the server's whole process group. Idle servers are not free:
    LitServe's workers poll their queues and use CPU while idle, which every other configuration
    and not the in-process figures would pay. So only the configuration being measured runs."""
    signal_group(cfg, signal.SIGSTOP if paused else signal.SIGCONT)


def stop(cfg: Config, grace_s: float = 20.0) -> None:
    """SIGTERM to the server's whole process group, then SIGKILL to whatever is left of it.

    The group, not the process tree: LitServe's inference worker ignores SIGTERM and, once its
    parent has exited, is no longer anyone's child (psutil's `children()` cannot find it), but it
    stays in the group and keeps spinning on the CPU.
    """
    if cfg.proc is None:
        return
    pause(cfg, False)  # a stopped process would hold SIGTERM until continued
    signal_group(cfg, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        cfg.proc.wait(grace_s)
    # Once the server itself has gone, a few seconds for the rest of its group to follow.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and signal_group(cfg, 0):
        time.sleep(0.1)
    signal_group(cfg, signal.SIGKILL)
    cfg.proc.wait(10)
    cfg.log.close()


def tree(cfg: Config) -> list[psutil.Process]:
    assert cfg.proc is not None
    parent = psutil.Process(cfg.proc.pid)
    return [parent, *parent.children(recursive=True)]


def cpu_seconds(cfg: Config) -> float:
    total = 0.0
    for p in tree(cfg):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def rss_mb(cfg: Config) -> float:
    total = 0
    for p in tree(cfg):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def wrk(cfg: Config, bodies: Path, concurrency: int, seconds: int) -> dict[str, Any]:
    threads = max(1, min(2, concurrency))
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(BENCH / "wrk_bodies.lua"), f"http://127.0.0.1:{cfg.port}{cfg.path}",
           "--", str(bodies), cfg.api_key]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")][-1]
    return dict(json.loads(line))


def settle(cfg: Config, limit_s: float = 1.0) -> None:
    """Wait (at most `limit_s`) until the server's CPU use drops below a fifth of a core.

    wrk ends the warm-up by closing its connections, but the server may still be computing what
    they asked for: a whole onnx batch of 64 at concurrency 64. Measuring at once would charge
    the warm-up's leftovers to the measured run (and make batching look slower than it is).
    """
    deadline = time.monotonic() + limit_s
    before = cpu_seconds(cfg)
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = cpu_seconds(cfg)
        if now - before < 0.01:
            return
        before = now


def measure(cfg: Config, bodies: Path, concurrency: int, seconds: int,
            warmup: int) -> dict[str, Any]:
    wrk(cfg, bodies, concurrency, warmup)
    settle(cfg)
    cpu0 = cpu_seconds(cfg)
    result = wrk(cfg, bodies, concurrency, seconds)
    cpu = cpu_seconds(cfg) - cpu0
    n = max(1, result["requests"])
    items = 1 if cfg.bodies == "single" else 32
    ok = result["requests"] - result["status_errors"]  # only 2xx answers count as served
    seconds_run = result["duration_us"] / 1e6
    return {
        "config": cfg.name,
        "group": cfg.group,
        "concurrency": concurrency,
        "requests": result["requests"],
        "rps": ok / seconds_run,
        "items_per_s": items * ok / seconds_run,
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "errors": result["status_errors"] + result["connect_errors"] + result["read_errors"]
        + result["write_errors"] + result["timeouts"],
        "cpu_ms_per_request": 1000 * cpu / n,
        "rss_mb": rss_mb(cfg),
    }


class InProcess:
    """Raw in-process throughput: the compute limit the served figures are compared with.

    One pass per repetition, run between the served cells (every server stopped meanwhile), so
    raw and served figures share the machine's drift and are compared median to median: this
    shared machine's speed drifts within minutes (BENCHMARK.md).
    """

    BATCHES = (1, 8, 32, 64)

    def __init__(self, have_onnx: bool) -> None:
        sys.path.insert(0, str(ROOT / "src"))
        from ml_prod_api.providers.onnx import OnnxProvider
        from ml_prod_api.providers.tfidf import TfidfProvider

        self.texts = mixed_texts()
        self.tfidf = TfidfProvider(ROOT / "models" / "tfidf")
        self.tfidf.load()
        self.tfidf.predict_batch(self.texts)
        self.onnx: Any = None
        self.pair: list[Any] = []
        if have_onnx:
            self.onnx = OnnxProvider(ROOT / "models" / "onnx")
            # MODEL_INSTANCES=2: two single-threaded sessions on their own threads, each taking
            # every other chunk, as the service's two inference threads share its queue.
            self.pair = [OnnxProvider(ROOT / "models" / "onnx", intra_op_threads=1)
                         for _ in range(2)]
            for provider in (self.onnx, *self.pair):
                provider.load()
                provider.predict_batch(self.texts[:8])
        self.cascade: Any = None
        self.cascade_stage2_share: float | None = None
        if have_onnx and have_cascade():
            from ml_prod_api.providers.cascade import CascadeSettings

            settings = CascadeSettings(_env_file=None, models_dir=ROOT / "models")
            self.cascade = settings.build_provider()
            self.cascade.load()
            scores = self.cascade.predict_batch(self.texts)
            # What the served cascade rows pay for: the share of these texts that reach onnx.
            self.cascade_stage2_share = sum(s.stage == "onnx" for s in scores) / len(scores)
        self.passes: list[dict[str, dict[str, float]]] = []

    def chunks(self, batch: int) -> list[list[str]]:
        texts = self.texts
        return [texts[i : i + batch] for i in range(0, len(texts) - batch + 1, batch)]

    def rate(self, fn: Any, batch: int, cycles: int = 1) -> float:
        chunks = self.chunks(batch) * cycles
        t = time.perf_counter()
        for chunk in chunks:
            fn(chunk)
        return sum(map(len, chunks)) / (time.perf_counter() - t)

    def rate_parallel(self, providers: list[Any], batch: int) -> float:
        """Items/s of several model instances, each scoring its share of the chunks."""
        chunks = self.chunks(batch)
        threads = [
            threading.Thread(target=lambda p=p, k=k: [p.predict_batch(c)
                                                        for c in chunks[k::len(providers)]])
            for k, p in enumerate(providers)
        ]
        t = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(map(len, chunks)) / (time.perf_counter() - t)

    def unsorted(self, chunk: list[str]) -> None:
        """One padded forward pass over the chunk as it comes, no length grouping."""
        from ml_prod_api.providers.sequence import pad_batch

        onnx = self.onnx
        windows = onnx.preprocess(chunk)
        ids, mask = pad_batch(windows.ids, onnx.pad_id)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in onnx._input_names:
            feed["token_type_ids"] = ids * 0
        onnx._session.run([onnx._output_name], feed)

    def measure(self) -> None:
        # tfidf scores the 400 texts too fast to time well: ten cycles make a pass long enough.
        out: dict[str, dict[str, float]] = {
            "tfidf": {str(b): self.rate(self.tfidf.predict_batch, b, cycles=10)
                      for b in self.BATCHES}}
        if self.onnx is not None:
            if not self.passes:
                # First pass only: unsorted batches run far slower than grouped ones, so they
                # are never the best figure, and every pass of them is long.
                out["onnx_unsorted"] = {str(b): self.rate(self.unsorted, b)
                                        for b in self.BATCHES}
            out["onnx_sorted"] = {str(b): self.rate(self.onnx.predict_batch, b)
                                  for b in self.BATCHES}
            out["onnx_sorted_x2"] = {str(b): self.rate_parallel(self.pair, b)
                                     for b in self.BATCHES}
        if self.cascade is not None:
            out["cascade"] = {str(b): self.rate(self.cascade.predict_batch, b)
                              for b in self.BATCHES}
        self.passes.append(out)

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """Per model and batch: the median, min and max over the passes."""
        out: dict[str, dict[str, dict[str, float]]] = {}
        for name in self.passes[0] if self.passes else []:
            out[name] = {}
            for b in map(str, self.BATCHES):
                values = [p[name][b] for p in self.passes if name in p]
                out[name][b] = {"median": statistics.median(values), "min": min(values),
                                "max": max(values), "passes": len(values)}
        return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    keys = {(r["config"], r["concurrency"]) for r in runs}
    for name, c in sorted(keys, key=lambda k: (k[0], k[1])):
        rs = [r for r in runs if r["config"] == name and r["concurrency"] == c]
        items = [r["items_per_s"] for r in rs]
        out.setdefault(name, {})[str(c)] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "items_per_s": statistics.median(items),
            "items_min": min(items),
            "items_max": max(items),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
            "cpu_ms_per_request": statistics.median(r["cpu_ms_per_request"] for r in rs),
            "rss_mb": max(r["rss_mb"] for r in rs),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="c=32 only, one repetition")
    parser.add_argument("--seconds", type=int, default=None, help="per measured run (wrk: whole s)")
    parser.add_argument("--only", default="", help="comma-separated substrings of config names")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-inprocess", action="store_true", help="skip the in-process part")
    args = parser.parse_args()
    concurrencies = [32] if args.quick else [1, 8, 32, 64]
    reps = 1 if args.quick else 3
    seconds = args.seconds or 2
    warmup = 1
    have_onnx = (ROOT / "models" / "onnx" / "model.onnx").is_file()
    cfgs = configs(have_onnx)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",")]
        cfgs = [c for c in cfgs if any(w in c.name for w in wanted)]
    started = time.monotonic()
    inproc = None if args.no_inprocess else InProcess(have_onnx)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bodies = write_bodies(Path(tmp))
        try:
            for cfg in cfgs:
                start(cfg, Path(tmp))
                pause(cfg, True)
                print(f"started {cfg.name} in {cfg.cold_start_s:.2f} s", flush=True)
            for rep in range(reps):
                if inproc is not None:
                    inproc.measure()
                    print(f"rep {rep} in process: " + ", ".join(
                        f"{name} b1 {per['1']:.0f}" for name, per in inproc.passes[-1].items()),
                        flush=True)
                for c in concurrencies:
                    for cfg in cfgs:
                        if cfg.bodies != "single" and c not in cfg.concurrencies:
                            continue  # 32 texts a request: one or two concurrencies are enough
                        pause(cfg, False)
                        try:
                            r = measure(cfg, bodies[cfg.bodies], c, seconds, warmup)
                        finally:
                            pause(cfg, True)
                        r["rep"] = rep
                        runs.append(r)
                        print(f"rep {rep} c={c:<3} {cfg.name:<36} {r['items_per_s']:>9.0f} items/s "
                              f"p50 {r['p50_ms']:7.2f} ms p99 {r['p99_ms']:7.2f} ms "
                              f"err {r['errors']}", flush=True)
        finally:
            for cfg in cfgs:
                stop(cfg)
    result = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_seconds": time.monotonic() - started,
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "seconds_per_run": seconds,
        "repetitions": reps,
        "concurrencies": concurrencies,
        "cold_start_s": {c.name: c.cold_start_s for c in cfgs},
        "inprocess_items_per_s": inproc.summary() if inproc is not None else {},
        "inprocess_passes": inproc.passes if inproc is not None else [],
        "cascade_stage2_share": inproc.cascade_stage2_share if inproc is not None else None,
        "runs": runs,
        "summary": summarize(runs),
    }
    result["targets"] = targets(result)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{'quick' if args.quick else 'full'}-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out} in {result['wall_seconds']:.0f} s")
    print(json.dumps(result["targets"], indent=2))
    return 0


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for module in ("fastapi", "starlette", "uvicorn", "pydantic", "sklearn", "onnxruntime",
                   "litserve"):
        with contextlib.suppress(Exception):
            versions[module] = __import__(module).__version__
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release(), "versions": versions, "wrk": wrk_v}


def targets(result: dict[str, Any]) -> dict[str, Any]:
    s = result["summary"]

    def at(name: str, c: int = 32, key: str = "items_per_s") -> float | None:
        return s.get(name, {}).get(str(c), {}).get(key)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    raw = result["inprocess_items_per_s"]
    out: dict[str, Any] = {
        "tfidf_full_vs_litserve": ratio(at("ours tfidf, full stack"),
                                        at("LitServe + tfidf (batch 16, 5 ms)")),
        "tfidf_full_vs_naive": ratio(at("ours tfidf, full stack"), at("naive FastAPI + tfidf")),
        "stub_full_vs_fastapi_min": ratio(at("ours stub, full stack"), at("FastAPI minimal")),
        "tfidf_batching_on_vs_off": ratio(at("ours tfidf, bare"),
                                          at("ours tfidf, batching off")),
        # Items/s of the moderation shape over the native batch route, same batches: the
        # target is at least 0.9 (the shape costs no more than 10%).
        "tfidf_moderations_vs_predict_batch": {
            str(c): ratio(at(MODERATIONS, c), at(BATCH32, c)) for c in (8, 32)
        },
        "cold_start_s": {k: round(v, 3) for k, v in result["cold_start_s"].items() if v},
        "rss_mb_after": {name: round(max(v["rss_mb"] for v in per.values()), 1)
                         for name, per in s.items()},
    }
    if "onnx_sorted" in raw:
        # Median to median: each raw figure is the median of its passes, as each served figure
        # is the median of its repetitions. The plain raw figure is one session at batch
        # 1-64; two sessions side by side (onnx_sorted_x2) are faster still, so the best raw is
        # the best of both. The single best pass is reported too, as the strictest reading.
        def best(names: tuple[str, ...], stat: str = "median") -> float:
            return max(v[stat] for n in names if n in raw for v in raw[n].values())

        one_session = best(("onnx_sorted", "onnx_unsorted"))
        best_raw = best(("onnx_sorted", "onnx_unsorted", "onnx_sorted_x2"))
        best_pass = best(("onnx_sorted", "onnx_unsorted", "onnx_sorted_x2"), "max")
        out["onnx_best_raw_items_per_s"] = round(best_raw, 1)
        out["onnx_best_raw_one_session_items_per_s"] = round(one_session, 1)
        out["onnx_best_single_pass_items_per_s"] = round(best_pass, 1)
        out["onnx_served_vs_best_raw"] = {
            name: ratio(at(name), best_raw) for name in ("ours onnx, bare", ONNX_X2)
        }
        out["onnx_served_vs_best_single_pass"] = {
            name: ratio(at(name), best_pass) for name in ("ours onnx, bare", ONNX_X2)
        }
        out["onnx_served_vs_one_session_raw"] = {
            name: ratio(at(name), one_session) for name in ("ours onnx, bare", ONNX_X2)
        }
        out["onnx_batching_on_vs_off"] = {
            str(c): ratio(at("ours onnx, bare", c), at("ours onnx, batching off", c))
            for c in result["concurrencies"]
        }
    if CASCADE in s:
        # The cascade against onnx alone, served side by side in this run: items/s and p99.
        out["cascade_vs_onnx_items_per_s"] = {
            str(c): ratio(at(CASCADE, c), at("ours onnx, bare", c))
            for c in result["concurrencies"]
        }
        out["cascade_vs_onnx_p99"] = {
            str(c): ratio(at(CASCADE, c, "p99_ms"), at("ours onnx, bare", c, "p99_ms"))
            for c in result["concurrencies"]
        }
    if CASCADE_X2 in s and ONNX_X2 in s:
        # Like for like: two instances of each, and the cascade's best against onnx's best.
        out["cascade_x2_vs_onnx_x2_items_per_s"] = {
            str(c): ratio(at(CASCADE_X2, c), at(ONNX_X2, c)) for c in result["concurrencies"]
        }
        out["cascade_x2_vs_onnx_x2_p99"] = {
            str(c): ratio(at(CASCADE_X2, c, "p99_ms"), at(ONNX_X2, c, "p99_ms"))
            for c in result["concurrencies"]
        }
        if "cascade" in raw and "onnx_sorted" in raw:
            out["cascade_vs_onnx_in_process"] = {
                b: ratio(raw["cascade"][b]["median"], raw["onnx_sorted"][b]["median"])
                for b in raw["cascade"]
            }
        out["cascade_stage2_share_of_these_texts"] = result.get("cascade_stage2_share")
    out["tfidf_batching_on_vs_off_by_c"] = {
        str(c): ratio(at("ours tfidf, bare", c), at("ours tfidf, batching off", c))
        for c in result["concurrencies"]
    }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
