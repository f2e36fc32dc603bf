"""`make demo`: GMML pretraining -> pneumonia fine-tuning -> evaluation -> export -> reload and predict, on CPU.

Uses the embedded real sample set (16 Kermany pediatric CXRs, CC BY 4.0, and one adult chest CR DICOM) and a tiny
ViT. The exported model is reloaded in a fresh process through `trust_remote_code=True` and run on the DICOM.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import evaluate as evaluate_script
from .config import RECIPES, TrainArgs, load_yaml
from .run import run_training

OUTPUT = Path("outputs/demo")


def _stage(name, function, timings):
    print(f"\n=== {name} ===", flush=True)
    started = time.perf_counter()
    result = function()
    timings.append((name, time.perf_counter() - started))
    return result


def main(argv=None) -> None:
    from hf_datasets.builders.sample import CR_NAME, sample_files

    parser = argparse.ArgumentParser(prog="python -m train.demo", description=f"{__doc__.splitlines()[0]} "
                                     f"Replaces {OUTPUT} in the current folder.")
    parser.parse_args(argv)  # no options; --help (or a wrong argument) stops before anything is replaced
    shutil.rmtree(OUTPUT, ignore_errors=True)
    timings = []
    pretrain = TrainArgs(**load_yaml(RECIPES / "demo_pretrain.yaml", TrainArgs))
    pre_metrics = _stage("GMML pretraining", lambda: run_training(pretrain), timings)
    finetune = TrainArgs(**load_yaml(RECIPES / "demo_finetune.yaml", TrainArgs))
    _stage("pneumonia fine-tuning + export", lambda: run_training(finetune), timings)
    model_dir = OUTPUT / "model"
    metrics = _stage("evaluation on the test split", lambda: evaluate_script.main([
        "--model", str(model_dir), "--dataset", "sample", "--split", "test", "--bootstrap", "200",
        "--output_dir", str(OUTPUT / "eval")]), timings)
    dicom = sample_files()[CR_NAME]
    predictions = OUTPUT / "predictions.csv"
    _stage("reload in a fresh process + predict on the chest DICOM", lambda: subprocess.run(
        [sys.executable, "-m", "train.predict", "--model", str(model_dir), "--inputs", str(dicom),
         "--output", str(predictions)], check=True), timings)
    with predictions.open() as handle:
        prediction = next(csv.DictReader(handle))

    rows = [
        ("pretraining reconstruction L1 (train images)", f"{pre_metrics['loss']:.4f}"),
        ("test images", f"{int(metrics['num_samples'])}"),
        ("test AUROC (pneumonia)", _fmt(metrics, "auroc_macro", ci="auroc_macro")),
        ("test accuracy", _fmt(metrics, "accuracy", ci="accuracy")),
        ("sensitivity / specificity (pneumonia)",
         f"{_fmt(metrics, 'sensitivity/pneumonia')} / {_fmt(metrics, 'specificity/pneumonia')}"),
        (f"{dicom.name}: P(pneumonia)", f"{float(prediction['p_pneumonia']):.3f} -> {prediction['predicted']}"),
        ("exported model", str(model_dir)),
    ]
    rows += [(f"time: {name}", f"{seconds:.0f} s") for name, seconds in timings]
    width = max(len(name) for name, _ in rows)
    print("\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    print("\n4 test images and a tiny model: these numbers show the pipeline works, not how well GMML does.")


def _fmt(metrics: dict, key: str, ci: str | None = None) -> str:
    if key not in metrics:
        return "n/a"
    text = f"{metrics[key]:.3f}"
    if ci and f"{ci}_ci_low" in metrics:
        text += f" (95% CI {metrics[f'{ci}_ci_low']:.2f}-{metrics[f'{ci}_ci_high']:.2f})"
    return text


if __name__ == "__main__":
    main()
