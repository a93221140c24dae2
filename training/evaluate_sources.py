"""Evaluate a shipped model on every source's test split, the bias sets and the behavioural suite.

    python -m training.evaluate_sources --provider tfidf [--model models/tfidf] [--write-metadata]
    python -m training.evaluate_sources --provider onnx
    python -m training.evaluate_sources --provider transformer --model models/transformer
    python -m training.evaluate_sources --provider cascade   # models/cascade: tfidf, then onnx

Scores go through the serving code (`create_provider(Settings(...))`, `load`, `predict_batch`), so
what is measured is what is served, at the threshold the artifact records. Reports:

- per source, on its test split (read here once per shipped model): ROC-AUC, macro-F1, ECE, and
  for the cascade the share of texts each stage answered. The optional sources
  (`corpus.OPTIONAL_SOURCES`, such as HatEval) are reported too, whether or not the model was
  trained on them; the pooled figures (the mean ROC-AUC, the Jigsaw measures, the calibration
  plot) stay on the default sources, so they compare with models judged before;
- `bias_madlibs` (evaluation only): per identity term, the false-positive rate on `NOT_BAD`
  sentences that merely name an identity, and the AUC;
- identity bias on the project's own test splits, with the measures of the Jigsaw Unintended
  Bias challenge: subgroup AUC, BPSN AUC (background positive, subgroup negative: does naming
  the identity make benign text look toxic?) and BNSP AUC, plus the challenge's final bias
  metric (0.25 overall AUC + 0.75 x the power-mean (p = -5) of the three per-identity means);
- the behavioural suite (`functional_suite.py`): accuracy per functionality;
- a reliability diagram (calibration plot) per model under docs/model/;
- for a model with an `identity_attack` head (`train_identity_head.py`): its ROC-AUC per source
  on the test rows whose source says whether they are one, beside the toxic score's on the same
  rows, and its mean score per functionality of the suite.

`--write-metadata` stores the figures under `metrics` in the artifact's `metadata.json`;
`--markdown FILE` writes the tables MODEL_CARD.md quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from training.corpus import (
    EVALUATED_SOURCES,
    IDENTITY_ATTACK,
    OPTIONAL_SOURCES,
    UNKNOWN,
    Split,
    load_corpus,
)
from training.data_sources import DEFAULT_DATA_DIR, DataFileMissing, read_bias_madlibs
from training.evaluate import _pyplot, _save, bias_report, score, score_all, split_metrics
from training.functional_suite import accuracy_by_functionality, read_suite
from training.identity import REPORTED_TERMS, mentions
from training.selection import power_mean

REPO_ROOT = Path(__file__).resolve().parents[1]

POWER = -5.0


def make_scorer(provider_name: str, model: Path) -> tuple[Any, float]:
    """The served provider, loaded, and its threshold."""
    from ml_prod_api.providers import create_provider
    from ml_prod_api.settings import Settings

    settings = Settings(model_provider=provider_name, model_path=model)
    provider = create_provider(settings)
    provider.load()
    threshold = provider.default_threshold
    return provider, 0.5 if threshold is None else float(threshold)


def identity_bias(
    proba: np.ndarray, y: np.ndarray, texts: list[str], terms: tuple[str, ...] = REPORTED_TERMS
) -> dict[str, Any]:
    """Subgroup, BPSN and BNSP AUC per identity, and the Jigsaw final bias metric."""
    per_term: dict[str, dict[str, float | int]] = {}
    for term in terms:
        sub = np.asarray([mentions(t, term) for t in texts])
        if sub.sum() < 20 or len(set(y[sub])) < 2:
            continue
        bpsn = (~sub & (y == 1)) | (sub & (y == 0))
        bnsp = (~sub & (y == 0)) | (sub & (y == 1))
        per_term[term] = {
            "rows": int(sub.sum()),
            "toxic": int(y[sub].sum()),
            "subgroup_auc": round(float(roc_auc_score(y[sub], proba[sub])), 4),
            "bpsn_auc": round(float(roc_auc_score(y[bpsn], proba[bpsn])), 4),
            "bnsp_auc": round(float(roc_auc_score(y[bnsp], proba[bnsp])), 4),
        }
    overall = float(roc_auc_score(y, proba))
    means = [
        power_mean([float(v[k]) for v in per_term.values()], POWER)
        for k in ("subgroup_auc", "bpsn_auc", "bnsp_auc")
    ]
    return {
        "rows": int(len(y)),
        "overall_auc": round(overall, 4),
        "power_mean_subgroup_auc": round(means[0], 4),
        "power_mean_bpsn_auc": round(means[1], 4),
        "power_mean_bnsp_auc": round(means[2], 4),
        "final_bias_metric": round(0.25 * overall + 0.75 * float(np.mean(means)), 4),
        "per_term": per_term,
    }


def plot_reliability(proba: np.ndarray, y: np.ndarray, title: str, path: Path) -> Path:
    """Reliability diagram: observed toxic rate against mean predicted probability, 10 bins."""
    plt = _pyplot()
    edges = np.linspace(0, 1, 11)
    index = np.clip(np.digitize(proba, edges[1:-1]), 0, 9)
    xs, ys, ns = [], [], []
    for b in range(10):
        mask = index == b
        if mask.sum() >= 10:
            xs.append(proba[mask].mean())
            ys.append(y[mask].mean())
            ns.append(int(mask.sum()))
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    ax.plot(xs, ys, marker="o", label="model")
    ax.set_xlabel("mean predicted probability_toxic")
    ax.set_ylabel("observed share toxic")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def is_hate(answer: Any, threshold: float, label_thresholds: dict[str, float]) -> bool:
    """Whether `/v1/moderations` calls the text of this score `hate`: the route's own decision
    (`moderation_result`), given the model's toxic threshold and its labels' own."""
    from ml_prod_api.http.moderations import moderation_result

    prediction = {
        "label": "toxic" if answer.probability_toxic >= threshold else "non-toxic",
        "probability_toxic": answer.probability_toxic,
        "labels": answer.labels,
    }
    hate: bool = moderation_result(prediction, threshold, label_thresholds)["categories"]["hate"]
    return hate


def head_report(
    scores: list[Any],
    split: Split,
    toxic: np.ndarray,
    suite: list[Any],
    suite_scores: list[Any],
    threshold: float,
    label_thresholds: dict[str, float],
) -> dict[str, Any] | None:
    """The `identity_attack` head, if the model has one: per-source test ROC-AUC against the
    corpus' identity_attack targets (rows of unknown target left out), the toxic score's on the
    same rows as the baseline it must beat, and per suite functionality the mean head score and
    the share of cases `/v1/moderations` calls `hate` (its own decision, given the model's toxic
    `threshold` and its `label_thresholds`)."""
    if not scores or not scores[0].labels or IDENTITY_ATTACK not in scores[0].labels:
        return None
    head = np.asarray([s.labels[IDENTITY_ATTACK] for s in scores], dtype=np.float64)
    target = np.asarray(split.identity)
    sources = np.asarray(split.sources)
    per_source: dict[str, Any] = {}
    for source in EVALUATED_SOURCES + OPTIONAL_SOURCES:
        mask = (sources == source) & (target != UNKNOWN)
        if len(set(target[mask].tolist())) == 2:
            per_source[source] = {
                "rows": int(mask.sum()),
                "attacks": int(target[mask].sum()),
                "roc_auc": round(float(roc_auc_score(target[mask], head[mask])), 4),
                "toxic_score_roc_auc": round(float(roc_auc_score(target[mask], toxic[mask])), 4),
            }
    by_functionality: dict[str, list[float]] = {}
    hate: dict[str, list[bool]] = {}
    for case, answer in zip(suite, suite_scores, strict=True):
        head_score = answer.labels[IDENTITY_ATTACK]
        by_functionality.setdefault(case.functionality, []).append(head_score)
        hate.setdefault(case.functionality, []).append(is_hate(answer, threshold, label_thresholds))
    return {
        "test": per_source,
        "suite_mean_score": {k: round(float(np.mean(v)), 3) for k, v in by_functionality.items()},
        "suite_hate_share": {k: round(float(np.mean(v)), 3) for k, v in hate.items()},
        "head_threshold": label_thresholds.get(IDENTITY_ATTACK, threshold),
    }


def evaluate(
    provider_name: str, model: Path, data_dir: Path, plots_dir: Path, madlibs: bool = True
) -> dict[str, Any]:
    provider, threshold = make_scorer(provider_name, model)
    corpus = load_corpus(data_dir, include_test=True, optional_sources=OPTIONAL_SOURCES)
    test = corpus.test
    test_scores = score_all(provider, test.texts)
    test_proba = np.asarray([s.probability_toxic for s in test_scores], dtype=np.float64)
    # A provider of several stages (the cascade) says which one answered each text: the share
    # of a source's texts that reached the expensive stage is what the cascade cost there.
    stages = np.asarray([s.stage or "" for s in test_scores])
    stage_names = sorted(set(stages.tolist()) - {""})
    y_test = np.asarray(test.labels)
    sources = np.asarray(test.sources)
    per_source: dict[str, Any] = {}
    for source in EVALUATED_SOURCES + OPTIONAL_SOURCES:
        mask = sources == source
        if mask.any() and len(set(y_test[mask])) == 2:
            per_source[source] = split_metrics(test_proba[mask], y_test[mask], threshold)
            if stage_names:
                per_source[source]["answered_by"] = {
                    name: round(float((stages[mask] == name).mean()), 4) for name in stage_names
                }

    bias: dict[str, Any] | None = None
    if madlibs:
        sentences = read_bias_madlibs(data_dir / "bias_madlibs" / "bias_madlibs_77k.csv")
        proba = score(provider, sentences.texts, batch=256)
        bias = bias_report(proba, np.asarray(sentences.labels), sentences.texts, threshold)

    suite = read_suite()
    suite_scores = score_all(provider, [c.text for c in suite])
    suite_proba = np.asarray([s.probability_toxic for s in suite_scores], dtype=np.float64)
    functional = accuracy_by_functionality(suite, suite_proba.tolist(), threshold)
    heads = head_report(
        test_scores, test, test_proba, suite, suite_scores, threshold, provider.label_thresholds
    )

    default = ~np.isin(sources, OPTIONAL_SOURCES)
    default_texts = [t for t, keep in zip(test.texts, default, strict=True) if keep]
    plot_reliability(
        test_proba[default],
        y_test[default].astype(np.float64),
        f"{provider_name}: every source's test split pooled",
        plots_dir / f"{provider_name}_calibration.png",
    )
    return {
        "model_version": provider.version,
        "threshold": threshold,
        "test": per_source,
        "test_mean_roc_auc": round(
            float(np.mean([m["roc_auc"] for k, m in per_source.items() if k in EVALUATED_SOURCES])),
            4,
        ),
        "bias_madlibs": bias,
        "identity_bias_own_test": identity_bias(
            test_proba[default], y_test[default], default_texts
        ),
        "functional_suite": functional,
        **({"identity_attack_head": heads} if heads else {}),
        "data_files": corpus.files,
    }


def markdown(provider_name: str, m: dict[str, Any]) -> str:
    lines = [f"### {provider_name} (`{m['model_version']}`, threshold {m['threshold']})", ""]
    staged = any("answered_by" in s for s in m["test"].values())
    lines += [
        "| source (test split) | rows | toxic | ROC-AUC | macro-F1 | ECE |"
        + (" answered by |" if staged else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---|" if staged else ""),
    ]
    for source, s in m["test"].items():
        answered = ", ".join(f"{k} {v:.0%}" for k, v in s.get("answered_by", {}).items())
        lines.append(
            f"| {source} | {s['rows']} | {s['toxic']} | {s['roc_auc']:.3f} | "
            f"{s['macro_f1']:.3f} | {s['ece']:.3f} |" + (f" {answered} |" if staged else "")
        )
    mean = f"| **mean** (default sources) | | | **{m['test_mean_roc_auc']:.3f}** | | |"
    lines.append(mean + (" |" if staged else ""))
    b = m["bias_madlibs"]
    if b is not None:
        worst = sorted(b["per_term"].items(), key=lambda kv: -kv[1]["fpr"])
        lines += [
            "",
            f"bias_madlibs: ROC-AUC {b['overall_auc']:.3f}, false-positive rate on `NOT_BAD` "
            f"{b['overall_fpr']:.3f}; largest per-term FPR {worst[0][1]['fpr']:.3f} "
            f"({worst[0][0]}).",
            "",
            "| identity term | FPR on NOT_BAD | AUC |",
            "|---|---:|---:|",
        ]
        for term, t in worst[:12]:
            lines.append(f"| {term} | {t['fpr']:.3f} | {t['auc']:.3f} |")
    ib = m["identity_bias_own_test"]
    lines += [
        "",
        f"Own test splits, Jigsaw measures: overall AUC {ib['overall_auc']:.3f}, "
        f"final bias metric **{ib['final_bias_metric']:.3f}** (power means: subgroup "
        f"{ib['power_mean_subgroup_auc']:.3f}, BPSN {ib['power_mean_bpsn_auc']:.3f}, "
        f"BNSP {ib['power_mean_bnsp_auc']:.3f}).",
        "",
        "| identity | rows | toxic | subgroup AUC | BPSN AUC | BNSP AUC |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for term, t in ib["per_term"].items():
        lines.append(
            f"| {term} | {t['rows']} | {t['toxic']} | {t['subgroup_auc']:.3f} | "
            f"{t['bpsn_auc']:.3f} | {t['bnsp_auc']:.3f} |"
        )
    lines += ["", "| functionality | expected | cases | accuracy |", "|---|---|---:|---:|"]
    for name, f in m["functional_suite"].items():
        lines.append(f"| {name} | {f['expected']} | {f['cases']} | {f['accuracy']:.2f} |")
    heads = m.get("identity_attack_head")
    if heads:
        lines += [
            "",
            "| source (test split), identity_attack | rows | attacks | head ROC-AUC | toxic score "
            "ROC-AUC |",
            "|---|---:|---:|---:|---:|",
        ]
        for source, h in heads["test"].items():
            lines.append(
                f"| {source} | {h['rows']} | {h['attacks']} | {h['roc_auc']:.3f} | "
                f"{h['toxic_score_roc_auc']:.3f} |"
            )
        lines += [
            "",
            "| functionality | mean identity_attack | `hate` (flagged and head at "
            f"{heads['head_threshold']}) |",
            "|---|---:|---:|",
        ]
        for name, mean in heads["suite_mean_score"].items():
            lines.append(f"| {name} | {mean:.2f} | {heads['suite_hate_share'][name]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate_sources", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--provider", choices=["tfidf", "onnx", "transformer", "cascade"], required=True
    )
    parser.add_argument("--model", type=Path, help="default: models/PROVIDER")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--plots-dir", type=Path, default=REPO_ROOT / "docs" / "model")
    parser.add_argument("--write-metadata", action="store_true")
    parser.add_argument(
        "--no-bias-madlibs", action="store_true", help="skip bias_madlibs (77k sentences)"
    )
    parser.add_argument("--markdown", type=Path, help="write the MODEL_CARD.md tables here")
    args = parser.parse_args(argv)
    model = args.model or REPO_ROOT / "models" / args.provider
    try:
        metrics = evaluate(
            args.provider, model, args.data_dir, args.plots_dir, not args.no_bias_madlibs
        )
    except DataFileMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown(args.provider, metrics)
    print(table)
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    if args.write_metadata:
        path = model / "metadata.json"
        metadata = json.loads(path.read_text(encoding="utf-8"))
        metadata["metrics"] = {k: v for k, v in metrics.items() if k != "model_version"}
        path.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
