#!/usr/bin/env bash
# The GPU preset of the quality benchmark (benchmarks/quality.py --size gpu: ViT-S/16 at 224 px, bf16, 8 loader
# workers), meant to finish in under 8 minutes on one H100/H200. Data: DATA, by default offline/data, which
# `make offline` fills with ../shared/data resized to 224 px (benchmarks/bundle_data.py: the pixels the training
# reads from the originals, in 45 MiB instead of 61), else ../shared/data itself. Needs no install of this repository
# and uses offline/wheels like gpu.sh. Everything goes to QUALITY_OUT (default outputs/quality_gpu); results.json,
# results.md, commands.sh, completed.jsonl (each finished command's result and time), the loss curve, the last
# reconstruction grid and the log are copied to OUT (default benchmarks/out). Run again on the same QUALITY_OUT, it
# goes on where a stopped run (a time limit) left off. SMOKE=1 runs the same wiring with `quality.py --smoke` (a
# check of the script on CPU). Arguments go to quality.py, e.g. `bash benchmarks/gpu_quality.sh --model_config
# '{"low_precision_residual": true, "hidden_act": "gelu_pytorch_tanh"}'` (with another QUALITY_OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
source benchmarks/offline_env.sh
if [[ -z "${DATA:-}" ]]; then
  if [[ -d "$OFFLINE/data" ]]; then DATA=$OFFLINE/data; else DATA=../shared/data; fi
fi
if [[ "${SMOKE:-0}" == 1 ]]; then preset=(--smoke); else preset=(--size gpu); fi
QUALITY_OUT=${QUALITY_OUT:-outputs/quality_gpu}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

"$PYTHON" -m benchmarks.quality "${preset[@]}" --data_dir "$DATA" --output_dir "$QUALITY_OUT" "$@" 2>&1 \
  | tee "$OUT/quality_log.txt"
status=${PIPESTATUS[0]}
for file in results.json results.md commands.sh completed.jsonl pretrain/loss_curve.png; do
  if [[ -f "$QUALITY_OUT/$file" ]]; then cp "$QUALITY_OUT/$file" "$OUT/"; fi
done
grids=("$QUALITY_OUT"/pretrain/grids/*.png)
if [[ -f "${grids[-1]}" ]]; then cp "${grids[-1]}" "$OUT/"; fi
echo "quality run exit status $status; files in $OUT"
exit "$status"
