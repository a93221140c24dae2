"""The `transformer` and `onnx` providers on tiny checkpoints built from a config."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers.sequence import Windows, window_token_ids
from tests.conftest import running_client

torch = pytest.importorskip("torch", reason="torch not installed (requirements-transformer.txt)")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
pytest.importorskip("onnx", reason="onnx (exporter) not installed (requirements-dev.txt)")

from ml_prod_api.providers.onnx import OnnxProvider, intra_op_threads  # noqa: E402
from ml_prod_api.providers.transformer import TransformerProvider  # noqa: E402
from tests.tiny_models import JIGSAW_LABELS, build_checkpoint, export_onnx  # noqa: E402

TEXTS = [
    "you are awful",
    "have a nice day",
    "i hate this weather",
    "thanks for the help",
    "what a stupid idiot",
    "",
]
LONG = " ".join(["thanks for the help this morning"] * 40) + " you are an awful stupid idiot"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_checkpoint(
            tmp_path_factory.mktemp("tiny") / "ckpt",
            metadata={"model_version": "tiny-7", "threshold": 0.42, "max_length": 16},
        )


@pytest.fixture(scope="module")
def onnx_dir(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "fp32")


def _transformer(path: Path, **kw: object) -> TransformerProvider:
    provider = TransformerProvider(path, stride=4, **kw)  # type: ignore[arg-type]
    provider.load()
    return provider


def _onnx(path: Path, **kw: object) -> OnnxProvider:
    provider = OnnxProvider(path, stride=4, **kw)  # type: ignore[arg-type]
    provider.load()
    return provider


def test_softmax_head_metadata_and_label_mapping(checkpoint: Path) -> None:
    p = _transformer(checkpoint)
    assert p.version == "tiny-7"
    assert p.default_threshold == 0.42
    assert p.max_length == 16  # the window the model was trained with
    scores = p.predict_batch(TEXTS)
    assert len(scores) == len(TEXTS)
    assert all(0.0 <= s.probability_toxic <= 1.0 for s in scores)
    assert all(s.labels is None for s in scores)
    assert len({round(s.probability_toxic, 6) for s in scores}) > 2  # texts told apart


def test_batch_equals_singles_in_input_order(checkpoint: Path) -> None:
    p = _transformer(checkpoint)
    batch = [s.probability_toxic for s in p.predict_batch(TEXTS)]
    singles = [p.predict_batch([t])[0].probability_toxic for t in TEXTS]
    assert batch == pytest.approx(singles, abs=1e-5)


def test_toxic_label_chosen_by_name_or_setting(tmp_path: Path) -> None:
    ckpt = build_checkpoint(tmp_path / "flipped", labels=["toxic", "clean"])
    flipped = _transformer(ckpt)
    assert flipped.labels is not None and flipped.labels.toxic_index == 0
    by_setting = _transformer(ckpt, toxic_label="clean")
    a = flipped.predict_batch(["you are awful"])[0].probability_toxic
    b = by_setting.predict_batch(["you are awful"])[0].probability_toxic
    assert a + b == pytest.approx(1.0)  # softmax over two labels
    with pytest.raises(ModelLoadError, match="labels: toxic, clean"):
        _transformer(ckpt, toxic_label="insult")


def test_multi_label_head_uses_sigmoid_and_reports_every_label(tmp_path: Path) -> None:
    ckpt = build_checkpoint(tmp_path / "jigsaw", labels=JIGSAW_LABELS, multi_label=True)
    p = _transformer(ckpt)
    score = p.predict_batch(["you are awful"])[0]
    assert score.labels is not None and list(score.labels) == JIGSAW_LABELS
    assert score.probability_toxic == score.labels["toxic"]
    assert sum(score.labels.values()) != pytest.approx(1.0)  # independent sigmoids
    with running_client(model_provider="transformer", model_path=ckpt) as c:
        pred = c.post("/v1/predict", json={"text": "you are awful"}).json()["prediction"]
    assert set(pred["labels"]) == set(JIGSAW_LABELS)


def test_windows_cover_the_whole_text_with_overlap() -> None:
    ids = list(range(100))
    windows = window_token_ids(ids, max_length=16, stride=4, cls_id=-1, sep_id=-2)
    assert all(len(w) <= 16 and w[0] == -1 and w[-1] == -2 for w in windows)
    content = [w[1:-1] for w in windows]
    assert content[0][0] == 0 and content[-1][-1] == 99  # nothing truncated away
    for left, right in zip(content, content[1:], strict=False):
        assert left[-4:] == right[:4]  # neighbours share `stride` tokens


def test_forward_chunks_group_similar_lengths() -> None:
    lengths = [5, 40, 6, 41, 7, 120, 5, 39]
    windows = Windows([[1] * n for n in lengths], list(range(len(lengths))))
    chunks = windows.length_sorted_chunks(chunk_size=3)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))  # each once
    for chunk in chunks:
        sizes = [lengths[i] for i in chunk]
        assert len(chunk) <= 3
        assert max(sizes) <= min(sizes) * 1.25 + 4


def test_long_text_scores_its_most_toxic_window(checkpoint: Path) -> None:
    p = _transformer(checkpoint)
    windows = p.preprocess([LONG])
    assert len(windows.ids) > 5  # split, not truncated
    per_window = p.postprocess(
        p.forward(windows),
        Windows(windows.ids, list(range(len(windows.ids)))),
        len(windows.ids),
    )
    expected = max(s.probability_toxic for s in per_window)
    assert p.predict_batch([LONG])[0].probability_toxic == pytest.approx(expected)
    # The last window holds the end of the text, where the insult is.
    last = p._tokenizer.decode(windows.ids[-1], skip_special_tokens=True)
    assert last.endswith("awful stupid idiot")


def test_onnx_agrees_with_torch(checkpoint: Path, onnx_dir: Path) -> None:
    torch_p = _transformer(checkpoint)
    onnx_p = _onnx(onnx_dir)
    assert onnx_p.version == torch_p.version == "tiny-7"
    texts = [*TEXTS, LONG]
    a = np.array([s.probability_toxic for s in torch_p.predict_batch(texts)])
    b = np.array([s.probability_toxic for s in onnx_p.predict_batch(texts)])
    assert np.abs(a - b).max() < 1e-4
    assert torch_p.preprocess(texts).ids == onnx_p.preprocess(texts).ids  # same windows


def test_int8_quantized_model_loads_and_stays_close(checkpoint: Path, tmp_path: Path) -> None:
    int8 = export_onnx(checkpoint, tmp_path / "int8", quantize=True)
    fp32 = np.array([s.probability_toxic for s in _transformer(checkpoint).predict_batch(TEXTS)])
    q = np.array([s.probability_toxic for s in _onnx(int8).predict_batch(TEXTS)])
    assert np.abs(fp32 - q).max() < 0.1


def test_onnx_provider_through_the_app(onnx_dir: Path) -> None:
    with running_client(model_provider="onnx", model_path=onnx_dir, window_stride=4) as c:
        r = c.post("/v1/predict_batch", json={"texts": [*TEXTS[:5], LONG]})
        assert r.status_code == 200
        preds = r.json()["predictions"]
        assert {p["provider"] for p in preds} == {"onnx"}
        assert {p["model_version"] for p in preds} == {"tiny-7"}
        threshold = 0.42  # from metadata.json
        assert all((p["label"] == "toxic") == (p["probability_toxic"] >= threshold) for p in preds)


def test_onnx_model_instances_serve_the_same_scores(onnx_dir: Path) -> None:
    expected = [s.probability_toxic for s in _onnx(onnx_dir).predict_batch(TEXTS[:5])]
    with (
        running_client(
            model_provider="onnx", model_path=onnx_dir, window_stride=4, model_instances=2
        ) as c,
        ThreadPoolExecutor(4) as pool,
    ):
        assert c.get("/readyz").status_code == 200
        answers = list(pool.map(lambda t: c.post("/v1/predict", json={"text": t}), TEXTS[:5] * 4))
    assert [r.status_code for r in answers] == [200] * 20
    got = [r.json()["prediction"]["probability_toxic"] for r in answers]
    assert got == pytest.approx(expected * 4, abs=1e-6)


def test_onnx_sessions_share_the_cores_between_instances() -> None:
    cores = len(os.sched_getaffinity(0))
    assert intra_op_threads(0, 1) == 0  # onnxruntime's own default: one thread per core
    assert intra_op_threads(0, 2) == max(1, cores // 2)
    assert intra_op_threads(0, 4 * cores) == 1
    assert intra_op_threads(3, 2) == 3  # an explicit setting wins


# --- bad artifacts ---------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    for cls in (TransformerProvider, OnnxProvider):
        with pytest.raises(ModelLoadError, match="model folder not found"):
            cls(tmp_path / "absent").load()


def test_tokenizer_without_its_model(onnx_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    only_tok = tmp_path / "only-tokenizer"
    only_tok.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        (only_tok / name).write_bytes((onnx_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match="ONNX model not found"):
        OnnxProvider(only_tok).load()
    with pytest.raises(ModelLoadError, match="no model weights"):
        TransformerProvider(only_tok).load()


def test_onnx_file_that_is_not_onnx(onnx_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        (bad / name).write_bytes((onnx_dir / name).read_bytes())
    (bad / "model.onnx").write_bytes(b"this is not a protobuf at all" * 100)
    with pytest.raises(ModelLoadError, match="not a loadable ONNX model"):
        OnnxProvider(bad).load()
    with running_client(model_provider="onnx", model_path=bad) as c:
        body = c.get("/readyz").json()
        assert body["status"].startswith("failed: not a loadable ONNX model")
        assert c.get("/healthz").status_code == 200
        assert c.post("/v1/predict", json={"text": "hi"}).status_code == 503


def test_corrupt_config(onnx_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "badcfg"
    bad.mkdir()
    for name in ("tokenizer.json", "model.onnx"):
        (bad / name).write_bytes((onnx_dir / name).read_bytes())
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="model config is not valid JSON"):
        OnnxProvider(bad).load()


def test_stride_must_fit_the_window(checkpoint: Path) -> None:
    with pytest.raises(ModelLoadError, match="WINDOW_STRIDE=20"):
        TransformerProvider(checkpoint, stride=20).load()


# --- the shipped checkpoint ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def test_shipped_transformer_checkpoint_serves_and_matches_its_onnx_export() -> None:
    """`MODEL_PROVIDER=transformer` works on a fresh clone from models/transformer (fp16
    safetensors, loaded as float32), and the shipped int8 onnx model is its export: the two agree
    closely on sentences of both labels, on the toxic score and on the identity_attack head."""
    torch_model = TransformerProvider(REPO / "models" / "transformer")
    torch_model.load()
    onnx_model = OnnxProvider(REPO / "models" / "onnx")
    onnx_model.load()
    assert torch_model.default_threshold == onnx_model.default_threshold
    texts = [
        "I hope you have a lovely day",
        "you are a worthless idiot",
        "My neighbour is a proud gay man and a great cook.",
        "I am going to kill you.",
        "Thanks for the help with my homework!",
    ]
    torch_scores = torch_model.predict_batch(texts)
    onnx_scores = onnx_model.predict_batch(texts)
    for name in ("toxic", "identity_attack"):
        fp16 = np.array([s.labels[name] for s in torch_scores if s.labels is not None])
        int8 = np.array([s.labels[name] for s in onnx_scores if s.labels is not None])
        assert len(fp16) == len(int8) == len(texts)
        assert np.abs(fp16 - int8).max() < 0.05
    fp16 = np.array([s.probability_toxic for s in torch_scores])
    threshold = torch_model.default_threshold
    assert threshold is not None
    assert list(fp16 >= threshold) == [False, True, False, True, False]


def test_a_lone_surrogate_is_scored_like_a_replacement_character(
    checkpoint: Path, onnx_dir: Path
) -> None:
    # JSON may carry a lone surrogate escape ("\ud800"); Rust tokenizers cannot take it, and it
    # used to fail the request with 500 on these providers while tfidf scored it.
    for provider in (_transformer(checkpoint), _onnx(onnx_dir)):
        texts = ["hello \ud800 you idiot", "hello \ufffd you idiot"]
        lone, replaced = provider.predict_batch(texts)
        assert lone.probability_toxic == pytest.approx(replaced.probability_toxic, abs=1e-6)


def _with_metadata(source: Path, target: Path, **extra: object) -> Path:
    """A copy of a model folder whose metadata.json has `extra` added."""
    import json
    import shutil

    shutil.copytree(source, target)
    path = target / "metadata.json"
    metadata = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(metadata | extra))
    return target


def test_input_normalization_named_by_the_artifact_or_the_setting(
    checkpoint: Path, onnx_dir: Path, tmp_path: Path
) -> None:
    """An artifact that says `"input_normalization": "deobfuscate"` scores a respelt insult as
    its plain spelling; INPUT_NORMALIZATION=none turns it off; a folder that says nothing gets
    none."""
    respelt, plain = "you are an 1d10t and a f.u.c.k.e.r", "you are an idiot and a fucker"
    for build, folder in ((_transformer, checkpoint), (_onnx, onnx_dir)):
        marked = _with_metadata(
            folder, tmp_path / f"{folder.name}-norm", input_normalization="deobfuscate"
        )
        provider = build(marked)
        assert provider.input_normalization == "deobfuscate"
        a, b = provider.predict_batch([respelt, plain])
        assert a.probability_toxic == pytest.approx(b.probability_toxic, abs=1e-6)

        off = build(marked, input_normalization="none")
        a, b = off.predict_batch([respelt, plain])
        assert a.probability_toxic != pytest.approx(b.probability_toxic, abs=1e-6)
        assert build(folder).input_normalization == "none"


def test_unknown_input_normalization_fails_the_load(checkpoint: Path, tmp_path: Path) -> None:
    marked = _with_metadata(checkpoint, tmp_path / "odd", input_normalization="stem")
    with pytest.raises(ModelLoadError, match="input_normalization 'stem' is not one of"):
        TransformerProvider(marked, stride=4).load()
