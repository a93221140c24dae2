"""The `cascade` provider on the shipped tfidf and onnx models: who answers which text, the
band, the stage-2 map, readiness, explanations, metrics and the access log.

Every figure is read from the shipped models at test time (their scores pick the band used
here), so the tests hold for whatever models are shipped.
"""

from __future__ import annotations

import json
import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ml_prod_api.errors import ModelLoadError
from ml_prod_api.providers import create_provider
from ml_prod_api.providers.cascade import (
    STAGE2_FEATURE,
    CascadeProvider,
    CascadeSettings,
    Stage2Calibration,
    logit,
)
from ml_prod_api.providers.onnx import OnnxProvider
from ml_prod_api.providers.tfidf import TfidfProvider
from ml_prod_api.settings import ConfigError, load_settings
from tests.conftest import make_settings, running_client
from tests.support.servers import run_server

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

TEXTS = [
    "thank you so much for the lovely birthday wishes",
    "the meeting moved to thursday afternoon",
    "you are a complete idiot and everyone knows it",
    "shut up you stupid bitch",
    "I can't believe they cancelled the show, that's so annoying",
    "those people should go back where they came from",
    "what a load of crap this game was",
    "women are too emotional to be leaders",
    "I will find you and make you pay",
    "great job on the release, team",
    "he's an absolute moron but I love him",
    "kill it with fire lol, this spider is huge",
]
# An unusual map, so a test can tell that it was applied.
MAP = Stage2Calibration(a=1.3, b=-0.2)


@pytest.fixture(scope="module")
def tfidf() -> TfidfProvider:
    provider = TfidfProvider(MODELS / "tfidf")
    provider.load()
    return provider


@pytest.fixture(scope="module")
def onnx() -> OnnxProvider:
    provider = OnnxProvider(MODELS / "onnx")
    provider.load()
    return provider


@pytest.fixture(scope="module")
def first_scores(tfidf: TfidfProvider) -> list[float]:
    return [s.probability_toxic for s in tfidf.predict_batch(TEXTS)]


@pytest.fixture(scope="module")
def middle_band(first_scores: list[float]) -> tuple[float, float]:
    """A band holding the middle third of the texts by their tfidf score."""
    ordered = sorted(first_scores)
    return ordered[4], ordered[7]


def write_metadata(
    folder: Path,
    tfidf: TfidfProvider,
    onnx: OnnxProvider,
    band: tuple[float, float],
    **extra: Any,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {
        "provider": "cascade",
        "stages": {
            "tfidf": {"model_version": tfidf.version},
            "onnx": {"model_version": onnx.version},
        },
        "band": {"low": band[0], "high": band[1]},
        "stage2_calibration": {"a": MAP.a, "b": MAP.b},
        "threshold": 0.4,
    }
    metadata.update(extra)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


@pytest.fixture(scope="module")
def cascade_dir(
    tmp_path_factory: pytest.TempPathFactory,
    tfidf: TfidfProvider,
    onnx: OnnxProvider,
    middle_band: tuple[float, float],
) -> Path:
    return write_metadata(tmp_path_factory.mktemp("cascade"), tfidf, onnx, middle_band)


def build(folder: Path, **settings: Any) -> CascadeProvider:
    built = CascadeSettings(_env_file=None, model_path=folder, **settings).build_provider()  # type: ignore[call-arg]
    built.load()
    return built


@pytest.fixture(scope="module")
def cascade(cascade_dir: Path) -> CascadeProvider:
    return build(cascade_dir)


def test_only_texts_inside_the_band_reach_stage_2(
    cascade: CascadeProvider,
    onnx: OnnxProvider,
    first_scores: list[float],
    middle_band: tuple[float, float],
) -> None:
    low, high = middle_band
    inside = [i for i, p in enumerate(first_scores) if low <= p <= high]
    assert 0 < len(inside) < len(TEXTS)
    scores = cascade.predict_batch(TEXTS)
    for i, score in enumerate(scores):
        if i in inside:
            assert score.stage == "onnx"
            alone = onnx.predict_batch([TEXTS[i]])[0].probability_toxic
            assert score.probability_toxic == pytest.approx(MAP(alone), abs=1e-5)
        else:
            assert score.stage == "tfidf"
            assert score.probability_toxic == first_scores[i]  # stage 1's answer, untouched


def test_stage_2_gets_one_call_with_just_the_band_texts(
    cascade: CascadeProvider,
    first_scores: list[float],
    middle_band: tuple[float, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []
    real = cascade.stage2.predict_batch

    def spy(texts: list[str]) -> Any:
        calls.append(list(texts))
        return real(texts)

    monkeypatch.setattr(cascade.stage2, "predict_batch", spy)
    cascade.predict_batch(TEXTS)
    low, high = middle_band
    assert calls == [[t for t, p in zip(TEXTS, first_scores, strict=True) if low <= p <= high]]
    calls.clear()
    outside = [t for t, p in zip(TEXTS, first_scores, strict=True) if not low <= p <= high]
    assert {s.stage for s in cascade.predict_batch(outside)} == {"tfidf"}
    assert calls == []  # no band text, no stage-2 call


def test_stage_2_calls_never_exceed_its_own_batch_limit(
    cascade_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = build(cascade_dir, cascade_band_low=0.0, cascade_band_high=1.0)
    monkeypatch.setattr(OnnxProvider, "max_batch_size", property(lambda self: 5))
    sizes: list[int] = []
    real = provider.stage2.predict_batch
    monkeypatch.setattr(
        provider.stage2, "predict_batch", lambda texts: sizes.append(len(texts)) or real(texts)
    )
    scores = provider.predict_batch(TEXTS)
    assert sizes == [5, 5, 2]
    assert [s.stage for s in scores] == ["onnx"] * len(TEXTS)
    # The cascade's own limit is stage 1's: it takes every text of a call.
    assert provider.max_batch_size == provider.stage1.max_batch_size


def test_the_band_from_settings_overrides_the_metadata(
    cascade_dir: Path, onnx: OnnxProvider
) -> None:
    settings = make_settings(
        model_provider="cascade",
        model_path=cascade_dir,
        cascade_band_low=0.0,
        cascade_band_high=1.0,
    )
    everything = create_provider(settings)
    everything.load()
    scores = everything.predict_batch(TEXTS[:3])
    alone = onnx.predict_batch(TEXTS[:3])
    assert [s.stage for s in scores] == ["onnx"] * 3
    for got, want in zip(scores, alone, strict=True):
        assert got.probability_toxic == pytest.approx(MAP(want.probability_toxic), abs=1e-5)


def test_short_texts_use_their_own_band_and_a_band_in_settings_holds_for_all(
    tmp_path: Path, tfidf: TfidfProvider, onnx: OnnxProvider, first_scores: list[float]
) -> None:
    """Texts of at most `max_words` words go by `short_texts`' band, the longer ones by `band`:
    here a band of [1, 1] (no tfidf score reaches 1) for short texts and [0, 1] for long ones,
    so the stage that answers is the text length's."""
    max_words = 7
    assert max(first_scores) < 1.0
    short_band = {"max_words": max_words, "low": 1.0, "high": 1.0}
    provider = build(write_metadata(tmp_path, tfidf, onnx, (0.0, 1.0), short_texts=short_band))
    short = [len(t.split()) <= max_words for t in TEXTS]
    assert 0 < sum(short) < len(TEXTS)
    stages = [s.stage for s in provider.predict_batch(TEXTS)]
    assert stages == ["tfidf" if is_short else "onnx" for is_short in short]
    explained = [provider.explain(t)[0].feature == STAGE2_FEATURE for t in TEXTS]
    assert explained == [not is_short for is_short in short]
    # The pair decides the answers, so it is part of the version.
    single = build(write_metadata(tmp_path / "single", tfidf, onnx, (0.0, 1.0)))
    assert provider.version != single.version
    # A band set in settings holds for every text.
    everything = build(tmp_path, cascade_band_low=0.0, cascade_band_high=1.0)
    assert {s.stage for s in everything.predict_batch(TEXTS)} == {"onnx"}
    bad = {**short_band, "max_words": 0}
    with pytest.raises(ModelLoadError, match="max_words >= 1"):
        build(write_metadata(tmp_path / "bad", tfidf, onnx, (0.0, 1.0), short_texts=bad))


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CASCADE_BAND_LOW": "0.2"}, "set together"),
        ({"CASCADE_BAND_LOW": "0.6", "CASCADE_BAND_HIGH": "0.3"}, "above CASCADE_BAND_HIGH"),
        ({"CASCADE_BAND_LOW": "0.1", "CASCADE_BAND_HIGH": "1.5"}, "less than or equal to 1"),
    ],
)
def test_a_bad_band_setting_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    monkeypatch.setenv("MODEL_PROVIDER", "cascade")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert needle in str(info.value)


def test_model_version_names_both_stages(
    cascade: CascadeProvider, tfidf: TfidfProvider, onnx: OnnxProvider
) -> None:
    version = cascade.version
    assert version.startswith("cascade-")
    assert tfidf.version in version and onnx.version in version
    assert cascade.default_threshold == 0.4  # the cascade's own, from its metadata


def test_a_band_chosen_with_other_models_fails_the_load(
    tmp_path: Path, tfidf: TfidfProvider, onnx: OnnxProvider
) -> None:
    folder = write_metadata(tmp_path, tfidf, onnx, (0.2, 0.8))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["stages"]["onnx"]["model_version"] = "onnx-minilm-000000000000"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="select_cascade_band"):
        build(folder)


def test_missing_or_broken_metadata_fails_the_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        build(tmp_path)
    (tmp_path / "metadata.json").write_text(json.dumps({"band": {"low": 0.9, "high": 0.1}}))
    with pytest.raises(ModelLoadError):
        build(tmp_path)


def test_a_stage_2_that_cannot_load_fails_readiness(cascade_dir: Path, tmp_path: Path) -> None:
    # No silent fallback to stage 1 alone: the service never turns ready.
    with running_client(
        model_provider="cascade", model_path=cascade_dir, cascade_onnx_path=tmp_path / "nothing"
    ) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "failed" in ready.json()["status"]
        assert client.post("/v1/predict", json={"text": "hello"}).status_code == 503


def test_explanation_is_stage_1s_plus_what_stage_2_changed(
    cascade: CascadeProvider, first_scores: list[float], middle_band: tuple[float, float]
) -> None:
    low, high = middle_band
    inside = next(t for t, p in zip(TEXTS, first_scores, strict=True) if low <= p <= high)
    outside = next(t for t, p in zip(TEXTS, first_scores, strict=True) if not low <= p <= high)
    assert cascade.explain(outside, 10) == cascade.stage1.explain(outside, 10)

    every = cascade.explain(inside, 100_000)
    assert every[0].feature == STAGE2_FEATURE
    p = cascade.predict_batch([inside])[0].probability_toxic
    intercept = cascade.stage1.model.intercept
    assert sum(c.weight for c in every) + intercept == pytest.approx(logit(p), abs=1e-6)
    assert len(cascade.explain(inside, 3)) == 3


def _stage_totals(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "inference_stage_texts_total" and s.labels["provider"] == "cascade":
                out[s.labels["stage"]] = out.get(s.labels["stage"], 0.0) + s.value
    return out


def test_through_the_app_with_two_instances(
    cascade_dir: Path, cascade: CascadeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    expected = cascade.predict_batch(TEXTS)
    with running_client(
        model_provider="cascade", model_path=cascade_dir, model_instances=2
    ) as client:
        ready = client.get("/readyz").json()
        assert ready["ready"] and ready["model_version"] == cascade.version
        with caplog.at_level("INFO", logger="ml_prod_api.access"):
            body = client.post("/v1/predict_batch", json={"texts": TEXTS}).json()
            single = client.post("/v1/predict", json={"text": TEXTS[0]}).json()
        got = [p["probability_toxic"] for p in body["predictions"]]
        assert got == pytest.approx([s.probability_toxic for s in expected], abs=1e-5)
        assert single["prediction"]["provider"] == "cascade"
        n_onnx = sum(s.stage == "onnx" for s in expected)
        logged = [r for r in caplog.records if getattr(r, "batch_size", None) == len(TEXTS)]
        assert logged[0].stages == {"tfidf": len(TEXTS) - n_onnx, "onnx": n_onnx}  # type: ignore[attr-defined]
        totals = _stage_totals(client.get("/metrics").text)
        assert totals["onnx"] == n_onnx
        assert totals["tfidf"] == len(TEXTS) - n_onnx + 1


def test_other_providers_log_and_count_no_stages(caplog: pytest.LogCaptureFixture) -> None:
    with running_client() as client, caplog.at_level("INFO", logger="ml_prod_api.access"):
        client.post("/v1/predict_batch", json={"texts": ["a", "b"]})
        assert "inference_stage_texts_total{" not in client.get("/metrics").text
    access = [r for r in caplog.records if getattr(r, "batch_size", None) == 2]
    assert access and not hasattr(access[0], "stages")


def test_the_shipped_cascade_was_chosen_with_the_shipped_models(
    tfidf: TfidfProvider, onnx: OnnxProvider
) -> None:
    shipped = build(MODELS / "cascade")
    metadata = json.loads((MODELS / "cascade" / "metadata.json").read_text())
    assert metadata["stages"]["tfidf"]["model_version"] == tfidf.version
    assert metadata["stages"]["onnx"]["model_version"] == onnx.version
    band = shipped.config.band
    assert 0.0 <= band.low <= band.high <= 1.0
    threshold = shipped.default_threshold
    assert threshold is not None and 0.0 < threshold < 1.0
    # The figures it was chosen on are in the metadata, for every validation source.
    assert set(metadata["validation"]["per_source"]) >= {"tweeteval_offensive", "edos"}


@pytest.fixture
def served_cascade(cascade_dir: Path, tmp_path: Path) -> Iterator[Any]:
    metrics_dir = tmp_path / "metrics"
    with run_server(
        MODEL_PROVIDER="cascade",
        MODEL_PATH=str(cascade_dir),
        WEB_CONCURRENCY="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    ) as server:
        server.wait_ready(timeout_s=90)
        server.metrics_dir = metrics_dir  # type: ignore[attr-defined]
        yield server
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)


@pytest.mark.integration
@pytest.mark.slow
def test_stage_counts_add_up_across_worker_processes(
    served_cascade: Any, cascade: CascadeProvider
) -> None:
    expected = {"tfidf": 0, "onnx": 0}
    for text in TEXTS * 2:
        # A new connection each time, so the kernel spreads them over both workers.
        with httpx2.Client() as c:
            answer = c.post(served_cascade.url + "/v1/predict", json={"text": text})
        assert answer.status_code == 200
        stage = cascade.predict_batch([text])[0].stage
        assert stage is not None
        expected[stage] += 1
    pids = {p.stem.rsplit("_", 1)[1] for p in served_cascade.metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2, "both workers should have served"
    # Whichever worker answers the scrape, the counts are the sums over both workers.
    for _ in range(3):
        with httpx2.Client() as c:
            assert _stage_totals(c.get(served_cascade.url + "/metrics").text) == expected


def test_the_stage_2_map() -> None:
    assert Stage2Calibration()(0.37) == 0.37  # no map: stage 2's own probability
    assert MAP(0.5) == pytest.approx(1 / (1 + math.exp(0.2)))
    assert MAP(0.2) < MAP(0.3) < MAP(0.9)  # a > 0 keeps stage 2's order
