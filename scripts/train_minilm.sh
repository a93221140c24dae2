#!/usr/bin/env bash
# The shipped MiniLM from scratch, one command (1.5 to 2 hours on 2 cores):
#
#   ./scripts/train_minilm.sh [DATA_DIR]        # default ../shared/data
#
# 1. the teacher: the tweet-only int8 MiniLM of commit b862c49, read from git history (a shallow
#    clone lacks it: `git fetch --unshallow`), scores the tweets of the training corpus;
# 2. `train_transformer` with the shipped recipe: the tweets' targets half label, half teacher,
#    the project's own templates weighed 2, the insult templates; resumable (run this script again);
# 3. the weights of its last three evaluated points (epochs 1.0, 1.5, 2.0) averaged, then
#    calibrated and given their threshold by `--finalize-only` -> models/.checkpoints/transformer-fp32;
# 4. its identity_attack head, the int8 export and its checks against fp32 (-> models/onnx), the
#    fp16 copy (-> models/transformer), and the int8 model's evaluation as served: test splits,
#    bias sets, suite (-> models/onnx/metadata.json, docs/model/onnx_calibration.png, and the
#    model card's tables in $WORK/onnx-evaluation.md).
#
# Every step is one of `training/`'s commands; this script only chains them, since the recipe
# needs the teacher's scores before training and an average of three points after it. Work files
# go to $WORK (default models/.checkpoints/minilm, ignored by git). Deterministic for the seed
# (20190101) and 2 torch threads. MODEL_CARD.md, "Training" and "Cost and reproduction".
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${1:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-models/.checkpoints/minilm}
TEACHER_COMMIT=b862c49
FINAL=models/.checkpoints/transformer-fp32
RECIPE=(--teacher "$WORK/teacher.npz" --teacher-share 0.5 --teacher-source tweeteval_offensive
        --weight templates=2 --insult-templates)

mkdir -p "$WORK/teacher"
for f in config.json metadata.json model.onnx tokenizer.json tokenizer_config.json; do
    [ -s "$WORK/teacher/$f" ] || git show "$TEACHER_COMMIT:models/onnx/$f" > "$WORK/teacher/$f"
done
[ -s "$WORK/teacher.npz" ] || "$PY" -m training.teacher_scores --model "$WORK/teacher" \
    --source tweeteval_offensive --insult-templates --data-dir "$DATA_DIR" \
    --output "$WORK/teacher.npz"

# A run that ended (its epochs done, or stopped early) is not finalized again when this script
# is run again; one its time budget stopped is resumed.
if ! grep -qE '"stop_reason": "(completed|early stop)' "$WORK/run/metadata.json" 2>/dev/null; then
    "$PY" -m training.train_transformer --data-dir "$DATA_DIR" "${RECIPE[@]}" \
        --output "$WORK/run" --checkpoint-dir "$WORK/state"
fi

points=("$WORK"/state/eval-step*.pt)  # zero-padded step numbers: the glob's order is the steps'
[ "${#points[@]}" -ge 3 ] || { echo "expected 3 evaluated points in $WORK/state" >&2; exit 1; }
last_three=("${points[@]: -3}")
"$PY" -m training.average_checkpoints --output "$WORK/average" "${last_three[@]}"
"$PY" -m training.train_transformer --finalize-only --checkpoint-dir "$WORK/average" \
    --output "$FINAL" --data-dir "$DATA_DIR" "${RECIPE[@]}"

# The head learns from the insult templates too, weighed 5: the best of 1 / 2 / 5 / 10 by its
# selection score on validation (MODEL_CARD.md, "The identity_attack heads").
"$PY" -m training.train_transformer_head --checkpoint "$FINAL" --data-dir "$DATA_DIR" \
    --insult-templates --weight templates=5
"$PY" -m training.export_onnx --checkpoint "$FINAL" --data-dir "$DATA_DIR" --skip-evaluation
"$PY" -m training.ship_checkpoint --checkpoint "$FINAL" --data-dir "$DATA_DIR"
"$PY" -m training.evaluate_sources --provider onnx --data-dir "$DATA_DIR" --write-metadata \
    --markdown "$WORK/onnx-evaluation.md"
