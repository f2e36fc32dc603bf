"""benchmarks/quality.py --smoke end to end on a tiny folder in the shared-data layout."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
from shared_layout import write_shared_layout  # noqa: E402

from benchmarks import quality  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def test_smoke_run_covers_every_experiment(tmp_path):
    data_dir = write_shared_layout(tmp_path / "data")
    out = tmp_path / "out"
    for stopped in ("pretrain", "classification/gmml_10pct_seed0"):  # a run stopped part-way left checkpoints
        (out / stopped / "checkpoints" / "step_00000099").mkdir(parents=True)
    results = quality.main(["--smoke", "--data_dir", str(data_dir), "--output_dir", str(out), "--pretrain_epochs", "2",
                            "--pretrain_seed", "3"])

    assert {(r["init"], r["fraction"]) for r in results["classification"]} == {
        (i, f) for i in quality.INITS for f in (0.1, 0.25, 1.0)}
    assert {(r["train"], r["test"]) for r in results["drift"]} == {
        (a, b) for a in (quality.NIH, quality.KERMANY) for b in (quality.NIH, quality.KERMANY)}
    assert len(results["segmentation"]) == 4 and len(results["probes"]) == 4
    for row in results["classification"] + results["drift"]:
        assert all(0.0 <= row[k] <= 1.0 for k in quality.CLS_KEYS)
    assert all(0.0 <= r["dice"] <= 1.0 for r in results["segmentation"])

    # the pool left out every downstream test patient; the export loads with the train scripts
    pretrain_args = yaml.safe_load((out / "pretrain" / "args.yaml").read_text())
    assert pretrain_args["epochs"] == 2 and results["size"]["pretrain"]["epochs"] == 2  # --pretrain_epochs
    assert pretrain_args["seed"] == 3  # --pretrain_seed; fine-tuning keeps the size's seeds
    assert yaml.safe_load((out / "classification" / "gmml_10pct_seed0" / "args.yaml").read_text())["seed"] == 0
    excluded = pretrain_args["dataset_options"]["exclude_patients"]
    assert set(quality.test_patients(data_dir)) == set(excluded) and len(excluded) >= 3
    assert (out / "pretrain" / "model" / "config.json").is_file()
    assert (out / "pretrain" / "loss_curve.png").is_file() and results["pretraining"]["grids"]
    commands = (out / "commands.sh").read_text()
    for script in ("train.pretrain", "train.finetune_classification", "train.finetune_segmentation",
                   "train.evaluate", "train.probe"):
        assert f"python -m {script} " in commands
    saved = json.loads((out / "results.json").read_text())
    assert saved["classification"] == results["classification"]
    assert "| 10% | gmml |" in (out / "results.md").read_text()

    # the cue analysis scored every kept classifier (2 drift + 2 at 100%), as trained and cropped to a square
    cues = results["drift_cues"]
    assert set(cues) == {"as_trained", "central_square"} and cues["central_square"]["max_aspect"] == 1.0
    for view in cues.values():
        assert len(view["models"]) == 4
        assert all(0.0 <= s[t]["auroc"] <= 1.0 for s in view["models"].values() for t in (quality.NIH, quality.KERMANY))
    assert {(r["train"], r["init"]) for r in quality.cue_rows(cues)} == {
        (t, i) for t in (quality.NIH, quality.KERMANY) for i in quality.INITS}
    assert "python -m benchmarks.drift_cues " in commands and "Image-level cues" in (out / "results.md").read_text()

    # run again into the same folder, it goes on where a run stopped: the recorded commands that repeat in order are
    # reused, from the first that differs (here the 4th: other settings) everything runs again
    record = out / "completed.jsonl"
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [entry["command"] for entry in entries] == commands.splitlines()
    entries[3]["command"] += " --changed"
    record.write_text("".join(json.dumps(entry) + "\n" for entry in entries[:6]))
    (out / "results.json").unlink()
    again = quality.main(["--smoke", "--data_dir", str(data_dir), "--output_dir", str(out), "--pretrain_epochs", "2",
                          "--pretrain_seed", "3"])
    assert again["reused_commands"] == 3 and results["reused_commands"] == 0
    assert again["classification"] == results["classification"]  # CPU runs are deterministic
    assert [json.loads(line)["command"] for line in record.read_text().splitlines()] == commands.splitlines()
    assert "going on after 3 finished commands of an earlier run" in (out / "results.md").read_text()


def test_equalize_flag_reaches_every_training_run():
    assert quality.common({**quality.SMOKE, "equalize": True}, Path("out"), 0)["equalize"] is True
    assert "equalize" not in quality.common(quality.SMOKE, Path("out"), 0)


def test_summary_gives_a_spread_only_where_there_are_several_seeds():
    rows = [{"init": "gmml", "seed": 0, "dice": 0.8}, {"init": "random", "seed": 0, "dice": 0.7},
            {"init": "random", "seed": 1, "dice": 0.9}]
    summary = {row["init"]: row for row in quality.summarise(rows, ["dice"], ["init"])}
    assert summary["gmml"]["n"] == 1 and summary["gmml"]["dice"] == "0.800"  # one seed: no "± 0.000"
    assert summary["random"]["n"] == 2 and summary["random"]["dice"] == "0.800 ± 0.141"
