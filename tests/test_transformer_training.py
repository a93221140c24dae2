"""Training and export of the transformer models, on tiny random-weight encoders.

The encoders are built from a config in a fixture (BERT and DistilBERT, a few thousand
parameters, a small word-piece vocabulary written here), so nothing is downloaded and no
`../shared/data` is needed; the end-to-end test trains on the licensed fixture sample.
Tests that train or export need torch, transformers and onnx and are skipped without them; the
shipped int8 model is checked with onnxruntime and tokenizers alone, as it is served.
"""

from __future__ import annotations

import importlib.util
import json
import string
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_prod_api.providers.onnx import OnnxProvider
from ml_prod_api.providers.transformer import TransformerProvider
from training import average_checkpoints, export_onnx, train_transformer, train_transformer_head
from training.corpus import SOURCES, harmonise_davidson
from training.evaluate_transformer import OnnxScorer, TorchScorer

ort = pytest.importorskip(
    "onnxruntime",
    reason="onnxruntime is not installed (pip install -r requirements-transformer.txt)",
)
pytest.importorskip(
    "tokenizers", reason="tokenizers is not installed (pip install -r requirements-transformer.txt)"
)


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_onnx = pytest.mark.skipif(
    not _installed("onnx"), reason="onnx is not installed (pip install -r requirements-train.txt)"
)
needs_torch = pytest.mark.skipif(
    not _installed("torch", "transformers", "onnx"),
    reason="torch, transformers or onnx is not installed (pip install -r "
    "requirements-transformer.txt -r requirements-train.txt)",
)

REPO_ROOT = Path(__file__).resolve().parents[1]

FIXTURE_DATA = REPO_ROOT / "tests" / "fixtures" / "training"

# The exporters and onnxruntime's quantiser warn about things outside our control (deprecations
# in torch.onnx's TorchScript path, graph-optimiser advice); they are not failures here.
pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning"
)

WORDS = [
    "you",
    "are",
    "an",
    "idiot",
    "stupid",
    "hate",
    "love",
    "great",
    "day",
    "the",
    "a",
    "is",
    "this",
    "not",
    "so",
    "what",
    "go",
    "home",
    "and",
    "of",
    "to",
    "in",
    "it",
    "for",
    "on",
    "with",
    "my",
    "your",
    "he",
    "she",
    "they",
    "we",
    "i",
    "me",
    "him",
    "her",
    "user",
    "url",
    "rt",
    "lol",
    "shit",
    "fuck",
    "bitch",
    "good",
]


def vocabulary() -> dict[str, int]:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += [w for w in WORDS if w not in tokens]
    return {token: i for i, token in enumerate(tokens)}


def make_checkpoint(folder: Path, architecture: str = "bert", seed: int = 0) -> Path:
    """A random-weight encoder with a 2-way head and a real word-piece tokenizer."""
    import torch
    import transformers

    vocab = vocabulary()
    labels: dict[str, Any] = {
        "id2label": train_transformer.ID2LABEL,
        "label2id": train_transformer.LABEL2ID,
    }
    torch.manual_seed(seed)
    if architecture == "bert":
        config = transformers.BertConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            **labels,
        )
        model = transformers.BertForSequenceClassification(config)
    else:
        config = transformers.DistilBertConfig(
            vocab_size=len(vocab),
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            **labels,
        )
        model = transformers.DistilBertForSequenceClassification(config)
    # Bigger-than-init output weights, so the two classes get visibly different scores.
    with torch.no_grad():
        layer = train_transformer.find_output_layer(model)
        layer.weight.normal_(0.0, 1.0)
    tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_training_metadata(folder: Path, max_length: int = 32, threshold: float = 0.5) -> None:
    """What train_transformer.py records, reduced to what export_onnx.py reads."""
    metadata = {
        "model_version": "transformer-tiny-000000000000",
        "artifact": {"sha256": "0" * 64},
        "base_model": {"name_or_path": "random"},
        "threshold": threshold,
        "labels": {"1": "toxic", "0": "non-toxic"},
        "label_mapping": {s.name: s.mapping for s in SOURCES},
        "preprocessing": {},
        "tokenizer": {"max_length": max_length},
        "training_data": {},
        "hyperparameters": {},
        "training": {},
        "training_wall_seconds": 0.0,
        "versions": {},
    }
    (folder / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")


TEXTS = [
    "you are an idiot",
    "What a great day!",
    "",
    "I hate this so much, go home",
    "lol " * 40,  # longer than max_length: truncated
    "@user URL rt the a is",
]


@pytest.fixture(scope="module", params=["bert", "distilbert"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny checkpoint exported to fp32 ONNX, fused and quantised, with a shipped tokenizer."""
    root = tmp_path_factory.mktemp(f"tiny-{request.param}")
    checkpoint = make_checkpoint(root / "checkpoint", request.param)
    write_training_metadata(checkpoint)
    fp32 = checkpoint / "model_fp32.onnx"
    names = export_onnx.export_fp32(checkpoint, fp32)
    config = json.loads((checkpoint / "config.json").read_text())
    fused = checkpoint / "model_fp32_fused.onnx"
    export_onnx.fuse(fp32, fused, config, attention=False)
    output = root / "onnx"
    output.mkdir()
    export_onnx.quantize(fused, output / "model.onnx")
    (output / "config.json").write_text(json.dumps(config))
    export_onnx.write_tokenizer(checkpoint, output, max_length=32)
    return request.param, checkpoint, output, names, (fp32, fused)


@needs_torch
def test_inputs_follow_the_architecture(exported: Any) -> None:
    architecture, _, output, names, _ = exported
    expected = ["input_ids", "attention_mask"]
    if architecture == "bert":
        expected.append("token_type_ids")
    assert names == expected
    signature = export_onnx.onnx_signature(output / "model.onnx")
    assert [i["name"] for i in signature["inputs"]] == expected
    assert all(i["type"] == "tensor(int64)" for i in signature["inputs"])
    assert all(isinstance(d, str) for i in signature["inputs"] for d in i["shape"])  # dynamic
    assert [(o["name"], o["type"]) for o in signature["outputs"]] == [("logits", "tensor(float)")]


@needs_torch
@pytest.mark.parametrize("graph", ["exported", "fused"])
def test_fp32_onnx_agrees_with_torch_on_padded_batches(exported: Any, graph: str) -> None:
    _, checkpoint, output, _, (fp32, fused) = exported
    reference = TorchScorer(checkpoint, threads=1, batch_size=4)
    reference.max_length = 32
    onnx_scorer = OnnxScorer(output, fp32 if graph == "exported" else fused, 1, batch_size=4)
    torch_logits = reference.predict_logits(TEXTS)
    onnx_logits = onnx_scorer.predict_logits(TEXTS)
    assert onnx_logits.shape == (len(TEXTS), 2)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4)
    # Batch size and sequence length both differ from the traced example: the axes are dynamic.
    one = onnx_scorer.predict_logits(TEXTS[:1])
    np.testing.assert_allclose(one, torch_logits[:1], atol=1e-4)


@needs_torch
def test_int8_model_loads_and_stays_close(exported: Any) -> None:
    _, checkpoint, output, _, (fp32, fused) = exported
    int8 = output / "model.onnx"
    assert int8.stat().st_size < fp32.stat().st_size
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "logits"
    proba = OnnxScorer(output, threads=1).predict_proba(TEXTS)
    reference = OnnxScorer(output, fused, threads=1).predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS),)
    assert np.all((proba >= 0) & (proba <= 1))
    assert np.abs(proba - reference).max() < 0.1  # random tiny weights: a loose bound


@needs_torch
def test_dynamic_scheme_quantises_the_fully_fused_graph(exported: Any, tmp_path: Path) -> None:
    _, checkpoint, output, _, (fp32, _) = exported
    config = json.loads((checkpoint / "config.json").read_text())
    fused = tmp_path / "fused.onnx"
    stats = export_onnx.fuse(fp32, fused, config, attention=True)
    assert stats.get("Attention") == 2
    info = export_onnx.quantize(fused, tmp_path / "dynamic.onnx", scheme="dynamic")
    assert info["scheme"] == "dynamic"
    proba = OnnxScorer(output, tmp_path / "dynamic.onnx", threads=1).predict_proba(TEXTS)
    assert np.all((proba >= 0) & (proba <= 1))


@needs_onnx
def test_embeddings_per_row_int8_stay_close() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.05, size=(50, 8)).astype(np.float32)
    table[3] *= 40  # one row with a far larger range must not cost the others precision
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"], "lookup", axis=0)],
        "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 8])],
        [numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert export_onnx.quantize_embeddings_per_row(model, min_rows=10) == ["table"]
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = np.arange(50, dtype=np.int64)
    got = session.run(["out"], {"ids": ids})[0]
    assert np.abs(got - table).max(axis=1)[np.arange(50) != 3].max() < 0.2 / 127 * 1.01
    np.testing.assert_allclose(got[3], table[3], atol=np.abs(table[3]).max() / 127)


@needs_torch
def test_shipped_tokenizer_truncates_and_pads_right(exported: Any) -> None:
    from tokenizers import Tokenizer

    _, _, output, _, _ = exported
    tokenizer = Tokenizer.from_file(str(output / "tokenizer.json"))
    encodings = tokenizer.encode_batch(["you are", "lol " * 40])
    assert [len(e.ids) for e in encodings] == [32, 32]  # padded to the longest, which is cut
    short = encodings[0]
    assert short.ids[:4] == [tokenizer.token_to_id(t) for t in ("[CLS]", "you", "are", "[SEP]")]
    assert short.attention_mask == [1] * 4 + [0] * 28
    assert set(short.ids[4:]) == {tokenizer.token_to_id("[PAD]")}


@needs_torch
def test_platt_scaling_folds_exactly_into_the_classifier(tmp_path: Path) -> None:
    import transformers

    checkpoint = make_checkpoint(tmp_path / "ck", "bert", seed=1)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    ids = tokenizer(TEXTS, truncation=True, max_length=32)["input_ids"]
    before = train_transformer.predict_logits(model, ids, tokenizer.pad_token_id)
    a, b = 0.7, -0.4
    train_transformer.fold_platt_into_classifier(model, a, b)
    after = train_transformer.softmax_toxic(
        train_transformer.predict_logits(model, ids, tokenizer.pad_token_id)
    )
    margin = before[:, 1] - before[:, 0]
    np.testing.assert_allclose(after, 1 / (1 + np.exp(-(a * margin + b))), atol=1e-5)


def test_length_grouped_batches_cover_every_row_once() -> None:
    rng = np.random.default_rng(0)
    lengths = list(rng.integers(3, 90, size=1000))
    batches = train_transformer.length_grouped_batches(lengths, 32, 5, rng)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert max(len(b) for b in batches) == 32

    # Within a batch lengths are close: far less padding than random batches would need.
    def padding(batches: list[np.ndarray]) -> float:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths) - 1

    random_batches = np.array_split(rng.permutation(1000), len(batches))
    assert padding(batches) < 0.3 * padding(random_batches)


def test_davidson_rows_are_masked_like_tweeteval() -> None:
    text = "!!! RT @mayasolovely: As a woman http://t.co/abc &amp; RT @x_y2 yes"
    assert harmonise_davidson(text) == "!!! @user: As a woman URL &amp; @user yes"
    assert harmonise_davidson("ART is fine, RTS too") == "ART is fine, RTS too"


def test_epoch_rows_sample_each_source_by_its_weight_fresh_each_epoch() -> None:
    from collections import Counter

    from training.corpus import SOURCE_BY_NAME

    sources = ["tweeteval_offensive"] * 10 + ["davidson"] * 100 + ["templates"] * 5
    rng = np.random.default_rng(0)
    first = train_transformer.epoch_rows(sources, rng)
    second = train_transformer.epoch_rows(sources, rng)
    seen = Counter(first.tolist())
    # A weight of 2.5 takes every row twice and half of them once more, a weight of 1 once,
    # Davidson its weight's share.
    assert SOURCE_BY_NAME["tweeteval_offensive"].weight == 2.5
    assert all(seen[i] in (2, 3) for i in range(10))
    assert sum(seen[i] for i in range(10)) == 25
    assert all(seen[i] == 1 for i in range(110, 115))
    davidson = [i for i in first if 10 <= i < 110]
    assert len(davidson) == len(set(davidson)) == round(100 * SOURCE_BY_NAME["davidson"].weight)
    assert set(davidson) != {i for i in second if 10 <= i < 110}


def test_an_optional_source_is_named_on_the_command_line() -> None:
    args = train_transformer.parse_args(["--base", "x", "--with-source", "tweeteval_hate"])
    assert args.with_source == ["tweeteval_hate"]
    assert train_transformer.parse_args(["--base", "x"]).with_source == []
    with pytest.raises(SystemExit):
        train_transformer.parse_args(["--base", "x", "--with-source", "davidson"])


def test_a_weight_given_on_the_command_line_replaces_the_sources_own() -> None:
    from collections import Counter

    args = train_transformer.parse_args(
        ["--base", "x", "--weight", "tweeteval_offensive=4", "--weight", "davidson=0"]
    )
    assert args.source_weights == (("davidson", 0.0), ("tweeteval_offensive", 4.0))
    sources = ["tweeteval_offensive"] * 10 + ["davidson"] * 100 + ["templates"] * 5
    rows = train_transformer.epoch_rows(
        sources, np.random.default_rng(0), dict(args.source_weights)
    )
    seen = Counter(rows.tolist())
    assert [seen[i] for i in range(10)] == [4] * 10
    assert not any(seen[i] for i in range(10, 110))
    assert [seen[i] for i in range(110, 115)] == [1] * 5


@pytest.mark.parametrize(
    "bad", ["tweets=2", "davidson=much", "davidson=-1", "davidson=nan", "davidson"]
)
def test_a_weight_for_an_unknown_source_or_not_a_number_is_refused(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import train_tfidf

    # Both trainers take `--weight` from corpus.add_weight_argument.
    for parse, argv in (
        (train_transformer.parse_args, ["--base", "x"]),
        (train_tfidf.parse_args, []),
    ):
        with pytest.raises(SystemExit):
            parse([*argv, "--weight", bad])
        assert "argument --weight" in capsys.readouterr().err


@needs_torch
@pytest.mark.slow
def test_train_export_and_evaluate_end_to_end(tmp_path: Path) -> None:
    """train_transformer.py -> export_onnx.py on the fixture sample, as the scripts run."""
    base = make_checkpoint(tmp_path / "tiny", "bert")
    trained = tmp_path / "transformer"
    shipped = tmp_path / "onnx"
    plots = tmp_path / "plots"
    assert (
        train_transformer.main(
            [
                "--base",
                str(base),
                "--data-dir",
                str(FIXTURE_DATA),
                "--output",
                str(trained),
                "--epochs",
                "1",
                "--max-length",
                "32",
                "--learning-rate",
                "1e-3",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    config = json.loads((trained / "config.json").read_text())
    assert config["id2label"] == {"0": "non-toxic", "1": "toxic"}
    assert config["label2id"] == {"non-toxic": 0, "toxic": 1}
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "metadata.json"):
        assert (trained / name).is_file(), name
    training = json.loads((trained / "metadata.json").read_text())
    assert training["tokenizer"]["max_length"] == 32
    assert 0.05 <= training["threshold"] <= 0.95

    # The shipped MiniLM is an average of evaluated points, finalized like a run's best one; its
    # metadata keeps the run's evaluations and says it is an average.
    points = sorted((tmp_path / "transformer-state").glob("eval-step*.pt"))
    assert len(points) >= 2
    average_checkpoints.main(["--output", str(tmp_path / "average"), *map(str, points)])
    finalize = ["--finalize-only", "--checkpoint-dir", str(tmp_path / "average")]
    common = ["--base", str(base), "--data-dir", str(FIXTURE_DATA), "--max-length", "32"]
    averaged_out = tmp_path / "averaged"
    assert train_transformer.main([*common, *finalize, "--output", str(averaged_out)]) == 0
    averaged = json.loads((averaged_out / "metadata.json").read_text())["training"]
    assert averaged["stop_reason"] == f"finalized from the average of {len(points)} checkpoints"
    assert averaged["best_step"] is None
    evaluations = [h["step"] for h in training["training"]["history"]]
    assert [h.get("step") for h in averaged["history"][:-1]] == evaluations
    assert averaged["history"][-1] == {"averaged": [str(p) for p in points]}

    assert (
        export_onnx.main(
            [
                "--checkpoint",
                str(trained),
                "--output",
                str(shipped),
                "--data-dir",
                str(FIXTURE_DATA),
                "--plots-dir",
                str(plots),
                "--threads",
                "1",
                # A 32-wide model trained for a few steps quantises poorly; only the plumbing is
                # tested here. The shipped model is held to the default 0.02.
                "--tolerance",
                "1.0",
            ]
        )
        == 0
    )
    files = sorted(p.name for p in shipped.iterdir())
    assert files == [
        "config.json",
        "metadata.json",
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    metadata = json.loads((shipped / "metadata.json").read_text())
    assert metadata["model_version"] == f"onnx-tiny-{metadata['artifact']['sha256'][:12]}"
    assert metadata["threshold"] == training["threshold"]
    assert metadata["checks"]["int8_onnx_vs_fp32_torch"]["passed"]
    for key in ("fp32", "int8"):
        assert {"val", "test", "bias_madlibs"} <= set(metadata["metrics"][key])
    assert json.loads((shipped / "config.json").read_text())["problem_type"] == (
        "single_label_classification"
    )
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        f"{prefix}_{name}"
        for prefix in ("onnx", "transformer")
        for name in ("roc.png", "precision_recall.png", "reliability.png", "bias_madlibs.png")
    )


@needs_torch
@pytest.mark.slow
def test_an_identity_attack_head_keeps_the_toxic_score_and_both_providers_answer_it(
    tmp_path: Path,
) -> None:
    """train_transformer_head.py on a two-way checkpoint: the toxic probability does not move,
    both providers answer `labels` with the head, the onnx export carries it, and running the
    trainer again on its own output replaces the head rather than stacking a second one."""
    checkpoint = make_checkpoint(tmp_path / "checkpoint", "bert")
    write_training_metadata(checkpoint)
    texts = [*TEXTS, "all of them are awful people", "i love all people"]
    before = TransformerProvider(checkpoint)
    before.load()
    plain = before.predict_batch(texts)
    assert all(score.labels is None for score in plain)

    argv = ["--data-dir", str(FIXTURE_DATA), "--threads", "1", "--grid-c", "0.1", "1"]
    headed, again = tmp_path / "headed", tmp_path / "again"
    for source, target in ((checkpoint, headed), (headed, again)):
        assert (
            train_transformer_head.main(
                [*argv, "--no-progress", "--checkpoint", str(source), "--output", str(target)]
            )
            == 0
        )
    metadata = json.loads((headed / "metadata.json").read_text())
    assert metadata["model_version"] != "transformer-tiny-000000000000"
    assert (
        metadata["model_version"]
        == json.loads((again / "metadata.json").read_text())["model_version"]
    )
    assert metadata["labels"] == {"0": "toxic", "1": "identity_attack"}
    head = metadata["heads"]["identity_attack"]
    assert head["C"] in (0.1, 1.0)
    assert head["toxic_score_check"]["max_abs_diff"] < 1e-5
    config = json.loads((headed / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"

    after = TransformerProvider(headed)
    after.load()
    scores = after.predict_batch(texts)
    np.testing.assert_allclose(
        [s.probability_toxic for s in scores], [s.probability_toxic for s in plain], atol=1e-5
    )
    for score in scores:
        assert score.labels is not None
        assert set(score.labels) == {"toxic", "identity_attack"}
        assert score.labels["toxic"] == score.probability_toxic
        assert 0.0 <= score.labels["identity_attack"] <= 1.0

    shipped = tmp_path / "onnx"
    export_argv = ["--checkpoint", str(headed), "--output", str(shipped), "--skip-evaluation"]
    export_argv += ["--data-dir", str(FIXTURE_DATA), "--threads", "1", "--tolerance", "1.0"]
    assert export_onnx.main(export_argv) == 0
    exported = json.loads((shipped / "metadata.json").read_text())
    assert exported["problem_type"] == "multi_label_classification"
    assert "identity_attack = sigmoid(logits[:, 1])" in exported["output"]
    onnx = OnnxProvider(shipped)
    onnx.load()
    assert onnx.label_thresholds == after.label_thresholds == {"identity_attack": head["threshold"]}
    for mine, reference in zip(onnx.predict_batch(texts), scores, strict=True):
        assert mine.labels is not None and reference.labels is not None
        assert set(mine.labels) == set(reference.labels)
        assert abs(mine.labels["identity_attack"] - reference.labels["identity_attack"]) < 0.1


# --- the shipped artifact -------------------------------------------------------------------

SHIPPED = REPO_ROOT / "models" / "onnx"
KNOWN = {
    "you are a fucking idiot": True,
    "shut up you stupid bitch": True,
    "I hope you have a lovely day": False,
    "Thanks for the help with my homework!": False,
    "The game starts at 7pm tonight": False,
}


def test_shipped_artifact_is_complete_and_consistent() -> None:
    from training.data_sources import sha256_file

    metadata = json.loads((SHIPPED / "metadata.json").read_text())
    assert metadata["model_version"].endswith(metadata["artifact"]["sha256"][:12])
    assert sha256_file(SHIPPED / "model.onnx") == metadata["artifact"]["sha256"]
    config = json.loads((SHIPPED / "config.json").read_text())
    # The toxic score and the identity_attack head, each read with a sigmoid.
    assert config["id2label"] == {"0": "toxic", "1": "identity_attack"}
    assert config["problem_type"] == "multi_label_classification"
    assert metadata["labels"] == config["id2label"]
    tokenizer = json.loads((SHIPPED / "tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == metadata["tokenizer"]["max_length"]
    assert metadata["checks"]["int8_onnx_vs_fp32_torch"]["passed"]


def test_shipped_int8_model_scores_known_sentences_without_torch() -> None:
    """Scored in a fresh interpreter as `MODEL_PROVIDER=onnx` serves: torch is never imported."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from training.evaluate_transformer import OnnxScorer\n"
        "scorer = OnnxScorer(Path('models/onnx'), threads=1)\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps({'proba': scorer.predict_proba(texts).tolist(),"
        " 'threshold': scorer.threshold, 'torch': 'torch' in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(list(KNOWN)),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["torch"] is False
    flagged = [p >= answer["threshold"] for p in answer["proba"]]
    assert flagged == list(KNOWN.values())


def test_training_on_served_text_prepares_texts_as_serving_does() -> None:
    """`--train-on-served-text` feeds the trainer what the served provider would tokenise."""
    from ml_prod_api.providers.textnorm import normalize

    texts = ["you are an 1d10t", "f.u.c.k off", "have a nice day"]
    served = train_transformer.served_text(texts)
    assert served == [normalize(t) for t in texts]
    assert served[0] != texts[0] and "idiot" in served[0]


def test_derived_rows_keep_the_source_they_were_made_from() -> None:
    from training.corpus import load_corpus

    train = load_corpus(FIXTURE_DATA).train
    derived = {"counterfactual", "obfuscated"}
    origin_of = dict(zip(train.texts, train.origins, strict=False))
    made = [(s, o) for s, o in zip(train.sources, train.origins, strict=True) if s in derived]
    assert {s for s, _ in made} == derived
    assert all(o not in derived | {"templates"} for _, o in made)
    plain = [(s, o) for s, o in zip(train.sources, train.origins, strict=True) if s not in derived]
    assert all(s == o for s, o in plain)
    assert origin_of  # the corpus is not empty


def test_source_offsets_move_only_their_own_rows_toxic_logit() -> None:
    torch = pytest.importorskip("torch")
    offsets = train_transformer.SourceOffsets(["edos", "templates", "hatexplain", "edos"])
    assert offsets.names == ["edos", "hatexplain"]  # the templates are the fixed reference
    offsets.values.data = torch.tensor([1.5, -2.0])
    shifted = offsets.apply(torch.zeros(4, 2), np.array([0, 1, 2, 3]))
    assert shifted.tolist() == [[0.0, 1.5], [0.0, 0.0], [0.0, -2.0], [0.0, 1.5]]
    assert offsets.as_dict() == {"edos": 1.5, "hatexplain": -2.0}


def offsets_fit(tmp_path: Path) -> tuple[Any, Any, Path]:
    """A tiny model whose training set has the same sentences toxic in one source and benign
    in another, so only the source offsets can tell them apart; returns (fit, config, state)."""
    base = make_checkpoint(tmp_path / "tiny", "bert")
    tokenizer, model = train_transformer.load_base(str(base))
    texts = ["what a great day", "go home and love this", "the day is so great"] * 4
    origins = ["davidson"] * 6 + ["stormfront"] * 6
    labels = [1] * 6 + [0] * 6
    train = train_transformer.encode(tokenizer, texts, labels, 16)
    # per_source_auc scores a source from 100 validation rows.
    val = train_transformer.encode(
        tokenizer, ["you are an idiot", "a great day"] * 50, [1, 0] * 50, 16
    )
    cfg = train_transformer.TrainConfig(
        base=str(base),
        batch_size=4,
        epochs=30,
        eval_every=10,
        patience=99,
        threads=1,
        learning_rate=1e-5,
        offset_learning_rate=0.05,
        source_offsets=True,
        seed=1,
    )
    state = tmp_path / "state"

    def fit(config: Any) -> list[dict[str, Any]]:
        _, history, _ = train_transformer.train_model(
            model,
            tokenizer,
            train,
            origins,
            val,
            ["tweeteval_offensive"] * 100,
            config,
            state,
            progress=False,
            train_origins=origins,
        )
        return history

    return fit, cfg, state


@needs_torch
def test_source_offsets_absorb_a_base_rate_the_text_cannot_explain(tmp_path: Path) -> None:
    """Only the offsets can tell the two sources apart, so they learn it, and a resumed run
    starts from the saved offsets."""
    fit, cfg, state = offsets_fit(tmp_path)
    fit(cfg)
    saved = torch_load(state / "state.pt")
    learned = dict(zip(["davidson", "stormfront"], saved["offsets"].tolist(), strict=True))
    assert learned["davidson"] - learned["stormfront"] > 1.0

    after = fit(replace(cfg, epochs=31))[-1]["source_offsets"]  # one more epoch, resumed
    # Three more steps at 0.05 could not learn it again from zero: the saved offsets were read.
    assert after["davidson"] - after["stormfront"] > 1.0


@needs_torch
def test_every_evaluated_point_keeps_its_weights(tmp_path: Path) -> None:
    """Each evaluation's weights stay on disk beside best.pt, so a late point of the run, or an
    average of several, can be finalized later; best.pt is one of them."""
    import torch

    fit, cfg, state = offsets_fit(tmp_path)
    history = fit(cfg)
    names = [train_transformer.evaluated_weights_name(h["step"]) for h in history]
    assert len(names) == 3
    assert sorted(p.name for p in state.glob("eval-step*.pt")) == names
    best = torch.load(state / "best.pt", weights_only=True)
    kept = [torch.load(state / name, weights_only=True) for name in names]
    assert any(all(torch.equal(best[k], sd[k]) for k in best) for sd in kept)


@needs_torch
def test_offset_weight_decay_holds_the_offsets_near_zero(tmp_path: Path) -> None:
    """The same task as above, where undecayed offsets part by more than 1: a decay of 4 keeps
    each within about 1/4 of zero, whatever the gradient asks."""
    fit, cfg, _ = offsets_fit(tmp_path)
    learned = fit(replace(cfg, offset_weight_decay=4.0))[-1]["source_offsets"]
    assert 0.0 < learned["davidson"] <= 0.3
    assert -0.3 <= learned["stormfront"] < 0.0


def torch_load(path: Path) -> Any:
    import torch

    return torch.load(path, weights_only=False)


@needs_torch
def test_a_teachers_probability_replaces_the_label_as_the_target(tmp_path: Path) -> None:
    """The same benign rows, fitted once on their 0 labels and once on a teacher's 0.9: only the
    taught student scores them toxic, and its scores follow the teacher, not the labels."""
    base = make_checkpoint(tmp_path / "tiny", "bert")
    texts = ["what a great day", "the day is so great"] * 4
    val_texts = ["you are an idiot", "a great day"] * 50

    def fit(targets: np.ndarray | None, state: str) -> float:
        tokenizer, model = train_transformer.load_base(str(base))
        train = train_transformer.encode(tokenizer, texts, [0] * len(texts), 16)
        val = train_transformer.encode(tokenizer, val_texts, [1, 0] * 50, 16)
        cfg = train_transformer.TrainConfig(
            base=str(base), batch_size=4, epochs=10, eval_every=10, patience=99, threads=1,
            learning_rate=1e-3, seed=1,
        )  # fmt: skip
        train_transformer.train_model(
            model, tokenizer, train, ["davidson"] * len(texts), val,
            ["tweeteval_offensive"] * len(val_texts), cfg, tmp_path / state, progress=False,
            targets=targets,
        )  # fmt: skip
        logits = train_transformer.predict_logits(model, train.ids, tokenizer.pad_token_id)
        return float(train_transformer.softmax_toxic(logits).mean())

    assert fit(None, "labels") < 0.2
    assert fit(np.full(len(texts), 0.9), "taught") > 0.6
