"""Score the training corpus with a shipped model, so another model can be distilled from it.

    python -m training.teacher_scores [--provider onnx] [--model models/onnx] --output FILE.npz

Every distinct text of `load_corpus`'s training rows (as the trainers see them: templates, swaps,
respelt copies, punctuation and style changes included) and of the validation splits is scored
by the served provider, so the scores are exactly what that provider answers. The file maps the
SHA-1 of each text to its probability and records the teacher's model version; `train_tfidf
--teacher FILE` and `train_transformer --teacher FILE` read it. `--source NAME` (repeatable) scores
only the rows that come from those sources, for a teacher that is to teach only them; the corpus
options of `train_transformer` (`--narrow-negatives-out`, `--insult-templates`, `--with-source`)
give the rows of a run trained with them. The run saves its progress every few thousand texts and
resumes from the file, since scoring about 110,000 texts with the onnx model takes ten minutes or
more on two cores.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from training.corpus import add_recipe_arguments, known_source, load_corpus, recipe_options
from training.data_sources import DEFAULT_DATA_DIR, run_script

REPO_ROOT = Path(__file__).resolve().parents[1]
CHUNK = 4096  # texts scored between two saves

log = logging.getLogger("teacher_scores")


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


class TeacherScores:
    """SHA-1 of a text -> the teacher's probability, with the teacher's model version."""

    def __init__(self, scores: dict[bytes, float], model_version: str) -> None:
        self.scores = scores
        self.model_version = model_version

    @classmethod
    def read(cls, path: Path) -> TeacherScores:
        with np.load(path, allow_pickle=False) as data:
            keys = data["keys"]
            probs = data["probs"]
            version = str(data["model_version"])
        return cls({k.tobytes(): float(p) for k, p in zip(keys, probs, strict=True)}, version)

    def write(self, path: Path) -> None:
        # One row of 20 bytes per digest: numpy's fixed-width bytes type would drop a digest's
        # trailing zero bytes.
        keys = np.frombuffer(b"".join(self.scores), dtype=np.uint8).reshape(-1, 20)
        probs = np.asarray(list(self.scores.values()), dtype=np.float64)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, keys=keys, probs=probs, model_version=np.str_(self.model_version))
        tmp.replace(path)

    def lookup(self, texts: Iterable[str]) -> np.ndarray:
        """The teacher's probability of each text; NaN where it has none."""
        return np.asarray([self.scores.get(text_key(t), np.nan) for t in texts], dtype=np.float64)


def add_sources_argument(parser: argparse.ArgumentParser, flag: str, dest: str, help: str) -> None:
    """A repeatable source name (`args.<dest>`: the names given, or [] for every source)."""
    parser.add_argument(
        flag, dest=dest, action="append", type=known_source, default=[], metavar="SOURCE", help=help
    )


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    """The distillation arguments both trainers take."""
    parser.add_argument(
        "--teacher",
        type=Path,
        help="distil: a `training.teacher_scores` file; each training row's target becomes "
        "(1 - share) * its label + share * the teacher's probability",
    )
    parser.add_argument(
        "--teacher-share",
        type=float,
        default=1.0,
        help="the teacher's part of the target (0 = labels only, 1 = the teacher only)",
    )
    add_sources_argument(
        parser,
        "--teacher-source",
        "teacher_sources",
        "distil only the rows that come from this source (repeatable; default: every row)",
    )


def distillation_targets(
    args: argparse.Namespace, texts: Sequence[str], labels: np.ndarray, origins: Sequence[str]
) -> tuple[np.ndarray, dict[str, object]]:
    """Each training row's target in [0, 1] under `args.teacher`, and what to record of it.

    Rows from the `args.teacher_sources` (by origin, so a swap or respelt copy of a tweet is a
    tweet; every row when none is named) get (1 - share) * label + share * the teacher's
    probability; the others keep their label. A teacher that lacks one of those texts is refused:
    a silent fallback to the label would be a different recipe.
    """
    if not 0.0 <= args.teacher_share <= 1.0:
        raise SystemExit(f"--teacher-share must be between 0 and 1, not {args.teacher_share}")
    teacher = TeacherScores.read(args.teacher)
    taught = np.asarray([not args.teacher_sources or o in args.teacher_sources for o in origins])
    probs = teacher.lookup([t for t, keep in zip(texts, taught, strict=True) if keep])
    missing = int(np.isnan(probs).sum())
    if missing:
        raise SystemExit(f"{args.teacher} lacks {missing} training texts: score them again")
    target = np.asarray(labels, dtype=np.float64).copy()
    target[taught] = (1.0 - args.teacher_share) * target[taught] + args.teacher_share * probs
    record: dict[str, object] = {
        "model_version": teacher.model_version,
        "share": args.teacher_share,
        "sources": sorted(args.teacher_sources) or "all",
        "rows": int(taught.sum()),
        "target": "(1 - share) * label + share * the teacher's probability",
    }
    return target, record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.teacher_scores", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--provider", default="onnx")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "onnx")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--seed", type=int, default=20190101, help="the trainers' corpus seed")
    parser.add_argument("--output", type=Path, required=True)
    add_recipe_arguments(parser)
    add_sources_argument(
        parser,
        "--source",
        "sources",
        "score only the rows from this source (repeatable; default: every row)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> TeacherScores:
    from training.evaluate import score
    from training.evaluate_sources import make_scorer

    provider, _ = make_scorer(args.provider, args.model)
    scores = TeacherScores({}, provider.version)
    if args.output.exists():
        scores = TeacherScores.read(args.output)
        if scores.model_version != provider.version:
            raise SystemExit(
                f"{args.output} holds scores of {scores.model_version}, not {provider.version}"
            )
        log.info("resuming: %d texts already scored", len(scores.scores))
    corpus = load_corpus(args.data_dir, seed=args.seed, **recipe_options(args))
    wanted = set(args.sources)
    rows = [
        text
        for split in (corpus.train, corpus.val)
        for text, origin in zip(split.texts, split.origins, strict=True)
        if not wanted or origin in wanted
    ]
    todo: dict[bytes, str] = {}
    for text in rows:
        key = text_key(text)
        if key not in scores.scores:
            todo.setdefault(key, text)
    log.info("%d texts to score with %s", len(todo), provider.version)
    items = list(todo.items())
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        probs = score(provider, [t for _, t in chunk])
        scores.scores.update({k: float(p) for (k, _), p in zip(chunk, probs, strict=True)})
        scores.write(args.output)
        log.info("%d / %d scored", min(start + CHUNK, len(items)), len(items))
    return scores


def main(argv: list[str] | None = None) -> int:
    def report(args: argparse.Namespace, scores: TeacherScores) -> None:
        print(f"{len(scores.scores)} texts scored by {scores.model_version}: {args.output}")

    return run_script(parse_args, run, report, argv)


if __name__ == "__main__":
    sys.exit(main())
