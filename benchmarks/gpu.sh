#!/usr/bin/env bash
# The GPU throughput rows: ViT-S/16 and ViT-B/16 at 224 px, batch 256, bf16, ours beside the peers in the same
# process, and ViT-S pretraining end to end from prepared shards beside its step-only rate, both with CUDA graphs
# (benchmarks/pretrain_e2e.py). All default rows: an estimated 8 minutes on one H100/H200 (ROWS= splits them over
# calls). Rows run in order of value (ViT-S eager and the mask sampler, ViT-S end to end, the compiled anchors and
# mask samplers, ours with CUDA graphs, the same for ViT-B), each on its own: a failing row is reported and the next
# one still runs; the exit status is 1 if any failed. Each row's wall time follows it in the log ({"row", "seconds"}).
# Results: JSON lines in $OUT/throughput.jsonl (OUT defaults to benchmarks/out). Row gpu-tests (named, it runs
# first; about 1.5 minutes): the tests that need the GPU (tests/test_masking.py: its masks;
# tests/test_device_placement.py: no step waits for the device) or its torch (tests/test_compile.py: each model
# traces as one graph); summary in $OUT/gpu_tests.txt. The ViT-S rows also append each model's top 40 kernels
# over 3 profiled steps to $OUT/profiles.txt (the e2e row: 3 steps of the training loop), and the device's busy
# time per step beside the step's timed wall time (the difference: the device waiting), where the step's time goes,
# for work without a GPU.
# Needs no install of this repository (its root goes on PYTHONPATH). On an offline host whose image lacks some
# packages, bring the folder that `make offline` fills (OFFLINE, default ./offline): its wheels are installed into
# a temporary folder first, without touching the image's packages, and its cache serves the sample images.
# SMOKE=1 runs the same commands at a tiny size without compiling (a check of the script on CPU).
# ROWS=small,e2e (for example) runs only those rows. Eleven rows run only when named: gpu-tests, `default-mode` (ours compiled
# in torch.compile's default mode, without CUDA graphs, ViT-S profiled and ViT-B: GMML with eager and with compiled
# masks, fine-tuning; about 3 minutes), `small-host` (compiled ViT-S
# fine-tuning beside timm with our stochastic depth off, profiled; about 2 minutes), `small-attention` (our ViT-S rows
# with CUDA graphs and each scaled_dot_product_attention backend forced: cudnn, flash, efficient, each compiled afresh;
# about 4 minutes),
# `small-autotune` (GMML, fine-tuning and timm compiled with `max-autotune`, profiled: whether tuned GEMMs with the
# bias and GELU fused into their epilogues take the step's GELU traffic off; on the H200 tuning one GEMM shape took
# 50 s, the GMML model's alone more than 3 minutes: give it a call of its own), `small-experiments` (our ViT-S GMML
# step with CUDA graphs as the recipes train it, then without each of their two faster model settings, then without
# both (the config's defaults): the encoder's residual stream in bfloat16 (--no-low-precision-residual: float32),
# GELU's tanh approximation (--hidden-act gelu: exact); one process each, about 3 minutes), `base-experiments` (ViT-B
# likewise, profiled: as the recipes train it and without both settings; about 2 minutes), `small-fusion` (our ViT-S
# GMML step with CUDA graphs as it is and with Inductor's pointwise-into-reduction fusion allowed, then also with its
# n-D tiling preferred, profiled: whether the GELU backward and the q/k/v stacking take their bias gradients' sums
# into the same pass; about 3 minutes), `first-cover-counts` (the mask sampler's count of rectangles per image from
# its first-cover map: the histogram masking.py uses beside three scatter-free ways, alone and inside the compiled
# corruption, batch 256 at 224 px, benchmarks/first_cover_counts.py; an estimated 3 minutes: eight compiles),
# `small-batch` (ViT-S fine-tuning at batch 64, the quality preset's, where the host bounds the step: the model's
# step beside the peers, the training loop's step alone and end to end (on DATA's Kermany images, DATA default
# offline/data, when there, else the sample set), and the loader's time per epoch of those images; about 2
# minutes) and `device-smoke` (not a speed row: every training script once, tiny, on the GPU,
# $OUT/device_smoke.jsonl; about 3).
# Measured on one H200: the default rows about 8 minutes before the CUDA-graph rows were added (small-graphs 2.3
# minutes with its sampler rows, base-graphs 1.3; left out of the defaults since: compiled SimMIM, about 1 minute,
# our default-mode rows, now row default-mode, and the GPU tests, now row gpu-tests), e2e 1.3, device-smoke about 3.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/out}
PEAK=${PEAK:-989}  # dense bf16 TFLOP/s of an H100/H200 SXM, for MFU
# A comma-separated subset of these rows (to split the run over calls, or to repeat one); by default all but gpu-tests
# and the last ten. A name that is none of them stops the script before anything runs.
known_rows=(gpu-tests small e2e small-compiled small-graphs base base-compiled base-graphs default-mode small-host
            small-attention small-autotune small-experiments base-experiments small-fusion first-cover-counts small-batch
            device-smoke)
ROWS=${ROWS:-small,e2e,small-compiled,small-graphs,base,base-compiled,base-graphs}
IFS=, read -ra asked <<< "$ROWS"
for name in "${asked[@]}"; do
  if [[ " ${known_rows[*]} " != *" $name "* ]]; then
    echo "ROWS: no row named '$name'; the rows: ${known_rows[*]}" >&2
    exit 1
  fi
done
mkdir -p "$OUT"
# appended to, never emptied: runs in one OUT (several calls' ROWS) keep their lines, each run after its environment line
log="$OUT/throughput.jsonl"
source benchmarks/offline_env.sh
"$PYTHON" - <<'EOF' | tee -a "$log"
import importlib, json, platform
import torch
versions = {"python": platform.python_version()}
for name in ("torch", "transformers", "accelerate", "datasets", "huggingface_hub", "timm", "pyarrow"):
    try:
        versions[name] = importlib.import_module(name).__version__
    except ImportError as error:
        versions[name] = f"missing ({error})"
versions["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(json.dumps({"environment": versions}))
EOF

if [[ "${SMOKE:-0}" == 1 ]]; then
  common=(--batch-size 2 --steps 1 --warmup 1 --image-size 32)
  first=tiny
  second=tiny
  compiled=()  # compiling takes minutes on a CPU: the compiled rows run eager
  graphs=()
  backends=(flash math)  # the CPU has no cuDNN or memory-efficient attention
  fusion=()  # Inductor settings need compiling: the row runs as it is only
  counts=(--batch-size 2 --image-size 32 --rounds 1)
  e2e=(--preset vit_tiny_patch16_224 --batch-size 2 --steps 1 --warmup 1 --image-size 32 --num-workers 1)
  small_batch=(--batch-size 2 --steps 1 --warmup 1 --image-size 32)
  small_batch_e2e=(--preset vit_tiny_patch16_224 "${small_batch[@]}" --num-workers 1)
else
  common=(--batch-size 256 --steps 20 --warmup 5 --peak "$PEAK")
  first=small
  second=base
  compiled=(--compile)
  graphs=(--compile --compile-mode reduce-overhead)  # CUDA graphs: the host out of the step
  backends=(cudnn flash efficient)
  # Inductor may fuse a pointwise kernel into the column reduction after it (the GELU backward with fc1's bias
  # gradient, the q/k/v gradients' stacking with qkv's): one pass over the activations instead of two
  fusion=("--inductor triton.tiling_prevents_reduction_fusion=False"
          "--inductor triton.tiling_prevents_reduction_fusion=False --inductor triton.prefer_nd_tiling=True")
  # past the 14 x 4 batches in flight; with CUDA graphs, the fastest step the loader must keep up with
  e2e=(--preset vit_small_patch16_224 --batch-size 256 --warmup 60 --steps 120 --compile-mode reduce-overhead)
  counts=(--batch-size 256 --image-size 224 --compile --corruption)  # 256 views, as the GMML rows' corruption
  small_batch=(--batch-size 64 --steps 20 --warmup 5)
  small_batch_e2e=(--preset vit_small_patch16_224 --batch-size 64 --warmup 40 --steps 60 --num-workers 8)
fi

failed=()
timed() {  # timed NAME START: the wall time since START (a $SECONDS value) of the row NAME, a JSON line in the log
  echo "{\"row\": \"$1\", \"seconds\": $((SECONDS - $2))}" | tee -a "$log"
}
row() {  # row NAME COMMAND...: runs one benchmark command, its JSON lines go to the log
  local name=$1 start=$SECONDS
  shift
  echo "== $name" >&2
  if ! "$@" | tee -a "$log"; then
    failed+=("$name")
    echo "{\"failed\": \"$name\"}" | tee -a "$log"
  fi
  timed "$name" "$start"
}

selected() { [[ ",$ROWS," == *",$1,"* ]]; }

if [[ "${SMOKE:-0}" != 1 ]] && selected gpu-tests; then  # the GPU's masks equal the CPU's, no step syncs, one graph
  start=$SECONDS
  "$PYTHON" -m pytest -q -rf -p no:cacheprovider -m "not slow" tests/test_masking.py tests/test_device_placement.py \
    tests/test_compile.py 2>&1 | tail -8 \
    | tee "$OUT/gpu_tests.txt" >&2 || failed+=("gpu tests")
  timed "gpu tests" "$start"
fi
profile=(--profile-file "$OUT/profiles.txt")  # ViT-S rows: top kernels of 3 more steps per model, a few seconds each
selected small && row "$first" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" "${profile[@]}"
selected e2e && row "end to end" "$PYTHON" benchmarks/pretrain_e2e.py --mixed-precision bf16 "${e2e[@]}" \
  "${profile[@]}"  # and the loop's step profiled: what it adds to the model's
# Compiled rows: the anchor, compiled timm (the targets compare with it; each compile costs tens of seconds, so no
# compiled SimMIM), with the corruption and mask samplers through torch.compile; then ours with CUDA graphs, the mode
# the README recommends on a GPU (timm gained 1.7% from them on the H200, ours 10-40%; ours in the default mode:
# row default-mode). With CUDA graphs the GMML step as training runs it there: the corruption through
# torch.compile (Context.compiled_corruption; the eager-mask step was 2.8% slower on the H200). A SMOKE run compiles nothing and so has
# no such row (fine-tuning alone) and no timm.
ours_graphs=cxrgm_gmml_compiled_corruption,cxrgm_cls
experiment_rows=cxrgm_gmml_compiled_corruption  # on CPU (SMOKE, nothing compiled) the eager GMML step instead
[[ "${SMOKE:-0}" == 1 ]] && experiment_rows=cxrgm_gmml_pretrain
selected small-compiled && row "$first compiled" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" \
  "${compiled[@]}" --only cxrgm_gmml_corruption,timm "${profile[@]}"
selected small-graphs && row "$first CUDA graphs" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" \
  "${graphs[@]}" --only "$ours_graphs" "${profile[@]}"  # the profiler sees the kernels inside the graphs
# ViT-B eager: the GMML step beside the SimMIM anchor (speed and peak memory targets); the other peers were measured
# on the first H200 run, and the corruption does not depend on the model's size
selected base && row "$second" "$PYTHON" benchmarks/throughput.py --size "$second" "${common[@]}" \
  --only cxrgm_gmml_pretrain,hf_simmim
selected base-compiled && row "$second compiled" "$PYTHON" benchmarks/throughput.py --size "$second" "${common[@]}" \
  "${compiled[@]}" --only timm
selected base-graphs && row "$second CUDA graphs" "$PYTHON" benchmarks/throughput.py --size "$second" "${common[@]}" \
  "${graphs[@]}" --only "$ours_graphs"
if selected default-mode; then  # training's --torch_compile without reduce-overhead
  row "$first compiled, default mode" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" \
    "${compiled[@]}" --only cxrgm_gmml_pretrain,cxrgm_gmml_compiled_corruption,cxrgm_cls "${profile[@]}"
  row "$second compiled, default mode" "$PYTHON" benchmarks/throughput.py --size "$second" "${common[@]}" \
    "${compiled[@]}" --only cxrgm_gmml_pretrain,cxrgm_gmml_compiled_corruption,cxrgm_cls
fi
if selected small-attention; then
  for backend in "${backends[@]}"; do
    row "$first sdpa $backend" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" "${graphs[@]}" \
      --only cxrgm_gmml_pretrain,cxrgm_cls --sdpa-backend "$backend"
  done
fi
if selected small-host; then  # is the compiled ViT-S fine-tuning step bound by the host? (profiles: launches per step)
  row "$first compiled, no stochastic depth" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" \
    "${compiled[@]}" --only cxrgm_cls,timm --drop-path 0 "${profile[@]}"
fi
if selected small-autotune; then  # does max-autotune (GEMM epilogues: bias + GELU fused into the matmul) pay?
  row "$first compiled, max-autotune" "$PYTHON" benchmarks/throughput.py --size "$first" "${common[@]}" \
    "${compiled[@]}" --compile-mode max-autotune --only cxrgm_gmml_pretrain,cxrgm_cls,timm "${profile[@]}"
fi
exact="--no-low-precision-residual --hidden-act gelu"  # without the recipes' two faster settings: the config's defaults
experiments() {  # experiments SIZE PROFILED EXPERIMENT...: our GMML step with CUDA graphs once per experiment (zero or
  local size=$1 extra=() experiment  # more options of throughput.py), each profiled too where PROFILED is 1
  [[ $2 == 1 ]] && extra=("${profile[@]}")
  shift 2
  for experiment in "$@"; do  # (word splitting intended)
    # shellcheck disable=SC2086
    row "$size CUDA graphs ${experiment:-as it is}" "$PYTHON" benchmarks/throughput.py --size "$size" \
      "${common[@]}" "${graphs[@]}" --only "$experiment_rows" $experiment "${extra[@]}"
  done
}
selected small-experiments && experiments "$first" 0 "" --no-low-precision-residual "--hidden-act gelu" "$exact"
selected base-experiments && experiments "$second" 1 "" "$exact"
selected small-fusion && experiments "$first" 1 "" "${fusion[@]}"
selected first-cover-counts && row "first-cover counts" "$PYTHON" benchmarks/first_cover_counts.py "${counts[@]}"
if selected small-batch; then
  row "$first batch 64" "$PYTHON" benchmarks/throughput.py --size "$first" "${small_batch[@]}" --only cls
  kermany="${DATA:-$OFFLINE/data}/kermany_pediatric"
  e2e_data=()  # the labelled Kermany images of DATA where present, else the embedded sample set (needs offline/cache)
  if [[ -f "$kermany/labels.csv" ]]; then
    e2e_prepared="$(mktemp -d)/kermany_prepared"  # not under OUT: nothing of it comes back from a device run
    "$PYTHON" -m hf_datasets.prepare --dataset cxr_folder --data_dir "$kermany" --output_dir "$e2e_prepared" \
      --size 224 > /dev/null && e2e_data=(--prepared-dir "$e2e_prepared")
  fi
  row "fine-tuning end to end" "$PYTHON" benchmarks/pretrain_e2e.py --task classification --mixed-precision bf16 \
    "${small_batch_e2e[@]}" "${e2e_data[@]}"
  [[ -n "${e2e_prepared:-}" ]] && rm -rf "$(dirname "$e2e_prepared")"
  if [[ "${SMOKE:-0}" != 1 && -f "$kermany/labels.csv" ]]; then
    row "epoch latency" "$PYTHON" -m benchmarks.epoch_latency --data_dir "$kermany" --workers 8
  fi
fi
if selected device-smoke; then  # last: every training script once, tiny
  echo "== device smoke" >&2
  start=$SECONDS
  "$PYTHON" -m benchmarks.device_smoke --output_dir "${SMOKE_DIR:-outputs/device_smoke}" | tee "$OUT/device_smoke.jsonl" \
    || failed+=("device smoke")
  timed "device smoke" "$start"
fi
echo "wrote $log"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed rows: ${failed[*]}" >&2
  exit 1
fi
