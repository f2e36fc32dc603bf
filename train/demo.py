"""`make demo`: GMML pretraining -> pneumonia fine-tuning -> evaluation -> export -> reload and predict, on CPU.

Uses the embedded real sample set (16 Kermany pediatric CXRs, CC BY 4.0, and one adult chest CR DICOM) and a tiny
ViT. The exported model is reloaded in a fresh process through `trust_remote_code=True` and run on the DICOM.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hf_datasets.errors import run_script

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
    fitted = _stage("evaluation on the training images", lambda: evaluate_script.main([
        "--model", str(model_dir), "--dataset", "sample", "--split", "train", "--output_dir",
        str(OUTPUT / "eval_train")]), timings)
    dicom = sample_files()[CR_NAME]
    predictions = OUTPUT / "predictions.csv"
    _stage("reload in a fresh process + predict on the chest DICOM", lambda: subprocess.run(
        [sys.executable, "-m", "train.predict", "--model", str(model_dir), "--inputs", str(dicom),
         "--output", str(predictions)], check=True), timings)
    with predictions.open() as handle:
        prediction = next(csv.DictReader(handle))

    rows = [
        ("pretraining reconstruction L1 (train images)", f"{pre_metrics['loss']:.4f}"),
        ("test images", _class_counts(metrics)),
        ("test AUROC (pneumonia)", _fmt(metrics, "auroc_macro", ci="auroc_macro")),
        ("test accuracy", _fmt(metrics, "accuracy", ci="accuracy")),
        ("sensitivity / specificity (pneumonia)",
         f"{_fmt(metrics, 'sensitivity/pneumonia')} / {_fmt(metrics, 'specificity/pneumonia')}"),
        (f"accuracy on the {int(fitted['num_samples'])} training images", _fmt(fitted, "accuracy")),
        (f"{dicom.name}: P(pneumonia)", f"{float(prediction['p_pneumonia']):.3f} -> {prediction['predicted']}"),
        ("exported model", str(model_dir)),
    ]
    rows += [(f"time: {name}", f"{seconds:.0f} s") for name, seconds in timings]
    width = max(len(name) for name, _ in rows)
    print("\n" + "\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    print("\n" + reading_note(metrics))


def _counts(metrics: dict) -> dict[str, int]:
    """Test images per true class, from the confusion matrix (`confusion/<true>/<predicted>` counts)."""
    counts = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] == "confusion" and len(parts) == 3:
            counts[parts[1]] = counts.get(parts[1], 0) + int(value)
    return counts


def _class_counts(metrics: dict) -> str:
    counts = _counts(metrics)
    text = f"{int(metrics['num_samples'])}"
    return text + (f" ({', '.join(f'{n} {name}' for name, n in counts.items())})" if counts else "")


def reading_note(metrics: dict) -> str:
    """How to read the demo's test numbers: what so few images can and cannot tell."""
    n = int(metrics["num_samples"])
    counts = _counts(metrics)
    positives, negatives = counts.get("pneumonia", 0), sum(counts.values()) - counts.get("pneumonia", 0)
    lines = [f"These test numbers come from {n} images and cannot measure accuracy:"]
    if positives and negatives:
        pairs = positives * negatives
        perfect = 1 / math.comb(positives + negatives, positives)  # P(AUROC = 1) for a model that guesses
        lines.append(f"  - AUROC on {positives} pneumonia and {negatives} normal images compares {pairs} pairs: it can "
                     f"only be a multiple of 1/{pairs}, and one image scored differently moves it by up to "
                     f"{1 / positives:.2f}; a model that guesses scores 1 (or 0) {perfect:.0%} of the time"
                     + (", so even those values are consistent with chance." if perfect > 0.05 else "."))
    lines.append(f"  - accuracy can only be a multiple of 1/{n}; the 95% intervals above show how little is known.")
    lines.append("What the demo shows is that the whole pipeline runs: GMML pretraining, fine-tuning from its "
                 "checkpoint, evaluation, export, reload through trust_remote_code in a fresh process and prediction "
                 "on a DICOM; the training-image accuracy shows how far fine-tuning fit the images it learned from. "
                 "How well GMML does is measured on real data sets: see benchmarks/RESULTS.md.")
    return "\n".join(lines)


def _fmt(metrics: dict, key: str, ci: str | None = None) -> str:
    if key not in metrics:
        return "n/a"
    text = f"{metrics[key]:.3f}"
    if ci and f"{ci}_ci_low" in metrics:
        text += f" (95% CI {metrics[f'{ci}_ci_low']:.2f}-{metrics[f'{ci}_ci_high']:.2f})"
    return text


if __name__ == "__main__":
    run_script(main)
