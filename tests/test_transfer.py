"""Fine-tuning from a saved model (`--init`): which weights come over, in what precision, with what settings."""

import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
from train.config import TrainArgs
from train.starting_point import build_model

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)


def pretraining_export(folder, dtype=torch.float32):
    torch.manual_seed(0)
    model = GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY)).to(dtype)
    model.save_pretrained(folder)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(folder)
    return folder


def fine_tuning(task, init, **overrides):
    return TrainArgs(task=task, output_dir="unused", dataset="sample", image_size=32, init=str(init), **overrides)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_half_precision_checkpoint_is_fine_tuned_in_float32(tmp_path, dtype, task):
    """A checkpoint saved in bf16 / fp16 (as Hub uploads often are) came back in that dtype: the new head, the
    weights and AdamW's state then trained in half precision, where most updates round away."""
    init = pretraining_export(tmp_path / "pre", dtype)
    saved = load_file(init / "model.safetensors")
    model = build_model(fine_tuning(task, init), ["normal", "pneumonia"], single_label=True)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    weights = model.state_dict()
    encoder = [k for k in saved if k.startswith("vit.") and k in weights]
    assert len(encoder) >= 28
    for key in encoder:  # the checkpoint's values, exactly, only wider
        assert torch.equal(weights[key], saved[key].float()), key


def test_an_encoder_setting_that_the_checkpoint_was_not_trained_with_is_refused_naming_it(tmp_path):
    """Another head count loaded without a word (each attention's weights then split into other heads); another
    patch size failed inside transformers' loading with its generic size-mismatch error."""
    init = pretraining_export(tmp_path / "pre")
    for changes, named in (({"num_attention_heads": 4}, "num_attention_heads 2 -> 4"),
                           ({"patch_size": 16, "hidden_size": 32}, "patch_size 8 -> 16")):
        with pytest.raises(ValueError, match=rf"--model_config changes the encoder of --init .*\({named}\)"):
            build_model(fine_tuning("classification", init, model_config=changes), ["normal", "pneumonia"], True)
    # the checkpoint's own values (a copied pretraining model_config) and head settings are fine
    same = dict(TINY, pooling="mean")
    del same["image_size"]
    model = build_model(fine_tuning("classification", init, model_config=same), ["normal", "pneumonia"], True)
    assert model.config.num_attention_heads == 2 and model.config.pooling == "mean"


class Collected(logging.Handler):
    """The messages of the records a logger handles."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_fine_tuning_says_which_layers_start_afresh_instead_of_transformers_load_report(tmp_path, caplog):
    """transformers 5 printed its table of MISSING / UNEXPECTED weights (every fine-tuning from a pretraining export):
    one warning of ours says what starts afresh and what of --init is left out; the table is held back for that load
    only (no handler of transformers' loggers gets it), as other loads still print it."""
    from modeling_cxrgm import GroupMaskedViTForImageClassification

    transformers_log, collected = logging.getLogger("transformers"), Collected()
    transformers_log.addHandler(collected)
    try:
        with caplog.at_level("WARNING", logger="train.starting_point"):
            classifier = build_model(fine_tuning("classification", pretraining_export(tmp_path / "pre")),
                                     ["normal", "pneumonia"], single_label=True)
            classifier.save_pretrained(tmp_path / "cls")
            build_model(fine_tuning("segmentation", tmp_path / "cls"), [], single_label=True)
        assert collected.messages == []
        GroupMaskedViTForImageClassification.from_pretrained(tmp_path / "pre")
        assert "LOAD REPORT" in collected.messages[-1] and "classifier.weight" in collected.messages[-1]
    finally:
        transformers_log.removeHandler(collected)
    assert [record.getMessage() for record in caplog.records if record.name == "train.starting_point"] == [
        f"--init {tmp_path / 'pre'}: classifier initialised afresh (not in --init); the other weights are loaded",
        f"--init {tmp_path / 'cls'}: segmentation_head initialised afresh (not in --init); its classifier left out "
        "(not part of this model); the other weights are loaded"]


def test_a_hub_repo_id_as_init_fine_tunes_from_the_hf_cache_offline(tmp_path):
    """`--init alice/gmml` was refused ("no config.json there"): only a local folder was taken, where users expect
    from_pretrained's repo ids; the card names the repo as its base model."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_publish_cache import cache_snapshot

    cache_snapshot(tmp_path / "cache", "alice/gmml-tiny", pretraining_export(tmp_path / "pre"))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "train.finetune_classification", "--dataset", "sample", "--image_size", "32",
               "--output_dir", str(tmp_path / "ft"), "--epochs", "1", "--batch_size", "8", "--report_to", "none",
               "--init"]
    done = subprocess.run([*command, "alice/gmml-tiny"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert ": classifier initialised afresh (not in --init)" in done.stderr and "LOAD REPORT" not in done.stderr
    card = (tmp_path / "ft" / "model" / "README.md").read_text()
    assert "base_model: alice/gmml-tiny" in card
    assert json.loads((tmp_path / "ft" / "model" / "run.json").read_text())["training"]["init"] == "gmml"
    missing = subprocess.run([*command, "alice/none"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert missing.returncode != 0
    assert "--init alice/none: no such folder here, and no Hub model of that name" in missing.stderr


def test_a_run_from_a_hub_repo_id_resumes_where_that_repo_is_not_at_hand(tmp_path):
    """A resumed run fetched its --init repo id again before it looked at its checkpoint, which records the model and
    the processor: on a machine without that repo in its HF cache (offline, or a cleared cache) it could not resume."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from test_publish_cache import cache_snapshot

    cache_snapshot(tmp_path / "cache", "alice/gmml-tiny", pretraining_export(tmp_path / "pre"))
    root = Path(__file__).resolve().parents[1]

    def fine_tune(output_dir, cache, *extra):
        command = [sys.executable, "-m", "train.finetune_classification", "--dataset", "sample", "--image_size", "32",
                   "--output_dir", str(tmp_path / output_dir), "--epochs", "2", "--batch_size", "8",
                   "--report_to", "none", "--save_every_steps", "1", "--init", "alice/gmml-tiny", *extra]
        env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / cache)}
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)

    first = fine_tune("ft", "cache", "--max_steps", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = fine_tune("ft", "empty", "--max_steps", "2", "--resume_from_checkpoint", "latest")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and "prepares inputs otherwise" not in resumed.stderr
    assert (tmp_path / "ft" / "checkpoints" / "step_00000002").is_dir()
    assert "base_model: alice/gmml-tiny" in (tmp_path / "ft" / "model" / "README.md").read_text()
    new = fine_tune("other", "empty", "--max_steps", "1")  # a new run still needs its --init
    assert new.returncode != 0 and "--init alice/gmml-tiny: no such folder here" in new.stderr


def test_evaluate_probe_and_predict_run_a_half_precision_checkpoint_in_float32(tmp_path):
    """A bf16 checkpoint came back in bf16 in train.evaluate, train.probe and train.predict (transformers loads in
    the file's dtype): metrics, probe features and predictions differed from the float32 model that trained."""
    from PIL import Image

    from modeling_cxrgm import GroupMaskedViTForImageClassification
    from train import evaluate, predict, probe

    torch.manual_seed(0)
    model = GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, num_labels=2)).eval()
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path / "bf16")
    loaded, _, _ = evaluate.load_model(tmp_path / "bf16")
    encoder, _ = probe.load_encoder(tmp_path / "bf16")
    assert {p.dtype for p in [*loaded.parameters(), *encoder.parameters()]} == {torch.float32}

    Image.fromarray((np.arange(40 * 48) % 251).astype(np.uint8).reshape(40, 48)).save(tmp_path / "cxr.png")
    [(_, _, probabilities)] = list(predict.predict(tmp_path / "bf16", [tmp_path / "cxr.png"], device="cpu"))
    pixels = GroupMaskedViTImageProcessor(size=32)(Image.open(tmp_path / "cxr.png"))["pixel_values"]
    with torch.no_grad():
        expected = loaded(pixel_values=pixels).logits.softmax(-1)[0]
    np.testing.assert_allclose(probabilities, expected.numpy(), rtol=0, atol=1e-6)


def test_a_run_from_a_hub_repo_id_records_and_resumes_with_the_repo_id(tmp_path):
    """args.yaml kept the HF cache folder that --init alice/gmml-tiny was found in, not the repo id: resuming with
    another cache location (another machine, a moved HF_HOME) was refused as a changed --init, and repeating the run
    from args.yaml elsewhere pointed at a folder that is not there."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml
    from test_publish_cache import cache_snapshot

    cache_snapshot(tmp_path / "cache", "alice/gmml-tiny", pretraining_export(tmp_path / "pre"))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "train.finetune_classification", "--dataset", "sample", "--image_size", "32",
               "--output_dir", str(tmp_path / "ft"), "--batch_size", "8", "--report_to", "none",
               "--init", "alice/gmml-tiny"]
    done = subprocess.run([*command, "--epochs", "1"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "ft" / "args.yaml").read_text())["init"] == "alice/gmml-tiny"
    shutil.move(tmp_path / "cache", tmp_path / "moved")
    env["HF_HUB_CACHE"] = str(tmp_path / "moved")
    resumed = subprocess.run([*command, "--epochs", "2", "--resume_from_checkpoint", "latest"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
