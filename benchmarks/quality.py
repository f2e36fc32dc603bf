"""Does GMML pretraining beat random init on real CXRs? Runs the train scripts on a folder in the shared layout.

    python -m benchmarks.quality                                  # CPU preset -> outputs/quality_cpu
    python -m benchmarks.quality --size gpu                       # ViT-S/16 at 224 px, bf16, one GPU
    python -m benchmarks.quality --smoke --data_dir D --output_dir O   # a few steps per run (tests)
    python -m benchmarks.quality --pretrain_epochs 180 --output_dir outputs/quality_cpu_long   # longer pretraining
    python -m benchmarks.quality --equalize --output_dir outputs/quality_cpu_equalize   # histogram-equalised inputs
    python -m benchmarks.quality --pretrain_seed 1 --output_dir outputs/quality_cpu_seed1   # a second pretraining run
    python -m benchmarks.quality --size gpu --model_config '{"low_precision_residual": true}'   # a model setting

`--data_dir` holds `kermany_pediatric`, `nih_cxr14`, `v7labs_covid_lungseg` and more folders, each with a labels.csv
(the layout of ../shared/data). Every set gets a seeded 70/30 patient split (data seed 0, fixed across run seeds);
the test patients of the three downstream sets are left out of the pretraining pool. Steps, each a call of a
train script's `main(argv)` (the exact command lines go to `<output_dir>/commands.sh`):
  1. GMML pretraining on the pooled distinct images of every folder (train.pretrain, `cxr_pool` builder);
  2. pediatric pneumonia: fine-tune on 10/25/100% of the training patients (nested, seeded per run seed) from the
     GMML export and from random init, same recipe (train.finetune_classification);
  3. drift: normal-vs-pneumonia trained on nih_cxr14, tested on kermany_pediatric, and the reverse (train.evaluate);
  4. lung segmentation on v7labs_covid_lungseg with 25% and 100% of the training masks (train.finetune_segmentation);
  5. frozen features: linear probe and k-NN of the GMML encoder and of a random one (train.probe);
  6. image-level cues the drift and 100% classifiers follow, with the images as trained and cropped to their central
     square, which takes Kermany's image-shape cue away (benchmarks.drift_cues);
then mask statistics, the pretraining loss curve (PNG), and `results.json` + `results.md` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import glob
import json
import platform
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import hf_datasets
from modeling_cxrgm import GroupMaskedViTConfig, gmml_corrupt
from train import evaluate, finetune_classification, finetune_segmentation, pretrain, probe
from train.config import recipe_model_config

KERMANY, NIH, LUNGS = "kermany_pediatric", "nih_cxr14", "v7labs_covid_lungseg"
SPLIT = {"train": 0.7, "test": 0.3}
NIH_OPTIONS = {"label_map": {"no_finding": "normal"}}  # both sets then have the classes [normal, pneumonia]
INITS = ("gmml", "random")
WARMUP_SHARE = 0.05  # fine-tuning warms up over the first 5% of its steps, whatever the label fraction

SIZES = {
    # ViT-Tiny width (192, 3 heads) with 6 blocks at 112 px: 44.3 minutes measured on 2 quiet CPU cores.
    # Pretraining: 60 epochs of 22 steps. Fine-tuning: about 200 optimiser steps per run whatever the label
    # fraction (Kermany 10% = 1 step per epoch, 25% = 3, 100% = 11; lungs 25% = 2, 100% = 9).
    "cpu": {
        "model": {"preset": "vit_tiny_patch16_224", "image_size": 112, "model_config": {"num_hidden_layers": 6}},
        "precision": "no", "num_workers": 0, "seeds": [0, 1, 2], "drift_seeds": [0, 1, 2], "seg_seeds": [0],
        "pretrain": {"epochs": 60, "batch_size": 64, "lr": 1.0e-3, "warmup_epochs": 6, "drop_path": 0.0,
                     "eval_every_epochs": 20, "log_every_steps": 10},
        "finetune": {"batch_size": 32, "lr": 5.0e-4, "layer_decay": 0.75},
        "epochs": {0.1: 200, 0.25: 70, 1.0: 20},
        "seg_epochs": {0.25: 100, 1.0: 25},
    },
    # ViT-S/16 at 224 px as in the SS-CXR recipe. Fine-tuning: about 120 optimiser steps per run at batch 64 (Kermany
    # 10% = 1 step per epoch, 25% = 2, 100% = 6; lungs 25% = 2, 100% = 5), about the CPU preset's images per run. On
    # one H200 a step at batch 64 took about 50 ms of host time (the GPU's share is a few ms) and each epoch about
    # 55 ms more until its first batch was decoded: 250 steps per run did not fit in 8 minutes. With the training
    # loop's fixes since, this preset ran end to end on one H200 in 4.8 minutes (RESULTS.md).
    "gpu": {
        "model": {"preset": "vit_small_patch16_224", "image_size": 224, "model_config": {}},
        "precision": "bf16", "num_workers": 8, "seeds": [0, 1, 2], "drift_seeds": [0, 1, 2], "seg_seeds": [0],
        "pretrain": {"epochs": 60, "batch_size": 128, "lr": 1.5e-3, "warmup_epochs": 5, "drop_path": 0.1,
                     "eval_every_epochs": 20, "log_every_steps": 5},
        "finetune": {"batch_size": 64, "lr": 5.0e-4, "layer_decay": 0.75},
        "epochs": {0.1: 120, 0.25: 60, 1.0: 20},
        "seg_epochs": {0.25: 60, 1.0: 24},
    },
}
# A few optimiser steps per run on a tiny model: checks that every stage runs end to end.
SMOKE = {
    "model": {"preset": "vit_tiny_patch16_224", "image_size": 32,
              "model_config": {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
                               "intermediate_size": 64, "decoder_hidden_size": 16}},
    "precision": "no", "num_workers": 0, "seeds": [0], "drift_seeds": [0], "seg_seeds": [0],
    "pretrain": {"epochs": 1, "batch_size": 8, "lr": 1.0e-3, "warmup_epochs": 0, "drop_path": 0.0,
                 "eval_every_epochs": 1, "log_every_steps": 1, "max_steps": 2},
    "finetune": {"batch_size": 8, "lr": 1.0e-3, "layer_decay": 1.0, "max_steps": 2},
    "epochs": {0.1: 1, 0.25: 1, 1.0: 1},
    "seg_epochs": {0.25: 1, 1.0: 1},
}


class Runner:
    """Calls the train scripts' `main(argv)`, logs each command line and its wall time (printed as each run ends,
    so that the log of a run stopped part-way still tells how long every finished step took).

    Each finished command is recorded in `<output_dir>/completed.jsonl` with its result and time. Run again into the
    same folder, the benchmark goes on where it stopped (a time limit, a lost machine): the commands that repeat the
    recorded ones in order are not run again, and from the first that differs (other settings, or nothing recorded)
    everything runs, as later steps read what earlier ones wrote.
    """

    def __init__(self, output_dir: Path, size: dict):
        self.output_dir, self.size = output_dir, size
        self.commands, self.timings = [], {}
        self.record = output_dir / "completed.jsonl"
        lines = self.record.read_text().splitlines() if self.record.is_file() else []
        self.recorded = [json.loads(line) for line in lines if line.strip()]
        self.reused = 0

    def __call__(self, stage: str, script, argv: list[str], fresh: Path | None = None) -> dict:
        """Run `script.main(argv)` (after removing `fresh`, the folder the command writes), or reuse its recorded
        result when every command before it was reused too."""
        command = f"python -m {script.__name__} {shlex.join(argv)}"
        self.commands.append(command)
        (self.output_dir / "commands.sh").write_text("\n".join(self.commands) + "\n")
        position = len(self.commands) - 1
        earlier = self.recorded[position] if position < len(self.recorded) else None
        if position == self.reused and earlier is not None and earlier["command"] == command:
            self.reused += 1
            seconds, result = earlier["seconds"], earlier["result"]
            print(f"\n[quality] {stage}: finished in an earlier run ({seconds:.1f} s): {command}", flush=True)
        else:
            if position == self.reused:  # the first command to run: what was recorded after it no longer holds
                self.recorded = self.recorded[:position]
                self.record.write_text("".join(json.dumps(entry) + "\n" for entry in self.recorded))
            print(f"\n[quality] {stage}: {command}", flush=True)
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)  # a run stopped part-way left checkpoints there
            started = time.perf_counter()
            result = script.main(argv)
            seconds = time.perf_counter() - started
            with self.record.open("a") as record:
                record.write(json.dumps({"stage": stage, "command": command, "seconds": seconds, "result": result},
                                        default=float) + "\n")
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        print(f"[quality] {stage}: {seconds:.1f} s (stage so far {self.timings[stage]:.1f} s)", flush=True)
        return result


def flags(values: dict) -> list[str]:
    """{"epochs": 3, "model_config": {...}, "card": False} -> ["--epochs", "3", "--model_config", "{...}", "--no-card"]."""
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append(f"--{key}" if value else f"--no-{key}")
        elif isinstance(value, dict):
            out += [f"--{key}", json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            out += [f"--{key}", *map(str, value)]
        else:
            out += [f"--{key}", str(value)]
    return out


def with_recipe_model_config(recipe: str, size: dict) -> dict:
    """The size's model settings, its `model_config` merged over the recipe's (e.g. the GMML mask settings)."""
    base = recipe_model_config(recipe)
    return {**size["model"], "model_config": {**base, **size["model"]["model_config"]}}


def test_patients(data_dir: Path) -> list[str]:
    """Patient ids of the test split of every downstream set (kept out of the pretraining pool)."""
    patients = set()
    for name, options in ((KERMANY, {}), (NIH, NIH_OPTIONS), (LUNGS, {})):
        ds = hf_datasets.build_dataset("cxr_folder", data_dir / name, split_fractions=SPLIT, **options)
        patients.update(ds["test"]["patient_id"])
    return sorted(patients)


def common(size: dict, output_dir: Path, seed: int) -> dict:
    """Settings of every run: no checkpoints (a stopped benchmark reruns the run, see Runner)."""
    return {"output_dir": str(output_dir), "seed": seed, "mixed_precision": size["precision"],
            "num_workers": size["num_workers"], "save_total_limit": 0,
            **({"equalize": True} if size.get("equalize") else {})}


def run_pretraining(run: Runner, data_dir: Path, out: Path) -> Path:
    size = run.size
    options = {"exclude_patients": test_patients(data_dir)}
    seed = size.get("pretrain_seed", 0)
    argv = ["--config", "gmml_pretrain"] + flags({
        **with_recipe_model_config("gmml_pretrain", size), **common(size, out / "pretrain", seed), **size["pretrain"],
        "dataset": "cxr_pool", "data_dir": str(data_dir), "dataset_options": options,
        "train_splits": ["train"], "hub_model_id": "cxrgm/quality-gmml"})
    run("pretraining", pretrain, argv, fresh=out / "pretrain")
    return out / "pretrain" / "model"


def finetune(run: Runner, script, recipe: str, stage: str, data_dir: Path, options: dict, init: str, epochs: int,
             seed: int, output_dir: Path) -> dict:
    size = run.size
    argv = ["--config", recipe] + flags({
        **with_recipe_model_config(recipe, size), **common(size, output_dir, seed), **size["finetune"],
        "dataset": "cxr_folder", "data_dir": str(data_dir), "dataset_options": options, "init": init,
        "epochs": epochs, "warmup_epochs": epochs * WARMUP_SHARE, "eval_split": "test", "eval_every_epochs": epochs,
        "report_to": "none", "card": False})
    metrics = run(stage, script, argv, fresh=output_dir)
    shutil.rmtree(output_dir / "best", ignore_errors=True)  # the export (model/) holds the same weights
    return metrics


def evaluate_on(run: Runner, model: Path, data_dir: Path, options: dict, output_dir: Path) -> dict:
    argv = flags({"model": str(model), "dataset": "cxr_folder", "data_dir": str(data_dir),
                  "dataset_options": {"split_fractions": SPLIT, **options}, "split": "test", "bootstrap": 0,
                  "output_dir": str(output_dir), "mixed_precision": run.size["precision"]})
    return run("drift evaluation", evaluate, argv)


CLS_KEYS = {"accuracy": "accuracy", "auroc": "auroc_macro", "sensitivity": "sensitivity/pneumonia",
            "specificity": "specificity/pneumonia",  # at the argmax; and at the screening cut, whatever the calibration:
            "specificity_at_sensitivity_95": "specificity_at_sensitivity_95/pneumonia"}


def pick(metrics: dict, keys: dict) -> dict:
    return {name: float(metrics[key]) for name, key in keys.items() if key in metrics}


def mask_statistics(size: dict, views: int = 256, seed: int = 0) -> dict:
    """Realised GMML corruption at the run's image size: masked fraction (mean, p5, p95) and patches touched."""
    merged = with_recipe_model_config("gmml_pretrain", size)
    config = GroupMaskedViTConfig.from_preset(merged["preset"], image_size=merged["image_size"], num_channels=1,
                                              **merged["model_config"])
    pixels = torch.randn(views, 1, config.image_size, config.image_size, generator=torch.Generator().manual_seed(seed))
    _, mask = gmml_corrupt(pixels, config, torch.Generator().manual_seed(seed))
    fraction = mask.float().mean((1, 2)).numpy()
    p = config.patch_size
    touched = mask.unflatten(1, (-1, p)).unflatten(3, (-1, p)).any(4).any(2).float().mean().item()
    return {"image_size": config.image_size, "patch_size": p, "mask_align": config.mask_align,
            "masked_fraction_mean": float(fraction.mean()), "masked_fraction_p5": float(np.percentile(fraction, 5)),
            "masked_fraction_p95": float(np.percentile(fraction, 95)), "patches_touched": touched}


def loss_curve(pretrain_dir: Path, path: Path) -> list[tuple[int, float]]:
    """The pretraining loss per logged step (from its TensorBoard log), drawn to `path` as a PNG."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(glob.glob(str(pretrain_dir / "logs" / "**" / "events.out.tfevents.*"), recursive=True))
    if not files:
        return []
    events = EventAccumulator(str(Path(files[-1]).parent))
    events.Reload()
    points = [(e.step, e.value) for e in events.Scalars("train/loss")] if "train/loss" in events.Tags()["scalars"] else []
    if points:
        draw_curve(points, path, "GMML pretraining: L1 loss on corrupted pixels vs optimiser step")
    return points


def draw_curve(points: list[tuple[int, float]], path: Path, title: str, width: int = 640, height: int = 400) -> None:
    """A plain line plot (PIL only): axes with min / max labels, the title on top."""
    steps, values = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    left, right, top, bottom = 60, width - 20, 40, height - 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    span_x = max(steps.max() - steps.min(), 1.0)
    span_y = max(values.max() - values.min(), 1e-9)
    xy = [(left + (s - steps.min()) / span_x * (right - left), bottom - (v - values.min()) / span_y * (bottom - top))
          for s, v in zip(steps, values)]
    draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
    if len(xy) > 1:
        draw.line(xy, fill=(31, 119, 180), width=2)
    draw.text((10, 10), title, fill="black")
    draw.text((5, top), f"{values.max():.3f}", fill="black")
    draw.text((5, bottom - 10), f"{values.min():.3f}", fill="black")
    draw.text((left, bottom + 8), f"step {int(steps.min())}", fill="black")
    draw.text((right - 80, bottom + 8), f"step {int(steps.max())}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def mean_std(values: list[float]) -> str:
    """"mean ± std" (sample std) of several values; a single value alone, as it has no spread to give."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def summarise(rows: list[dict], keys: list[str], by: list[str]) -> list[dict]:
    """Group `rows` by the `by` fields; each metric in `keys` as "mean ± std" over the group (n = its size)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    return [{**dict(zip(by, key)), "n": len(group), **{k: mean_std([r[k] for r in group if k in r]) for k in keys}}
            for key, group in groups.items()]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def run_all(data_dir: Path, out: Path, size: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out, size)
    started = time.perf_counter()
    gmml = run_pretraining(run, data_dir, out)
    init_of = {"gmml": str(gmml), "random": "random"}

    classification, reverse_drift = [], []
    for seed in size["seeds"]:
        for fraction, epochs in size["epochs"].items():
            for init in INITS:
                run_dir = out / "classification" / f"{init}_{int(fraction * 100)}pct_seed{seed}"
                options = {"split_fractions": SPLIT, "train_fraction": fraction, "subset_seed": seed}
                metrics = finetune(run, finetune_classification, "finetune_classification", "classification",
                                   data_dir / KERMANY, options, init_of[init], epochs, seed, run_dir)
                classification.append({"init": init, "fraction": fraction, "seed": seed, **pick(metrics, CLS_KEYS)})
                if fraction == 1.0:
                    shifted = evaluate_on(run, run_dir / "model", data_dir / NIH, NIH_OPTIONS, run_dir / "eval-nih")
                    reverse_drift.append({"init": init, "seed": seed, "train": KERMANY, "test": NIH,
                                          **pick(shifted, CLS_KEYS)})
                else:
                    shutil.rmtree(run_dir / "model", ignore_errors=True)

    drift = []
    for seed in size["drift_seeds"]:
        for init in INITS:
            run_dir = out / "drift" / f"{init}_nih_seed{seed}"
            metrics = finetune(run, finetune_classification, "finetune_classification", "drift training",
                               data_dir / NIH, {"split_fractions": SPLIT, **NIH_OPTIONS}, init_of[init],
                               size["epochs"][1.0], seed, run_dir)
            drift.append({"init": init, "seed": seed, "train": NIH, "test": NIH, **pick(metrics, CLS_KEYS)})
            shifted = evaluate_on(run, run_dir / "model", data_dir / KERMANY, {}, run_dir / "eval-kermany")
            drift.append({"init": init, "seed": seed, "train": NIH, "test": KERMANY, **pick(shifted, CLS_KEYS)})
    drift += [dict(r, test=KERMANY, train=KERMANY) | pick_from(classification, r) for r in reverse_drift]
    drift += reverse_drift

    segmentation = []
    for seed in size["seg_seeds"]:
        for fraction, epochs in size["seg_epochs"].items():
            for init in INITS:
                run_dir = out / "segmentation" / f"{init}_{int(fraction * 100)}pct_seed{seed}"
                options = {"split_fractions": SPLIT, "train_fraction": fraction, "subset_seed": seed}
                metrics = finetune(run, finetune_segmentation, "finetune_segmentation", "segmentation",
                                   data_dir / LUNGS, options, init_of[init], epochs, seed, run_dir)
                shutil.rmtree(run_dir / "model", ignore_errors=True)
                segmentation.append({"init": init, "fraction": fraction, "seed": seed,
                                     "dice": float(metrics["dice"]), "iou": float(metrics["iou"])})

    probes = []
    for name, options in ((KERMANY, {}), (NIH, NIH_OPTIONS)):
        for init in INITS:
            argv = flags({"model": str(gmml), "random_init": init == "random", "dataset": "cxr_folder",
                          "data_dir": str(data_dir / name), "dataset_options": {"split_fractions": SPLIT, **options},
                          "output": str(out / "probes" / f"{name}_{init}.json")})
            scores = run("frozen-feature probes", probe, argv)
            probes.append({"data": name, "init": init, **{k: v for k, v in scores.items() if k != "init"}})

    from benchmarks import drift_cues  # imported here: it reads this module's set names and split

    classifiers = [str(p.parent) for pattern in ("drift/*/model", "classification/*_100pct_*/model")
                   for p in sorted(out.glob(pattern + "/config.json"))]
    cues = {}
    for view, extra in (("as_trained", []), ("central_square", ["--max_aspect", "1.0"])):
        argv = ["--data_dir", str(data_dir), "--image_size", str(size["model"]["image_size"]), "--models",
                *classifiers, "--output", str(out / "drift_cues" / f"{view}.json"), *extra]
        cues[view] = run("drift cues", drift_cues, argv)

    results = {
        "machine": machine(), "size": size, "wall_time_s": round(time.perf_counter() - started, 1),
        "reused_commands": run.reused, "stage_time_s": {k: round(v, 1) for k, v in run.timings.items()},
        "pretraining": {**json.loads((gmml / "metrics.json").read_text()), "mask_statistics": mask_statistics(size),
                        "loss_curve": loss_curve(out / "pretrain", out / "pretrain" / "loss_curve.png"),
                        "grids": sorted(str(p) for p in (out / "pretrain" / "grids").glob("*.png"))},
        "classification": classification, "drift": drift, "segmentation": segmentation, "probes": probes,
        "drift_cues": cues,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(report(results) + "\n")
    print("\n" + report(results))
    return results


def cue_rows(cues: dict) -> list[dict]:
    """One row per classifier and view: where it was trained, its init, its AUROC on both test splits."""
    rows = []
    for view, report in cues.items():
        for model, scores in report["models"].items():
            run_name = Path(model).parent.name  # e.g. gmml_nih_seed0, random_100pct_seed2
            rows.append({"view": view, "train": NIH if "_nih_" in run_name else KERMANY, "init": run_name.split("_")[0],
                         **{f"auroc_{test}": scores[test]["auroc"] for test in (KERMANY, NIH)}})
    return rows


def pick_from(classification: list[dict], row: dict) -> dict:
    """The in-domain (kermany test) metrics of the 100% classification run that `row` was evaluated from."""
    match = next(c for c in classification if c["init"] == row["init"] and c["seed"] == row["seed"]
                 and c["fraction"] == 1.0)
    return {k: match[k] for k in CLS_KEYS if k in match}


def report(results: dict) -> str:
    metrics = list(CLS_KEYS)
    cls = sorted(summarise(results["classification"], metrics, ["fraction", "init"]),
                 key=lambda r: (r["fraction"], r["init"]))
    for row in cls:
        row["fraction"] = f"{int(row['fraction'] * 100)}%"
    drift = summarise(results["drift"], metrics, ["train", "test", "init"])
    seg = sorted(summarise(results["segmentation"], ["dice", "iou"], ["fraction", "init"]),
                 key=lambda r: (r["fraction"], r["init"]))
    for row in seg:
        row["fraction"] = f"{int(row['fraction'] * 100)}%"
    probe_rows = [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items()} for r in results["probes"]]
    cue_table = summarise(cue_rows(results["drift_cues"]), [f"auroc_{KERMANY}", f"auroc_{NIH}"], ["view", "train", "init"])
    cue_fit = results["drift_cues"]["as_trained"]["logistic_regression"]
    pre = results["pretraining"]
    stats = pre["mask_statistics"]
    return "\n\n".join([
        f"Pediatric pneumonia ({KERMANY} test split), mean ± std over seeds:\n\n"
        + markdown_table(cls, ["fraction", "init", "n", *metrics]),
        "Drift (normal vs pneumonia):\n\n" + markdown_table(drift, ["train", "test", "init", "n", *metrics]),
        f"Lung segmentation ({LUNGS} test split):\n\n" + markdown_table(seg, ["fraction", "init", "n", "dice", "iou"]),
        "Frozen features (encoder not trained; [CLS; mean patch] features):\n\n"
        + markdown_table(probe_rows, ["data", "init", "linear_accuracy", "linear_auroc", "knn_accuracy",
                                      "num_train", "num_test"]),
        "Image-level cues (benchmarks/drift_cues.py): classifiers scored on the test images as trained and cropped to "
        "their central square (no Kermany shape cue):\n\n"
        + markdown_table(cue_table, ["view", "train", "init", "n", f"auroc_{KERMANY}", f"auroc_{NIH}"])
        + "\n\nFive-cue logistic regression (as trained): fitted on NIH -> Kermany "
        f"{cue_fit[NIH][f'auroc_on_{KERMANY}']:.3f}, fitted on Kermany -> NIH {cue_fit[KERMANY][f'auroc_on_{NIH}']:.3f}; "
        f"Kermany padding-fraction AUROC {results['drift_cues']['as_trained']['cue_auroc'][KERMANY]['padding_fraction']:.3f}"
        f" as trained, {results['drift_cues']['central_square']['cue_auroc'][KERMANY]['padding_fraction']:.3f} cropped.",
        f"Pretraining: reconstruction L1 of the exported (best) encoder {pre.get('loss', float('nan')):.4f} "
        f"(train images), realised masked fraction {stats['masked_fraction_mean']:.3f} "
        f"(p5 {stats['masked_fraction_p5']:.3f}, p95 {stats['masked_fraction_p95']:.3f}), "
        f"{stats['patches_touched']:.0%} of {stats['patch_size']}-px patches touched at {stats['image_size']} px. "
        f"Wall time {results['wall_time_s'] / 60:.1f} min{went_on(results)}; per stage (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in results["stage_time_s"].items()),
    ])


def went_on(results: dict) -> str:
    """For a run that went on from an earlier one: how many commands it reused and their time with its own."""
    if not results.get("reused_commands"):
        return ""
    total = sum(results["stage_time_s"].values())
    return (f" (going on after {results['reused_commands']} finished commands of an earlier run; all commands took "
            f"{total / 60:.1f} min)")


def machine() -> dict:
    import accelerate
    import datasets
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"
    return {"device": device, "cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "datasets": datasets.__version__}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="a few optimiser steps per run, one seed (for tests)")
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--output_dir", help="default: outputs/quality_<size> (outputs/quality_smoke with --smoke)")
    parser.add_argument("--pretrain_epochs", type=int, help="override the size's pretraining epochs (same warm-up)")
    parser.add_argument("--pretrain_seed", type=int, default=0,
                        help="seed of the pretraining run (masks, augmentation, init); fine-tuning seeds stay the size's")
    parser.add_argument("--equalize", action="store_true",
                        help="histogram-equalise every image in every run (the image processor's `equalize`)")
    parser.add_argument("--model_config", type=json.loads, default={}, metavar="JSON",
                        help="GroupMaskedViTConfig fields over the size's in every run, e.g. "
                             "'{\"low_precision_residual\": true, \"hidden_act\": \"gelu_pytorch_tanh\"}'")
    args = parser.parse_args(argv)
    size = SMOKE if args.smoke else SIZES[args.size]
    if args.model_config:
        model = size["model"]
        size = {**size, "model": {**model, "model_config": {**model["model_config"], **args.model_config}}}
    if args.pretrain_epochs:
        size = {**size, "pretrain": {**size["pretrain"], "epochs": args.pretrain_epochs}}
    if args.equalize:
        size = {**size, "equalize": True}
    if args.pretrain_seed:
        size = {**size, "pretrain_seed": args.pretrain_seed}
    output_dir = Path(args.output_dir or f"outputs/quality_{'smoke' if args.smoke else args.size}")
    return run_all(Path(args.data_dir), output_dir, size)


if __name__ == "__main__":
    main()
