"""Two real processes (`accelerate launch`, gloo on the CPU): evaluation counts every image exactly once, and a
pretraining run stopped mid-epoch and resumed ends with exactly the weights of an uninterrupted two-process run.

`accelerate launch --cpu --num_processes 2` starts a single process; `--multi_gpu` with ACCELERATE_USE_CPU=true
starts two through torchrun, which then run as DistributedType.MULTI_CPU over gloo."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTImageProcessor,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def two_processes(*module_and_args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), *module_and_args]


def run(command: list[str], cpu_processes: bool = True) -> subprocess.CompletedProcess:
    env = {**ENV, "ACCELERATE_USE_CPU": "true"} if cpu_processes else ENV
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)  # a hang fails
    assert done.returncode == 0, done.stderr[-3000:]
    return done


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
    single = run([sys.executable, *evaluate, "--output_dir", str(tmp_path / "one")], cpu_processes=False)
    double = run(two_processes(*evaluate, "--output_dir", str(tmp_path / "two")))
    assert "1 process(es)" in single.stdout and "2 process(es)" in double.stdout
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert one["num_samples"] == two["num_samples"] == 12
    assert one.keys() == two.keys()
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


def test_two_process_pretraining_evaluation_equals_one_process(tmp_path):
    """The reconstruction loss counts each image once (the sampler pads the lone image with a copy of it for the
    second process) and corrupts each batch as one process does, also a last batch that the split does not fill:
    12 images in batches of 5 leave the first process [10, 11] padded with images 0-2 of the split, which must not
    take part in the corruption of 10 and 11 (one process corrupts [10, 11] alone)."""
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, reconstruction_layers=[1, 2])
    model_dir = tmp_path / "model"
    GroupMaskedViTForPreTraining(config).save_pretrained(model_dir)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(model_dir)
    for split, batch_size in (("test", "1"), ("unlabelled", "1"), ("train", "5")):
        evaluate = ["-m", "train.evaluate", "--model", str(model_dir), "--dataset", "sample", "--split", split,
                    "--batch_size", batch_size]
        run([sys.executable, *evaluate, "--output_dir", str(tmp_path / split / "one")], cpu_processes=False)
        run(two_processes(*evaluate, "--output_dir", str(tmp_path / split / "two")))
        one, two = (json.loads((tmp_path / split / name / "metrics.json").read_text()) for name in ("one", "two"))
        assert two["loss"] == pytest.approx(one["loss"], rel=1e-5), split


def test_two_process_evaluation_of_a_checkpoint_equals_one_process(tmp_path):
    """Each process loads the model the checkpoint would export (a save_pretrained folder of it, written to be loaded
    from, was only written by the first process: transformers saves on rank 0 alone)."""
    run([sys.executable, "-m", "train.pretrain", "--dataset", "sample", "--output_dir", str(tmp_path / "run"),
         "--image_size", "32", "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
         '"num_attention_heads": 2, "intermediate_size": 64}', "--batch_size", "3", "--max_steps", "1",
         "--ema_decay", "0.5", "--report_to", "none", "--no-card"], cpu_processes=False)
    evaluate = ["-m", "train.evaluate", "--model", str(tmp_path / "run" / "checkpoints" / "step_00000001"),
                "--dataset", "sample", "--split", "test"]
    run([sys.executable, *evaluate, "--output_dir", str(tmp_path / "one")], cpu_processes=False)
    run(two_processes(*evaluate, "--output_dir", str(tmp_path / "two")))
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    assert one["weights"] == two["weights"] == "ema"
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)


def test_two_process_pretraining_resumed_mid_epoch_matches_uninterrupted_run(tmp_path):
    def pretrain(output_dir, *extra):
        return run(two_processes(
            "-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train", "unlabelled",
            "--output_dir", str(output_dir), "--image_size", "32",
            "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
                              '"num_attention_heads": 2, "intermediate_size": 64}',
            "--epochs", "3", "--batch_size", "2", "--grad_accum_steps", "2", "--lr", "1e-3", "--warmup_epochs", "1",
            "--drop_path", "0.1", "--ema_decay", "0.9", "--save_every_steps", "1", "--eval_every_epochs", "3",
            "--report_to", "none", "--no-card", *extra))

    straight = pretrain(tmp_path / "straight")
    assert "2 process(es)" in straight.stdout and "2 steps/epoch" in straight.stdout
    pretrain(tmp_path / "cut", "--max_steps", "3")  # stops after the first half of the second epoch
    resumed = pretrain(tmp_path / "cut", "--resume_from_checkpoint", "latest")
    assert "at step 3 (epoch 1, batch 2)" in resumed.stdout

    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    actual = load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), name


def test_a_two_process_run_is_not_resumed_on_one_process(tmp_path):
    """A run resumed on another number of processes went on silently with another effective batch, learning rate,
    steps per epoch and data order than it started with (a changed batch size is refused, this was not)."""
    pretrain = ["-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train", "--output_dir",
                str(tmp_path / "run"), "--image_size", "32", "--model_config",
                '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, '
                '"intermediate_size": 64}', "--epochs", "2", "--batch_size", "2", "--save_every_steps", "1",
                "--report_to", "none", "--no-card"]
    run(two_processes(*pretrain, "--max_steps", "1"))
    resumed = subprocess.run([sys.executable, *pretrain, "--resume_from_checkpoint", "latest"], cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode != 0
    assert "step_00000001 was saved by a run on 2 processes, and this one has 1" in resumed.stderr


def test_two_process_segmentation_and_classification_finetuning(tmp_path):
    """DDP needs a gradient for every parameter at every step: a head that leaves one unused fails at step 2."""
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "seg", rows=4)
    tiny = ["--image_size", "32", "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 4, '
            '"num_attention_heads": 2, "intermediate_size": 64}', "--epochs", "2", "--batch_size", "1", "--lr", "1e-3",
            "--warmup_epochs", "0", "--report_to", "none", "--no-card"]
    for script, data, steps in (("train.finetune_segmentation", ["--prepared_dir", str(tmp_path / "seg")], 2),
                                ("train.finetune_classification", ["--dataset", "sample"], 6)):
        done = run(two_processes("-m", script, *data, "--output_dir", str(tmp_path / script), *tiny))
        assert f"2 process(es), lr 0.001, {steps} steps/epoch" in done.stdout
        assert (tmp_path / script / "model" / "model.safetensors").is_file()


def test_fsdp2_shards_the_configured_blocks_trains_and_exports(tmp_path):
    """Accelerate enables FSDP only with GPUs, so the parts this package adds are run under torch's FSDP2 directly."""
    import yaml

    fsdp = yaml.safe_load((ROOT / "train" / "accelerate_configs" / "fsdp.yaml").read_text())["fsdp_config"]
    # --standalone: the rendezvous binds a port the system picks, so concurrent tests cannot race for one
    done = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(ROOT / "tests" / "workers" / "fsdp2_step.py"), str(tmp_path),
                fsdp["fsdp_transformer_layer_cls_to_wrap"]], cpu_processes=False)
    assert "fsdp2 ok" in done.stdout


def test_a_checkpoint_saved_under_fsdp_is_evaluated_predicted_with_and_probed_as_its_weights(tmp_path):
    """Under fsdp.yaml a checkpoint holds its model's shards (pytorch_model_fsdp_0/), no model.safetensors: evaluate,
    predict and probe ended on transformers' OSError traceback. A run's last checkpoint is saved again as accelerate
    saves it under FSDP (FSDP2 on two CPU processes, accelerate's save_fsdp_model); loaded from the shards, it gives
    exactly the weights and results of the original."""
    import shutil

    import torch
    import yaml

    from hf_datasets.builders.sample import sample_files
    from train import checkpoint

    run([sys.executable, "-m", "train.finetune_classification", "--dataset", "sample", "--output_dir",
         str(tmp_path / "run"), "--image_size", "32", "--model_config", '{"patch_size": 8, "hidden_size": 32, '
         '"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}', "--batch_size", "4",
         "--max_steps", "2", "--lr", "1e-3", "--report_to", "none", "--no-card"], cpu_processes=False)
    shutil.copytree(tmp_path / "run", tmp_path / "fsdp")
    plain, sharded = (tmp_path / name / "checkpoints" / "step_00000002" for name in ("run", "fsdp"))
    fsdp = yaml.safe_load((ROOT / "train" / "accelerate_configs" / "fsdp.yaml").read_text())["fsdp_config"]
    done = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(ROOT / "tests" / "workers" / "fsdp2_checkpoint.py"), str(sharded),
                fsdp["fsdp_transformer_layer_cls_to_wrap"], fsdp["fsdp_state_dict_type"]], cpu_processes=False)
    assert "sharded: ['.metadata', '__0_0.distcp', '__1_0.distcp']" in done.stdout
    assert not (sharded / "model.safetensors").exists() and checkpoint.problem(sharded) is None

    expected, loaded = (checkpoint.exported_model(folder)[0].state_dict() for folder in (plain, sharded))
    assert loaded.keys() == expected.keys()
    assert all(loaded[name].dtype == torch.float32 and torch.equal(loaded[name], expected[name]) for name in expected)
    images = [str(path) for name, path in sorted(sample_files().items()) if name.endswith(".jpeg")][:4]
    for folder in (plain, sharded):
        for script in (["train.evaluate", "--dataset", "sample", "--bootstrap", "0"],
                       ["train.predict", "--inputs", *images, "--output", str(folder.parent / "predictions.csv")],
                       ["train.probe", "--dataset", "sample"]):
            run([sys.executable, "-m", *script[:1], "--model", str(folder), *script[1:]], cpu_processes=False)
    for result in (f"eval-{plain.name}-test/metrics.json", "predictions.csv", f"probe-{plain.name}.json"):
        assert (sharded.parent / result).read_text() == (plain.parent / result).read_text(), result

    (sharded / checkpoint.MANIFEST).unlink()  # shards of another model (a manifest would call the folder damaged)
    config = json.loads((sharded / "config.json").read_text())
    (sharded / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ValueError, match=r"cannot be read from its FSDP shards, .* SHARDED_STATE_DICT "
                                         r"\(pytorch_model_fsdp_0\): Missing key in checkpoint state_dict: "
                                         r"model\.vit\.encoder\.layers\.2\."):
        checkpoint.exported_model(sharded)
