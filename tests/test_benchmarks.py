"""The GPU benchmark script (throughput rows and pretraining end to end) runs at a tiny size on CPU and prints one
JSON line per row."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_smoke_run(tmp_path):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "throughput.jsonl").read_text().splitlines()]
    names = {row.get("name") for row in rows}
    assert {"cxrgm_gmml_corruption", "cxrgm_gmml_pretrain", "cxrgm_cls_finetune", "hf_simmim_pretrain",
            "hf_vitmae_pretrain", "hf_vit_cls_finetune"} <= names
    end_to_end = {"cxrgm_loader_only", "cxrgm_pretrain_step_only", "cxrgm_pretrain_end_to_end"}
    assert end_to_end <= names
    steps = [row for row in rows if "img_per_s" in row]
    assert all(row["img_per_s"] > 0 for row in steps)
    assert all(row["gflop_per_img"] > 0 for row in steps if row["name"] not in end_to_end)
    ratios = [row["ratios"] for row in rows if "ratios" in row]
    assert ratios[0]["gmml_over_hf_simmim"] > 0 and ratios[-1]["end_to_end_over_step_only"] > 0
