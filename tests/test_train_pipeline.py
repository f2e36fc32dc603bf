"""End to end on the real sample set at tiny scale: GMML pretraining -> fine-tuning -> export -> evaluate ->
reload through remote code in a fresh process -> predict; plus the errors a user gets before training starts."""

import csv
import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch

from hf_datasets.builders.sample import CR_NAME, sample_files
from hf_datasets.schema import with_label_names
from train import checkpoint, data
from train import evaluate as evaluate_script
from train.config import TrainArgs
from train.engine import NonFiniteLossError
from train.run import run_training

ROOT = Path(__file__).resolve().parents[1]
TINY = {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64}
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow


def tiny(task, output_dir, **overrides):
    base = dict(task=task, output_dir=str(output_dir), dataset="sample", image_size=32, model_config=dict(TINY),
                epochs=2, batch_size=4, lr=1e-3, warmup_epochs=1, report_to="none", card=False, drop_path=0.0)
    return TrainArgs(**{**base, **overrides})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    pretrain = tiny("pretraining", root / "pre", train_splits=["train", "unlabelled"], eval_split=None,
                    report_to="tensorboard", save_every_steps=3)
    run_training(pretrain)
    finetune = tiny("classification", root / "ft", init=str(root / "pre" / "model"), eval_split="test",
                    card=True, hub_model_id="cxrgm/test-pneumonia", ema_decay=0.9)
    metrics = run_training(finetune)
    return root, metrics


def test_pretraining_logs_grids_and_exports(runs):
    root, _ = runs
    pre = root / "pre"
    assert list((pre / "logs").rglob("events.out.tfevents*"))
    assert list((pre / "grids").glob("*.png"))
    assert (pre / "args.yaml").is_file() and (pre / "model" / "model.safetensors").is_file()
    assert json.loads((pre / "model" / "config.json").read_text())["architectures"] == ["GroupMaskedViTForPreTraining"]
    assert [p.name for p in checkpoint.checkpoints(pre)] == ["step_00000006", "step_00000008"]


def test_export_folder_is_complete(runs):
    root, metrics = runs
    model = root / "ft" / "model"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json", "README.md",
                 "modeling_gmvit.py", "configuration_gmvit.py", "image_processing_gmvit.py", "masking.py"):
        assert (model / name).is_file(), name
    exported = json.loads((model / "metrics.json").read_text())
    assert exported == json.loads((root / "ft" / "metrics.json").read_text())
    assert exported["num_samples"] == 4 and 0 <= exported["auroc_macro"] <= 1
    scored = {k: exported.pop(k) for k in list(exported) if k.startswith("labels_without_")}  # labels: why
    assert scored == {k: v for k, v in metrics.items() if k.startswith("labels_without_")}
    assert exported == pytest.approx({k: v for k, v in metrics.items() if k not in scored})
    assert "cxrgm/test-pneumonia" in (model / "README.md").read_text()


def test_a_run_ends_by_naming_its_export_and_the_model_it_holds(tmp_path, capsys):
    """A run ended on its last evaluation's line, which need not be the exported model's, without saying where the
    export went."""
    metrics = run_training(tiny("classification", tmp_path / "ft", eval_split="test", epochs=1))
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"best model (step {int(metrics['step'])}, auroc_macro {metrics['auroc_macro']:.4f} "
                                 f"on split 'test') -> {tmp_path / 'ft' / 'model'}")


def test_evaluate_script_reproduces_training_metrics_and_reports_drift(runs, tmp_path, capsys):
    root, metrics = runs
    out = evaluate_script.main(["--model", str(root / "ft" / "model"), "--dataset", "sample", "--split", "test",
                                "--bootstrap", "20", "--output_dir", str(tmp_path)])
    assert f"metrics -> {tmp_path / 'metrics.json'}, per source -> {tmp_path / 'drift.json'}" in capsys.readouterr().out
    for key in ("auroc_macro", "accuracy", "sensitivity/pneumonia"):
        assert out[key] == pytest.approx(metrics[key])
    drift = json.loads((tmp_path / "drift.json").read_text())
    assert drift["in_domain"] == "kermany" and drift["num_images"] == {"kermany": 4}
    trained = json.loads((root / "ft" / "model" / "run.json").read_text())["train_sources"]
    assert drift["trained_on"] == ["kermany"] and trained == {"kermany": sum(trained.values())}
    assert drift["metrics"]["kermany"]["accuracy_ci_low"] <= out["accuracy"]  # intervals per source too
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["num_samples"] == 4

    # in the model folder (train.evaluate's default output), the results go on the model's card, with their intervals
    from model_cards import write_model_card

    model = shutil.copytree(root / "ft" / "model", tmp_path / "model")
    for name in ("metrics.json", "drift.json"):
        (model / "eval-test").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / name, model / "eval-test" / name)
    card = " ".join(write_model_card(model, json.loads((model / "run.json").read_text())).read_text().split())
    assert "scored with `train.evaluate` Scored after training by `python -m train.evaluate` (its " \
           "`eval-test/metrics.json`): 4 images of split `test`; data: Kermany pediatric pneumonia (`kermany`): 4 " \
           "images." in card
    assert (f"| AUROC (macro) | {written['auroc_macro']:.4f} | {written['auroc_macro_ci_low']:.4f} to "
            f"{written['auroc_macro_ci_high']:.4f} |") in card


def test_evaluate_of_a_pretraining_model_reproduces_its_runs_loss_by_default(tmp_path):
    """The corruption of an evaluation batch depends on the seed and the batch size: unset, they are the run's."""
    metrics = run_training(tiny("pretraining", tmp_path / "pre", eval_split="test", epochs=1, batch_size=3, seed=7))
    out = evaluate_script.main(["--model", str(tmp_path / "pre" / "model"), "--dataset", "sample", "--split", "test",
                                "--output_dir", str(tmp_path / "eval")])
    assert out["loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    other = evaluate_script.main(["--model", str(tmp_path / "pre" / "model"), "--dataset", "sample", "--split",
                                  "test", "--seed", "0", "--output_dir", str(tmp_path / "eval0")])
    assert other["loss"] != pytest.approx(metrics["loss"], rel=1e-5)


def test_evaluate_takes_the_launchers_mixed_precision_unless_given(runs, tmp_path):
    root, _ = runs
    command = [sys.executable, "-m", "train.evaluate", "--model", str(root / "ft" / "model"), "--dataset", "sample",
               "--split", "test", "--bootstrap", "0"]
    env = {**ENV, "ACCELERATE_MIXED_PRECISION": "bf16"}
    for flags, expected in (([], "bf16"), (["--mixed_precision", "no"], "no")):
        done = subprocess.run([*command, "--output_dir", str(tmp_path / expected), *flags], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"process(es), precision {expected}" in done.stdout


def test_evaluate_refuses_an_unknown_in_domain_source_before_evaluating(runs, tmp_path, monkeypatch):
    """A misspelt --in_domain_source used to fail after the whole evaluation, writing nothing."""
    evaluated = []
    real = evaluate_script.engine.evaluate
    monkeypatch.setattr(evaluate_script.engine, "evaluate", lambda *a, **k: evaluated.append(1) or real(*a, **k))
    with pytest.raises(ValueError, match=r"in-domain source 'Kermany' is not among the sources \['kermany'\]"):
        evaluate_script.main(["--model", str(runs[0] / "ft" / "model"), "--dataset", "sample", "--split", "test",
                              "--in_domain_source", "Kermany", "--output_dir", str(tmp_path)])
    assert not evaluated


def test_fresh_process_loads_remote_code_and_predicts_on_dicom_and_jpeg(runs, tmp_path):
    root, _ = runs
    model = root / "ft" / "model"
    probe = ("import sys; from transformers import AutoModelForImageClassification as A; "
             f"m = A.from_pretrained({str(model)!r}, trust_remote_code=True); "
             "assert 'modeling_cxrgm' not in sys.modules; print(type(m).__module__)")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().startswith("transformers_modules")
    files = sample_files()
    jpeg = next(p for name, p in files.items() if name.endswith(".jpeg"))
    table = tmp_path / "p.csv"
    done = subprocess.run([sys.executable, "-m", "train.predict", "--model", str(model), "--inputs",
                           str(files[CR_NAME]), str(jpeg), "--output", str(table)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(table.open()))
    assert [Path(r["path"]).name for r in rows] == [CR_NAME, jpeg.name]
    for row in rows:
        assert float(row["p_normal"]) + float(row["p_pneumonia"]) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] in ("normal", "pneumonia")


def test_predict_refuses_or_skips_unreadable_files_naming_them(runs, tmp_path):
    import shutil

    model = runs[0] / "ft" / "model"
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(sample_files()[CR_NAME], folder / "a.dcm")
    (folder / "b.dcm").write_bytes(b"DICM" + bytes(200))  # no DICOM header
    (folder / "c.png").write_bytes(b"not an image")
    jpeg = next(p for name, p in sample_files().items() if name.endswith(".jpeg"))
    shutil.copy(jpeg, folder / "d.jpeg")
    command = [sys.executable, "-m", "train.predict", "--model", str(model), "--inputs", str(folder),
               "--output", str(tmp_path / "p.csv")]
    refused = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert refused.returncode != 0 and not (tmp_path / "p.csv").exists()
    assert f"{folder / 'b.dcm'}: not a DICOM file" in refused.stderr and "--on_error skip" in refused.stderr

    done = subprocess.run([*command, "--on_error", "skip", "--num_workers", "1"],  # errors come back from a worker
                          cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [Path(r["path"]).name for r in csv.DictReader((tmp_path / "p.csv").open())] == ["a.dcm", "d.jpeg"]
    skipped = list(csv.DictReader((tmp_path / "p_skipped.csv").open()))
    assert [(Path(r["path"]).name, r["reason"]) for r in skipped] == [
        ("b.dcm", "not a DICOM file (no 'DICM' marker or unreadable header)"), ("c.png", "not a recognised image format")]
    assert f"skipped {folder / 'c.png'}: not a recognised image format" in done.stderr


def test_misspelt_model_config_field_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"model_config has unknown fields \['mask_ratio'\]"):
        run_training(tiny("pretraining", tmp_path / "a", model_config={**TINY, "mask_ratio": 0.3}))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name, value", [("crop_scale", [0.5]), ("crop_ratio", [0.75, 1.0, 1.33]),
                                         ("crop_ratio", [0.0, 1.0])])
def test_a_crop_range_that_is_not_a_low_high_pair_is_refused_before_training(tmp_path, name, value):
    """One value (--crop_scale 0.5) or three were a TypeError inside the augmentation at the first batch."""
    with pytest.raises(ValueError, match=rf"{name} must be two positive numbers \(low, high\), got"):
        run_training(tiny("pretraining", tmp_path / "a", **{name: value}))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("max_steps", [-1, 0])
def test_a_max_steps_that_is_not_positive_is_refused_before_training(tmp_path, max_steps):
    """-1 (transformers' "no limit") stopped the run before its first step and exported the untrained model; 0 was
    silently no limit."""
    with pytest.raises(ValueError, match=rf"max_steps must be positive \(or None: every --epochs\), got {max_steps}"):
        run_training(tiny("pretraining", tmp_path / "a", max_steps=max_steps))
    assert not (tmp_path / "a").exists()


def test_clear_errors_before_training(runs, tmp_path):
    root, _ = runs
    with pytest.raises(FileNotFoundError, match="config.json"):
        run_training(tiny("classification", tmp_path / "a", init=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="no split 'nope'"):
        run_training(tiny("classification", tmp_path / "b", eval_split="nope"))
    with pytest.raises(ValueError, match="no row with a known label"):
        run_training(tiny("classification", tmp_path / "c", train_splits=["unlabelled"]))
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        run_training(tiny("classification", tmp_path / "d", resume_from_checkpoint=str(tmp_path / "none")))
    with pytest.raises(ValueError, match="torch_compile_mode must be default, reduce-overhead or max-autotune"):
        run_training(tiny("classification", tmp_path / "e", torch_compile_mode="fast"))
    with pytest.raises(ValueError, match=r"eval_every_epochs, log_every_steps, lr_batch_divisor must be positive, "
                                         r"got \{'eval_every_epochs': 0, 'log_every_steps': 10"):
        run_training(tiny("classification", tmp_path / "f", eval_every_epochs=0))  # was a ZeroDivisionError at epoch 1
    assert not (tmp_path / "f").exists()
    with pytest.raises(ValueError, match=r"warmup_epochs, weight_decay, drop_path, label_smoothing, min_lr must not be "
                                         r"negative, got \{'warmup_epochs': -1"):
        run_training(tiny("classification", tmp_path / "f2", warmup_epochs=-1))  # was a schedule starting above lr
    with pytest.raises(ValueError, match=r"hflip_p, jitter_p, blur_p are probabilities in \[0, 1\], got "
                                         r"\{'hflip_p': 50"):
        run_training(tiny("classification", tmp_path / "f3", hflip_p=50))  # "50%" was silently "always"
    with pytest.raises(ValueError, match=r"--metric_for_best 'auc' is not a classification metric; choose one of "
                                         r"\['accuracy', 'f1_macro', 'auroc_macro'"):
        run_training(tiny("classification", tmp_path / "g", metric_for_best="auc"))
    assert not (tmp_path / "g" / "checkpoints").exists()  # refused before the first epoch, not at its evaluation
    from hf_datasets import build_dataset

    splits = build_dataset("sample")
    features = splits["train"].features.copy()
    features["labels"] = datasets.List(datasets.Value("float32"), length=3)
    three = splits["train"].map(lambda row: {"labels": row["labels"] + [0.0]}, features=features)
    prepared = datasets.DatasetDict({"train": with_label_names(three, ["normal", "pneumonia", "covid"])})
    prepared.save_to_disk(tmp_path / "prepared")
    with pytest.raises(ValueError, match="is empty"):
        data.split(datasets.DatasetDict({"train": splits["train"].select([])}), "train")
    other = datasets.DatasetDict({"train": with_label_names(three, ["effusion", "edema", "covid"])})
    other.save_to_disk(tmp_path / "other")
    with pytest.raises(ValueError, match="model predicts .* none in common"):
        evaluate_script.main(["--model", str(root / "ft" / "model"), "--prepared_dir", str(tmp_path / "other"),
                              "--split", "train"])


def test_continuing_a_classifier_keeps_each_classes_output_or_replaces_the_head(runs, caplog):
    """--init of a classifier on data with the same classes in another order (or under synonyms) moves each head
    row to its class; for other classes the head is replaced (initialised afresh, with a warning) and the encoder
    loaded, instead of silently renaming the outputs."""
    from safetensors.torch import load_file

    from train.starting_point import build_model

    init = runs[0] / "ft" / "model"
    saved = load_file(init / "model.safetensors")
    args = tiny("classification", runs[0] / "unused", init=str(init))
    same = build_model(args, ["normal", "pneumonia"], single_label=True)
    swapped = build_model(args, ["Pneumonia", "No Finding"], single_label=True)
    assert torch.equal(same.classifier.weight, saved["classifier.weight"])
    assert torch.equal(swapped.classifier.weight, saved["classifier.weight"][[1, 0]])
    assert torch.equal(swapped.classifier.bias, saved["classifier.bias"][[1, 0]])
    assert swapped.config.id2label == {0: "Pneumonia", 1: "No Finding"}
    with caplog.at_level("WARNING", logger="train.run"):
        other = build_model(args, ["normal", "covid"], single_label=True)
    assert re.search(r"2-class head \['normal', 'pneumonia'\] but the data have 2 labels \['normal', 'covid'\]: the "
                     r"head was replaced", caplog.text)
    assert not torch.equal(other.classifier.weight, saved["classifier.weight"]) and not other.classifier.bias.any()
    assert torch.equal(other.vit.embeddings.cls_token, saved["vit.embeddings.cls_token"])


def test_evaluation_aligns_another_sets_label_names_and_order(runs, tmp_path):
    """A set with the classes in another order, under synonyms ("No Finding" = "normal"), plus a class the model
    does not predict: scored on the rows and labels both have, exactly as the same rows in the model's order."""
    import numpy as np

    from hf_datasets import build_dataset

    model = str(runs[0] / "ft" / "model")
    test = build_dataset("sample")["test"]
    covid_rows = [0]  # one test image relabelled as a class the model does not know
    labels = np.asarray(test["labels"], dtype=np.float32)  # (N, 2): normal, pneumonia
    other = np.zeros((len(test), 3), dtype=np.float32)  # pneumonia, covid, No Finding
    other[:, 0], other[:, 2] = labels[:, 1], labels[:, 0]
    other[covid_rows] = [0.0, 1.0, 0.0]
    feature = datasets.List(datasets.Value("float32"), length=3)
    shuffled = test.remove_columns("labels").add_column("labels", other.tolist(), feature=feature)
    datasets.DatasetDict({"test": with_label_names(shuffled, ["Pneumonia", "COVID-19", "No Finding"])}).save_to_disk(
        tmp_path / "other")
    kept = [i for i in range(len(test)) if i not in covid_rows]
    datasets.DatasetDict({"test": test.select(kept)}).save_to_disk(tmp_path / "same")

    def scores(folder):
        return evaluate_script.main(["--model", model, "--prepared_dir", str(tmp_path / folder), "--split", "test",
                                     "--bootstrap", "0", "--output_dir", str(tmp_path / f"eval-{folder}")])

    aligned, reference = scores("other"), scores("same")
    assert aligned["num_samples"] == reference["num_samples"] == len(kept)
    assert aligned == pytest.approx(reference)


def test_a_corrupt_image_stops_training_naming_its_file(tmp_path):
    """Straight from a set's files (no prepare): the row and file, not PIL's bare error, and before any step."""
    from hf_datasets import build_dataset
    from hf_datasets.errors import ImageReadError

    splits = build_dataset("sample")
    test = splits["test"].cast_column("image", datasets.Image(decode=False))
    broken = [{"bytes": b"\xff\xd8\xff\xe0 truncated", "path": None}] + test["image"][1:]
    test = test.remove_columns("image").add_column("image", broken, feature=datasets.Image())
    paths = ["PNEUMONIA/broken.jpeg"] + test["path"][1:]
    test = with_label_names(test.remove_columns("path").add_column("path", paths), data.label_names(splits["test"]))
    datasets.DatasetDict({"train": splits["train"], "test": test}).save_to_disk(tmp_path / "prepared")
    with pytest.raises(ImageReadError, match=r"row 0 \(PNEUMONIA/broken.jpeg\): image cannot be decoded"):
        run_training(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                          eval_split="test"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_evaluation_split_without_both_classes_is_refused_before_training(tmp_path):
    """AUROC (the default best-model metric) needs positives and negatives: a run used to train a whole epoch and
    then stop at its first evaluation; accuracy can still pick the best model there."""
    import numpy as np

    from hf_datasets import build_dataset

    splits = build_dataset("sample")
    labels = np.asarray(splits["test"]["labels"])
    normal_only = splits["test"].select([i for i in range(len(labels)) if labels[i][0] == 1])
    datasets.DatasetDict({"train": splits["train"], "test": normal_only}).save_to_disk(tmp_path / "prepared")
    args = tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                eval_split="test", epochs=1)
    with pytest.raises(ValueError, match="auroc_macro cannot be computed on the evaluation split"):
        run_training(args)
    assert not (tmp_path / "run" / "checkpoints").exists()
    args.metric_for_best = "accuracy"
    assert 0 <= run_training(args)["accuracy"] <= 1


def test_pretraining_without_an_evaluation_split_evaluates_a_fixed_sample_not_the_training_set(tmp_path,
                                                                                                monkeypatch):
    """No --eval_split: each evaluation (the loss that picks the best model, the reconstruction grids) runs on the
    same PRETRAIN_EVAL_IMAGES training images, evenly spread, not on the whole training set every epoch."""
    from train import engine, run

    monkeypatch.setattr(run, "PRETRAIN_EVAL_IMAGES", 5)
    seen = []
    evaluate = engine.evaluate

    def recording(*args, **kwargs):
        results = evaluate(*args, **kwargs)
        seen.append(sorted(results["index"].tolist()))
        return results

    monkeypatch.setattr(engine, "evaluate", recording)
    args = tiny("pretraining", tmp_path / "pre", train_splits=["train"], eval_split=None, epochs=2, batch_size=2,
                report_to="tensorboard", log_every_steps=1)
    metrics = run_training(args)
    training_images = len(data.split(data.load_splits("sample", None, None, {}), "train"))
    assert training_images > 5
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 5
    assert seen[0][0] == 0 and seen[0][-1] == training_images - 1  # spread over the whole set
    assert "loss" in metrics and metrics["step"] > 0
    assert len(list((tmp_path / "pre" / "grids").glob("*.png"))) == 2  # what benchmarks/quality.py reports
    assert list((tmp_path / "pre" / "logs").rglob("events.out.tfevents.*"))  # its loss curve


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    args = tiny("classification", tmp_path / "nan", lr=1e30, clip_grad=None, warmup_epochs=0, epochs=5,
                save_every_steps=1, eval_split=None)
    with pytest.raises(NonFiniteLossError, match=r"at optimiser step \d+") as error:
        run_training(args)
    step = int(str(error.value).split("optimiser step ")[1].split()[0])
    saved = checkpoint.checkpoints(tmp_path / "nan")
    assert saved and int(saved[-1].name.split("_")[1]) == step
    assert not (tmp_path / "nan" / "model").exists()


def test_segmentation_finetuning_and_mask_prediction(tmp_path):
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "seg", rows=4)  # real images with a synthetic half-image "structure"
    metrics = run_training(tiny("segmentation", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "seg"),
                                eval_split="test", epochs=1, crop_scale=[0.5, 1.0]))
    assert 0 <= metrics["dice"] <= 1 and metrics["num_samples"] == 4
    assert metrics["dice/lungs"] == metrics["dice"] and "dice/mask" not in metrics  # named as the model names it
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "lungs"}  # what the image-segmentation pipeline calls the segment
    out = tmp_path / "masks"
    done = subprocess.run([sys.executable, "-m", "train.predict", "--model", str(tmp_path / "run" / "model"),
                           "--inputs", str(sample_files()[CR_NAME]), "--output", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    from PIL import Image

    mask = Image.open(out / f"{Path(CR_NAME).stem}_mask.png")
    assert mask.size == (1841, 1955) and set(mask.getdata()) <= {0, 255}
    assert (out / "masks.csv").is_file()


def test_a_two_class_segmenter_names_its_classes_and_scores_the_lungs(tmp_path):
    """A softmax segmenter (num_labels 2, for the semantic pipeline) was named LABEL_0 / LABEL_1, or a classifier
    --init's class names, and its Dice was reported as dice/mask."""
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "seg", rows=4)
    metrics = run_training(tiny("segmentation", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "seg"),
                                eval_split="test", epochs=1, model_config={**TINY, "num_labels": 2}))
    assert metrics["dice/lungs"] == metrics["dice"] and "dice/mask" not in metrics
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["id2label"] == {"0": "background", "1": "lungs"}
    scored = evaluate_script.main(["--model", str(tmp_path / "run" / "model"), "--prepared_dir", str(tmp_path / "seg"),
                                   "--split", "test", "--bootstrap", "0"])
    assert scored["dice/lungs"] == pytest.approx(metrics["dice"])


@pytest.mark.parametrize("num_labels", [1, 2])
def test_a_segmenters_ignore_index_is_the_padding_label_its_loss_and_metrics_leave_out(tmp_path, num_labels):
    """The data pipeline padded masks with a fixed 255 whatever the config's `semantic_loss_ignore_index`: with -100,
    a one-map segmenter learnt and was scored on the padding as background, and a softmax one stopped at its first
    step ("Target 255 is out of bounds"). Any ignore index now trains and scores exactly as the default does; one
    that is a class index is refused before training."""
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "seg", rows=4)  # non-square images: padded to the square

    def train(name, ignore):
        config = {**TINY, "num_labels": num_labels, **({} if ignore is None else {"semantic_loss_ignore_index": ignore})}
        return run_training(tiny("segmentation", tmp_path / name, dataset=None, prepared_dir=str(tmp_path / "seg"),
                                 eval_split="test", epochs=1, max_steps=2, model_config=config))

    default, other = train("default", None), train("other", -100)
    for name in ("train_loss", "dice", "iou"):
        assert other[name] == pytest.approx(default[name], rel=1e-5), name
    saved = json.loads((tmp_path / "other" / "model" / "config.json").read_text())
    assert saved["semantic_loss_ignore_index"] == -100
    scored = evaluate_script.main(["--model", str(tmp_path / "other" / "model"), "--prepared_dir",
                                   str(tmp_path / "seg"), "--split", "test", "--bootstrap", "0"])
    assert scored["dice"] == pytest.approx(default["dice"], rel=1e-5)
    with pytest.raises(ValueError, match="semantic_loss_ignore_index 1 is a class index"):
        train("class", 1)


def test_prepare_settings_are_read_before_training_and_a_damaged_file_loses_no_run(tmp_path, monkeypatch, caplog):
    """--prepared_dir's prepare_settings.json (the card's data name and label policy) was read with a bare json.loads
    when the card was written, after training: a damaged file (cut short by an earlier version) ended a finished run
    in a JSONDecodeError naming no file, with nothing exported. It is read once, before training now: a damaged one
    is named in a warning and the card says "unknown"; what it said at the start is what the card says."""
    from benchmarks.device_smoke import segmentation_set
    from train import engine

    segmentation_set(tmp_path / "seg", rows=4)
    settings = tmp_path / "seg" / "prepare_settings.json"
    real_epoch = engine.train_one_epoch
    damage_during_training = []

    def epoch(*args, **kwargs):
        if damage_during_training:
            settings.write_text('{"dataset": "montgo')  # a file that cannot be read by the time the card is written
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", epoch)
    for name, at_start, damaged_later, expected in (
            ("damaged", '{"dataset": "montgomery", "opt', False, ("seg", "unknown")),
            ("not-an-object", '["montgomery"]', False, ("seg", "unknown")),
            ("damaged-later", '{"dataset": "chexpert", "options": {"uncertain": "ones"}}', True,
             ("chexpert", "blank=zeros, uncertain=ones"))):
        settings.write_text(at_start)
        damage_during_training[:] = [True] if damaged_later else []
        caplog.clear()
        with caplog.at_level("WARNING", logger="train.run"):
            run_training(tiny("segmentation", tmp_path / name, dataset=None, prepared_dir=str(tmp_path / "seg"),
                              eval_split="test", epochs=1, max_steps=1, card=True))
        run = json.loads((tmp_path / name / "model" / "run.json").read_text())
        trained_on = run["train_datasets"][0]
        assert (trained_on["name"], trained_on["label_policy"]) == expected, name
        assert (tmp_path / name / "model" / "README.md").is_file(), name
        assert (f"{settings} cannot be read" in caplog.text) is not damaged_later, name


def test_init_from_a_model_with_another_label_count_loads_its_encoder_and_replaces_its_head(runs, tmp_path, caplog):
    """A segmenter continued with another num_labels, a classifier on data with another number of classes, or with
    another pooling: transformers refused the head's other shape (or the run refused the classes). The encoder
    (and the head layers that fit) are loaded, the layers that do not are initialised afresh and named in a warning;
    an encoder tensor of another shape is still refused."""
    from safetensors.torch import load_file

    from benchmarks.device_smoke import segmentation_set
    from train.starting_point import build_model

    segmentation_set(tmp_path / "seg", rows=4)
    seg = dict(dataset=None, prepared_dir=str(tmp_path / "seg"), eval_split="test", epochs=1)
    run_training(tiny("segmentation", tmp_path / "one", **seg))
    init = tmp_path / "one" / "model"
    with caplog.at_level("WARNING", logger="train.run"):
        metrics = run_training(tiny("segmentation", tmp_path / "two", init=str(init), **seg,
                                    model_config={**TINY, "num_labels": 2}))
    assert 0 <= metrics["dice/lungs"] <= 1
    assert (f"--init {init}: the head was replaced: segmentation_head.classifier initialised afresh, as this run's "
            "head has other shapes (segmentation_head.classifier.bias (1,) -> (2,), segmentation_head.classifier."
            "weight (1, 32, 1, 1) -> (2, 32, 1, 1)); the encoder's weights are loaded") in caplog.text
    saved = load_file(init / "model.safetensors")
    model = build_model(tiny("segmentation", tmp_path / "unused", init=str(init),
                             model_config={**TINY, "num_labels": 3}), [], single_label=True)
    weights = model.state_dict()
    for name in saved:
        if not name.startswith("segmentation_head.classifier."):
            assert torch.equal(weights[name], saved[name]), name  # the encoder and the rest of the decoder
    assert model.segmentation_head.classifier.weight.shape[0] == 3 and not model.segmentation_head.classifier.bias.any()

    from hf_datasets import build_dataset

    splits = build_dataset("sample")
    features = splits["train"].features.copy()
    features["labels"] = datasets.List(datasets.Value("float32"), length=3)
    three = splits["train"].map(lambda row: {"labels": row["labels"] + [0.0]}, features=features)
    datasets.DatasetDict({"train": with_label_names(three, ["normal", "pneumonia", "covid"])}).save_to_disk(
        tmp_path / "three")
    classifier = runs[0] / "ft" / "model"
    caplog.clear()
    with caplog.at_level("WARNING", logger="train.run"):
        run_training(tiny("classification", tmp_path / "cls", dataset=None, prepared_dir=str(tmp_path / "three"),
                          eval_split=None, epochs=1, init=str(classifier)))
    assert "has a 2-class head ['normal', 'pneumonia'] but the data have 3 labels" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="train.run"):
        pooled = build_model(tiny("classification", tmp_path / "unused", init=str(classifier),
                                  model_config={**TINY, "pooling": "cls_mean"}), ["normal", "pneumonia"], True)
    assert "classifier initialised afresh, as this run's head has other shapes (classifier.weight (2, 32) -> (2, 64))" \
        in caplog.text
    assert not pooled.classifier.bias.any()  # the whole layer, not only its tensor of another shape

    bent = tmp_path / "bent"  # a config whose encoder does not fit its weights (positions for 64 px, weights for 32)
    shutil.copytree(init, bent)
    config = json.loads((bent / "config.json").read_text())
    (bent / "config.json").write_text(json.dumps({**config, "image_size": 64}))
    with pytest.raises(ValueError, match=r"encoder weights \['vit.embeddings.position_embeddings'\] have other "
                                         r"shapes than this model's"):
        build_model(tiny("segmentation", tmp_path / "unused", init=str(bent)), [], single_label=True)


def test_segmentation_uses_the_rows_with_a_mask(tmp_path, capsys):
    """A set with masks for some images only (cxr_folder allows it): training and evaluation stopped at the first
    image without one ("row N (file): has no mask"); a split without any mask is refused before training. The runs
    say of how many rows they use those with a mask (the others went without a word)."""
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "full", rows=4)
    full = datasets.load_from_disk(str(tmp_path / "full"))
    partial = datasets.DatasetDict({name: part.map(lambda row, i: {"mask": row["mask"] if i % 2 else None},
                                                   with_indices=True, features=part.features)
                                    for name, part in full.items()})
    partial.save_to_disk(tmp_path / "partial")
    metrics = run_training(tiny("segmentation", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "partial"),
                                eval_split="test", epochs=1, batch_size=2))
    assert metrics["num_samples"] == 2
    assert "2 evaluation images (those of 4 with a mask)" in capsys.readouterr().out
    scored = evaluate_script.main(["--model", str(tmp_path / "run" / "model"), "--prepared_dir",
                                   str(tmp_path / "partial"), "--split", "test", "--bootstrap", "0"])
    assert scored["num_samples"] == 2
    assert "segmentation evaluation: 2 images (those of 4 with a mask) of split 'test'" in capsys.readouterr().out
    unmasked = datasets.DatasetDict({**partial, "test": partial["test"].select([0, 2])})
    unmasked.save_to_disk(tmp_path / "unmasked")
    with pytest.raises(ValueError, match=r"The evaluation data \(2 rows\) has no row with a mask"):
        run_training(tiny("segmentation", tmp_path / "refused", dataset=None, prepared_dir=str(tmp_path / "unmasked"),
                          eval_split="test", epochs=1))
    assert not (tmp_path / "refused" / "checkpoints").exists()


@pytest.mark.parametrize("clip_mode", ["per_param", "global"])
def test_fp16_pretraining_and_fine_tuning_with_each_clip_mode(tmp_path, clip_mode):
    """fp16 trains through accelerate's gradient scaler (unscaled before either clipping): finite weights that move."""
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    AcceleratorState._reset_state()  # this process's earlier runs fixed the precision to "no"
    pretrain = tiny("pretraining", tmp_path / "pre", train_splits=["train"], eval_split=None, epochs=1,
                    mixed_precision="fp16")
    run_training(pretrain)
    finetune = tiny("classification", tmp_path / "ft", init=str(tmp_path / "pre" / "model"), eval_split="test",
                    mixed_precision="fp16", clip_grad=0.5, clip_mode=clip_mode, epochs=1)
    metrics = run_training(finetune)
    AcceleratorState._reset_state()
    assert 0 <= metrics["auroc_macro"] <= 1
    before = load_file(tmp_path / "pre" / "model" / "model.safetensors")
    after = load_file(tmp_path / "ft" / "model" / "model.safetensors")
    moved = [name for name in after if name in before and not torch.equal(before[name], after[name])]
    assert "vit.embeddings.patch_embeddings.projection.weight" in moved
    assert all(torch.isfinite(weight).all() for weight in after.values())


def test_the_card_states_the_epochs_trained_when_max_steps_stops_early(tmp_path):
    """`--epochs 3 --max_steps 1`: the card says how much was trained (one step of an epoch), not the 3 planned."""
    run_training(tiny("classification", tmp_path / "run", eval_split="test", epochs=3, max_steps=1, card=True))
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    epochs = float(re.search(r"^\| Epochs \| ([0-9.]+) \|$", card, re.MULTILINE).group(1))
    assert 0 < epochs < 1


def test_fine_tuning_keeps_the_equalisation_of_the_pretrained_model_unless_told(tmp_path):
    """A model pretrained on equalised images is fine-tuned on equalised images (its export's processor says so);
    --no-equalize overrides it."""
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor

    init = tmp_path / "pretrained"
    GroupMaskedViTForPreTraining(GroupMaskedViTConfig(image_size=32, **TINY)).save_pretrained(init)
    GroupMaskedViTImageProcessor(size=32, equalize=True).save_pretrained(init)
    for name, flag, expected in (("inherit", None, True), ("off", False, False)):
        run_training(tiny("classification", tmp_path / name, init=str(init), epochs=1, equalize=flag))
        saved = json.loads((tmp_path / name / "model" / "preprocessor_config.json").read_text())
        assert saved["equalize"] is expected, name


def test_fine_tuning_keeps_every_input_setting_of_the_pretrained_processor(tmp_path, monkeypatch, caplog):
    """Only --init's `equalize` was carried over: a model pretrained with another mean / std, resize mode or bit
    depth was fine-tuned (and exported) with the defaults, so its encoder saw inputs it was not trained on. Every
    setting of --init's processor is kept now, the size but (--image_size); a flag that overrides one is warned
    about; a processor that does not normalise is followed by the engine too."""
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train import engine

    seen = []
    real_forward = engine.forward

    def recording_forward(model, batch, ctx, generator, train):
        out = real_forward(model, batch, ctx, generator, train)
        if not train:  # evaluation: the plain images, as the model gets them
            seen.append((batch["index"].cpu(), out[2].detach().cpu()))
        return out

    monkeypatch.setattr(engine, "forward", recording_forward)
    test_images = [row["image"] for row in data.load_splits("sample", None, None)["test"]]
    pretrained = {"image_mean": [0.3], "image_std": [0.5], "resize_mode": "squash", "bit_depth": 12,
                  "equalize": True}
    cases = (("kept", pretrained, {}), ("unnormalised", {"do_normalize": False}, {}),
             ("overridden", pretrained, {"equalize": False}))
    for name, settings, flags in cases:
        init = tmp_path / f"init-{name}"
        GroupMaskedViTForPreTraining(GroupMaskedViTConfig(image_size=64, **TINY)).save_pretrained(init)
        GroupMaskedViTImageProcessor(size=64, **settings).save_pretrained(init)
        seen.clear()
        caplog.clear()
        with caplog.at_level("WARNING", logger="train.run"):
            run_training(tiny("classification", tmp_path / name, init=str(init), epochs=1, max_steps=1, **flags))
        expected = GroupMaskedViTImageProcessor(size=32, **{**settings, **flags})
        saved = json.loads((tmp_path / name / "model" / "preprocessor_config.json").read_text())
        for setting in ("size", "num_channels", "resize_mode", "do_normalize", "image_mean", "image_std",
                        "normalization", "bit_depth", "equalize"):
            assert saved.get(setting) == getattr(expected, setting), (name, setting)
        index, pixel_values = seen[0]
        wanted = expected([test_images[i] for i in index.tolist()], return_tensors="pt")["pixel_values"]
        rounding = 0.5 / 255 / (min(expected.image_std) if expected.do_normalize else 1.0)  # 8-bit images: uint8
        assert (pixel_values - wanted).abs().max() <= rounding * 1.01, name
        warned = "--equalize False overrides --init" in caplog.text and "whose equalize is True" in caplog.text
        assert warned == bool(flags), name


def test_a_resumed_run_keeps_the_model_its_checkpoint_recorded(tmp_path, caplog):
    """A run resumed with another --init (its folder re-exported by a later pretraining, say) built its model from
    that --init again: with the same weight shapes but another setting (here the pooling) it went on silently as
    another model. Checkpoints record the model's config; the resumed run keeps it and warns, naming the setting,
    and resumes even when its --init folder is gone (a new run still refuses a missing one)."""
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining

    for pooling in ("cls", "mean"):
        config = GroupMaskedViTConfig(image_size=32, pooling=pooling, **TINY)
        GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / pooling)
    run = tmp_path / "run"

    def resume(init, max_steps):
        return tiny("classification", run, init=str(tmp_path / init), max_steps=max_steps,
                    resume_from_checkpoint="latest" if max_steps > 2 else None)

    run_training(resume("cls", 2))
    assert json.loads((run / "checkpoints" / "step_00000002" / "config.json").read_text())["pooling"] == "cls"
    with caplog.at_level("WARNING", logger="train.starting_point"):
        run_training(resume("cls", 3))  # the same --init: nothing to warn about
        assert "describes another model" not in caplog.text
        run_training(resume("mean", 4))
    assert "describes another model than this run's (pooling 'cls' -> 'mean')" in caplog.text
    assert json.loads((run / "model" / "config.json").read_text())["pooling"] == "cls"
    shutil.rmtree(tmp_path / "cls")
    run_training(resume("cls", 5))
    assert (run / "checkpoints" / "step_00000005" / "config.json").is_file()
    with pytest.raises(FileNotFoundError, match="no config.json there"):
        run_training(tiny("classification", tmp_path / "new", init=str(tmp_path / "cls")))


def test_the_launchers_mixed_precision_applies_unless_the_run_names_one(tmp_path):
    """`accelerate launch --mixed_precision bf16` (or a config file saying so) passes it on in the environment: a run
    without --mixed_precision trains in it and says so (args.yaml, the card's run); an explicit flag wins."""
    import yaml

    env = {**ENV, "ACCELERATE_MIXED_PRECISION": "bf16"}
    command = [sys.executable, "-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train",
               "--image_size", "32", "--model_config", json.dumps(TINY), "--epochs", "1", "--max_steps", "1",
               "--batch_size", "4", "--lr", "1e-3", "--report_to", "none", "--no-card"]
    for flags, expected in (([], "bf16"), (["--mixed_precision", "no"], "no")):
        output_dir = tmp_path / expected
        done = subprocess.run([*command, "--output_dir", str(output_dir), *flags], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        assert yaml.safe_load((output_dir / "args.yaml").read_text())["mixed_precision"] == expected
        assert json.loads((output_dir / "model" / "run.json").read_text())["training"]["precision"] == expected


def test_auto_label_mode_looks_at_the_evaluation_images_too(tmp_path, capsys):
    """Training images of one finding each made --label_mode auto train a softmax over exclusive classes: an
    evaluation image with several findings was then left out of every metric, without a word. The run's metrics.json
    and card did not say at which threshold its multi-label decisions were taken, nor which labels had no AUROC (as
    train.evaluate's do)."""
    from hf_datasets import build_dataset

    splits = build_dataset("sample")
    every_normal = splits["test"].map(lambda row: {"labels": [1.0, row["labels"][1]]},  # 'normal': only positive
                                      features=splits["test"].features)
    datasets.DatasetDict({"train": splits["train"], "test": every_normal}).save_to_disk(tmp_path / "prepared")
    metrics = run_training(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                                eval_split="test", epochs=1, card=True))
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and metrics["num_samples"] == 4
    assert "multi-label: any number of positive labels per image" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "model" / "metrics.json").read_text())
    assert saved["threshold"] == 0.5 and saved["labels_without_auroc"] == {"normal": "only positive"}
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "\n- No AUROC (left out of the macro averages): `normal` (only positive)\n" in card
    assert "\n- Decision threshold: 0.5\n" in card  # (after any other note of the trained model's decisions)
    run_training(tiny("classification", tmp_path / "one-hot", eval_split="test", epochs=1))  # the sample set as it is
    assert "single-label: one class per image" in capsys.readouterr().out


def test_a_best_model_metric_undefined_at_an_evaluation_does_not_stop_the_run(tmp_path):
    """The PPV of a class exists only where the model predicts it: a classifier that predicted no pneumonia at an
    evaluation (common early on, and with few or imbalanced labels) stopped the run there with "metric_for_best
    'ppv/pneumonia' is not among the metrics"; a class's sensitivity on a split without that class can never be
    computed and is refused before training."""
    import numpy as np

    from hf_datasets import build_dataset

    splits = build_dataset("sample")
    all_normal = splits["train"].map(lambda row: {"labels": [1.0, 0.0]}, features=splits["train"].features)
    datasets.DatasetDict({"train": all_normal, "test": splits["test"]}).save_to_disk(tmp_path / "prepared")
    args = tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                eval_split="test", lr=1e-2, warmup_epochs=0, metric_for_best="ppv/pneumonia")
    metrics = run_training(args)  # a model trained on normal images only predicts no pneumonia: no PPV of it
    assert "ppv/pneumonia" not in metrics and metrics["confusion/pneumonia/pneumonia"] == 0
    assert metrics["num_samples"] == 4 and (tmp_path / "run" / "model" / "model.safetensors").is_file()

    labels = np.asarray(splits["test"]["labels"])
    normal_only = splits["test"].select([i for i in range(len(labels)) if labels[i][0] == 1])
    datasets.DatasetDict({"train": splits["train"], "test": normal_only}).save_to_disk(tmp_path / "normal_only")
    for name in ("sensitivity/pneumonia", "ppv/pneumonia", "specificity/normal",
                 "sensitivity_at_specificity_95/pneumonia"):
        args = tiny("classification", tmp_path / name.replace("/", "_"), dataset=None, eval_split="test",
                    prepared_dir=str(tmp_path / "normal_only"), metric_for_best=name)
        with pytest.raises(ValueError, match=f"{name} cannot be computed on the evaluation split"):
            run_training(args)
        assert not (tmp_path / name.replace("/", "_") / "checkpoints").exists()


def test_a_training_split_without_a_class_is_reported_naming_it(tmp_path, caplog):
    """A few patients, or a small train_fraction, can leave a class out of the training split: the run trained a
    classifier that can never predict it without a word."""
    from hf_datasets import build_dataset
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train.run import load_data

    splits = build_dataset("sample")
    all_normal = splits["train"].map(lambda row: {"labels": [1.0, 0.0]}, features=splits["train"].features)
    datasets.DatasetDict({"train": all_normal, "test": splits["test"]}).save_to_disk(tmp_path / "prepared")
    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    with caplog.at_level("WARNING"):
        load_data(tiny("classification", tmp_path / "run", eval_split="test"), processor)
    assert "no positive image" not in caplog.text
    with caplog.at_level("WARNING"):
        load_data(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                       eval_split="test"), processor)
    assert "has no positive image of ['pneumonia'] (positives per label: {'normal': 12, 'pneumonia': 0})" \
        in caplog.text
    assert caplog.text.rstrip().endswith("use more training patients")  # no subset drawn: no subset_seed to change
    caplog.clear()
    with caplog.at_level("WARNING"):
        load_data(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                       eval_split="test", dataset_options={"train_fraction": 0.5}), processor)
    assert "use more training patients, or another subset_seed" in caplog.text
    caplog.clear()  # soft positives (an uncertain=0.7 policy) teach the label: no warning
    soft = splits["train"].map(lambda row: {"labels": [1.0, 0.7]}, features=splits["train"].features)
    datasets.DatasetDict({"train": soft, "test": splits["test"]}).save_to_disk(tmp_path / "soft")
    with caplog.at_level("WARNING"):
        load_data(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "soft"),
                       eval_split="test"), processor)
    assert "no positive image" not in caplog.text


def test_evaluation_says_how_it_read_the_labels_beside_how_the_model_trained_on_them(tmp_path, capsys):
    """CheXpert's uncertain labels are left out, or read as 0 or 1, as --dataset_options say: an evaluation said
    nothing of it, so a model trained with uncertain=ones was scored under another reading without a word."""
    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    import layouts

    data_dir = layouts.chexpert(tmp_path / "chexpert")
    run_training(tiny("classification", tmp_path / "run", dataset="chexpert", data_dir=str(data_dir),
                      dataset_options={"uncertain": "ones"}, eval_split="validation", epochs=1, max_steps=1,
                      card=True))
    capsys.readouterr()
    model = str(tmp_path / "run" / "model")
    evaluate_script.main(["--model", model, "--dataset", "chexpert", "--data_dir", str(data_dir), "--split",
                          "validation", "--bootstrap", "0"])
    assert ("labels read with blank=zeros, uncertain=ignore (the model's training labels: blank=zeros, "
            "uncertain=ones)") in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "model" / "eval-validation" / "metrics.json").read_text())
    assert metrics["label_policy"] == "blank=zeros, uncertain=ignore"
    evaluate_script.main(["--model", model, "--dataset", "chexpert", "--data_dir", str(data_dir), "--split",
                          "validation", "--bootstrap", "0", "--dataset_options", '{"uncertain": "ones"}'])
    out = capsys.readouterr().out
    assert "labels read with blank=zeros, uncertain=ones\n" in out and "training labels" not in out


def test_classification_on_a_set_without_labels_says_so_and_how_to_pool_labelled_folders(tmp_path):
    """cxr_pool keeps images only: fine-tuning a classifier on it stopped with 'no row with a known label', which named
    neither the cause nor a way to pool labelled folders; its classes option pools them labelled."""
    sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "data"))
    from shared_layout import write_shared_layout

    from hf_datasets.errors import InvalidInputError
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train.run import load_data

    pool = write_shared_layout(tmp_path / "data", patients=2)
    args = tiny("classification", tmp_path / "run", dataset="cxr_pool", data_dir=str(pool), eval_split=None)
    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    with pytest.raises(InvalidInputError, match=r"The data set 'cxr_pool' has no labels .* unless its classes option "
                                                r"labels the pool: --dataset_options '\{\"classes\": \[\"covid\"\], "
                                                r"\"other_class\": \"non_covid\"\}' pools labelled folders"):
        load_data(args, processor)
    args.dataset_options = {"classes": ["covid"], "other_class": "non_covid"}
    train_set, _, names, mode = load_data(args, processor)
    assert names == ["covid", "non_covid"] and mode == "single" and len(train_set.source_counts()) > 1


def test_evaluations_the_exported_model_was_picked_from_are_counted_over_resumes(tmp_path):
    """A first invocation stopped by --max_steps evaluates where it stops; resumed, the run evaluates every 2 epochs:
    3 evaluations, which the schedule of the final arguments alone put at 2."""
    args = dict(eval_split="test", epochs=4, eval_every_epochs=2)
    run_training(tiny("classification", tmp_path / "ft", max_steps=1, **args))
    run_training(tiny("classification", tmp_path / "ft", resume_from_checkpoint="latest", **args))
    run = json.loads((tmp_path / "ft" / "model" / "run.json").read_text())
    assert run["eval_dataset"]["selected_by"]["evaluations"] == 3


def test_the_card_says_its_results_come_from_the_split_that_picked_the_checkpoint(runs):
    """The exported model is the best of the evaluations on the evaluation split, and the card's results are that
    split's: on a few images the best of several evaluations is optimistic, and the card presented it as a plain
    evaluation."""
    root, _ = runs
    card = (root / "ft" / "model" / "README.md").read_text()
    assert "the best AUROC (macro) of 2 evaluations during training on split `test`" in card
    assert json.loads((root / "ft" / "model" / "run.json").read_text())["eval_dataset"]["selected_by"] == {
        "metric": "auroc_macro", "evaluations": 2}


def test_a_label_name_that_looks_like_a_path_is_exported_and_published_as_data(tmp_path, monkeypatch):
    """A class named "pneumonia (/viral)" made the export refuse its own card after the whole run (a local path
    '/viral'), leaving the model in .tmp-model; the name is the data's, which config.json publishes anyway. Real
    paths are still refused."""
    from hf_datasets import build_dataset
    from hf_datasets.errors import InvalidInputError
    from model_cards import publish

    names = ["normal", "pneumonia (/viral)"]
    splits = build_dataset("sample")
    datasets.DatasetDict({split: with_label_names(splits[split], names) for split in ("train", "test")}).save_to_disk(
        tmp_path / "prepared")
    run_training(tiny("classification", tmp_path / "run", dataset=None, prepared_dir=str(tmp_path / "prepared"),
                      eval_split="test", epochs=1, card=True))
    model = tmp_path / "run" / "model"
    assert not (tmp_path / "run" / ".tmp-model").exists()
    assert "Labels: `normal`, `pneumonia (/viral)`." in (model / "README.md").read_text()
    pushed = []
    monkeypatch.setattr(publish, "_push", lambda folder, repo_id, *args, **kwargs: pushed.append(repo_id))
    publish.push_model(model, "alice/pneumonia", token="hf_test")
    assert pushed == ["alice/pneumonia"]
    (model / "notes.md").write_text("pneumonia (/viral) images from /home/alice/cxr\n")
    with pytest.raises(InvalidInputError, match=r"\{'notes.md': \['/home/alice/cxr'\]\}"):
        publish.check_no_local_paths(model, ["notes.md"], names)


def test_pretraining_names_the_splits_of_the_set_it_does_not_use(tmp_path, capsys):
    """A DICOM archive (`dicomdir`) gets a seeded train / validation / test split: pretraining on `train` alone left a
    fifth of the radiographs out without a word."""
    run_training(tiny("pretraining", tmp_path / "a", eval_split=None, max_steps=1))
    assert ("pretraining on ['train'] only: the set's other splits {'test': 4, 'unlabelled': 1} (images per split) are "
            "not used; --train_splits names the splits to pretrain on") in capsys.readouterr().out
    run_training(tiny("pretraining", tmp_path / "b", train_splits=["train", "test", "unlabelled"], eval_split=None,
                      max_steps=1))
    assert "not used" not in capsys.readouterr().out
