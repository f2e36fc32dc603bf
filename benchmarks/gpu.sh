#!/usr/bin/env bash
# The GPU throughput rows: ViT-S/16 and ViT-B/16 at 224 px, batch 256, bf16, eager then torch.compile'd,
# ours beside the peers in the same process; then ViT-S pretraining end to end from prepared shards beside its
# step-only rate (benchmarks/pretrain_e2e.py). Meant to finish in under 8 minutes on one H100/H200.
# Results: JSON lines in $OUT/throughput.jsonl (OUT defaults to benchmarks/out).
# SMOKE=1 runs the same commands at a tiny size without compiling (a check of the script on CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-benchmarks/out}
PEAK=${PEAK:-989}  # dense bf16 TFLOP/s of an H100/H200 SXM, for MFU
mkdir -p "$OUT"
log="$OUT/throughput.jsonl"
: > "$log"

if [[ "${SMOKE:-0}" == 1 ]]; then
  common=(--batch-size 2 --steps 1 --warmup 1 --image-size 32)
  sizes=(tiny)
  compiled=()
  e2e=(--preset vit_tiny_patch16_224 --batch-size 2 --steps 1 --warmup 1 --image-size 32 --num-workers 1)
else
  common=(--batch-size 256 --steps 20 --warmup 5 --peak "$PEAK")
  sizes=(small base)
  compiled=(--compile --only cxrgm,hf_simmim,timm)
  e2e=(--preset vit_small_patch16_224 --batch-size 256 --warmup 60 --steps 120)  # past the 14 x 4 batches in flight
fi

"$PYTHON" -c "import timm" 2>/dev/null || echo '{"note": "pip install timm for the timm rows"}' | tee -a "$log"
for size in "${sizes[@]}"; do
  "$PYTHON" benchmarks/throughput.py --size "$size" "${common[@]}" | tee -a "$log"
  if [[ ${#compiled[@]} -gt 0 ]]; then
    "$PYTHON" benchmarks/throughput.py --size "$size" "${common[@]}" "${compiled[@]}" | tee -a "$log"
  fi
done
"$PYTHON" benchmarks/pretrain_e2e.py --mixed-precision bf16 "${e2e[@]}" | tee -a "$log"
echo "wrote $log"
