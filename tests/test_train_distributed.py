"""`accelerate launch --cpu --num_processes 2` evaluation counts every image exactly once: same numbers as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def test_two_process_evaluation_equals_one_process(tmp_path):
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2,
                                  id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1},
                                  problem_type="single_label_classification")
    model_dir = tmp_path / "model"
    GroupMaskedViTForImageClassification(config).save_pretrained(model_dir)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(model_dir)
    # 12 images in batches of 5 over 2 processes: the last batch is padded, and the padding must not count
    evaluate = ["-m", "train.evaluate", "--model", str(model_dir), "--dataset", "sample", "--split", "train",
                "--batch_size", "5", "--bootstrap", "50"]
    single = [sys.executable, *evaluate, "--output_dir", str(tmp_path / "one")]
    double = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              *evaluate, "--output_dir", str(tmp_path / "two")]
    for cmd in (single, double):
        done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["num_samples"] == two["num_samples"] == 12
    assert one.keys() == two.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
