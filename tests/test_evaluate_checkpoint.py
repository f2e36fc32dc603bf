"""Evaluating a training run's checkpoint (`train.evaluate --model <run>/checkpoints/step_XXXXXXXX`), on the real
sample set at tiny scale."""

import json

import pytest

from train import evaluate
from train.config import TrainArgs
from train.run import run_training

TINY = {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}
pytestmark = pytest.mark.slow


def tiny(task, output_dir, **overrides):
    """One epoch (its end the run's only evaluation: the export is the last step's EMA), a checkpoint every step."""
    base = dict(task=task, output_dir=str(output_dir), dataset="sample", eval_split="test", image_size=32,
                model_config=dict(TINY), epochs=1, batch_size=4, lr=1e-3, warmup_epochs=0, ema_decay=0.5,
                save_every_steps=1, save_total_limit=10, report_to="none", card=False)
    return TrainArgs(**{**base, **overrides})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A GMML pretraining run (seed 7, batch 3) and a classifier fine-tuned from its export."""
    root = tmp_path_factory.mktemp("runs")
    pretraining = run_training(tiny("pretraining", root / "pre", batch_size=3, seed=7))
    classification = run_training(tiny("classification", root / "cls", init=str(root / "pre" / "model")))
    return root, pretraining, classification


def test_a_checkpoint_saved_before_the_first_evaluation_holds_its_runs_model(runs, tmp_path):
    """Its config.json named the --init's model (or none), as transformers names the model only when it is first
    saved (the best model, at the first evaluation): a fine-tuning checkpoint was scored as a pretraining model."""
    root, _, _ = runs
    first = root / "cls" / "checkpoints" / "step_00000001"
    assert json.loads((first / "config.json").read_text())["architectures"] == ["GroupMaskedViTForImageClassification"]
    out = evaluate.main(["--model", str(first), "--dataset", "sample", "--split", "test", "--bootstrap", "0",
                         "--output_dir", str(tmp_path)])
    assert "auroc_macro" in out and "loss" not in out
