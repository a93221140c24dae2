"""In-process throughput of the shipped int8 ONNX model, the compute limit of `onnx`.

    python -m training.bench_onnx [--model models/onnx] [--texts 400] [--threads 2]

Cycles through a few hundred distinct real sentences (tweeteval_offensive/val: mixed lengths,
never one repeated body) at batch 1, 8, 32 and 64, in their file order ("unsorted": what a
batch of concurrent requests looks like) and sorted by token count ("sorted": what a
length-bucketing queue can do). Each measured pass includes tokenisation, padding, the
onnxruntime run and the softmax (sigmoid for a multi-label head), exactly what serving pays per
item. A script, not a test: timings depend on the machine and on whatever else runs on its cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.data_sources import DEFAULT_DATA_DIR, read_tweeteval
from training.evaluate_transformer import OnnxScorer, toxic_proba

REPO_ROOT = Path(__file__).resolve().parents[1]


def distinct_sentences(data_dir: Path, count: int) -> list[str]:
    val = read_tweeteval(data_dir / "tweeteval_offensive", "val", "tweeteval_offensive/val")
    seen: dict[str, None] = {}
    for text in val.texts:
        if text.strip():
            seen.setdefault(text, None)
    texts = list(seen)
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} distinct sentences in the validation split")
    return texts[:count]


def one_pass(scorer: OnnxScorer, batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        ids = scorer.encode(batch)
        toxic_proba(scorer.logits_for_ids(ids), scorer.labels)
    return time.perf_counter() - started


def measure(
    scorer: OnnxScorer, texts: list[str], batch_size: int, sort: bool, repeats: int
) -> dict[str, Any]:
    order = list(range(len(texts)))
    if sort:
        lengths = [len(ids) for ids in scorer.encode(texts)]
        order.sort(key=lambda i: lengths[i])
    ordered = [texts[i] for i in order]
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    one_pass(scorer, batches[:2])  # warm-up
    seconds = min(one_pass(scorer, batches) for _ in range(repeats))
    real = padded = 0
    for batch in batches:
        lengths = [len(ids) for ids in scorer.encode(batch)]
        real += sum(lengths)
        padded += max(lengths) * len(lengths)
    return {
        "batch_size": batch_size,
        "order": "sorted" if sort else "unsorted",
        "items": len(texts),
        "seconds": round(seconds, 3),
        "items_per_s": round(len(texts) / seconds, 1),
        "ms_per_batch": round(1000 * seconds / len(batches), 2),
        "padding_overhead": round(padded / real - 1, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.bench_onnx", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "onnx")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--texts", type=int, default=400, help="distinct sentences to cycle")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="passes per setting; best kept")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    scorer = OnnxScorer(args.model, threads=args.threads)
    texts = distinct_sentences(args.data_dir, args.texts)
    lengths = np.asarray([len(ids) for ids in scorer.encode(texts)])
    print(
        f"model {scorer.version}, {len(texts)} distinct val sentences, tokens per text: "
        f"median {np.median(lengths):.0f}, p90 {np.percentile(lengths, 90):.0f}, "
        f"max {lengths.max()}; onnxruntime intra-op threads {args.threads}"
    )
    rows = []
    print("| batch | order    | items/s | ms/batch | padding overhead |")
    print("|------:|----------|--------:|---------:|-----------------:|")
    for batch_size in args.batch_sizes:
        for sort in (False, True):
            if batch_size == 1 and sort:
                continue  # nothing to pad at batch 1; order changes nothing
            row = measure(scorer, texts, batch_size, sort, args.repeats)
            rows.append(row)
            print(
                f"| {batch_size:>5} | {row['order']:<8} | {row['items_per_s']:>7.1f} | "
                f"{row['ms_per_batch']:>8.2f} | {100 * row['padding_overhead']:>15.0f}% |"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
