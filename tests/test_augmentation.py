"""The training corpus's own rows: templates, respelt copies and the negatives left out.

Runs on the committed fixture sample (no ../shared): what each augmentation adds or removes, and
that none of it replays the behavioural suite the models are judged on.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
import shutil
from pathlib import Path

from training.augment import has_abuse, obfuscated_copy, template_rows
from training.corpus import NARROW_NEGATIVES, load_corpus

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "training"
SUITE = REPO / "tests" / "fixtures" / "functional_suite.csv"


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def test_templates_never_replay_a_suite_case() -> None:
    with SUITE.open(encoding="utf-8", newline="") as handle:
        suite = {_normalised(row["text"]) for row in csv.DictReader(handle)}
    templates = {_normalised(row.text) for row in template_rows(seed=20190101)}
    assert suite and templates
    assert not suite & templates, sorted(suite & templates)[:5]


def test_templates_hold_threats_and_their_benign_look_alikes() -> None:
    rows = template_rows(seed=20190101)
    threats = [r for r in rows if r.kind == "threat or insult"]
    idioms = [r for r in rows if r.kind == "violent words, no threat"]
    assert len(threats) >= 80 and {r.label for r in threats} == {1}
    assert len(idioms) >= 20 and {r.label for r in idioms} == {0}


def test_respelt_copy_hides_the_abusive_word_first() -> None:
    rng = random.Random(0)
    for _ in range(50):
        respelt = obfuscated_copy("you are such an idiot today", rng)
        assert respelt is not None
        # Only the abusive word changed; the rest of the sentence is intact.
        assert respelt.startswith("you are such an ") and respelt.endswith(" today")
        assert "idiot" not in respelt.split()
    assert obfuscated_copy("ok, go", rng) is None


def test_strong_abuse_words_are_whole_words() -> None:
    assert has_abuse("What a MORON.") and has_abuse("f*** off, fuckers")
    assert not has_abuse("I passed the class with a grass-green pen")
    assert not has_abuse("I will kill this presentation")  # violent words alone are not abuse


def _append_row(path: Path, text: str, label: int, split: str) -> None:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    rows.append({**dict.fromkeys(fields, ""), "text": text, "label": str(label), "split": split})
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_narrow_negatives_with_abuse_leave_training_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURES, data)
    rude = "you absolute moron, read the thread before posting"
    for name in sorted(NARROW_NEGATIVES):
        _append_row(data / name / f"{name}.csv.gz", f"{rude} ({name})", 0, "train")
        _append_row(data / name / f"{name}.csv.gz", f"{rude} ({name} val)", 0, "val")

    raw = load_corpus(data, augment=False)
    augmented = load_corpus(data)
    for name in sorted(NARROW_NEGATIVES):
        assert f"{rude} ({name})" in raw.train.texts
        assert f"{rude} ({name})" not in augmented.train.texts
        # Validation stays as the source labelled it: the models are judged on it.
        assert f"{rude} ({name} val)" in augmented.val.texts

    # Respelt copies are new spellings of training rows, of both labels.
    respelt_texts, respelt_labels = augmented.train.of("obfuscated")
    assert respelt_texts and set(respelt_labels) == {0, 1}
    made = {"counterfactual", "obfuscated", "templates"}
    train = augmented.train
    originals = {t for t, s in zip(train.texts, train.sources, strict=True) if s not in made}
    assert not originals & set(respelt_texts)
