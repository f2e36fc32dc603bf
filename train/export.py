"""The end of every run: a Hub-loadable model folder with its image processor, metrics.json and a model card."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def save_model_atomically(model, processor, directory, state_dict: dict | None = None) -> Path:
    """`save_pretrained` of model (with `state_dict`, e.g. gathered from FSDP shards, when given) and processor
    into a hidden folder, then renamed over `directory`."""
    directory = Path(directory)
    temporary = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary, state_dict=state_dict)
    processor.save_pretrained(temporary)
    if directory.exists():
        old = directory.with_name(f".old-{directory.name}")
        os.replace(directory, old)
        shutil.rmtree(old)
    os.replace(temporary, directory)
    return directory


def write_metrics(metrics: dict, *paths) -> None:
    """Write finite float metrics as JSON to each path."""
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def export(best_dir, output_dir, metrics: dict, run: dict, card: bool = True) -> Path:
    """Copy the best model folder to `<output_dir>/model`, add metrics.json (there and in output_dir) and README.md.

    `run` is the model-card description (task, datasets, preprocessing, training); its `metrics` are filled here.
    """
    model_dir = Path(output_dir) / "model"
    temporary = model_dir.with_name(".tmp-model")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.copytree(best_dir, temporary)
    write_metrics(metrics, temporary / "metrics.json", Path(output_dir) / "metrics.json")
    run = {**run, "metrics": json.loads((temporary / "metrics.json").read_text())}
    (temporary / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    if card:
        try:
            from model_cards import write_model_card
        except ImportError:
            logger.warning("model_cards is not installed: %s has no model card", model_dir)
        else:
            write_model_card(temporary, run)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    os.replace(temporary, model_dir)
    return model_dir
