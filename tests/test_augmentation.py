"""The training templates are this project's own writing, apart from the suite that judges them."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from training.augment import template_rows

SUITE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "functional_suite.csv"


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]+", " ", text.lower()).split())


def test_templates_never_replay_a_suite_case() -> None:
    with SUITE.open(encoding="utf-8", newline="") as handle:
        suite = {_normalised(row["text"]) for row in csv.DictReader(handle)}
    templates = {_normalised(row.text) for row in template_rows(seed=20190101)}
    assert suite and templates
    assert not suite & templates, sorted(suite & templates)[:5]
