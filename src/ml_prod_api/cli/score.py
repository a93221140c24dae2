"""Offline batch scoring: `ml-prod-api score INPUT --output OUTPUT`.

Reads CSV, JSONL or plain text (one text per line) as a stream, scores it in batches with the
configured provider and writes `id,probability_toxic,label` CSV (or JSONL when OUTPUT ends in
`.jsonl`), plus a `probability_<label>` column (JSONL: a `labels` object) for each further label
the model scores, such as the `identity_attack` of the shipped models. Memory stays flat whatever
the file size: one batch is held at a time. A row that cannot be scored (bad JSON, a missing or
empty text column) is reported on stderr by line number, never with its text, and skipped.
OUTPUT appears only when the run succeeds: the scores are written to a temporary file beside it,
renamed into place at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_prod_api.providers.base import Provider

FORMATS = ("csv", "jsonl", "txt")
_SUFFIX_FORMAT = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # 1-based line number in the input (the CSV header is line 1)
    # The id as the input has it: a CSV cell is a string, a JSONL id keeps its JSON type (an
    # integer id stays an integer in JSONL output); without an id column, the line number.
    id: Any
    text: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score a CSV, JSONL or text file offline with the configured provider",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("input", type=Path, help="input file (.csv, .jsonl or text, one per line)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output .csv or .jsonl")
    parser.add_argument("--text-column", default="text", help="CSV column / JSON key of the text")
    parser.add_argument("--id-column", default="id", help="CSV column / JSON key of the id")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per model call")
    parser.add_argument(
        "--format", choices=FORMATS, help="input format (default: from the file extension)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_score)


def detect_format(path: Path, explicit: str | None) -> str:
    return explicit or _SUFFIX_FORMAT.get(path.suffix.lower(), "txt")


def read_rows(
    handle: IO[str], fmt: str, text_column: str, id_column: str
) -> Iterator[Row | BadRow]:
    """Yield rows one at a time; a row that cannot be read becomes a `BadRow`.

    Open the file with `errors="surrogateescape"`: bytes that are not UTF-8 then reach this point
    as lone surrogates, and only their row is skipped instead of the whole run failing.
    """
    if fmt == "csv":
        rows = _read_csv(handle, text_column, id_column)
    elif fmt == "jsonl":
        rows = _read_jsonl(handle, text_column, id_column)
    else:
        rows = _read_text(handle)
    for row in rows:
        if isinstance(row, Row) and not (_is_utf8(row.text) and _is_utf8(_id_text(row.id))):
            yield BadRow(row.line, "not valid UTF-8")
        else:
            yield row


def _id_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_text(handle: IO[str]) -> Iterator[Row | BadRow]:
    for number, line in enumerate(handle, 1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield Row(number, number, text)
        else:
            yield BadRow(number, "empty line")


def _read_csv(handle: IO[str], text_column: str, id_column: str) -> Iterator[Row | BadRow]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        return
    if text_column not in header:
        raise ValueError(f"CSV header has no column {text_column!r} (columns: {', '.join(header)})")
    text_at = header.index(text_column)
    id_at = header.index(id_column) if id_column in header else None
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(reader.line_num, f"unparseable CSV ({exc})")
            continue
        # line_num counts physical lines, so a quoted multi-line text reports where it ends.
        line = reader.line_num
        if not record:
            continue
        if len(record) != len(header):
            yield BadRow(line, f"{len(record)} fields, header has {len(header)}")
            continue
        text = record[text_at]
        if not text.strip():
            yield BadRow(line, f"empty {text_column!r}")
            continue
        row_id = record[id_at] if id_at is not None else line
        yield Row(line, row_id, text)


def _read_jsonl(handle: IO[str], text_column: str, id_column: str) -> Iterator[Row | BadRow]:
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BadRow(number, f"invalid JSON at column {exc.colno}")
            continue
        if not isinstance(record, dict):
            yield BadRow(number, "not a JSON object")
            continue
        text = record.get(text_column)
        if not isinstance(text, str) or not text.strip():
            yield BadRow(number, f"missing, empty or non-string {text_column!r}")
            continue
        yield Row(number, record.get(id_column, number), text)


class ScoreWriter:
    """Writes `id, probability_toxic, label` rows as CSV or JSONL (by the output's extension).

    A model with further labels (a head's `identity_attack`) gets a `probability_<label>` CSV
    column for each label of the first row's score, and JSONL rows carry the score's `labels`
    object as the HTTP API answers it. The CSV header is therefore written with the first row
    (or by `finish()` when there is none); a later row lacking one of the labels leaves its cell
    empty.
    """

    def __init__(self, handle: IO[str], jsonl: bool, id_column: str) -> None:
        self._handle = handle
        self._jsonl = jsonl
        self._id_column = id_column
        self._csv = None if jsonl else csv.writer(handle, lineterminator="\n")
        self._labels: tuple[str, ...] | None = None

    def _header(self, labels: Mapping[str, float]) -> None:
        self._labels = tuple(name for name in labels if name != "toxic")
        if self._csv is not None:
            extra = [f"probability_{name}" for name in self._labels]
            self._csv.writerow([self._id_column, "probability_toxic", "label", *extra])

    def write(
        self,
        row_id: Any,
        probability: float,
        label: str,
        labels: Mapping[str, float] | None = None,
    ) -> None:
        scores = labels or {}
        if self._labels is None:
            self._header(scores)
        if self._csv is not None:
            extra = [f"{scores[name]:.6f}" if name in scores else "" for name in self._labels or ()]
            self._csv.writerow([_id_text(row_id), f"{probability:.6f}", label, *extra])
        else:
            record: dict[str, Any] = {
                self._id_column: row_id,
                "probability_toxic": round(probability, 6),
                "label": label,
            }
            if scores:
                record["labels"] = {name: round(p, 6) for name, p in scores.items()}
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def finish(self) -> None:
        """Write the CSV header if no row was written, so an empty result still has one."""
        if self._labels is None:
            self._header({})


@dataclass(slots=True)
class ScoreSummary:
    scored: int = 0
    skipped: int = 0


def score_stream(
    rows: Iterator[Row | BadRow],
    provider: Provider,
    writer: ScoreWriter,
    threshold: float,
    batch_size: int,
    errors: IO[str],
    progress: Any = None,
) -> ScoreSummary:
    """Score rows in batches of `batch_size`, writing each batch before reading the next."""
    summary = ScoreSummary()
    batch: list[Row] = []

    def flush() -> None:
        scores = provider.predict_batch([row.text for row in batch])
        for row, score in zip(batch, scores, strict=True):
            p = score.probability_toxic
            writer.write(row.id, p, "toxic" if p >= threshold else "non-toxic", score.labels)
        summary.scored += len(batch)
        if progress is not None:
            progress.update(len(batch))
        batch.clear()

    for item in rows:
        if isinstance(item, BadRow):
            summary.skipped += 1
            print(f"line {item.line}: skipped: {item.reason}", file=errors)
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return summary


@contextlib.contextmanager
def _replaced_on_success(path: Path) -> Iterator[IO[str]]:
    """A text file that becomes `path` only if the block finishes without an exception.

    Written beside `path` (so the rename stays on one filesystem and is atomic), then renamed
    over it; on failure the temporary file is removed and an earlier `path` is left as it was.
    Hand-written: the standard library has no atomic-replace writer, and this is the whole of it.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; the output gets the mode a plain open() would give it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def run_score(args: argparse.Namespace) -> int:
    from ml_prod_api.providers import create_provider
    from ml_prod_api.settings import load_settings

    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"error: input file not found: {args.input}", file=sys.stderr)
        return 2
    if not args.output.parent.is_dir():
        print(f"error: output folder not found: {args.output.parent}", file=sys.stderr)
        return 2
    settings = load_settings()
    provider = create_provider(settings)
    provider.load()
    threshold = settings.toxic_threshold
    if threshold is None:
        threshold = provider.default_threshold if provider.default_threshold is not None else 0.5

    fmt = detect_format(args.input, args.format)
    jsonl_out = args.output.suffix.lower() in (".jsonl", ".ndjson")
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        # Counts texts scored; the total is unknown without reading the file twice.
        progress = tqdm(desc=f"scoring {args.input.name}", unit="text", file=sys.stderr)
    try:
        with (
            args.input.open(encoding="utf-8", newline="", errors="surrogateescape") as source,
            _replaced_on_success(args.output) as sink,
        ):
            rows = read_rows(source, fmt, args.text_column, args.id_column)
            writer = ScoreWriter(sink, jsonl_out, args.id_column)
            summary = score_stream(
                rows, provider, writer, threshold, args.batch_size, sys.stderr, progress
            )
            writer.finish()
    except ValueError as exc:  # a CSV header without the text column
        print(f"error: {args.input}: {exc}", file=sys.stderr)
        return 2
    finally:
        if progress is not None:
            progress.close()
    print(
        f"scored {summary.scored} texts, skipped {summary.skipped} bad rows -> {args.output} "
        f"(model {provider.name} {provider.version}, threshold {threshold})",
        file=sys.stderr,
    )
    return 0
