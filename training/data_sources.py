"""Readers for the labeled datasets in `../shared/data` (see its DATA.md), each mapped to our binary
label: 1 = toxic, 0 = not toxic.

Every reader returns a `LabeledTexts` and records which files it read (with their sha256), so the
training metadata can say exactly what the model was trained on.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

# The service's own hashing, so a training record and the artifact check agree by construction.
from ml_prod_api.providers.artifact_files import sha256_file as sha256_file  # re-exported

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
T = TypeVar("T")


class DataFileMissing(FileNotFoundError):
    """A dataset file is not where the arguments say; the message names the path."""


def run_script(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], T],
    report: Callable[[argparse.Namespace, T], None],
    argv: list[str] | None,
) -> int:
    """A training script's `main`: log at INFO, run, then `report` the result on stdout; a
    missing data file is one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        result = run(args)
    except DataFileMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    report(args, result)
    return 0


@dataclass
class LabeledTexts:
    name: str
    texts: list[str]
    labels: list[int]
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    extra: dict[str, list[str]] = field(default_factory=dict)  # per-row side columns

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def positives(self) -> int:
        return sum(self.labels)


def require(path: Path) -> Path:
    if not path.is_file():
        raise DataFileMissing(f"dataset file not found: {path}")
    return path


def _display(path: Path) -> str:
    # Record paths relative to the repo (`../shared/data/...`) so metadata does not leak the
    # machine's layout and stays identical across clones.
    try:
        return "../" + path.resolve().relative_to(REPO_ROOT.parent).as_posix()
    except ValueError:
        return str(path)


def _read_lines(path: Path) -> list[str]:
    # newline="" keeps blank tweets as lines of their own (DATA.md: a few are blank and must count).
    with require(path).open(encoding="utf-8", newline="") as handle:
        content = handle.read()
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_tweeteval(folder: Path, split: str, name: str) -> LabeledTexts:
    """TweetEval: `{split}_text.txt` and `{split}_labels.txt`, paired by line number."""
    text_path, label_path = folder / f"{split}_text.txt", folder / f"{split}_labels.txt"
    texts = _read_lines(text_path)
    labels = [int(line) for line in _read_lines(label_path)]
    if len(texts) != len(labels):
        raise ValueError(
            f"{text_path}: {len(texts)} texts but {len(labels)} labels in {label_path}"
        )
    return LabeledTexts(
        name=name,
        texts=texts,
        labels=labels,
        files={
            _display(text_path): sha256_file(text_path),
            _display(label_path): sha256_file(label_path),
        },
    )


def read_davidson(path: Path) -> LabeledTexts:
    """Davidson et al.: `class` 0 (hate speech) or 1 (offensive) is toxic, 2 (neither) is not."""
    texts: list[str] = []
    labels: list[int] = []
    classes: list[str] = []
    with require(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["tweet"])
            labels.append(1 if row["class"] in ("0", "1") else 0)
            classes.append(row["class"])
    return LabeledTexts(
        "davidson",
        texts,
        labels,
        files={_display(path): sha256_file(path)},
        extra={"class": classes},
    )


def read_bias_madlibs(path: Path) -> LabeledTexts:
    """bias_madlibs: `BAD` is toxic. Evaluation only (DATA.md: never for training)."""
    texts: list[str] = []
    labels: list[int] = []
    templates: list[str] = []
    with require(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["Text"])
            labels.append(1 if row["Label"] == "BAD" else 0)
            templates.append(row["Template"])
    return LabeledTexts(
        "bias_madlibs",
        texts,
        labels,
        files={_display(path): sha256_file(path)},
        extra={"template": templates},
    )
