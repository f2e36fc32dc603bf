"""Pairs the two quality runs of this folder (quality_exact/, quality_fast/: completed.jsonl of
benchmarks/gpu_quality.sh without and with the two faster model settings) by each command's output folder and prints
the markdown table of RESULTS.md's sixth run: mean of each metric, the difference, how many runs were higher / lower.

    python3 benchmarks/measured/h200_2026-11-28b/compare_quality.py benchmarks/measured/h200_2026-11-28b
"""
import json, shlex, sys
from statistics import mean
base = sys.argv[1]
rows = {}
for v in ["exact", "fast"]:
    for line in open(f"{base}/quality_{v}/completed.jsonl"):
        r = json.loads(line); a = shlex.split(r["command"])
        key = next((a[i+1] for i, t in enumerate(a) if t in ("--output_dir", "--output")), "?").replace(f"outputs/q_{v}/", "")
        rows.setdefault(key, {})[v] = r["result"]
def line(label, keys, metric):
    pairs = [(rows[k]["exact"][metric], rows[k]["fast"][metric]) for k in keys if "fast" in rows[k]]
    e, f = mean(p[0] for p in pairs), mean(p[1] for p in pairs)
    up = sum(b > a for a, b in pairs); down = sum(b < a for a, b in pairs)
    print(f"| {label} | {metric} | {len(pairs)} | {e:.3f} | {f:.3f} | {f - e:+.3f} | {up}/{down} |")
print("| runs (GMML init unless said) | metric | n | as is | both settings | difference | higher/lower |")
print("|---|---|---|---|---|---|---|")
print(f"| pretraining, exported encoder | reconstruction L1 | 1 | {rows['pretrain']['exact']['loss']:.4f} | {rows['pretrain']['fast']['loss']:.4f} | {rows['pretrain']['fast']['loss'] - rows['pretrain']['exact']['loss']:+.4f} | |")
for frac in (10, 25, 100):
    keys = [f"classification/gmml_{frac}pct_seed{s}" for s in range(3)]
    for m in ("accuracy", "auroc_macro"):
        line(f"Kermany pneumonia, {frac}% labels", keys, m)
allk = [f"classification/gmml_{f}pct_seed{s}" for f in (10, 25, 100) for s in range(3)]
for m in ("accuracy", "auroc_macro"):
    line("Kermany pneumonia, all 9 runs", allk, m)
rk = [f"classification/random_{f}pct_seed{s}" for f in (10, 25, 100) for s in range(3)]
line("Kermany pneumonia, random init, all 9", rk, "accuracy")
for m in ("accuracy", "auroc_macro"):
    line("NIH normal/pneumonia (drift training)", [f"drift/gmml_nih_seed{s}" for s in range(3)], m)
    line("NIH-trained, tested on Kermany", [f"drift/gmml_nih_seed{s}/eval-kermany" for s in range(3)], m)
    line("Kermany-trained (100%), tested on NIH", [f"classification/gmml_100pct_seed{s}/eval-nih" for s in range(3)], m)
for f in (25, 100):
    line(f"lung segmentation, {f}% masks", [f"segmentation/gmml_{f}pct_seed0"], "dice")
for m in ("linear_accuracy", "linear_auroc", "knn_accuracy"):
    line("frozen features, Kermany", ["probes/kermany_pediatric_gmml.json"], m)
