"""train.predict on real files: rows are written as they come, `--resume` continues a stopped run without
repeating or losing a file, and masks of same-named files in different folders do not overwrite each other."""

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_datasets.builders.sample import sample_files
from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
)
from train import predict

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)


def saved(model, folder: Path) -> str:
    model.save_pretrained(folder)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(folder)
    return str(folder)


def jpegs(count: int) -> list[Path]:
    return sorted(path for name, path in sample_files().items() if name.endswith(".jpeg"))[:count]


def rows(table: Path) -> list[dict]:
    return list(csv.DictReader(table.open(newline="")))


def test_a_stopped_run_keeps_its_rows_and_resume_finishes_it(tmp_path):
    model = pneumonia_classifier(tmp_path / "model")
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, path in enumerate(jpegs(4)):
        shutil.copy(path, folder / f"{i}_{'c' if i >= 2 else 'a'}.jpeg")  # 0_a, 1_a, then 2_c, 3_c
    (folder / "1_b.png").write_bytes(b"not an image")  # sorted third: stops a run with --on_error raise
    table = tmp_path / "p.csv"
    command = ["--model", model, "--inputs", str(folder), "--output", str(table), "--batch_size", "1"]

    with pytest.raises(Exception, match="1_b.png: not a recognised image format"):
        predict.main(command)
    assert [Path(r["path"]).name for r in rows(table)] == ["0_a.jpeg", "1_a.jpeg"]  # written before the stop
    first = {r["path"]: r["p_normal"] for r in rows(table)}

    predict.main([*command, "--on_error", "skip", "--resume"])
    assert [Path(r["path"]).name for r in rows(table)] == ["0_a.jpeg", "1_a.jpeg", "2_c.jpeg", "3_c.jpeg"]
    assert {r["path"]: r["p_normal"] for r in rows(table)[:2]} == first
    assert [Path(r["path"]).name for r in rows(tmp_path / "p_skipped.csv")] == ["1_b.png"]

    predict.main([*command, "--on_error", "skip", "--resume"])  # nothing left: nothing repeated
    assert len(rows(table)) == 4 and len(rows(tmp_path / "p_skipped.csv")) == 1
    relative = os.path.relpath(folder) + "/./"  # the same folder named otherwise
    predict.main(["--model", model, "--inputs", relative, "--output", str(table), "--on_error", "skip", "--resume"])
    assert len(rows(table)) == 4 and len(rows(tmp_path / "p_skipped.csv")) == 1
    predict.main([*command, "--on_error", "skip"])  # without --resume: a fresh table
    assert len(rows(table)) == 4 and len(rows(tmp_path / "p_skipped.csv")) == 1


def test_masks_of_same_named_files_in_different_folders_are_kept_apart(tmp_path):
    model = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "model")
    first, second = jpegs(2)
    for study, path in (("study1", first), ("study2", second)):
        (tmp_path / "scans" / study).mkdir(parents=True)
        shutil.copy(path, tmp_path / "scans" / study / "IM-0001.jpeg")
    out = tmp_path / "masks"
    predict.main(["--model", model, "--inputs", str(tmp_path / "scans"), "--output", str(out)])
    listed = {Path(r["path"]).parent.name: Path(r["mask"]) for r in rows(out / "masks.csv")}
    assert listed == {"study1": out / "study1" / "IM-0001_mask.png", "study2": out / "study2" / "IM-0001_mask.png"}
    for study, path in (("study1", first), ("study2", second)):
        assert Image.open(listed[study]).size == Image.open(path).size  # each mask at its own image's size


def test_folders_give_dicoms_under_any_name_and_no_hidden_files(tmp_path):
    """A PACS export names DICOMs `IM0001` or by UID; a Mac leaves `._x.png` twins and `.DS_Store`: the first are
    images to predict, the others are not read at all."""
    from pydicom.data import get_testdata_file

    folder = tmp_path / "export"
    (folder / "study").mkdir(parents=True)
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "study" / "IM0001")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "study" / "1.2.840.113619.2.55")
    shutil.copy(jpegs(1)[0], folder / "chest.jpeg")
    (folder / "._chest.jpeg").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "notes.txt").write_text("not an image")
    found = predict.find_images([str(folder)])
    assert [path.relative_to(folder).as_posix() for path in found] == [
        "chest.jpeg", "study/1.2.840.113619.2.55", "study/IM0001"]
    assert all(predict.read_image(path) is not None for path in found)


def test_a_folder_gives_the_image_formats_data_sets_read(tmp_path):
    """A folder's TIFF, BMP and .jfif films were passed over (only .png / .jpg / .jpeg were found), though the data
    set builders read them, so a model trained on such films could not be run on them."""
    folder = tmp_path / "scans"
    folder.mkdir()
    first, second = jpegs(2)
    Image.open(first).save(folder / "a.tiff")
    Image.open(second).save(folder / "b.bmp")
    shutil.copy(first, folder / "c.jfif")
    (folder / "notes.txt").write_text("not an image")
    assert [path.name for path in predict.find_images([str(folder)])] == ["a.tiff", "b.bmp", "c.jfif"]
    table = tmp_path / "p.csv"
    predict.main(["--model", pneumonia_classifier(tmp_path / "model"), "--inputs", str(folder), "--output", str(table)])
    assert [Path(row["path"]).name for row in rows(table)] == ["a.tiff", "b.bmp", "c.jfif"]


def test_a_file_reached_twice_through_the_inputs_is_predicted_once(tmp_path, caplog):
    """A folder and a file inside it (or two nested folders) named together gave the file two rows of predictions."""
    folder = tmp_path / "scans"
    (folder / "follow_up").mkdir(parents=True)
    first, second = jpegs(2)
    shutil.copy(first, folder / "a.jpg")
    shutil.copy(second, folder / "follow_up" / "b.jpg")
    inputs = [str(folder / "a.jpg"), str(folder), str(folder / "follow_up"), str(tmp_path / "scans" / ".." / "scans")]
    with caplog.at_level("WARNING"):
        found = predict.find_images(inputs)
    assert found == [folder / "a.jpg", folder / "follow_up" / "b.jpg"]  # each where first reached
    assert "4 of the 6 files found were reached twice through the inputs given: each is predicted once" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert predict.find_images([str(folder)]) == [folder / "a.jpg", folder / "follow_up" / "b.jpg"]
    assert "reached twice" not in caplog.text


def test_a_folders_dicomdir_index_is_not_taken_for_an_image(tmp_path):
    """Every DICOM media export (CD, USB stick, PACS export) holds a DICOMDIR, the index of its files, which has the
    DICM marker but no image: a folder's DICOMDIR is left out as hidden files are, instead of stopping the run
    as an unreadable image; one named on its own is still refused, as a DICOMDIR."""
    from pydicom.data import get_testdata_file

    from hf_datasets.errors import NonImageDicomError

    folder = tmp_path / "cd"
    (folder / "IMAGES").mkdir(parents=True)
    shutil.copy(get_testdata_file("DICOMDIR", download=False), folder / "DICOMDIR")
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "IMAGES" / "IM0001")
    found = predict.find_images([str(folder)])
    assert [path.relative_to(folder).as_posix() for path in found] == ["IMAGES/IM0001"]
    with pytest.raises(NonImageDicomError, match="DICOMDIR"):
        predict.read_image(folder / "DICOMDIR")


def test_masks_of_files_differing_only_in_suffix_are_kept_apart(tmp_path):
    """scan.dcm and its PNG export scan.png in one folder: one mask each (the second overwrote the first's)."""
    model = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "model")
    first, second = jpegs(2)
    (tmp_path / "scans").mkdir()
    shutil.copy(first, tmp_path / "scans" / "scan.jpeg")
    shutil.copy(second, tmp_path / "scans" / "scan.jpg")
    shutil.copy(first, tmp_path / "scans" / "other.jpeg")
    out = tmp_path / "masks"
    predict.main(["--model", model, "--inputs", str(tmp_path / "scans"), "--output", str(out)])
    listed = {Path(r["path"]).name: Path(r["mask"]) for r in rows(out / "masks.csv")}
    assert listed == {"other.jpeg": out / "other_mask.png", "scan.jpeg": out / "scan_jpeg_mask.png",
                      "scan.jpg": out / "scan_jpg_mask.png"}
    for name, source in (("scan.jpeg", first), ("scan.jpg", second)):
        assert Image.open(listed[name]).size == Image.open(source).size


def test_a_float_tiff_of_counts_is_predicted_as_data_sets_read_it(tmp_path):
    """A float TIFF holding 12-bit counts was refused by the image processor (floats must be in [0, 1]); it is read
    as data sets read it (counts over 65535, then scaled by the bits they use), so predict and training agree."""
    from hf_datasets.images import pil_to_grey, to_bits

    counts = np.tile(np.linspace(0.0, 4095.0, 20, dtype=np.float32), (16, 1))
    path = tmp_path / "scan.tif"
    Image.fromarray(counts, "F").save(path)
    processor = GroupMaskedViTImageProcessor(size=20, do_normalize=False)
    seen = processor(predict.read_image(path)).pixel_values
    trained_on = processor(to_bits(pil_to_grey(Image.open(path)), 16)).pixel_values  # what build_dataset stores
    np.testing.assert_allclose(seen.numpy(), trained_on.numpy(), atol=0.5 / 4095 + 1e-6)
    model = GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, num_labels=2))
    predict.main(["--model", saved(model, tmp_path / "model"), "--inputs", str(path), "--output",
                  str(tmp_path / "out.csv")])
    assert [row["path"] for row in rows(tmp_path / "out.csv")] == [str(path)]


def pneumonia_classifier(folder) -> str:
    """A saved tiny normal / pneumonia classifier."""
    labels = {0: "normal", 1: "pneumonia"}
    return saved(GroupMaskedViTForImageClassification(GroupMaskedViTConfig(
        **TINY, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()})), folder)


def scans_with_a_bad_file(tmp_path, content: bytes) -> Path:
    """tmp_path/scans holding a real CXR (a.jpeg) and b.png with `content`."""
    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(jpegs(1)[0], folder / "a.jpeg")
    (folder / "b.png").write_bytes(content)
    return folder


def test_a_fresh_run_leaves_no_earlier_runs_skipped_list(tmp_path):
    model = pneumonia_classifier(tmp_path / "model")
    folder = scans_with_a_bad_file(tmp_path, b"not an image")
    command = ["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv")]

    predict.main([*command, "--on_error", "skip"])
    assert [Path(r["path"]).name for r in rows(tmp_path / "p_skipped.csv")] == ["b.png"]
    (folder / "b.png").unlink()
    predict.main(command)  # every file read: this run skipped none
    assert [Path(r["path"]).name for r in rows(tmp_path / "p.csv")] == ["a.jpeg"]
    assert not (tmp_path / "p_skipped.csv").exists()


def test_default_output_is_a_table_for_classifiers_and_a_mask_folder_for_segmentation(tmp_path, monkeypatch):
    classifier = pneumonia_classifier(tmp_path / "classifier")
    segmenter = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "segmenter")
    image = str(jpegs(1)[0])
    monkeypatch.chdir(tmp_path)
    assert predict.main(["--model", classifier, "--inputs", image]) == Path("predictions.csv")
    assert predict.main(["--model", segmenter, "--inputs", image]) == Path("masks") / "masks.csv"
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "masks" / "masks.csv").is_file()


def test_a_segmenter_refuses_a_table_name_for_its_mask_folder(tmp_path):
    """--output predictions.csv, as for a classifier, made a folder named predictions.csv holding masks.csv."""
    segmenter = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "segmenter")
    with pytest.raises(ValueError, match=r"--output .*p\.csv: a segmentation model writes .* a folder"):
        predict.main(["--model", segmenter, "--inputs", str(jpegs(1)[0]), "--output", str(tmp_path / "p.csv")])
    assert not (tmp_path / "p.csv").exists()


def test_a_dicom_of_another_modality_is_predicted_with_a_warning_naming_it(tmp_path):
    """A CT or MR slice in a folder of radiographs was scored (as pneumonia, say) without a word; the dicomdir
    builder leaves such files out by default. The warning names the file, never its header values."""
    from pydicom.data import get_testdata_file

    folder = tmp_path / "scans"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "ct.dcm")
    shutil.copy(get_testdata_file("RG1_UNCI.dcm"), folder / "cr.dcm")
    model = pneumonia_classifier(tmp_path / "model")
    with pytest.warns(UserWarning) as warned:
        table = predict.main(["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv")])
    about = [str(w.message) for w in warned if "not a radiograph" in str(w.message)]
    assert len(about) == 1 and about[0].startswith(str(folder / "ct.dcm")) and "'CT'" not in about[0]
    assert len(rows(table)) == 2  # still predicted: the user may know better


def test_a_threshold_is_refused_where_it_would_change_nothing_and_applied_where_it_does(tmp_path):
    """--threshold was ignored without a word for single-label classifiers and segmenters of several labels (argmax),
    and could not set a lung segmenter's mask cut (the pipeline's mask_threshold)."""
    image = str(jpegs(1)[0])
    several = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=3)), tmp_path / "several")
    for model, kind in ((pneumonia_classifier(tmp_path / "single"), "single-label classifier"),
                        (several, "segmentation model with several labels")):
        with pytest.raises(ValueError, match=f"--threshold applies to multi-label classifiers and one-label "
                                             f"segmenters; .* {kind}"):
            predict.main(["--model", model, "--inputs", image, "--output", str(tmp_path / "x.csv"), "--threshold", "0.9"])
    lungs = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "lungs")
    fractions = {}
    for threshold in ("0.0", "0.5", "1.0"):
        table = predict.main(["--model", lungs, "--inputs", image, "--output", str(tmp_path / f"masks{threshold}"),
                              "--threshold", threshold])
        fractions[threshold] = float(rows(table)[0]["mask_fraction"])
    assert fractions["0.0"] == 1.0 and fractions["1.0"] == 0.0
    default = predict.main(["--model", lungs, "--inputs", image, "--output", str(tmp_path / "masks")])
    assert float(rows(default)[0]["mask_fraction"]) == fractions["0.5"]
    config = GroupMaskedViTConfig(**TINY, num_labels=2, id2label={0: "effusion", 1: "mass"},
                                  label2id={"effusion": 0, "mass": 1}, problem_type="multi_label_classification")
    multi = saved(GroupMaskedViTForImageClassification(config), tmp_path / "multi")
    predicted = {}
    for threshold in ("0.0", "1.0"):
        table = predict.main(["--model", multi, "--inputs", image, "--output", str(tmp_path / f"{threshold}.csv"),
                              "--threshold", threshold])
        predicted[threshold] = rows(table)[0]["predicted"]
    assert predicted == {"0.0": "effusion;mass", "1.0": ""}
    with pytest.raises(ValueError, match=r"--threshold 1.5: a probability, from 0 to 1"):
        predict.main(["--model", multi, "--inputs", image, "--output", str(tmp_path / "x.csv"), "--threshold", "1.5"])


def test_evaluation_and_prediction_give_an_image_the_same_probability(tmp_path):
    """Evaluation rounded a resized 8-bit image to 8 bits, as training stores it, and prediction did not: the same
    image's probabilities differed (~2e-5, enough to flip a near tie). The processor now gives an 8-bit image in 8-bit
    levels, to training, evaluation and prediction alike."""
    from accelerate import Accelerator

    from train import data, evaluate
    from train.config import EvalArgs

    torch.manual_seed(0)
    model_dir = pneumonia_classifier(tmp_path / "model")
    model, processor, task = evaluate.load_model(model_dir)
    test = data.split(data.load_splits("sample", None, None), "test")  # real 8-bit JPEGs, resized to 32 px
    results = evaluate.score(Accelerator(cpu=True), model, processor, test, None, task, True,
                             EvalArgs(batch_size=4, seed=0))
    files = [sample_files()[Path(path).name] for path in test["path"]]
    predicted = [probabilities for _, _, probabilities in predict.predict(model_dir, files, device="cpu")]
    np.testing.assert_allclose(results["probabilities"][np.argsort(results["index"])], predicted, rtol=0, atol=1e-6)


@pytest.mark.parametrize("flag, value, message", [("--on_error", "skipp", "--on_error"), ("--batch_size", "0", "--batch_size"),
                                                   ("--num_workers", "-1", "--num_workers")])
def test_an_invalid_argument_is_refused_before_an_earlier_runs_tables_are_touched(tmp_path, flag, value, message):
    model = pneumonia_classifier(tmp_path / "model")
    folder = scans_with_a_bad_file(tmp_path, b"not an image")
    command = ["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv")]
    predict.main([*command, "--on_error", "skip"])
    before = {name: (tmp_path / name).read_text() for name in ("p.csv", "p_skipped.csv")}

    with pytest.raises(ValueError, match=message):
        predict.main([*command, flag, value])
    assert {name: (tmp_path / name).read_text() for name in before} == before


def test_an_empty_image_file_is_reported_as_empty(tmp_path):
    """A 0-byte PNG (an interrupted copy) is listed as an empty file, as data set builds report it, not as an
    unrecognised format."""
    model = pneumonia_classifier(tmp_path / "model")
    folder = scans_with_a_bad_file(tmp_path, b"")
    predict.main(["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv"), "--on_error", "skip"])
    assert [(Path(r["path"]).name, r["reason"]) for r in rows(tmp_path / "p_skipped.csv")] == [
        ("b.png", "empty file (0 bytes)")]


def test_a_missing_model_folder_is_named_as_such(tmp_path, monkeypatch):
    """A mistyped --model folder ended in the Hub client's "Repo id must be in the form ..." message."""
    from train import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "outputs" / "run" / "model")
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(OSError, match=r"--model .*run/model: no such folder here"):
        predict.main(["--model", missing, "--inputs", str(tmp_path)])
    with pytest.raises(OSError, match=r"--model .*run/model: no such folder here"):
        evaluate.load_model(missing)


def test_a_run_folder_given_for_its_export_is_named_as_such(tmp_path, monkeypatch):
    """A run's output folder passed as --model (its export is in model/) ended in transformers' "Unrecognized model
    in ... Should have a `model_type` key in its config.json", about a config.json that is not there."""
    from train import evaluate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    run = tmp_path / "outputs" / "run"
    saved(GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, num_labels=2)), run / "model")
    Image.new("L", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match=rf"--model {run}: no config.json there.*pass {run / 'model'}"):
        predict.main(["--model", str(run), "--inputs", str(tmp_path / "a.png")])
    with pytest.raises(FileNotFoundError, match=rf"--model {tmp_path}: no config.json there \(expected"):
        evaluate.load_model(str(tmp_path))


def test_an_image_the_processor_refuses_is_named_and_can_be_skipped(tmp_path):
    """A full-range 16-bit PNG given to a model whose processor reads 12 bits: the processor's error stopped the run
    without naming the file, even with --on_error skip."""
    import io

    from hf_datasets.errors import DataError

    model = pneumonia_classifier(tmp_path / "model")
    GroupMaskedViTImageProcessor(size=32, bit_depth=12).save_pretrained(model)
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 30), 60000, dtype=np.uint16)).save(buffer, format="PNG")
    folder = scans_with_a_bad_file(tmp_path, buffer.getvalue())
    command = ["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv")]
    with pytest.raises(DataError, match=r"b\.png: .*0\.\.4095"):
        predict.main(command)
    predict.main([*command, "--on_error", "skip"])
    assert [Path(r["path"]).name for r in rows(tmp_path / "p.csv")] == ["a.jpeg"]
    assert [(Path(r["path"]).name, "0..4095" in r["reason"]) for r in rows(tmp_path / "p_skipped.csv")] == [
        ("b.png", True)]


def test_predicting_a_folder_opens_each_image_file_once(tmp_path, monkeypatch):
    """Each image was opened three times: to tell a DICOMDIR index, to look for a DICOM marker, then by Pillow. The
    marker is read from the file Pillow reads, and an unreadable file is still reported as such."""
    import builtins

    model = pneumonia_classifier(tmp_path / "model")
    folder = scans_with_a_bad_file(tmp_path, b"not an image")
    Image.open(jpegs(2)[1]).save(folder / "c.png")
    opened, real_open = [], builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    predict.main(["--model", model, "--inputs", str(folder), "--output", str(tmp_path / "p.csv"), "--on_error", "skip"])
    assert {name: opened.count(str(folder / name)) for name in ("a.jpeg", "b.png", "c.png")} == {
        "a.jpeg": 1, "b.png": 1, "c.png": 1}
    monkeypatch.undo()
    assert [Path(row["path"]).name for row in rows(tmp_path / "p.csv")] == ["a.jpeg", "c.png"]
    assert [(Path(row["path"]).name, row["reason"]) for row in rows(tmp_path / "p_skipped.csv")] == [
        ("b.png", "not a recognised image format")]


def test_a_resume_refuses_a_table_of_other_columns_and_finds_its_files_from_any_folder(tmp_path, monkeypatch):
    """A resume with another model (or its labels in another order) appended its probabilities under the table's
    column names; one run from another folder found none of the relative paths the table held, and predicted every
    file again beside them."""
    from modeling_cxrgm import GroupMaskedViTForPreTraining

    model = pneumonia_classifier(tmp_path / "model")
    labels = {0: "pneumonia", 1: "normal"}
    reordered = saved(GroupMaskedViTForImageClassification(GroupMaskedViTConfig(
        **TINY, num_labels=2, id2label=labels, label2id={v: k for k, v in labels.items()})), tmp_path / "reordered")
    (tmp_path / "work" / "scans").mkdir(parents=True)
    first, second = jpegs(2)
    shutil.copy(first, tmp_path / "work" / "scans" / "a.jpeg")
    table = tmp_path / "p.csv"
    monkeypatch.chdir(tmp_path / "work")
    predict.main(["--model", model, "--inputs", "scans/a.jpeg", "--output", str(table)])
    assert [r["path"] for r in rows(table)] == [str(tmp_path / "work" / "scans" / "a.jpeg")]
    shutil.copy(second, tmp_path / "work" / "scans" / "b.jpeg")
    before = table.read_text()
    with pytest.raises(ValueError, match=r"has the columns \['path', 'p_normal', 'p_pneumonia', 'predicted'\], but "
                                         r".* writes \['path', 'p_pneumonia', 'p_normal', 'predicted'\]"):
        predict.main(["--model", reordered, "--inputs", "scans", "--output", str(table), "--resume"])
    assert table.read_text() == before
    monkeypatch.chdir(tmp_path)
    predict.main(["--model", model, "--inputs", "work/scans", "--output", str(table), "--resume"])
    assert [Path(r["path"]).name for r in rows(table)] == ["a.jpeg", "b.jpeg"]

    config = GroupMaskedViTConfig(**TINY)
    pretraining = saved(GroupMaskedViTForPreTraining(config), tmp_path / "pretrained")
    with pytest.raises(ValueError, match="is no classifier or segmenter .GroupMaskedViTForPreTraining.: it makes no "
                                         "predictions; fine-tune it first"):
        predict.main(["--model", pretraining, "--inputs", "work/scans", "--output", str(tmp_path / "none.csv")])
    assert not (tmp_path / "none.csv").exists()


def test_a_folder_of_links_mirrors_as_the_folder_and_linked_folders_are_read(tmp_path):
    """Masks of a curated folder of symbolic links were mirrored under where the links lead (archive/2020/x/IM1),
    and a linked sub-folder was passed over without a word."""
    model = saved(GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)), tmp_path / "model")
    first, second, third = jpegs(3)
    for year, path in (("2020", first), ("2021", second), ("2022", third)):
        (tmp_path / "archive" / year / "x").mkdir(parents=True)
        shutil.copy(path, tmp_path / "archive" / year / "x" / "IM1.jpeg")
    links = tmp_path / "links"
    (links / "study1").mkdir(parents=True)
    (links / "study1" / "patientA.jpeg").symlink_to(tmp_path / "archive" / "2020" / "x" / "IM1.jpeg")
    (links / "study1" / "patientB.jpeg").symlink_to(tmp_path / "archive" / "2021" / "x" / "IM1.jpeg")
    (links / "study2").symlink_to(tmp_path / "archive" / "2022" / "x", target_is_directory=True)
    (links / "study2" / "again").symlink_to(links, target_is_directory=True)  # a loop: walked once
    (links / "study1" / "up").symlink_to(tmp_path, target_is_directory=True)  # above the inputs: never walked
    out = tmp_path / "masks"
    predict.main(["--model", model, "--inputs", str(links), "--output", str(out)])
    listed = {Path(r["path"]).relative_to(links).as_posix(): Path(r["mask"]) for r in rows(out / "masks.csv")}
    assert listed == {"study1/patientA.jpeg": out / "study1" / "patientA_mask.png",
                      "study1/patientB.jpeg": out / "study1" / "patientB_mask.png",
                      "study2/IM1.jpeg": out / "study2" / "IM1_mask.png"}
    assert all(mask.is_file() for mask in listed.values())
