"""Every training script once, tiny, on whatever device exists: the paths that only a GPU exercises (device
placement after a resume, pinned non-blocking copies, fused AdamW, bf16 / fp16 autocast with a gradient scaler,
torch.compile) run end to end, each stage in its own process, as a user would run them.

Stages: GMML pretraining stopped mid-epoch by --max_steps (EMA, checkpoints every step) -> resumed from there,
compiled (with CUDA graphs on a GPU) -> two steps of GMML pretraining in fp16 -> classification fine-tuning from the export (fp16, EMA, compiled; with CUDA graphs on a GPU) -> segmentation
fine-tuning (bf16, loader workers) -> evaluation -> prediction on the chest DICOM with loader workers. One JSON line
per stage (exit status, seconds); the exit status is 1 if a stage failed.

    python -m benchmarks.device_smoke [--output_dir outputs/device_smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--image_size", "32", "--model_config", '{"patch_size": 8, "hidden_size": 64, "num_hidden_layers": 2, '
        '"num_attention_heads": 2, "intermediate_size": 128}', "--batch_size", "4", "--lr", "1e-3",
        "--warmup_epochs", "0", "--report_to", "none"]


def segmentation_set(path: Path, rows: int | None = None) -> None:
    """The sample set's real images (the first `rows` of each split) with a synthetic half-image "structure" as mask,
    train and test splits saved for --prepared_dir."""
    from hf_datasets import build_dataset

    splits = build_dataset("sample")

    def add_mask(row):
        mask = row["image"].point(lambda v: 0).copy()
        mask.paste(255, (0, 0, row["image"].width // 2, row["image"].height))
        return {"mask": mask}

    parts = {name: splits[name].select(range(rows or len(splits[name]))) for name in ("train", "test")}
    datasets.DatasetDict({name: part.map(add_mask, features=part.features)
                          for name, part in parts.items()}).save_to_disk(path)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/device_smoke")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    segmentation_set(out / "segmentation_data")
    from hf_datasets.builders.sample import CR_NAME, sample_files

    pretrain = ["-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train", "unlabelled",
                "--output_dir", str(out / "pretrain"), *TINY, "--epochs", "3", "--ema_decay", "0.9",
                "--save_every_steps", "1", "--mixed_precision", "bf16"]
    stages = {
        "pretraining to step 2 (mid-epoch)": [*pretrain, "--max_steps", "2"],
        "pretraining resumed (compiled reduce-overhead: CUDA graphs on a GPU)": [
            *pretrain, "--resume_from_checkpoint", "latest", "--torch_compile_mode", "reduce-overhead"],
        "pretraining (fp16: the corruption under float16 autocast)": [
            *pretrain, "--output_dir", str(out / "pretrain_fp16"), "--mixed_precision", "fp16", "--max_steps", "2"],
        "classification (fp16, EMA, compiled reduce-overhead: CUDA graphs on a GPU)": [
            "-m", "train.finetune_classification", "--dataset", "sample", "--init", str(out / "pretrain" / "model"),
            "--output_dir", str(out / "classification"), *TINY, "--epochs", "2", "--mixed_precision", "fp16",
            "--ema_decay", "0.9", "--torch_compile_mode", "reduce-overhead"],
        "segmentation (bf16, 2 workers)": [
            "-m", "train.finetune_segmentation", "--prepared_dir", str(out / "segmentation_data"),
            "--init", str(out / "pretrain" / "model"), "--output_dir", str(out / "segmentation"), *TINY,
            "--epochs", "2", "--mixed_precision", "bf16", "--num_workers", "2"],
        "evaluation": ["-m", "train.evaluate", "--model", str(out / "classification" / "model"), "--dataset", "sample",
                       "--split", "test", "--bootstrap", "50", "--output_dir", str(out / "evaluation")],
        "prediction (2 workers)": ["-m", "train.predict", "--model", str(out / "classification" / "model"),
                                   "--inputs", str(sample_files()[CR_NAME]), "--num_workers", "2",
                                   "--output", str(out / "predictions.csv")],
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    for name, command in stages.items():
        started = time.perf_counter()
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True)
        rows.append({"stage": name, "device": device, "exit_status": done.returncode,
                     "seconds": round(time.perf_counter() - started, 1)})
        if done.returncode:
            rows[-1]["error"] = done.stderr[-2000:]
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(1 if any(row["exit_status"] for row in main()) else 0)
