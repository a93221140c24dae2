"""Average the best checkpoints of several fine-tuning runs (a "model soup") for `--finalize-only`.

    python -m training.average_checkpoints --output DIR STATE_DIR STATE_DIR [...]
    python -m training.average_checkpoints --output DIR STATE_DIR/eval-step*.pt
    python -m training.average_checkpoints --output DIR STATE_DIR/eval-step005710.pt  # one point
    python -m training.train_transformer --finalize-only --checkpoint-dir DIR --output OUT

Runs fine-tuned from the same base weights with the same seed stay close enough in weight space
for their average to be a model of its own, which can judge better than each run; so do the
points one run passes through late in training (each evaluation's weights are kept as
`eval-stepNNNNNN.pt`), whose average is the stochastic weight average of that run. This
writes `DIR/best.pt`, the uniform average of every `STATE_DIR/best.pt` or weights file given
(uncalibrated, as training saves them), and `DIR/state.pt`, a fresh training state naming the
runs: the two files `--finalize-only` reads, so the average is calibrated and given its
threshold as a run's best checkpoint is. The shipped MiniLM is the average of its run's last three
evaluated points (`scripts/train_minilm.sh`); averages of separate runs were tried and not shipped
(MODEL_CARD, "Tried and not shipped").
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from training.train_transformer import TrainState


def average(state_dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean of every floating-point tensor; other tensors (position ids) from the first."""
    keys = set(state_dicts[0])
    for other in state_dicts[1:]:
        if set(other) != keys:
            raise ValueError("the checkpoints hold different tensors: not the same architecture")
    out: dict[str, Any] = {}
    for key, first in state_dicts[0].items():
        if first.is_floating_point():
            total = sum(sd[key].double() for sd in state_dicts)
            out[key] = (total / len(state_dicts)).to(first.dtype)
        else:
            out[key] = first
    return out


def weights_file(path: Path) -> Path:
    """A training state folder stands for its best checkpoint; a file for itself."""
    return path / "best.pt" if path.is_dir() else path


def source_state(runs: list[Path]) -> TrainState:
    """The training state of the one run whose evaluated points are averaged, if that is what
    `runs` are (weight files of one folder that holds its `state.pt`), so the finalized model's
    metadata keeps that run's evaluations, steps and time; otherwise an empty state."""
    import torch

    folders = {run.parent for run in runs}
    saved = next(iter(folders)) / "state.pt"
    if len(folders) != 1 or any(run.is_dir() for run in runs) or not saved.is_file():
        return TrainState(history=[])
    state = TrainState(**torch.load(saved, weights_only=False)["state"])
    return TrainState(step=state.step, history=state.history, seconds=state.seconds)


def main(argv: list[str] | None = None) -> None:
    import torch

    parser = argparse.ArgumentParser(
        prog="python -m training.average_checkpoints", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--output", type=Path, required=True, help="checkpoint folder to write")
    parser.add_argument(
        "runs", type=Path, nargs="+", help="training state folders (their best.pt) or weight files"
    )
    args = parser.parse_args(argv)
    if len(args.runs) < 2 and args.runs[0].is_dir():
        parser.error("give at least two runs to average, or one weights file to finalize")
    soup = average([torch.load(weights_file(run), weights_only=True) for run in args.runs])
    args.output.mkdir(parents=True, exist_ok=True)
    torch.save(soup, args.output / "best.pt")
    state = source_state(args.runs)
    state.history = [*(state.history or ()), {"averaged": [str(run) for run in args.runs]}]
    torch.save({"state": asdict(state)}, args.output / "state.pt")
    print(f"averaged {len(args.runs)} checkpoints ({len(soup)} tensors) -> {args.output}")


if __name__ == "__main__":
    main()
