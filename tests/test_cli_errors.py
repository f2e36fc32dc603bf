"""The scripts end a wrong input (flag, path, data or model folder, token) with `error: <message>` on stderr and exit
status 2, without a traceback, on every process of a distributed run; any other exception keeps its traceback."""

import contextlib
import io
import json
import os
import re
import runpy
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
pytestmark = pytest.mark.slow
TINY_CONFIG = json.dumps({"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "intermediate_size": 64})


def script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ARGS` from the repository root: in this process (runpy runs the module's `__main__` code, as a new
    process would, without its seconds of imports), or in a new process where `env` is given. Its exit status and
    what it printed (an exception that `run_script` does not turn into an `error:` line fails the test)."""
    if env is not None:
        return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
    from accelerate.state import AcceleratorState

    stdout, stderr, status = io.StringIO(), io.StringIO(), 0
    with mock.patch.dict(os.environ, {key: ENV[key] for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}), \
            mock.patch.object(sys, "argv", [args[0], *args[1:]]), contextlib.chdir(ROOT), \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            runpy.run_module(args[0], run_name="__main__", alter_sys=True)
        except SystemExit as end:
            status = end.code if isinstance(end.code, int) else 0 if end.code is None else 1
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)  # each script sets up its own, as a process does
    return subprocess.CompletedProcess(["python", "-m", *args], status, stdout.getvalue(), stderr.getvalue())


def assert_input_error(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"error: {message}" in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny classifier export with its code files and a card, as `train.publish` wants one."""
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor

    folder = tmp_path_factory.mktemp("model")
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2,
                                  id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1},
                                  problem_type="single_label_classification")
    GroupMaskedViTForImageClassification(config).save_pretrained(folder)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(folder)
    (folder / "README.md").write_text("# a tiny classifier\n")
    return folder


@pytest.fixture
def unreadable_dicoms(tmp_path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(b"DICM" + bytes(200))  # no DICOM header
    return folder


@pytest.fixture(scope="module")
def cut_short_shards(tmp_path_factory) -> Path:
    """The sample set saved as prepared shards whose second training and test images are a JPEG cut short (the first
    is read when the data set is made, in the main process; the others in the loader, in its workers if any)."""
    import datasets

    from hf_datasets import build_dataset, label_names
    from hf_datasets.schema import with_label_names

    folder = tmp_path_factory.mktemp("shards")
    splits = build_dataset("sample")
    cut = {}
    for name in ("train", "test"):
        split = splits[name].cast_column("image", datasets.Image(decode=False))
        images, paths = list(split["image"]), list(split["path"])
        images[1], paths[1] = {"bytes": b"\xff\xd8\xff\xe0 cut short", "path": None}, "PNEUMONIA/cut.jpeg"
        split = split.remove_columns(["image", "path"]).add_column("image", images, feature=datasets.Image())
        cut[name] = with_label_names(split.add_column("path", paths), label_names(splits[name]))
    datasets.DatasetDict(cut).save_to_disk(folder)
    return folder


def test_evaluate_names_a_missing_model_folder(tmp_path):
    missing = tmp_path / "no_such_model"
    done = script("train.evaluate", "--model", str(missing), "--dataset", "sample")
    assert_input_error(done, f"--model {missing}: no such folder here")


def test_probe_names_a_folder_without_config(tmp_path):
    done = script("train.probe", "--model", str(tmp_path), "--dataset", "sample")
    assert_input_error(done, f"--model {tmp_path}: no config.json there")


def test_training_without_data_dir_says_so(tmp_path):
    done = script("train.finetune_classification", "--dataset", "kermany", "--output_dir", str(tmp_path / "run"))
    assert_input_error(done, "build_dataset('kermany') needs data_dir (--data_dir")


def test_a_bad_flag_value_is_named(tmp_path):
    done = script("train.pretrain", "--dataset", "sample", "--clip_mode", "sideways", "--output_dir",
                  str(tmp_path / "run"))
    assert_input_error(done, "clip_mode must be per_param or global, got 'sideways'")


def test_a_model_config_value_the_config_refuses_is_named_with_or_without_init(model, tmp_path):
    """With --init, from_pretrained set the value unchecked, and the run ended on a ValueError traceback blaming
    --image_size."""
    run = ("train.finetune_classification", "--dataset", "sample", "--image_size", "32", "--output_dir",
           str(tmp_path / "run"))
    done = script(*run, "--init", str(model), "--model_config", '{"pooling": "max"}')
    assert_input_error(done, "--model_config: GroupMaskedViTConfig.pooling='max': must be one of")
    done = script(*run, "--model_config", '{"pooling": "max"}')
    assert_input_error(done, "--model_config: GroupMaskedViTConfig.pooling='max': must be one of")
    done = script(*run, "--init", str(model), "--drop_path", "1.5")
    assert_input_error(done, "--drop_path: GroupMaskedViTConfig.drop_path_rate=1.5: must lie in [0, 1]")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("repo_id", ["alice", "a b", "alice/--bad..", "a/b/c", "/home/alice/models/x"])
def test_a_hub_model_id_that_is_no_hub_repo_id_is_refused_before_training(tmp_path, repo_id):
    """It ended on the card as given, or (a path, "a/b/c") silently became `your-username/cxrgm-<task>`."""
    done = script("train.finetune_classification", "--dataset", "sample", "--image_size", "32", "--model_config",
                  TINY_CONFIG, "--hub_model_id", repo_id, "--output_dir", str(tmp_path / "run"))
    assert_input_error(done, f"--hub_model_id must be a Hub repo id 'user/name' (letters, digits, '-', '_' and '.', "
                             f"not starting or ending with '-' or '.'), got {repo_id!r}")
    assert not (tmp_path / "run").exists()


def test_a_model_folder_whose_saved_settings_the_model_refuses_is_named_with_the_field(model, tmp_path):
    """A value of config.json or preprocessor_config.json that the class refuses ended on its ValueError traceback."""
    import shutil

    bad_config, bad_processor = tmp_path / "bad_config", tmp_path / "bad_processor"
    for folder, file, field, value in ((bad_config, "config.json", "pooling", "max"),
                                       (bad_processor, "preprocessor_config.json", "resize_mode", "stretch")):
        shutil.copytree(model, folder)
        saved = json.loads((folder / file).read_text())
        (folder / file).write_text(json.dumps({**saved, field: value}))
    run = ("train.finetune_classification", "--dataset", "sample", "--image_size", "32", "--output_dir",
           str(tmp_path / "run"))
    done = script(*run, "--init", str(bad_config))
    assert_input_error(done, f"--init {bad_config}: its config.json holds a value that cannot be used "
                             "(GroupMaskedViTConfig.pooling='max': must be one of")
    done = script("train.evaluate", "--model", str(bad_config), "--dataset", "sample")
    assert_input_error(done, f"--model {bad_config}: its config.json holds a value that cannot be used")
    done = script(*run, "--init", str(bad_processor))
    assert_input_error(done, f"--init {bad_processor}: its preprocessor_config.json holds a value that cannot be used "
                             "(resize_mode must be one of ('pad', 'squash'), got 'stretch')")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("field, value, message", [
    ("pooling", "max", "its config.json holds a value that cannot be used (GroupMaskedViTConfig.pooling='max'"),
    ("num_channels", 3, "has 3 input channels but --num_channels is 1"),
])
def test_a_wrong_init_is_refused_before_the_data_are_loaded(model, tmp_path, field, value, message):
    """--init's config.json was read only when the model was built, after the data: a wrong --init was named only
    once the data had loaded, and data that cannot be loaded (no --data_dir here) hid it."""
    import shutil

    init = tmp_path / "init"
    shutil.copytree(model, init)
    saved = json.loads((init / "config.json").read_text())
    (init / "config.json").write_text(json.dumps({**saved, field: value}))
    done = script("train.finetune_classification", "--dataset", "kermany", "--image_size", "32", "--init", str(init),
                  "--output_dir", str(tmp_path / "run"))
    assert_input_error(done, f"--init {init}: {message}" if field == "pooling" else f"--init {init} {message}")
    assert "--data_dir" not in done.stderr


def test_a_model_folder_whose_config_is_no_json_is_named_with_the_file(model, unreadable_dicoms, tmp_path):
    """A config.json cut short (a copy stopped midway) ended on the OSError traceback transformers raises."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "config.json").write_text((model / "config.json").read_text()[:40])
    said = f"its config.json ({broken / 'config.json'}) is not valid JSON ("
    done = script("train.finetune_classification", "--dataset", "sample", "--image_size", "32", "--init", str(broken),
                  "--output_dir", str(tmp_path / "run"))
    assert_input_error(done, f"--init {broken}: {said}")
    for run in (("train.evaluate", "--dataset", "sample"), ("train.probe", "--dataset", "sample"),
                ("train.predict", "--inputs", str(unreadable_dicoms), "--output", str(tmp_path / "p.csv"))):
        done = script(*run, "--model", str(broken))
        assert_input_error(done, f"--model {broken}: {said}")


def test_a_model_folder_whose_image_processor_is_missing_or_no_json_is_named_with_the_file(model, unreadable_dicoms,
                                                                                          tmp_path):
    """Evaluation and prediction (and the probe, for a missing one) ended on the OSError traceback transformers
    raises: the processor says how the model's inputs are prepared, and none is made up in its place."""
    import shutil

    missing, broken = tmp_path / "missing", tmp_path / "broken"
    for folder in (missing, broken):
        shutil.copytree(model, folder)
    (missing / "preprocessor_config.json").unlink()
    (broken / "preprocessor_config.json").write_text((model / "preprocessor_config.json").read_text()[:30])
    said = {missing: f"--model {missing}: no preprocessor_config.json there; the model cannot be used without it",
            broken: f"--model {broken}: its preprocessor_config.json ({broken / 'preprocessor_config.json'}) is not "
                    "valid JSON ("}
    for folder, run in ((broken, ("train.evaluate", "--dataset", "sample")),
                        (missing, ("train.probe", "--dataset", "sample")),
                        (broken, ("train.predict", "--inputs", str(unreadable_dicoms), "--output",
                                  str(tmp_path / "p.csv")))):  # each script once: one reader (load_model_source)
        assert_input_error(script(*run, "--model", str(folder)), said[folder])
    assert not (tmp_path / "p.csv").exists()


def test_a_resumed_runs_init_whose_config_is_no_json_is_named_with_the_file(model, tmp_path):
    """On resume, --init's config.json is read to warn of another model: cut short, it ended on a JSONDecodeError
    traceback, and then was named only once the data had loaded (here they cannot be: no such --prepared_dir)."""
    import shutil

    init = tmp_path / "init"
    shutil.copytree(model, init)
    run = ("train.finetune_classification", "--dataset", "sample", "--image_size", "32", "--init", str(init),
           "--batch_size", "4", "--save_every_steps", "1", "--report_to", "none", "--no-card", "--output_dir",
           str(tmp_path / "run"))
    done = script(*run, "--max_steps", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    (init / "config.json").write_text((model / "config.json").read_text()[:40])
    done = script(*run, "--max_steps", "2", "--resume_from_checkpoint", "latest", "--prepared_dir",
                  str(tmp_path / "no_shards"))
    assert_input_error(done, f"--init {init}: its config.json ({init / 'config.json'}) is not valid JSON (")
    assert "--prepared_dir" not in done.stderr


def test_a_missing_config_file_is_named(tmp_path):
    missing = tmp_path / "recipe.yaml"
    done = script("train.finetune_segmentation", "--config", str(missing), "--output_dir", str(tmp_path / "run"))
    assert_input_error(done, f"{missing}: no such YAML file, nor a recipe name (")


def test_evaluate_on_a_dicom_folder_with_nothing_readable(model, unreadable_dicoms):
    done = script("train.evaluate", "--model", str(model), "--dataset", "dicomdir", "--data_dir",
                  str(unreadable_dicoms))
    assert_input_error(done, f"{unreadable_dicoms / 'a.dcm'}: not a DICOM file")
    assert """--dataset_options '{"on_error": "skip"}'""" in done.stderr


def test_predict_names_a_missing_path_and_an_unreadable_file_with_its_hint(model, unreadable_dicoms, tmp_path):
    done = script("train.predict", "--model", str(model), "--inputs", str(tmp_path / "gone.dcm"))
    assert_input_error(done, f"No such file or folder: {tmp_path / 'gone.dcm'}")
    done = script("train.predict", "--model", str(model), "--inputs", str(unreadable_dicoms), "--output",
                  str(tmp_path / "p.csv"))
    assert_input_error(done, f"{unreadable_dicoms / 'a.dcm'}: not a DICOM file")
    assert "\n--on_error skip leaves such files out and lists them" in done.stderr  # the error's note


@pytest.mark.parametrize("num_workers", ["0", "1"])
def test_an_image_that_cannot_be_decoded_is_named_whatever_reads_it(model, cut_short_shards, tmp_path, num_workers):
    """Read by a loader worker, the error reached the main process as torch's RuntimeError holding the worker's
    traceback (torch rebuilds an error from its message alone, which a DataError cannot be made from)."""
    message = "row 1 (PNEUMONIA/cut.jpeg): image cannot be decoded (Truncated File Read); python -m hf_datasets.prepare"
    done = script("train.evaluate", "--model", str(model), "--prepared_dir", str(cut_short_shards), "--num_workers",
                  num_workers, "--output_dir", str(tmp_path / "eval"))
    assert_input_error(done, message)
    done = script("train.finetune_classification", "--prepared_dir", str(cut_short_shards), "--image_size", "32",
                  "--model_config", TINY_CONFIG, "--epochs", "1", "--warmup_epochs", "0", "--batch_size", "4",
                  "--report_to", "none", "--no-card", "--num_workers", num_workers, "--output_dir",
                  str(tmp_path / "run"))
    assert_input_error(done, message)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_mask_problem_is_named_whatever_reads_it(tmp_path, num_workers):
    """A row without a mask, read by a loader worker, came back as torch's RuntimeError holding the worker's
    ValueError traceback; it is a DataError naming the row and its file, as an unreadable image is."""
    from benchmarks.device_smoke import segmentation_set

    segmentation_set(tmp_path / "seg", rows=4)
    code = textwrap.dedent(f"""
        import datasets
        from hf_datasets.errors import run_script
        from modeling_cxrgm import GroupMaskedViTImageProcessor
        from train import data

        def main():
            test = datasets.load_from_disk({str(tmp_path / "seg")!r})["test"]
            test = test.map(lambda row, i: {{"mask": None if i == 1 else row["mask"]}}, with_indices=True,
                            features=test.features)
            processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
            loader = data.make_loader(data.CXRDataset(test, processor, "segmentation"), 4, 0, False, {num_workers})
            for batch in loader:
                data.raise_unreadable(batch)

        run_script(main)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert_input_error(done, "row 1 (")
    assert "): has no mask" in done.stderr


def test_prepare_on_a_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    done = script("hf_datasets.prepare", "--dataset", "imagefolder", "--data_dir", str(tmp_path / "empty"),
                  "--output_dir", str(tmp_path / "out"))
    assert_input_error(done, f"{tmp_path / 'empty'}: no CLASS/IMAGE files found")


def test_prepare_on_a_folder_with_no_readable_image(unreadable_dicoms, tmp_path):
    """It wrote an empty set and said "written 0, skipped 1"."""
    done = script("hf_datasets.prepare", "--dataset", "dicomdir", "--data_dir", str(unreadable_dicoms),
                  "--output_dir", str(tmp_path / "out"), "--split_fractions", '{"train": 1.0}')
    assert_input_error(done, "No file could be read (1 skipped: {'NotDicomError': 1}): the prepared set has no image; "
                             f"each skipped file is listed with its reason under skipped_files in {tmp_path / 'out'}")


def test_publish_without_a_token_or_folder(model, tmp_path):
    env = {**ENV, "HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf_home")}  # no saved login either
    done = script("train.publish", "--model_dir", str(model), "--repo_id", "alice/tiny", env=env)
    assert_input_error(done, "No Hugging Face token: set HF_TOKEN")
    done = script("train.publish", "--model_dir", str(tmp_path / "gone"), "--repo_id", "alice/tiny", env=env)
    assert_input_error(done, f"The model folder {str(tmp_path / 'gone')!r} does not exist")


def test_publish_refuses_a_licence_that_is_no_hub_id_or_a_data_set_licence(model, tmp_path):
    """--license and --license_name are checked before the token is looked for, and only go with --model_dir."""
    done = script("train.publish", "--model_dir", str(model), "--repo_id", "alice/tiny", "--license", "CC-BY-NC-4.0")
    assert_input_error(done, "--license must be a licence id as the Hub spells them, in lower case")
    done = script("train.publish", "--model_dir", str(model), "--repo_id", "alice/tiny", "--license", "mit",
                  "--license_name", "acme")
    assert_input_error(done, "--license_name names the licence of --license other, not of mit")
    done = script("train.publish", "--model_dir", str(model), "--repo_id", "alice/tiny", "--license", "other",
                  "--license_name", "acme")
    assert_input_error(done, "--license other needs --license_link, where its text is")
    done = script("train.publish", "--dataset_dir", str(tmp_path), "--repo_id", "alice/set", "--license", "mit")
    assert_input_error(done, "--license sets a model card's licence: it goes with --model_dir")
    done = script("train.publish", "--dataset_dir", str(tmp_path), "--repo_id", "alice/set", "--license_link",
                  "https://acme.example/terms")
    assert_input_error(done, "--license sets a model card's licence: it goes with --model_dir")


def test_a_distributed_run_ends_on_the_error_line_with_status_2(model):
    """Each process meets the error and exits with status 2; the launcher stops the others once one has ended, so
    one or both print it before the run ends, and none hangs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = script("accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
                  "-m", "train.evaluate", "--model", str(model), "--dataset", "sample", "--split", "nosplit",
                  env={**ENV, "ACCELERATE_USE_CPU": "true"})
    assert done.returncode != 0
    assert done.stderr.count("error: The data set has no split 'nosplit'") in (1, 2), done.stderr[-3000:]
    assert re.search(r"^ *exitcode +: 2\b", done.stderr, re.MULTILINE), done.stderr[-3000:]  # the launcher's report
    assert "InvalidInputError" not in done.stderr  # (the launcher prints its own traceback, no process's)


def test_any_other_exception_keeps_its_traceback():
    code = textwrap.dedent("""
        from hf_datasets.errors import run_script

        def main():
            raise RuntimeError("a bug")

        run_script(main)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr and "RuntimeError: a bug" in done.stderr
    assert "error: a bug" not in done.stderr
