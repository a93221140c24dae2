"""`ml-prod-api score`: CSV, JSONL and text input, bad rows skipped by line number, streaming."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_prod_api.cli.score import BadRow, Row, ScoreWriter, register, score_stream
from tests.support.fakes import FakeProvider

SECRET = "do-not-echo-this-text"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ml-prod-api")
    register(parser.add_subparsers())
    args = parser.parse_args(["score", *argv, "--no-progress"])
    code: int = args.func(args)
    return code


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No developer `.env` may leak in; the stub is deterministic (see providers/stub.py).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODEL_PROVIDER", "stub")
    monkeypatch.delenv("TOXIC_THRESHOLD", raising=False)
    monkeypatch.delenv("MODEL_PATH", raising=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_with_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.csv"
    source.write_text(
        f"id,text\na,you stupid idiot\nb,{SECRET},extra field\nc,\nd,have a nice day\n"
    )
    out = tmp_path / "out.csv"
    assert run([str(source), "--output", str(out)]) == 0
    rows = read_csv(out)
    assert [r["id"] for r in rows] == ["a", "d"]
    assert rows[0]["label"] == "toxic" and rows[1]["label"] == "non-toxic"
    assert float(rows[0]["probability_toxic"]) > float(rows[1]["probability_toxic"])
    err = capsys.readouterr().err
    assert "line 3: skipped" in err and "line 4: skipped" in err
    assert SECRET not in err
    assert "scored 2 texts, skipped 2 bad rows" in err


def test_csv_without_id_column_uses_line_numbers(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("comment\nhello\nyou moron\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out), "--text-column", "comment"]) == 0
    assert [r["id"] for r in read_csv(out)] == ["2", "3"]


def test_csv_missing_text_column_is_an_error_and_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("body\nhello\n")
    assert run([str(source), "-o", str(tmp_path / "out.csv")]) == 2
    assert "no column 'text'" in capsys.readouterr().err
    # No header-only out.csv that looks like an empty result, and no temporary file either.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_a_failed_run_keeps_the_previous_output(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\na,you stupid idiot\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out)]) == 0
    before = out.read_text()
    assert run([str(source), "-o", str(out), "--text-column", "comment"]) == 2
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]
    # Readable like any file the user writes (not the temporary file's 0600).
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_missing_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    assert run([str(source), "-o", str(tmp_path / "absent" / "out.csv")]) == 2
    assert "output folder not found" in capsys.readouterr().err


def test_jsonl_to_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": 7, "text": "what a loser"}\n'
        f'{{"id": 8, "text": "{SECRET}"\n'  # truncated JSON
        '{"id": 9}\n'
        "\n"
        '{"text": "lovely"}\n'
    )
    out = tmp_path / "out.jsonl"
    assert run([str(source), "--output", str(out), "--batch-size", "1"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    # Ids keep their JSON type: 7 stays an integer; without an id, the line number.
    assert [r["id"] for r in records] == [7, 5]
    assert set(records[0]) == {"id", "probability_toxic", "label"}
    err = capsys.readouterr().err
    assert "line 2: skipped: invalid JSON" in err and "line 3: skipped" in err
    assert SECRET not in err


def test_jsonl_ids_keep_their_json_types(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    ids = [7, "7", 7.5, None, True, {"shard": 2, "row": 9}]
    source.write_text("".join(json.dumps({"id": i, "text": "hello"}) + "\n" for i in ids))
    out = tmp_path / "out.jsonl"
    assert run([str(source), "-o", str(out)]) == 0
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ids
    # CSV has no types: the same ids as text.
    csv_out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(csv_out)]) == 0
    assert [r["id"] for r in read_csv(csv_out)] == [
        "7",
        "7",
        "7.5",
        "null",
        "true",
        '{"shard": 2, "row": 9}',
    ]


def test_plain_text_with_invalid_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"hello there\n\xff\xfe broken bytes\n\nyou are ugly\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "--output", str(out)]) == 0
    assert [r["id"] for r in read_csv(out)] == ["1", "4"]
    err = capsys.readouterr().err
    assert "line 2: skipped: not valid UTF-8" in err and "line 3: skipped: empty line" in err


def test_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([str(tmp_path / "absent.csv"), "-o", str(tmp_path / "out.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err


def test_threshold_setting_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOXIC_THRESHOLD", "0.99")
    source = tmp_path / "in.txt"
    source.write_text("you stupid idiot\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out)]) == 0
    assert read_csv(out)[0]["label"] == "non-toxic"


def test_tfidf_provider_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "tfidf")
    source = tmp_path / "in.txt"
    source.write_text("you are a f*cking idiot\nthank you, have a lovely day\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out)]) == 0
    assert [r["label"] for r in read_csv(out)] == ["toxic", "non-toxic"]


def test_a_models_further_labels_get_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shipped tfidf model has an identity_attack head: CSV gets its column, JSONL the
    # `labels` object the HTTP API answers.
    monkeypatch.setenv("MODEL_PROVIDER", "tfidf")
    source = tmp_path / "in.txt"
    source.write_text("immigrants are vermin and should be driven out\nyou are a f*cking idiot\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out)]) == 0
    group, person = read_csv(out)
    assert list(group) == ["id", "probability_toxic", "label", "probability_identity_attack"]
    assert float(group["probability_identity_attack"]) > float(
        person["probability_identity_attack"]
    )
    out_jsonl = tmp_path / "out.jsonl"
    assert run([str(source), "-o", str(out_jsonl)]) == 0
    records = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    for record in records:
        assert set(record["labels"]) == {"toxic", "identity_attack"}
        assert record["labels"]["toxic"] == record["probability_toxic"]


def test_empty_input_still_gets_a_header(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("id,text\n")
    out = tmp_path / "out.csv"
    assert run([str(source), "-o", str(out)]) == 0
    assert out.read_text() == "id,probability_toxic,label\n"


def test_streams_one_batch_at_a_time() -> None:
    out = io.StringIO()
    provider = FakeProvider()
    pulled = 0
    written_when_pulled: list[int] = []

    def rows() -> Iterator[Row | BadRow]:
        nonlocal pulled
        for i in range(1, 26):
            # Rows written so far, seen each time one more row is read: output must keep pace.
            written_when_pulled.append(out.getvalue().count("\n") - 1)
            pulled += 1
            yield Row(i, str(i), "text")

    summary = score_stream(rows(), provider, ScoreWriter(out, False, "id"), 0.5, 10, io.StringIO())
    assert summary.scored == 25 and pulled == 25
    assert [len(batch) for batch in provider.batches] == [10, 10, 5]
    # Before row 21 is read, rows 1-20 are already written: at most one batch is held.
    assert written_when_pulled[20] == 20
