"""A run killed with SIGKILL mid-epoch and resumed with `--resume_from_checkpoint latest` ends with exactly the
weights of an uninterrupted run (data order, augmentation, masks, dropout, schedules, accumulation, EMA)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def command(output_dir, *extra):
    return [sys.executable, "-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train",
            "--output_dir", str(output_dir), "--image_size", "32",
            "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
                              '"num_attention_heads": 2, "intermediate_size": 64}',
            "--epochs", "6", "--batch_size", "2", "--grad_accum_steps", "2", "--lr", "1e-3", "--warmup_epochs", "1",
            "--drop_path", "0.1", "--ema_decay", "0.9", "--save_every_steps", "2", "--save_total_limit", "2",
            "--report_to", "none", "--no-card", *extra]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    subprocess.run(command(tmp_path / "straight"), cwd=ROOT, env=ENV, check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "step_00000002"  # 3 optimiser steps per epoch: this one is mid-epoch
    while not first.exists() and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "model").exists()

    resumed = subprocess.run(command(killed, "--resume_from_checkpoint", "latest"), cwd=ROOT, env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout

    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    actual = load_file(killed / "model" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), name


def test_a_run_killed_after_an_epoch_boundary_checkpoint_does_not_evaluate_that_epoch_again(tmp_path):
    """3 optimiser steps per epoch, a checkpoint every 3: step_00000003 ends epoch 0. It is written after that epoch's
    evaluation and records it, so the run resumed from it evaluates from the next epoch on (not step 3 twice), and
    keeps and exports the model an uninterrupted run does."""
    every = ("--save_every_steps", "3", "--save_total_limit", "10")
    straight = subprocess.run(command(tmp_path / "straight", *every), cwd=ROOT, env=ENV, check=True,
                              capture_output=True, text=True)

    killed = tmp_path / "killed"
    with open(tmp_path / "killed.log", "w") as log:
        process = subprocess.Popen(command(killed, *every), cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.DEVNULL)
        boundary = killed / "checkpoints" / "step_00000003"
        while not boundary.exists() and process.poll() is None:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    for later in [p for p in (killed / "checkpoints").iterdir() if p.name > boundary.name]:  # had it gone on
        shutil.rmtree(later)

    resumed = subprocess.run(command(killed, *every, "--resume_from_checkpoint", "latest"), cwd=ROOT, env=ENV,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step_00000003 at step 3 (epoch 1, batch 0)" in resumed.stdout

    def evaluated(stdout):
        return [int(line.split(":")[0].split()[1]) for line in stdout.splitlines()
                if line.startswith("step ") and ": " in line]

    assert evaluated(straight.stdout) == [3, 6, 9, 12, 15, 18]
    assert evaluated(resumed.stdout) == [6, 9, 12, 15, 18]
    assert (killed / "metrics.json").read_text() == (tmp_path / "straight" / "metrics.json").read_text()
    expected = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    actual = load_file(killed / "model" / "model.safetensors")
    for name in expected:
        assert (expected[name] == actual[name]).all(), name


def in_process_args(output_dir, **overrides):
    """A tiny pretraining run (2 optimiser steps, a checkpoint after each) for run_training."""
    from train.config import TrainArgs

    values = dict(task="pretraining", output_dir=str(output_dir), dataset="sample", train_splits=["train"],
                  eval_split=None, image_size=32, epochs=2, batch_size=2, lr=1e-3, warmup_epochs=0,
                  save_every_steps=1, report_to="none", card=False, max_steps=2,
                  model_config={"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                                "num_attention_heads": 2, "intermediate_size": 64})
    return TrainArgs(**{**values, **overrides})


def test_resuming_with_other_arguments_is_refused_naming_them(tmp_path):
    """Another batch size or seed would continue a different run from the middle of this one; where the data are
    and how the run is operated (workers, step limit, logging) may change."""
    from train.run import run_training

    def args(**overrides):
        return in_process_args(tmp_path / "run", **overrides)

    run_training(args())
    with pytest.raises(ValueError, match=r"started with other arguments \(batch_size 2 -> 4; seed 0 -> 1\)"):
        run_training(args(resume_from_checkpoint="latest", batch_size=4, seed=1))
    run_training(args(resume_from_checkpoint="latest", max_steps=3, log_every_steps=1))  # operational changes
    assert (tmp_path / "run" / "checkpoints" / "step_00000003").is_dir()


def test_resuming_another_folders_checkpoint_checks_that_runs_arguments(tmp_path):
    """Resumed from a checkpoint path into a new --output_dir (no args.yaml there yet), another batch size went
    unchecked; the checkpoint's own run says what the run started with."""
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run"))
    checkpoint = str(tmp_path / "run" / "checkpoints" / "step_00000001")
    with pytest.raises(ValueError, match=r"run started with other arguments \(batch_size 2 -> 4\)"):
        run_training(in_process_args(tmp_path / "moved", resume_from_checkpoint=checkpoint, batch_size=4))
    run_training(in_process_args(tmp_path / "moved", resume_from_checkpoint=checkpoint, max_steps=3))
    assert (tmp_path / "moved" / "checkpoints" / "step_00000003").is_dir()


def test_a_best_model_that_is_not_the_checkpoints_is_picked_anew_or_refused(tmp_path, capsys):
    """best/ of a run continued from an older checkpoint (the abandoned run's later step) was exported as this run's
    best model whenever none of its evaluations beat the checkpoint's best; a checkpoint resumed into a new folder
    (no best/ there) then ended its training with a FileNotFoundError, and one with nothing left to train at once."""
    import json
    from types import SimpleNamespace

    from accelerate import Accelerator

    from train.run import check_best_model, run_training

    (tmp_path / "run" / "best").mkdir(parents=True)
    (tmp_path / "run" / "best" / "metrics.json").write_text(json.dumps({"loss": 0.5, "step": 12}))
    args = SimpleNamespace(epochs=4, max_steps=None)
    kept = SimpleNamespace(step=6, epoch=1, best_step=12, best_metric=0.5)
    check_best_model(tmp_path / "run", kept, args, Accelerator(cpu=True))
    assert (kept.best_step, kept.best_metric) == (12, 0.5)  # best/ holds the checkpoint's best step
    state = SimpleNamespace(step=6, epoch=1, best_step=6, best_metric=0.6)
    check_best_model(tmp_path / "run", state, args, Accelerator(cpu=True))
    assert (state.best_step, state.best_metric) == (None, None)
    assert "best holds step 12, not the best model of the run this checkpoint continues (step 6)" in \
        capsys.readouterr().out

    run_training(in_process_args(tmp_path / "finished"))
    last = str(tmp_path / "finished" / "checkpoints" / "step_00000002")
    with pytest.raises(ValueError, match=r"nothing left to train .* does not hold its best model"):
        run_training(in_process_args(tmp_path / "moved", resume_from_checkpoint=last))


def test_a_run_resumed_from_an_older_checkpoint_replaces_the_newer_ones_it_reaches(tmp_path):
    """Resumed from step_00000002 with more --epochs (other schedules), the run's steps 3 and 4 are not those the
    first run saved: they replace them (they were kept, and `latest` then continued the abandoned run)."""
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run", max_steps=4, save_total_limit=10))
    shutil.copytree(tmp_path / "run", tmp_path / "fresh")
    for step in (3, 4):
        shutil.rmtree(tmp_path / "fresh" / "checkpoints" / f"step_{step:08d}")
    for run in ("run", "fresh"):
        run_training(in_process_args(tmp_path / run, max_steps=4, save_total_limit=10, epochs=3,
                                     resume_from_checkpoint=str(tmp_path / run / "checkpoints" / "step_00000002")))
    for step in (3, 4):
        expected = load_file(tmp_path / "fresh" / "checkpoints" / f"step_{step:08d}" / "model.safetensors")
        actual = load_file(tmp_path / "run" / "checkpoints" / f"step_{step:08d}" / "model.safetensors")
        for name in expected:
            assert torch.equal(expected[name], actual[name]), (step, name)


def test_a_new_run_in_a_folder_with_an_earlier_runs_checkpoints_is_refused(tmp_path, capsys):
    """The earlier run's checkpoints (higher steps) would outlive the new run's, and a later
    `--resume_from_checkpoint latest` would continue the earlier run under the new run's arguments."""
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run", max_steps=3))
    with pytest.raises(ValueError, match=r"holds checkpoints of an earlier run \(up to step_00000003\): continue it "
                                         r"with --resume_from_checkpoint latest, or start a new --output_dir"):
        run_training(in_process_args(tmp_path / "run", lr=1e-4))
    capsys.readouterr()
    run_training(in_process_args(tmp_path / "fresh", resume_from_checkpoint="latest"))  # none yet: starts, saying so
    assert f"No checkpoint in {tmp_path / 'fresh' / 'checkpoints'} yet: starting from step 0" in capsys.readouterr().out


def test_resuming_a_run_that_reached_max_steps_trains_no_further(tmp_path):
    """Relaunching a finished `--max_steps` run with `--resume_from_checkpoint latest` (as a preemptible job does)
    exports the same weights again instead of taking one more step per relaunch."""
    from train import checkpoint
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run"))
    finished = load_file(tmp_path / "run" / "model" / "model.safetensors")
    run_training(in_process_args(tmp_path / "run", resume_from_checkpoint="latest"))
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "run")] == ["step_00000001", "step_00000002"]
    relaunched = load_file(tmp_path / "run" / "model" / "model.safetensors")
    for name in finished:
        assert torch.equal(finished[name], relaunched[name]), name


@pytest.mark.parametrize("stop_at", [2, 3])
def test_a_resumed_epoch_reports_the_training_loss_of_the_whole_epoch(tmp_path, stop_at):
    """3 steps per epoch, a checkpoint every step: stopped mid-epoch (2) or at the epoch's last step (3), whose
    checkpoint is written after the epoch's evaluation and records it. The resumed run reports the epoch's training loss and mask
    fraction over all of its batches, as the uninterrupted run does (not over those after the resume, nor 0 for
    none), so the exported metrics do not depend on where a run was stopped."""
    from train.config import TrainArgs
    from train.run import run_training

    def args(output_dir, **overrides):
        values = dict(task="pretraining", output_dir=str(tmp_path / output_dir), dataset="sample",
                      train_splits=["train"], eval_split=None, image_size=32, epochs=1, batch_size=4, lr=1e-3,
                      warmup_epochs=0, save_every_steps=1, report_to="none", card=False,
                      model_config={"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "intermediate_size": 64})
        return TrainArgs(**{**values, **overrides})

    straight = run_training(args("straight"))
    run_training(args("cut", max_steps=stop_at))
    resumed = run_training(args("cut", resume_from_checkpoint="latest"))
    assert resumed["train_loss"] > 0 and resumed == straight


def test_a_resumed_runs_tensorboard_curves_have_each_step_once(tmp_path):
    """A run stopped after logging steps past its last checkpoint logs them again when resumed: TensorBoard shows
    each step once (the resumed run's), not curves that go back and repeat those steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from train import checkpoint
    from train.run import run_training

    run = tmp_path / "run"
    settings = dict(epochs=2, max_steps=None, save_every_steps=2, save_total_limit=10, report_to="tensorboard",
                    log_every_steps=1)  # 6 steps per epoch
    run_training(in_process_args(run, **settings))
    for later in checkpoint.checkpoints(run)[2:]:  # as if stopped at step 12 with step_00000004 its last checkpoint
        shutil.rmtree(later)
    run_training(in_process_args(run, resume_from_checkpoint="latest", **settings))
    events = EventAccumulator(str(run / "logs" / "cxrgm"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/loss")] == list(range(1, 13))
    assert [event.step for event in events.Scalars("eval/loss")] == [6, 12]


def test_an_epochs_end_is_saved_only_when_evaluated_or_a_save_every_steps_step(tmp_path):
    """6 optimiser steps per epoch, an evaluation every 2 epochs, a checkpoint every 4 steps: the ends of epochs 1 and
    3 (steps 6 and 18) are neither, so they are not saved. (Every epoch's end was: with a few labelled images an
    epoch is one step, and fine-tuning wrote a full checkpoint, optimiser state and all, after every step.)"""
    from train import checkpoint
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run", epochs=4, max_steps=None, eval_every_epochs=2, save_every_steps=4,
                                 save_total_limit=10))
    assert [folder.name for folder in checkpoint.checkpoints(tmp_path / "run")] == [
        f"step_{step:08d}" for step in (4, 8, 12, 16, 20, 24)]


def test_a_save_total_limit_of_0_writes_no_checkpoint(tmp_path):
    """--save_total_limit 0: a run that cannot be resumed writes no checkpoint (a benchmark's many short runs each
    wrote a full one at their end, at least one being kept whatever the limit); the export is there as ever."""
    from train import checkpoint
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run", max_steps=None, save_total_limit=0))
    assert checkpoint.checkpoints(tmp_path / "run") == []
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="save_total_limit must be 0"):
        run_training(in_process_args(tmp_path / "other", save_total_limit=-1))


def test_resuming_skips_a_damaged_newest_checkpoint_naming_it_and_why(tmp_path, caplog):
    """A newest checkpoint that is only partly there (a save killed on a file system whose rename copies, a truncated
    or corrupt file, a lost one) is skipped with a warning naming it and what is wrong; the run resumes from the
    newest complete one and ends with the weights of an uninterrupted run; the damaged folder is replaced when the
    resumed run saves that step again. (Loading it raised, or, without its RNG states, resumed silently.)"""
    from train import checkpoint
    from train.run import run_training

    def args(output_dir, **overrides):
        return in_process_args(output_dir, save_total_limit=3, **overrides)

    run_training(args(tmp_path / "straight", max_steps=4))
    run_training(args(tmp_path / "cut", max_steps=3))

    def flip_a_byte(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))

    damages = {
        "truncated weights": (lambda c: os.truncate(c / "model.safetensors", 50_000),
                              "model.safetensors has 50000 bytes, 103708 were saved"),
        "missing optimiser": (lambda c: (c / "optimizer.bin").unlink(), "optimizer.bin is missing"),
        "missing RNG states": (lambda c: (c / "random_states_0.pkl").unlink(), "random_states_0.pkl is missing"),
        "corrupt optimiser": (lambda c: flip_a_byte(c / "optimizer.bin"), "optimizer.bin is corrupt"),
        "unfinished save": (lambda c: (c / "manifest.json").unlink(), "it has no manifest.json: its save did not "
                                                                      "finish"),
    }
    expected = load_file(tmp_path / "straight" / "checkpoints" / "step_00000004" / "model.safetensors")
    for number, (name, (damage, reason)) in enumerate(damages.items()):
        run = tmp_path / f"damaged_{number}"
        shutil.copytree(tmp_path / "cut", run)
        newest = run / "checkpoints" / "step_00000003"
        damage(newest)
        caplog.clear()
        with caplog.at_level("WARNING", logger="train.checkpoint"):
            run_training(args(run, max_steps=4, resume_from_checkpoint="latest"))
        assert f"Skipping checkpoint {newest}: {reason}" in caplog.text, name
        assert "Resuming from the older step_00000002" in caplog.text, name
        assert checkpoint.problem(newest) is None, name  # saved again by the resumed run
        actual = load_file(run / "checkpoints" / "step_00000004" / "model.safetensors")
        for key in expected:
            assert torch.equal(expected[key], actual[key]), (name, key)


def test_resuming_a_run_whose_checkpoints_are_all_damaged_is_refused_naming_them(tmp_path):
    """Rather than a traceback from inside the loader (or a fresh start that would drop the run's progress)."""
    from train.run import run_training

    run_training(in_process_args(tmp_path / "run"))
    folders = tmp_path / "run" / "checkpoints"
    (folders / "step_00000001" / "optimizer.bin").unlink()
    os.truncate(folders / "step_00000002" / "model.safetensors", 10)
    with pytest.raises(ValueError, match=r"No usable checkpoint in .*checkpoints: step_00000002: model.safetensors has "
                                         r"10 bytes, 103708 were saved; step_00000001: optimizer.bin is missing"):
        run_training(in_process_args(tmp_path / "run", resume_from_checkpoint="latest"))
    with pytest.raises(ValueError, match=r"step_00000001: the checkpoint is damaged: optimizer.bin is missing"):
        run_training(in_process_args(tmp_path / "run", resume_from_checkpoint=str(folders / "step_00000001")))


def test_a_run_resumed_with_another_init_keeps_the_inputs_it_started_with(tmp_path, caplog):
    """--init may change on resume (a moved folder, another copy of it), and the run takes every input setting of
    --init's processor: resumed with an --init whose processor prepares images otherwise, the remaining steps were
    trained on other inputs than the first ones, and the export's processor was the new --init's. The processor of
    the run is recorded in each checkpoint and a resumed run takes it from there (warning that --init's differs): it
    ends with the weights and the processor of the run that was never stopped."""
    import json

    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train.run import run_training

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)
    encoder = GroupMaskedViTForPreTraining(config)
    first, other = tmp_path / "init", tmp_path / "other-init"
    for folder, processor in ((first, GroupMaskedViTImageProcessor(size=32, image_mean=[0.3], image_std=[0.5],
                                                                   resize_mode="squash", equalize=True)),
                              (other, GroupMaskedViTImageProcessor(size=32))):
        encoder.save_pretrained(folder)
        processor.save_pretrained(folder)

    def args(output_dir, init, **overrides):
        return in_process_args(tmp_path / output_dir, init=str(init), **overrides)

    run_training(args("straight", first))
    run_training(args("cut", first, max_steps=1))
    assert (tmp_path / "cut" / "checkpoints" / "step_00000001" / "preprocessor_config.json").is_file()
    caplog.clear()
    with caplog.at_level("WARNING", logger="train.run"):
        run_training(args("cut", other, resume_from_checkpoint="latest"))
    assert "--init" in caplog.text and "resize_mode 'squash' -> 'pad'" in caplog.text
    assert "image_mean [0.3] -> [0.52]" in caplog.text and "equalize True -> False" in caplog.text

    def exported(run):
        model = tmp_path / run / "model"
        return load_file(model / "model.safetensors"), json.loads((model / "preprocessor_config.json").read_text())

    (expected, expected_processor), (actual, actual_processor) = exported("straight"), exported("cut")
    assert actual_processor == expected_processor and actual_processor["resize_mode"] == "squash"
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name


def test_a_run_into_a_folder_where_another_is_still_training_is_refused(tmp_path):
    """A worker left training (a one-process `accelerate launch` whose launcher alone was signalled goes on) and a run
    resumed beside it wrote the same checkpoints and export; a run killed outright holds the folder no longer."""
    run = tmp_path / "run"
    first = subprocess.Popen(command(run, "--epochs", "1000"), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not (run / "checkpoints" / "step_00000002").exists() and first.poll() is None:
            time.sleep(0.01)
        assert first.poll() is None, "the first run ended before the second started"
        second = subprocess.run(command(run, "--resume_from_checkpoint", "latest", "--epochs", "1000", "--max_steps",
                                        "4"), cwd=ROOT, env=ENV, capture_output=True, text=True)
        assert second.returncode == 2, second.stderr[-3000:]
        assert (f"error: {run} is in use by another run that is still training (process {first.pid}): let it end or "
                "stop it") in second.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    resumed = subprocess.run(command(run, "--resume_from_checkpoint", "latest", "--epochs", "1000", "--max_steps", "4"),
                             cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout and (run / "model" / "model.safetensors").is_file()


def test_a_resumed_runs_damaged_init_or_checkpoint_files_are_named_before_the_data_are_loaded(tmp_path):
    """--init's preprocessor_config.json had a reader of its own (other messages than every other model file's), and
    the checkpoint's own config.json was read only after the data had loaded (here they cannot be: no such
    --prepared_dir), where a cut-short one ended on transformers' OSError traceback."""
    import json

    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train.run import run_training

    init = tmp_path / "init"
    GroupMaskedViTForPreTraining(GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=64)).save_pretrained(init)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(init)
    run_training(in_process_args(tmp_path / "run", init=str(init), max_steps=1))
    checkpoint = tmp_path / "run" / "checkpoints" / "step_00000001"

    def resume(**overrides):
        return run_training(in_process_args(tmp_path / "run", init=str(init), prepared_dir=str(tmp_path / "no_shards"),
                                            **overrides))

    processor = (init / "preprocessor_config.json").read_text()
    (init / "preprocessor_config.json").write_text(json.dumps([json.loads(processor)]))
    with pytest.raises(ValueError, match=rf"^--init {init}: its preprocessor_config.json \(.*\) holds a list, not a "
                                         "JSON object; restore the file"):
        resume(resume_from_checkpoint="latest")
    (init / "preprocessor_config.json").write_text(processor)
    (checkpoint / "manifest.json").unlink()  # unchecked: as an earlier version's checkpoint is loaded
    (checkpoint / "config.json").write_text((checkpoint / "config.json").read_text()[:40])
    with pytest.raises(ValueError, match=rf"^--resume_from_checkpoint {checkpoint}: its config.json \(.*\) is not "
                                         "valid JSON"):
        resume(resume_from_checkpoint=str(checkpoint))
