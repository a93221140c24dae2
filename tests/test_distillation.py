"""Distilling a shipped model into a trainer (`training.teacher_scores`, `--teacher` of
`train_tfidf` and `train_transformer`) and the corpus rule for narrow negatives, on the committed
fixtures."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from ml_prod_api.providers.tfidf import TfidfProvider
from training import teacher_scores, train_tfidf
from training.augment import has_abuse
from training.corpus import (
    NARROW_NEGATIVES,
    UNKNOWN,
    load_corpus,
    toggle_leading_mention,
    without_leading_mentions,
)
from training.teacher_scores import TeacherScores, distillation_targets, text_key

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"
FAST = ["--grid-c", "2", "--char-min-df", "1", "--word-min-df", "1"]
PROBE = "what a lovely sunny morning in the garden"


def fixtures_with_narrow_negatives(tmp_path: Path) -> Path:
    """The training fixtures plus EDOS 'not sexist' rows, two of them abusive."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    path = data / "edos" / "edos.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    fields = list(rows[0])
    extra = [
        {"text": "you are a total moron for posting this", "label": "0", "split": "train"},
        {"text": "what a stupid fucking referee", "label": "0", "split": "val"},
        {"text": "the referee had a poor game today", "label": "0", "split": "train"},
    ]
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows + extra)
    return data


def test_narrow_negatives_with_abuse_leave_training_only(tmp_path: Path) -> None:
    """An EDOS 'not sexist' post that calls someone a moron says nothing about abuse: it is not
    trained on as non-toxic, but validation keeps every row as the source labelled it."""
    data = fixtures_with_narrow_negatives(tmp_path)
    kept = load_corpus(data)
    dropped = load_corpus(data, narrow_negatives_out=True)
    assert "you are a total moron for posting this" in {t.lower() for t in kept.train.texts}
    narrow_abusive = [
        t
        for t, label, source in zip(
            dropped.train.texts, dropped.train.labels, dropped.train.sources, strict=True
        )
        if source in NARROW_NEGATIVES and label == 0 and has_abuse(t)
    ]
    assert narrow_abusive == []
    assert any("poor game" in t.lower() for t in dropped.train.texts), "benign rows stay"
    assert "what a stupid fucking referee" in dropped.val.texts, "validation stays as labelled"


def test_leading_mentions_are_dropped_or_added_and_nothing_else_changes() -> None:
    assert without_leading_mentions("@user @USER: you are a moron") == "you are a moron"
    assert without_leading_mentions("thanks @user for this") == "thanks @user for this"
    assert without_leading_mentions("@user") == "@user", "a bare mention is kept whole"
    assert toggle_leading_mention("@user @user you are a moron", 1.0) == "you are a moron"
    assert toggle_leading_mention("you are a moron", 1.0) == "@user you are a moron"
    assert toggle_leading_mention("@user you are a moron", 0.0) == "@user you are a moron"


def test_mention_share_toggles_training_rows_only(tmp_path: Path) -> None:
    """About half the training rows change whether they start with a mention, from both labels;
    validation and test keep the text as the source wrote it."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    tweets = data / "tweeteval_offensive"
    for split in ("train", "val", "test"):
        path = tweets / f"{split}_text.txt"
        lines = path.read_text().splitlines()
        path.write_text(
            "".join(f"@user {line}\n" for line in lines[::2])
            + "".join(f"{line}\n" for line in lines[1::2])
        )
        labels = tweets / f"{split}_labels.txt"
        values = labels.read_text().splitlines()
        labels.write_text("".join(f"{v}\n" for v in values[::2] + values[1::2]))
    plain = load_corpus(data, augment=False, include_test=True)
    toggled = load_corpus(data, mention_share=0.5, include_test=True)
    assert toggled.val.texts == plain.val.texts and toggled.test.texts == plain.test.texts
    n = len(plain.train)
    before = [t.lower().startswith("@user") for t in plain.train.texts]
    after = [t.lower().startswith("@user") for t in toggled.train.texts[:n]]
    changed = [i for i in range(n) if before[i] != after[i]]
    assert 0.3 * n < len(changed) < 0.7 * n
    assert {plain.train.labels[i] for i in changed} == {0, 1}
    assert any(before[i] for i in changed) and any(not before[i] for i in changed)


def write_hateval(folder: Path, rows: dict[str, list[tuple[str, int]]]) -> None:
    """A TweetEval-format `tweeteval_hate` folder (texts of this project's writing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, pairs in rows.items():
        (folder / f"{split}_text.txt").write_text("".join(f"{t}\n" for t, _ in pairs))
        (folder / f"{split}_labels.txt").write_text("".join(f"{y}\n" for _, y in pairs))


def test_hateval_is_optional_and_its_offensive_not_hate_tweets_are_left_out(
    tmp_path: Path,
) -> None:
    """HatEval's `0` is "not hate against women or immigrants", which holds offensive tweets this
    service calls toxic: a `0` with profanity, a slur or an insult is left out of every split; a
    plain `0` is non-toxic (and no identity attack) and a `1` toxic (whether it attacks an
    identity, TweetEval does not say). Without `--with-source` the source is not read."""
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    write_hateval(
        data / "tweeteval_hate",
        {
            split: [
                (f"the {split} ferry brought migrants to the harbour today", 0),
                (f"shut up you stupid fool, {split} is over", 0),
                (f"send every one of them back where they came from {split}", 1),
            ]
            for split in ("train", "val", "test")
        },
    )
    assert "tweeteval_hate" not in load_corpus(data, include_test=True).train.sources
    corpus = load_corpus(
        data, include_test=True, augment=False, optional_sources=["tweeteval_hate"]
    )
    for split in ("train", "val", "test"):
        part = getattr(corpus, split)
        rows = {
            t: (label, identity)
            for t, label, identity, source in zip(
                part.texts, part.labels, part.identity, part.sources, strict=True
            )
            if source == "tweeteval_hate"
        }
        assert rows == {
            f"the {split} ferry brought migrants to the harbour today": (0, 0),
            f"send every one of them back where they came from {split}": (1, UNKNOWN),
        }
    assert any("/tweeteval_hate/" in name for name in corpus.files), "hashes recorded"
    with pytest.raises(ValueError, match="not optional sources: davidson"):
        load_corpus(data, optional_sources=["davidson"])


def test_soft_rows_with_hard_targets_fit_the_same_model() -> None:
    """A 0/1 target through `soft_rows` is the plain fit: each row once, with its own weight."""
    rng = np.random.default_rng(0)
    x = sp.random(200, 30, density=0.2, random_state=1, format="csr")
    y = (rng.random(200) < 0.4).astype(np.int64)
    weight = rng.uniform(0.5, 2.0, 200)
    fit = train_tfidf.FitConfig(C=2.0)
    plain = train_tfidf.fit_nblr(x, y, weight, fit, seed=3)
    xs, ys, ws, _ = train_tfidf.soft_rows(x, y.astype(np.float64), weight)
    soft = train_tfidf.fit_nblr(xs, ys, ws, fit, seed=3)
    # liblinear visits the rows in another order, so the optimum agrees to its tolerance only.
    assert np.allclose(plain[0], soft[0], atol=1e-3) and abs(plain[1] - soft[1]) < 1e-3


def write_teacher(tmp_path: Path, toxic_word: str) -> Path:
    """A teacher that calls every text with `toxic_word` toxic and every other text benign."""
    corpus = load_corpus(FIXTURES)
    texts = corpus.train.texts + corpus.val.texts
    scores = {text_key(t): 0.95 if toxic_word in t.lower() else 0.05 for t in texts}
    path = tmp_path / "teacher.npz"
    TeacherScores(scores, "teacher-rule-1").write(path)
    return path


def probe(folder: Path) -> float:
    provider = TfidfProvider(folder)
    provider.load()
    return provider.predict_batch([PROBE])[0].probability_toxic


@pytest.mark.slow
def test_the_student_follows_its_teacher(tmp_path: Path) -> None:
    """A teacher that calls 'morning' toxic makes a student that scores a benign morning
    sentence higher than the same trainer on labels alone; the metadata names the teacher."""
    teacher = write_teacher(tmp_path, "morning")
    base = ["--data-dir", str(FIXTURES), *FAST]
    assert train_tfidf.main([*base, "--output", str(tmp_path / "labels")]) == 0
    assert (
        train_tfidf.main([*base, "--output", str(tmp_path / "taught"), "--teacher", str(teacher)])
        == 0
    )
    assert probe(tmp_path / "taught") > probe(tmp_path / "labels") + 0.2
    metadata = (tmp_path / "taught" / "metadata.json").read_text()
    assert "teacher-rule-1" in metadata


def test_a_teacher_file_missing_texts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "partial.npz"
    TeacherScores({text_key("only this"): 0.5}, "teacher-rule-1").write(path)
    with pytest.raises(SystemExit, match="lacks"):
        train_tfidf.main(
            ["--data-dir", str(FIXTURES), *FAST, "--output", str(tmp_path / "m"),
             "--teacher", str(path)]
        )  # fmt: skip


def test_teacher_scores_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    trailing_zero = b"\x07" * 19 + b"\x00"  # a digest numpy's bytes type would shorten
    TeacherScores({text_key("a"): 0.25, text_key("b"): 0.75, trailing_zero: 0.5}, "v1").write(path)
    read = TeacherScores.read(path)
    assert read.model_version == "v1"
    assert read.scores[trailing_zero] == 0.5
    looked_up = read.lookup(["b", "a", "c"])
    assert looked_up[:2].tolist() == [0.75, 0.25] and np.isnan(looked_up[2])


def test_a_teacher_teaches_only_the_sources_it_is_given(tmp_path: Path) -> None:
    """With `--teacher-source davidson`, a derived row of a Davidson tweet is taught too (it
    shares its origin), every other row keeps its label, and only the taught rows must be in
    the teacher's file."""
    texts = ["a tweet", "a swap of that tweet", "a forum post", "a template"]
    origins = ["davidson", "davidson", "stormfront", "templates"]
    labels = np.array([1, 0, 1, 0])
    path = tmp_path / "teacher.npz"
    TeacherScores({text_key(texts[0]): 0.2, text_key(texts[1]): 0.6}, "teacher-2").write(path)
    args = train_tfidf.parse_args(
        ["--teacher", str(path), "--teacher-share", "0.5", "--teacher-source", "davidson"]
    )
    target, record = distillation_targets(args, texts, labels, origins)
    assert target.tolist() == [0.6, 0.3, 1.0, 0.0]
    assert record["rows"] == 2 and record["sources"] == ["davidson"]
    assert record["model_version"] == "teacher-2"

    every_row = train_tfidf.parse_args(["--teacher", str(path)])
    with pytest.raises(SystemExit, match="lacks 2 training texts"):
        distillation_targets(every_row, texts, labels, origins)


@pytest.mark.parametrize(
    "argv", [["--teacher-source", "reddit"], ["--teacher-share", "1.5"]], ids=["source", "share"]
)
def test_a_bad_teacher_argument_is_refused(
    tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "teacher.npz"
    TeacherScores({}, "teacher-2").write(path)
    with pytest.raises(SystemExit) as refused:
        args = train_tfidf.parse_args(["--teacher", str(path), *argv])
        distillation_targets(args, [], np.array([]), [])
    said = f"{refused.value.code} {capsys.readouterr().err}"
    assert "'reddit': sources are" in said or "between 0 and 1, not 1.5" in said


def test_teacher_scores_can_score_one_source_only(tmp_path: Path) -> None:
    """`teacher_scores --source` scores the rows of that origin (training and validation) and
    no others."""
    output = tmp_path / "t.npz"
    args = teacher_scores.parse_args(
        ["--provider", "stub", "--data-dir", str(FIXTURES), "--output", str(output),
         "--source", "davidson"]
    )  # fmt: skip
    scored = teacher_scores.run(args).scores
    corpus = load_corpus(FIXTURES)
    rows = [
        (text, origin)
        for split in (corpus.train, corpus.val)
        for text, origin in zip(split.texts, split.origins, strict=True)
    ]
    davidson = {text_key(t) for t, o in rows if o == "davidson"}
    assert davidson and set(scored) == davidson


def test_teacher_scores_reads_the_corpus_variant_of_the_run_it_teaches(tmp_path: Path) -> None:
    """With `--narrow-negatives-out` the teacher scores exactly the rows a trainer given the same
    option reads: the abusive EDOS negative left out of training is not scored, the rest are."""
    data = fixtures_with_narrow_negatives(tmp_path)
    output = tmp_path / "t.npz"
    args = teacher_scores.parse_args(
        ["--provider", "stub", "--data-dir", str(data), "--output", str(output),
         "--source", "edos", "--narrow-negatives-out"]
    )  # fmt: skip
    scored = set(teacher_scores.run(args).scores)
    corpus = load_corpus(data, narrow_negatives_out=True)
    expected = {
        text_key(text)
        for split in (corpus.train, corpus.val)
        for text, origin in zip(split.texts, split.origins, strict=True)
        if origin == "edos"
    }
    assert expected and scored == expected
    assert text_key("you are a total moron for posting this") not in scored
    assert text_key("what a stupid fucking referee") in scored, "validation rows are scored"
