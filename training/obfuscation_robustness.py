"""Obfuscation robustness of a `tfidf` artifact.

    python -m training.obfuscation_robustness [--model models/tfidf]

Makes obfuscated copies of the toxic tweeteval_offensive validation sentences and compares the
ROC-AUC of (clean toxic + clean non-toxic) with (obfuscated toxic + clean non-toxic). The words
obfuscated in each sentence are the ones the model leans on most (up to two words with the largest
positive unigram weight), as an evader would pick the words a filter keys on. Methods: leetspeak,
asterisk masks, dots inside words, zero-width characters, homoglyphs, spaced letters, and a mix.
Target: every AUC within 0.02 of the clean one. Also prints the normalisation cost per text.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from ml_prod_api.providers.tfidf import TfidfProvider, normalize
from training.data_sources import DEFAULT_DATA_DIR, read_tweeteval
from training.perturb import METHODS

REPO_ROOT = Path(__file__).resolve().parents[1]

_WORD = re.compile(r"[A-Za-z]{3,}")


def target_words(text: str, weights: dict[str, float]) -> list[str]:
    words = {w for w in _WORD.findall(text)}
    scored = sorted(
        (w for w in words if weights.get(normalize(w), 0.0) > 0),
        key=lambda w: -weights[normalize(w)],
    )
    return scored[:2]


def obfuscate(text: str, words: list[str], method: str, rng: random.Random) -> str:
    for word in words:
        how = METHODS[rng.choice(list(METHODS))] if method == "mixed" else METHODS[method]
        # Each occurrence gets its own respelling; the lambda runs within this iteration.
        text = re.sub(rf"\b{re.escape(word)}\b", lambda _m: how(word, rng), text)  # noqa: B023
    return text


def normalisation_cost_us(texts: list[str], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            normalize(text)
        best = min(best, time.perf_counter() - start)
    return best / len(texts) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.obfuscation_robustness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "tfidf")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--show", type=int, default=0, help="print N obfuscated examples")
    args = parser.parse_args(argv)

    provider = TfidfProvider(args.model)
    provider.load()
    model = provider.model
    unigram = {
        term: float(model.coef_word[i])
        for term, i in model.word.vocabulary_.items()
        if " " not in term
    }
    val = read_tweeteval(args.data_dir / "tweeteval_offensive", "val", "val")
    y = np.asarray(val.labels)

    def auc(texts: list[str]) -> float:
        proba = [s.probability_toxic for s in provider.predict_batch(texts)]
        return float(roc_auc_score(y, proba))

    clean = auc(val.texts)
    print(f"model {provider.version}; validation: {len(y)} texts, {int(y.sum())} toxic")
    print(f"clean ROC-AUC {clean:.4f}")
    worst = 0.0
    for method in [*METHODS, "mixed"]:
        rng = random.Random(args.seed)
        texts = list(val.texts)
        changed = 0
        for i, label in enumerate(val.labels):
            if label == 1:
                words = target_words(texts[i], unigram)
                if words:
                    texts[i] = obfuscate(texts[i], words, method, rng)
                    changed += 1
        score = auc(texts)
        worst = max(worst, clean - score)
        print(
            f"{method:<11} ROC-AUC {score:.4f}  delta {score - clean:+.4f}"
            f"  ({changed} texts changed)"
        )
        for i in [i for i, label in enumerate(val.labels) if label == 1][: args.show]:
            print(f"    {texts[i][:100]!r}")
    print(f"worst AUC drop {worst:.4f} (target <= 0.02): {'PASS' if worst <= 0.02 else 'FAIL'}")

    obfuscated = [
        obfuscate(t, target_words(t, unigram), "mixed", random.Random(1)) for t in val.texts
    ]
    plain = normalisation_cost_us(val.texts)
    tricky = normalisation_cost_us(obfuscated)
    print(
        f"normalisation cost: {plain:.1f} us/text on validation tweets, "
        f"{tricky:.1f} us/text obfuscated"
    )
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    raise SystemExit(main())
