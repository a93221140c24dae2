"""Averaging runs' best checkpoints into a folder `train_transformer --finalize-only` reads."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training import average_checkpoints, train_transformer  # noqa: E402


def write_run(folder: Path, weight: float, ids: list[int]) -> Path:
    folder.mkdir(parents=True)
    torch.save(
        {"layer.weight": torch.full((2, 3), weight), "position_ids": torch.tensor(ids)},
        folder / "best.pt",
    )
    return folder


def test_the_average_is_weight_by_weight_and_finalize_reads_it(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", 1.0, [0, 1])
    b = write_run(tmp_path / "b", 2.0, [0, 1])
    c = write_run(tmp_path / "c", 6.0, [0, 1])
    average_checkpoints.main(["--output", str(tmp_path / "soup"), str(a), str(b), str(c)])
    soup = torch.load(tmp_path / "soup" / "best.pt", weights_only=True)
    assert torch.equal(soup["layer.weight"], torch.full((2, 3), 3.0))
    assert soup["position_ids"].tolist() == [0, 1]
    blob = torch.load(tmp_path / "soup" / "state.pt", weights_only=False)
    state = train_transformer.TrainState(**blob["state"])  # as --finalize-only reads it
    assert state.history == [{"averaged": [str(a), str(b), str(c)]}]


def test_checkpoints_of_different_shapes_are_refused(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a", 1.0, [0, 1])
    other = tmp_path / "b"
    other.mkdir()
    torch.save({"layer.weight": torch.ones(2, 3)}, other / "best.pt")
    with pytest.raises(ValueError, match="different tensors"):
        average_checkpoints.main(["--output", str(tmp_path / "soup"), str(a), str(other)])


def test_weight_files_of_one_run_are_averaged_as_given(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", 9.0, [0, 1])
    for step, weight in ((100, 2.0), (200, 4.0)):
        torch.save(
            {"layer.weight": torch.full((2, 3), weight), "position_ids": torch.tensor([0, 1])},
            run / train_transformer.evaluated_weights_name(step),
        )
    files = sorted(run.glob("eval-step*.pt"))
    average_checkpoints.main(["--output", str(tmp_path / "swa"), *map(str, files)])
    swa = torch.load(tmp_path / "swa" / "best.pt", weights_only=True)
    assert torch.equal(swa["layer.weight"], torch.full((2, 3), 3.0))  # best.pt (9.0) not read


def test_points_of_one_run_keep_its_evaluations_for_the_metadata(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", 9.0, [0, 1])
    evaluations = [{"step": 100, "selection_score": 0.9}, {"step": 200, "selection_score": 0.8}]
    trained = train_transformer.TrainState(
        step=200, best_score=0.9, best_step=100, history=evaluations, seconds=60.0
    )
    torch.save({"state": asdict(trained)}, run / "state.pt")
    files = []
    for step in (100, 200):
        files.append(run / train_transformer.evaluated_weights_name(step))
        torch.save(
            {"layer.weight": torch.ones(2, 3), "position_ids": torch.tensor([0, 1])}, files[-1]
        )
    average_checkpoints.main(["--output", str(tmp_path / "swa"), *map(str, files)])
    blob = torch.load(tmp_path / "swa" / "state.pt", weights_only=False)
    state = train_transformer.TrainState(**blob["state"])
    assert state.history == [*evaluations, {"averaged": [str(f) for f in files]}]
    assert (state.step, state.seconds) == (200, 60.0)
    assert state.best_step == 0  # the run's own pick is not the average


def test_one_weights_file_is_copied_to_be_finalized_but_one_run_is_refused(
    tmp_path: Path,
) -> None:
    run = write_run(tmp_path / "run", 5.0, [0, 1])
    average_checkpoints.main(["--output", str(tmp_path / "one"), str(run / "best.pt")])
    one = torch.load(tmp_path / "one" / "best.pt", weights_only=True)
    assert torch.equal(one["layer.weight"], torch.full((2, 3), 5.0))
    with pytest.raises(SystemExit):
        average_checkpoints.main(["--output", str(tmp_path / "soup"), str(run)])
