"""In-process speed of the `tfidf` provider (the speed targets).

    python -m training.bench_tfidf [--model models/tfidf]

Prints the cold start (a fresh interpreter importing the provider and loading the artifact; target
< 2 s), one-text latency (target < 2 ms) and per-text latency in batches of 64 (target < 0.3 ms),
plus the normalisation cost per text. Texts are written here (no dataset needed). Speed lives here
and not in the tests, which make no timing assertions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ml_prod_api.providers.tfidf import TfidfProvider, normalize

REPO_ROOT = Path(__file__).resolve().parents[1]

SAMPLES = [
    "@user you are such a fucking idiot, nobody wants you here",
    "Thank you so much for the birthday wishes everyone! Feeling loved today 🥳",
    "@user @user The new policy is a disaster and the minister should resign. URL",
    "lol that game last night was insane, can't wait for the next one",
    "shut up b1tch n0body asked",
    "I don't agree with her politics but she made some fair points in the debate.",
    "What a f*cking joke of a referee, absolute trash",
    "Reading a great book on the history of the Roman empire, highly recommend it.",
]

_COLD = """
import time
t0 = time.perf_counter()
from ml_prod_api.providers.tfidf import TfidfProvider
from pathlib import Path
p = TfidfProvider(Path({model!r}))
p.load()
p.predict_batch(["warm up"])
print(time.perf_counter() - t0)
"""


def cold_start_seconds(model: Path, runs: int) -> list[float]:
    code = _COLD.format(model=str(model))
    return [
        float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True).stdout)
        for _ in range(runs)
    ]  # fmt: skip


def per_call_ms(fn: object, calls: int) -> float:
    assert callable(fn)
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.bench_tfidf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--cold-runs", type=int, default=3)
    args = parser.parse_args(argv)

    cold = cold_start_seconds(args.model, args.cold_runs)
    provider = TfidfProvider(args.model)
    provider.load()
    batch = (SAMPLES * 8)[:64]
    for _ in range(50):  # warm caches and the allocator before measuring
        provider.predict_batch(batch)

    single = statistics.median(
        per_call_ms(lambda t=text: provider.predict_batch([t]), 200) for text in SAMPLES
    )
    batch_ms = per_call_ms(lambda: provider.predict_batch(batch), 300)
    norm_us = per_call_ms(lambda: [normalize(t) for t in batch], 300) * 1e3 / len(batch)
    explain_ms = per_call_ms(lambda: provider.explain(SAMPLES[0], 10), 50)

    print(f"model {provider.version}")
    cold_s = statistics.median(cold)
    print(
        f"cold start:        {cold_s:.3f} s median of {len(cold)} (import + load + 1st prediction)"
    )
    print(f"one text:          {single:.3f} ms median (target < 2 ms)")
    print(
        f"batch of 64:       {batch_ms:.2f} ms = {batch_ms / 64:.4f} ms per text (target < 0.3 ms)"
    )
    print(f"normalisation:     {norm_us:.1f} us per text")
    print(f"explain(top 10):   {explain_ms:.2f} ms (after the first call builds feature names)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
