"""Evaluating a training run's checkpoint (`train.evaluate --model <run>/checkpoints/step_XXXXXXXX`), and predicting
with and probing one, on the real sample set at tiny scale."""

import json
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from hf_datasets.builders.sample import sample_files
from train import checkpoint, evaluate, predict, probe
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


def test_a_checkpoint_is_scored_as_its_export_with_its_runs_settings_and_results_beside_it(runs, tmp_path, capsys):
    """The run's one evaluation (its last step, EMA weights, seed 7, batch 3) is its export's metrics: the last
    checkpoint scores the same (it scored the raw weights, with seed 0 and batch 32, into eval-test/ inside itself,
    which retention deletes with it), with the same drift reference as the export."""
    root, pretraining, _ = runs
    last = checkpoint.checkpoints(root / "pre")[-1]
    raw, exported = load_file(last / "model.safetensors"), load_file(root / "pre" / "model" / "model.safetensors")
    assert any(not torch.equal(raw[name], exported[name]) for name in exported)  # the EMA is not the raw weights

    out = evaluate.main(["--model", str(last), "--dataset", "sample", "--split", "test", "--bootstrap", "0"])
    assert out["loss"] == pytest.approx(pretraining["loss"], rel=1e-5)
    assert f"{last} is a checkpoint: scoring its EMA weights" in capsys.readouterr().out
    results = last.parent / f"eval-{last.name}-test"
    assert not (last / "eval-test").exists()
    assert json.loads((results / "metrics.json").read_text()) == {"loss": out["loss"], "weights": "ema"}

    export = evaluate.main(["--model", str(root / "pre" / "model"), "--dataset", "sample", "--split", "test",
                            "--bootstrap", "0", "--output_dir", str(tmp_path)])
    assert export == out
    drift = json.loads((results / "drift.json").read_text())
    assert drift == json.loads((tmp_path / "drift.json").read_text()) and drift["trained_on"] == ["kermany"]


def test_a_checkpoint_of_a_run_without_ema_scores_its_weights(tmp_path):
    metrics = run_training(tiny("pretraining", tmp_path / "run", ema_decay=None, batch_size=3, seed=7))
    last = checkpoint.checkpoints(tmp_path / "run")[-1]
    out = evaluate.main(["--model", str(last), "--dataset", "sample", "--split", "test", "--bootstrap", "0",
                         "--output_dir", str(tmp_path / "eval")])
    assert out["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["weights"] == "raw"


def test_a_checkpoints_results_outlive_it_and_the_run_resumes_past_them(runs, tmp_path):
    """Retention deletes the evaluated checkpoint, not its results beside it, and resuming takes them for no
    checkpoint."""
    root, _, _ = runs
    shutil.copytree(root / "pre", tmp_path / "pre")
    last = checkpoint.checkpoints(tmp_path / "pre")[-1]
    evaluate.main(["--model", str(last), "--dataset", "sample", "--split", "test", "--bootstrap", "0"])
    results = last.parent / f"eval-{last.name}-test"

    run_training(tiny("pretraining", tmp_path / "pre", batch_size=3, seed=7, epochs=2, save_total_limit=2,
                      resume_from_checkpoint="latest"))
    kept = checkpoint.checkpoints(tmp_path / "pre")
    assert len(kept) == 2 and last not in kept and kept[-1].name > last.name
    assert json.loads((results / "metrics.json").read_text())["weights"] == "ema"
    assert (tmp_path / "pre" / "model" / "run.json").is_file()


def test_predict_with_a_checkpoint_predicts_as_its_export(runs, tmp_path, capsys):
    """A checkpoint had no model code for `trust_remote_code` (and, loaded otherwise, its raw weights would predict)."""
    root, _, _ = runs
    last = checkpoint.checkpoints(root / "cls")[-1]
    images = [str(path) for name, path in sorted(sample_files().items()) if name.endswith(".jpeg")][:4]
    for model, table in ((last, "checkpoint.csv"), (root / "cls" / "model", "export.csv")):
        predict.main(["--model", str(model), "--inputs", *images, "--output", str(tmp_path / table)])
    assert (tmp_path / "checkpoint.csv").read_text() == (tmp_path / "export.csv").read_text()
    assert f"{last} is a checkpoint: predicting with its EMA weights" in capsys.readouterr().out


def test_a_checkpoint_is_probed_as_its_export_with_the_results_beside_it(runs, tmp_path, monkeypatch, capsys):
    """The probe loaded a checkpoint's raw weights, and wrote its results inside it, where retention deletes them."""
    root, _, _ = runs
    last = checkpoint.checkpoints(root / "pre")[-1]
    encoders, extract = [], probe.extract_features
    monkeypatch.setattr(probe, "extract_features",
                        lambda encoder, *args, **kwargs: encoders.append(encoder) or extract(encoder, *args, **kwargs))
    scores = probe.main(["--model", str(last), "--dataset", "sample"])
    assert f"{last} is a checkpoint: probing the encoder of its EMA weights" in capsys.readouterr().out
    export = probe.main(["--model", str(root / "pre" / "model"), "--dataset", "sample", "--output",
                         str(tmp_path / "probe.json")])
    assert scores == {**export, "weights": "ema"}
    probed, exported = encoders[0].state_dict(), encoders[2].state_dict()
    assert probed.keys() == exported.keys() and all(torch.equal(probed[name], exported[name]) for name in exported)
    assert json.loads((last.parent / f"probe-{last.name}.json").read_text()) == scores
    assert not (last / "probe.json").exists()


def test_a_checkpoint_without_its_image_processor_is_refused_naming_it(runs, tmp_path):
    """An earlier version's checkpoint (no manifest) kept no preprocessor_config.json: scoring it ended on the OSError
    traceback transformers raises, after its weights had loaded."""
    from hf_datasets.errors import MissingInputError

    root, _, _ = runs
    old = tmp_path / "checkpoints" / "step_00000001"
    shutil.copytree(checkpoint.checkpoints(root / "cls")[0], old)
    for name in (checkpoint.MANIFEST, "preprocessor_config.json"):
        (old / name).unlink()
    with pytest.raises(MissingInputError, match=f"--model {old}: no preprocessor_config.json there"):
        evaluate.main(["--model", str(old), "--dataset", "sample", "--bootstrap", "0"])


def test_a_checkpoint_saved_over_an_earlier_one_of_its_step_takes_no_results_of_it(runs, tmp_path):
    """Resumed from an older checkpoint, a run saves its own over the newer ones as it reaches their steps: the
    evaluation and probe results beside those stayed, and seemed to be of weights they never saw."""
    root, _, _ = runs
    shutil.copytree(root / "pre", tmp_path / "pre")
    found = checkpoint.checkpoints(tmp_path / "pre")
    older, newer = found[1], found[-1]
    for folder in (older, newer):
        evaluate.main(["--model", str(folder), "--dataset", "sample", "--split", "test", "--bootstrap", "0"])
    probe.main(["--model", str(newer), "--dataset", "sample"])
    stale = [newer.parent / f"eval-{newer.name}-test", newer.parent / f"probe-{newer.name}.json"]
    kept = older.parent / f"eval-{older.name}-test"
    assert all(path.exists() for path in stale)

    run_training(tiny("pretraining", tmp_path / "pre", batch_size=3, seed=7, resume_from_checkpoint=str(older)))
    assert newer.is_dir() and not any(path.exists() for path in stale)
    assert json.loads((kept / "metrics.json").read_text())["weights"] == "ema"
    assert not list(newer.parent.glob(".t*"))


def test_a_checkpoint_of_another_layout_is_read_or_refused_naming_what_it_holds(runs, tmp_path):
    """A checkpoint saved under FSDP with FULL_STATE_DICT (pytorch_model_fsdp.bin: the whole model) or pickled
    (pytorch_model.bin) ended on transformers' OSError traceback in evaluate, predict and probe, and resuming one in
    another setup on a traceback from Accelerate's load_state. The whole model's files are read as the run's own
    model.safetensors; a file per process (FSDP use_dcp=False, LOCAL_STATE_DICT) is refused, naming what is there and
    what is read; a run resumes only from the files its setup reads (here: no FSDP), refusing others before any
    data are loaded (there are none here: no such --prepared_dir)."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    root, _, _ = runs
    init, saved = str(root / "pre" / "model"), checkpoint.checkpoints(root / "cls")[-1]
    expected = checkpoint.exported_model(saved)[0].state_dict()
    weights = load_file(saved / "model.safetensors")
    names = sorted(weights)
    shards = [{name: weights[name] for name in names[rank::2]} for rank in (0, 1)]  # each process's part
    layouts = {"pytorch_model_fsdp.bin": {"pytorch_model_fsdp.bin": weights},
               "pytorch_model.bin": {"pytorch_model.bin": weights},
               **{pattern: {pattern.replace("*", str(rank)): shards[rank] for rank in (0, 1)}
                  for pattern in ("pytorch_model_fsdp_0_rank*.bin", "pytorch_model_fsdp_rank*.bin")},
               None: {}}
    for layout, files in layouts.items():
        run = tmp_path / (layout or "empty").replace("*", "N")
        shutil.copytree(root / "cls", run)
        folder = run / "checkpoints" / saved.name
        (folder / "model.safetensors").unlink()
        for name, tensors in files.items():
            torch.save(tensors, folder / name)
        checkpoint._write_manifest(folder)  # as the save of such a checkpoint writes it
        where = re.escape(str(folder))
        held = f"{checkpoint.LAYOUTS[layout]} \\({re.escape(layout)}\\)" if layout else "no model weights"
        if layout in checkpoint.READABLE:
            loaded = checkpoint.exported_model(folder)[0].state_dict()
            assert loaded.keys() == expected.keys() and all(torch.equal(loaded[k], expected[k]) for k in expected)
        else:
            with pytest.raises(ValueError, match=rf"^Checkpoint {where}: its model's weights cannot be read here: it "
                                                 rf"holds {held}; a checkpoint is read from the whole model in "
                                                 r"safetensors, .* or the whole model, as FSDP saves it with "
                                                 r"fsdp_state_dict_type FULL_STATE_DICT \(pytorch_model_fsdp.bin\)"):
                checkpoint.exported_model(folder)
        if layout == "pytorch_model.bin":
            continue  # read back by Accelerate without FSDP: resumed below
        with pytest.raises(ValueError, match=rf"^Checkpoint {where} holds {held}; this run \(without FSDP\) resumes "
                                             r"from the whole model in safetensors, .*\(model.safetensors\) or the "
                                             r"whole model pickled, .*\(pytorch_model.bin\): resume it under the "
                                             "Accelerate config it was saved with"):
            run_training(tiny("classification", run, init=init, prepared_dir=str(tmp_path / "none"),
                              resume_from_checkpoint=str(folder)))
    pickled = tmp_path / "pytorch_model.bin"
    run_training(tiny("classification", pickled, init=init,
                      resume_from_checkpoint=str(pickled / "checkpoints" / saved.name)))
    assert (pickled / "model" / "model.safetensors").is_file()
    # under FSDP (GPUs only), the files of the config's fsdp_state_dict_type, as Accelerate's plugin names it
    plugins = [FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type=kind)
               for kind in ("SHARDED_STATE_DICT", "FULL_STATE_DICT")]
    assert [checkpoint.resumable_layouts(plugin) for plugin in plugins] == [("pytorch_model_fsdp_0",),
                                                                            ("pytorch_model_fsdp.bin",)]
