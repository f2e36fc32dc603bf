"""prepare: resized shards loadable with load_from_disk, resume after a kill, bad-input report,
streaming mode and the command line."""

import io
import json
import shutil
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import pytest
from pydicom.data import get_testdata_file

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
import layouts  # noqa: E402
from factory import write_image  # noqa: E402

from hf_datasets import label_names, shards  # noqa: E402
from hf_datasets.errors import LayoutError  # noqa: E402
from hf_datasets.prepare import main, prepare  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def test_prepare_cxr_folder(tmp_path):
    data_dir = layouts.cxr_folder(tmp_path / "src")
    report = prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=3, progress=False)
    assert report["found"] == 8 and report["written"] == 8 and report["skipped"] == 0
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert label_names(ds) == ["normal", "pneumonia"]
    row = next(iter(ds.values()))[0]
    assert row["image"].mode == "L" and max(row["image"].size) == 16
    assert row["mask"].size == row["image"].size and set(np.unique(np.asarray(row["mask"]))) <= {0, 255}


def test_prepare_sixteen_bit_on_request(tmp_path):
    data_dir = layouts.padchest(tmp_path / "src")
    prepare("padchest", data_dir, tmp_path / "out", size=20, bits=16, progress=False)
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    image = next(iter(ds.values()))[0]["image"]
    assert image.mode in ("I;16", "I") and max(image.size) == 20
    assert np.asarray(image).max() > 4095  # 12 bits used are scaled to the full 16-bit range


def kill_after_two_shards(monkeypatch, data_dir, out, name="cxr_folder", **options):
    """A preparation of `data_dir` (data set `name`, 16 px, 2 rows per shard) killed as it starts its third shard."""
    real_write, calls = shards.write_shard, []

    def dying_write(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(args[1])
        return real_write(*args, **kwargs)

    monkeypatch.setattr("hf_datasets.prepare.write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        prepare(name, data_dir, out, size=16, shard_size=2, progress=False, **options)


def test_resume_after_kill_writes_only_missing_shards(tmp_path, monkeypatch):
    data_dir = layouts.cxr_folder(tmp_path / "src")
    real_write = shards.write_shard
    kill_after_two_shards(monkeypatch, data_dir, tmp_path / "out")
    finished = sorted(p.name for p in (tmp_path / "out").rglob("*.arrow"))
    assert len(finished) == 2 and not (tmp_path / "out" / "dataset_dict.json").exists()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.arrow")}
    rerun = []
    monkeypatch.setattr("hf_datasets.prepare.write_shard",
                        lambda *a, **k: rerun.append(a[1]) or real_write(*a, **k))
    report = prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, progress=False)
    assert report["written"] == 8 and len(rerun) == len(list((tmp_path / "out").rglob("*.arrow"))) - 2
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert sum(d.num_rows for d in datasets.load_from_disk(str(tmp_path / "out")).values()) == 8
    with pytest.raises(ValueError, match="new --output_dir"):
        prepare("cxr_folder", data_dir, tmp_path / "out", size=32, shard_size=2, progress=False)


def test_a_run_that_cannot_read_the_set_leaves_the_folder_free_for_the_corrected_one(tmp_path):
    data_dir = layouts.cxr_folder(tmp_path / "src")
    with pytest.raises(ValueError, match="no option .classes_typo."):
        prepare("cxr_folder", data_dir, tmp_path / "out", size=16, progress=False, classes_typo=["normal"])
    with pytest.raises(LayoutError, match="Data_Entry_2017"):
        prepare("nih", data_dir, tmp_path / "out", size=16, progress=False)  # the wrong builder for the layout
    report = prepare("cxr_folder", data_dir, tmp_path / "out", size=16, progress=False)
    assert report["written"] == 8


@pytest.mark.parametrize("streaming", [False, True])
def test_a_rerun_on_the_same_files_reached_by_another_path_keeps_the_shards(tmp_path, streaming, monkeypatch):
    """A streamed preparation identified its rows' files by their paths as given: resumed with the data folder named
    otherwise (relative, then absolute) or moved (mounted elsewhere), it refused its own shards."""
    layouts.cxr_folder(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    run = dict(size=16, shard_size=2, streaming=streaming, progress=False)
    first = prepare("cxr_folder", "src", tmp_path / "out", **run)
    assert prepare("cxr_folder", str(tmp_path / "src"), tmp_path / "out", **run) == first
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "src", tmp_path / "elsewhere" / "src")  # the folder's name stays (cxr_folder records it)
    assert prepare("cxr_folder", tmp_path / "elsewhere" / "src", tmp_path / "out", **run) == first


@pytest.mark.parametrize("streaming", [False, True])
def test_a_rerun_on_a_set_that_changed_since_is_refused(tmp_path, streaming):
    """Kept shards would hold the earlier files: added images were lost or written twice as shards shifted."""
    data_dir = layouts.cxr_folder(tmp_path / "src")
    prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, streaming=streaming, progress=False)
    table = data_dir / "labels.csv"
    original = table.read_text()
    write_image(data_dir / "images" / "IM-0100.png", seed=100)
    table.write_text(original + "images/IM-0100.png,,normal,kermany_IM-0100,kermany,1488x1209,256x208,L,PA,F,3\n")
    with pytest.raises(ValueError, match="new --output_dir"):
        prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, streaming=streaming, progress=False)
    table.write_text(original.replace("IM-0000.png,normal,", "IM-0000.png,pneumonia,"))
    with pytest.raises(ValueError, match="new --output_dir"):  # a label corrected in labels.csv
        prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, streaming=streaming, progress=False)
    table.write_text(original)
    assert prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, streaming=streaming,
                   progress=False)["written"] == 8


@pytest.mark.parametrize("streaming", [False, True])
def test_bad_input_is_prepared_or_reported(tmp_path, streaming):
    folder = tmp_path / "bad" / "cxr"
    write_image(folder / "good.png", seed=1)
    write_image(folder / "sixteen.png", seed=2, mode="I;16")
    write_image(folder / "rgba.png", seed=3, mode="RGBA")
    corrupt = write_image(folder / "corrupt.jpg", seed=4)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    (folder / "empty.png").write_bytes(b"")
    shutil.copy(get_testdata_file("rtplan.dcm", download=False), folder / "plan.dcm")
    report = prepare("imagefolder", tmp_path / "bad", tmp_path / "out", size=16, modalities=None,  # keeps the RT plan
                     split_fractions={"train": 1.0}, streaming=streaming, progress=False)
    assert report["found"] == 6 == report["written"] + report["skipped"]
    reasons = {Path(e["path"]).name: e for e in report["skipped_files"]}
    assert set(reasons) == {"corrupt.jpg", "empty.png", "plan.dcm"}
    assert reasons["empty.png"]["reason"].startswith("empty file")
    assert reasons["plan.dcm"]["error"] == "NonImageDicomError"
    assert "corrupt" in reasons["corrupt.jpg"]["reason"]
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["skipped"] == 3 and saved["found"] == 6
    rows = {Path(r["path"]).name: r for r in datasets.load_from_disk(str(tmp_path / "out"))["train"]}
    assert set(rows) == {"good.png", "sixteen.png", "rgba.png"}
    sixteen = np.asarray(rows["sixteen.png"]["image"])
    assert rows["sixteen.png"]["image"].mode == "L" and sixteen.max() > 200  # not clipped to 255 / 4095


def sample_jpegs(folder: Path, count: int, cut_short: bool = False) -> None:
    """`count` of the sample set's Kermany JPEGs copied into `folder`, whole or cut short (unreadable)."""
    from hf_datasets.builders.sample import sample_files

    folder.mkdir(parents=True)
    jpegs = [path for name, path in sorted(sample_files().items()) if name.endswith(".jpeg")][:count]
    for path in jpegs:
        (folder / path.name).write_bytes(path.read_bytes()[:300] if cut_short else path.read_bytes())


def test_a_split_whose_files_are_all_unreadable_is_refused_naming_the_report_and_a_rerun_resumes(tmp_path,
                                                                                                   monkeypatch):
    """It was prepared as an empty split ("written 0"), found only when training or evaluation read it."""
    from hf_datasets.errors import InvalidInputError

    for name in ("normal", "pneumonia"):
        sample_jpegs(tmp_path / "set" / "train" / name, 2)
        sample_jpegs(tmp_path / "set" / "test" / name, 1, cut_short=True)
    report = tmp_path / "out" / "report.json"
    message = (rf"No file of split 'test' \(2 skipped\) could be read: the split has no image \(the others were "
               rf"written\); each skipped file is listed with its reason under skipped_files in {report}")
    with pytest.raises(InvalidInputError, match=message):
        prepare("imagefolder", tmp_path / "set", tmp_path / "out", size=16, progress=False)
    assert len(json.loads(report.read_text())["skipped_files"]) == 2
    assert datasets.load_from_disk(str(tmp_path / "out" / "train")).num_rows == 4
    written = []
    monkeypatch.setattr("hf_datasets.prepare.write_shard", lambda *args, **kwargs: written.append(args[1]))
    with pytest.raises(InvalidInputError, match=message):  # the same folder: its shards are kept, not written again
        prepare("imagefolder", tmp_path / "set", tmp_path / "out", size=16, progress=False)
    assert written == []


def test_a_set_whose_files_are_all_unreadable_is_refused(tmp_path):
    from hf_datasets.errors import InvalidInputError

    sample_jpegs(tmp_path / "set" / "pneumonia", 2, cut_short=True)
    shutil.copy(get_testdata_file("rtplan.dcm", download=False), tmp_path / "set" / "pneumonia" / "plan.dcm")
    with pytest.raises(InvalidInputError, match=r"No file could be read \(3 skipped: {'ImageReadError': 2, "
                       r"'NonImageDicomError': 1}\): the prepared set has no image; each skipped file is listed"):
        prepare("imagefolder", tmp_path / "set", tmp_path / "out", size=16, split_fractions={"train": 1.0},
                progress=False, modalities=None)  # any modality: the plan is read, and found to hold no image


def test_a_resumed_preparation_counts_the_images_of_the_shards_it_kept(tmp_path, monkeypatch):
    """The run that resumes reads no image (the files left are unreadable); those of the shards it kept count."""
    sample_jpegs(tmp_path / "set" / "normal", 4)
    sample_jpegs(tmp_path / "set" / "pneumonia", 2, cut_short=True)
    fractions = {"train": 1.0}
    kill_after_two_shards(monkeypatch, tmp_path / "set", tmp_path / "out", name="imagefolder",
                          split_fractions=fractions)
    assert len(list((tmp_path / "out").rglob("*.arrow"))) == 2
    written = []
    monkeypatch.setattr("hf_datasets.prepare.write_shard",
                        lambda *args, **kwargs: written.append(args[1]) or shards.write_shard(*args, **kwargs))
    report = prepare("imagefolder", tmp_path / "set", tmp_path / "out", size=16, shard_size=2,
                     split_fractions=fractions, progress=False)
    assert written == [2] and (report["written"], report["skipped"]) == (4, 2)
    assert {Path(entry["path"]).parent.name for entry in report["skipped_files"]} == {"pneumonia"}


def test_an_empty_or_damaged_dcm_in_a_dicom_folder_is_reported(tmp_path):
    """A .dcm file without the 'DICM' marker (empty, cut short before it) counts as found and is listed with
    its reason, as in an image folder; files of other names without the marker are not DICOM."""
    from factory import write_dicom

    write_dicom(tmp_path / "scans" / "a" / "IM0001", patient_id="P1")
    (tmp_path / "scans" / "a" / "IM0002.dcm").write_bytes(b"")
    (tmp_path / "scans" / "a" / "IM0003.DCM").write_bytes(b"\0" * 100)
    (tmp_path / "scans" / "notes.txt").write_text("not dicom")
    report = prepare("dicomdir", tmp_path / "scans", tmp_path / "out", size=16, split_fractions={"train": 1.0},
                     progress=False)
    assert report["found"] == 3 and report["written"] == 1
    reasons = {Path(e["path"]).name: e["reason"] for e in report["skipped_files"]}
    assert reasons["IM0002.dcm"].startswith("empty file") and "not a DICOM file" in reasons["IM0003.DCM"]


def test_streaming_matches_default(tmp_path):
    data_dir = layouts.cxr_folder(tmp_path / "src")
    prepare("cxr_folder", data_dir, tmp_path / "a", size=16, shard_size=3, progress=False)
    report = prepare("cxr_folder", data_dir, tmp_path / "b", size=16, shard_size=3, streaming=True,
                     progress=False)
    assert report["written"] == 8
    first, second = (datasets.load_from_disk(str(tmp_path / n)) for n in "ab")
    for split in first:
        assert first[split]["path"] == second[split]["path"]
        a, b = first[split][0], second[split][0]
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        assert np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))


def test_prepare_iterable_at_16_bits_of_an_8_bit_set_writes_and_reads_16_bit_shards(tmp_path):
    """The shards were written under the stream's features (8-bit "L") and its description's bits (8): their 16-bit
    PNGs were read back through convert("L"), clipped almost to white. They read as `prepare` at 16 bits gives them."""
    import hf_datasets
    from hf_datasets.prepare import prepare, prepare_iterable
    from hf_datasets.schema import bit_depth

    built = hf_datasets.build_dataset("sample")
    source = datasets.IterableDatasetDict({name: part.to_iterable_dataset() for name, part in built.items()})
    prepare_iterable(source, tmp_path / "streamed", info=built["train"].info, size=24, bits=16, progress=False)
    prepare("sample", None, tmp_path / "prepared", size=24, bits=16, progress=False)
    streamed, prepared = (datasets.load_from_disk(str(tmp_path / name)) for name in ("streamed", "prepared"))
    assert bit_depth(streamed) == 16 and streamed["train"].features["image"].mode is None
    for name in ("train", "test"):
        assert streamed[name]["path"] == prepared[name]["path"]
        for ours, theirs in zip(streamed[name]["image"], prepared[name]["image"]):
            assert ours.mode == theirs.mode == "I;16" and np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_prepare_iterable_with_an_empty_split(tmp_path):
    """A streamed source (e.g. a Hub set) is sharded too; a split without rows loads and is refused by name; a rerun
    with other settings is refused (it kept the earlier shards). The data's folder and builder options are recorded
    as `prepare` records them (none were: cards named the builder, cxr_folder, or the prepared folder, not the
    data's folder, and took the label policy for the default); for a set not built here they cannot be told."""
    import hf_datasets
    from hf_datasets.prepare import prepare_iterable
    from model_cards.dataset_card import prepare_settings, recorded_sources
    from train.config import TrainArgs
    from train.data import split
    from train.run_card import data_name, label_policy

    built = hf_datasets.build_dataset("cxr_folder", layouts.cxr_folder(tmp_path / "src"),
                                      classes=["normal", "pneumonia"])
    source = datasets.IterableDatasetDict({name: part.to_iterable_dataset() for name, part in built.items()})
    source["test"] = datasets.IterableDataset.from_generator(lambda: iter(()), features=built["train"].features)
    report = prepare_iterable(source, tmp_path / "out", info=built["train"].info, size=16, shard_size=3,
                              progress=False)
    assert report["written"] == 8 and report["written_per_split"]["test"] == 0
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert {name: ds[name]["path"] for name in built} == {name: built[name]["path"] for name in built}
    assert ds["test"].num_rows == 0 and max(ds["train"][0]["image"].size) == 16
    with pytest.raises(ValueError, match="Split 'test' of the data set is empty"):
        split(ds, "test")
    with pytest.raises(ValueError, match="new --output_dir"):  # kept 16-pixel shards beside new 24-pixel ones
        prepare_iterable(source, tmp_path / "out", info=built["train"].info, size=24, shard_size=3, progress=False)
    settings = prepare_settings(tmp_path / "out")
    assert (settings["folder"], settings["options"]) == ("src", {"classes": ["normal", "pneumonia"]})
    assert recorded_sources(settings) == ["src"]
    assert data_name(TrainArgs(dataset=None, prepared_dir=str(tmp_path / "out"))) == "src"
    hub_info = datasets.DatasetInfo(dataset_name="lungs", features=built["train"].features)  # no hf_datasets info
    prepare_iterable(source, tmp_path / "hub", info=hub_info, size=16, shard_size=3, progress=False)
    settings = prepare_settings(tmp_path / "hub")
    assert (settings["dataset"], settings["folder"], settings["options"]) == ("lungs", None, None)
    assert label_policy(TrainArgs(dataset=None, prepared_dir=str(tmp_path / "hub"))) == "unknown"


def test_command_line(tmp_path, capsys):
    data_dir = layouts.kermany(tmp_path / "src")
    assert main(["--dataset", "kermany", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"),
                 "--size", "24", "--num_proc", "2", "--option", 'classes="subtype"']) == 0
    assert "found 9, written 9, skipped 0" in capsys.readouterr().out
    ds = datasets.load_from_disk(str(tmp_path / "out"))
    assert label_names(ds) == ["normal", "bacteria", "virus"]
    assert set(ds) == {"train", "validation", "test"}


def test_command_line_split_fractions_and_unknown_options(tmp_path, capsys):
    """--split_fractions reaches the seeded patient split; a split or subset setting given as a builder --option is
    refused naming the builder's options (it was a bare TypeError from inside the builder)."""
    data_dir = layouts.cxr_folder(tmp_path / "src")
    assert main(["--dataset", "cxr_folder", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"),
                 "--size", "16", "--split_fractions", '{"train": 0.5, "test": 0.5}']) == 0
    assert set(datasets.load_from_disk(str(tmp_path / "out"))) == {"train", "test"}
    with pytest.raises(ValueError, match=r"cxr_folder has no option 'train_fraction'; its options: \['classes', "):
        main(["--dataset", "cxr_folder", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "other"),
              "--option", "train_fraction=0.5"])


def test_an_on_error_option_is_refused_saying_that_prepare_skips_unreadable_files_itself(tmp_path):
    """`build_dataset(..., on_error="skip")` and training's `--dataset_options` take it; prepare's refusal listed the
    builder's options only, as though unreadable files would stop it."""
    data_dir = layouts.cxr_folder(tmp_path / "src")
    with pytest.raises(ValueError, match=r"cxr_folder has no option 'on_error'; .*on_error is not one either: "
                                         r"`hf_datasets.prepare` always goes on past an unreadable file, listing it "
                                         r"with its reason in report.json\)$"):
        main(["--dataset", "cxr_folder", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "out"),
              "--option", "on_error=skip"])


@pytest.mark.parametrize("flag, value", [("--size", "0"), ("--size", "-5"), ("--shard_size", "0")])
def test_a_size_or_shard_size_below_one_is_refused(tmp_path, flag, value):
    """--size 0 wrote 1-pixel images and --shard_size 0 an empty set, both reported as a success."""
    with pytest.raises(ValueError, match=f"size and shard_size must be positive, got .*{flag[2:]}={value}"):
        main(["--dataset", "sample", "--output_dir", str(tmp_path / "out"), flag, value])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["notjson", "[0.8, 0.2]"])
def test_split_fractions_that_are_not_a_json_object_are_refused_saying_so(tmp_path, capsys, text):
    """Not JSON was 'invalid loads value'; a JSON list reached the builder as a bare TypeError."""
    with pytest.raises(SystemExit):
        main(["--dataset", "sample", "--output_dir", str(tmp_path / "out"), "--split_fractions", text])
    assert "is not a JSON object of split fractions" in capsys.readouterr().err


def test_exif_rotated_jpeg_is_read_upright_everywhere(tmp_path):
    """A photographed film saved with an EXIF Orientation: prepare and predict turn it as build_dataset does."""
    from PIL import Image

    from hf_datasets import build_dataset
    from hf_datasets.images import open_image, read_grey

    stored = np.tile(np.linspace(0, 250, 32).astype(np.uint8), (40, 1))  # 40 rows, 32 columns
    photo = Image.fromarray(stored)
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 32 rows, 40 columns
    path = tmp_path / "films" / "normal" / "photo.jpg"
    path.parent.mkdir(parents=True)
    photo.save(path, exif=exif, quality=95)
    built = np.asarray(build_dataset("imagefolder", tmp_path / "films", split_fractions={"train": 1.0})
                       ["train"][0]["image"])
    assert built.shape == (32, 40) and np.array_equal(read_grey(path), built)
    assert open_image(path).size == (40, 32)
    prepare("imagefolder", tmp_path / "films", tmp_path / "out", size=20, split_fractions={"train": 1.0},
            progress=False)
    assert datasets.load_from_disk(str(tmp_path / "out"))["train"][0]["image"].size == (20, 16)


@pytest.mark.parametrize("name, bits", [("NORMAL2-IM-1427-0001.jpeg", 8), ("RG1_UNCR.dcm", 16)])
def test_shards_at_the_model_size_give_the_model_what_the_original_file_gives_it(name, bits):
    """A model trained on shards prepared at its size sees, through its image processor, the pixels that the
    processor makes of the original file at inference (same resampling, not a sharper or softer copy)."""
    from PIL import Image

    from hf_datasets.builders.sample import sample_files
    from hf_datasets.dicom import read_dicom
    from hf_datasets.images import open_image
    from modeling_cxrgm import GroupMaskedViTImageProcessor

    path = sample_files()[name]
    prepared = shards.resize_example({"image": str(path)}, size=64, bits=bits)["image"]["bytes"]
    processor = GroupMaskedViTImageProcessor(size=64, do_normalize=False)
    original = read_dicom(path)[0] if name.endswith(".dcm") else open_image(path)
    trained = processor(images=[Image.open(io.BytesIO(prepared))])["pixel_values"]
    inferred = processor(images=[original])["pixel_values"]
    assert (trained - inferred).abs().max() * 255 < 1.5  # within the rounding to 8 bits


@pytest.mark.parametrize("bits", [8, 16])
def test_a_shard_scales_a_16_bit_file_by_the_file_bit_depth_not_the_resized_one(tmp_path, bits):
    """A 12-bit radiograph in 16 bits with one 13-bit pixel (a marker) is 13-bit: the image processor and the built
    set scale it by 8191. Resizing blurs the marker below 4096, and the shard was scaled by the resized image's 4095:
    twice as bright as the file the model later predicts on."""
    from PIL import Image

    from hf_datasets.images import read_grey, resize_longer_side

    pixels = np.random.default_rng(0).integers(500, 3000, (256, 256)).astype(np.uint16)
    pixels[10, 10] = 4200
    Image.fromarray(pixels).save(tmp_path / "marker.png")
    prepared = shards.resize_example({"image": str(tmp_path / "marker.png")}, size=64, bits=bits)["image"]["bytes"]
    shard = np.asarray(Image.open(io.BytesIO(prepared)), dtype=np.float64) / (2**bits - 1)
    original = read_grey(tmp_path / "marker.png")
    assert resize_longer_side(original, 64).max() < 4096 < original.max()
    from_file = resize_longer_side(original.astype(np.float32) / 8191, 64)
    np.testing.assert_allclose(shard, from_file, atol=0.5 / 8191 + 0.5 / (2**bits - 1) + 1e-6)  # the two roundings


def test_a_dicom_windowed_below_white_keeps_its_brightness_in_sets_and_shards(tmp_path):
    """A header window above the image's values leaves its brightest pixel at ~0.3: the built set and the shards
    hold that (as `train.predict` sees the file), not an image stretched by the bits its darker copy happens to use."""
    from factory import write_dicom

    from hf_datasets import build_dataset
    from hf_datasets.dicom import read_dicom

    pixels = np.tile(np.linspace(0, 4000, 40).astype(np.uint16), (48, 1))
    path = write_dicom(tmp_path / "scans" / "normal" / "a.dcm", pixels, window=(5000, 6000))
    windowed, _ = read_dicom(path)
    assert 0.3 < windowed.max() < 0.4
    built = build_dataset("imagefolder", tmp_path / "scans", split_fractions={"train": 1.0})["train"][0]["image"]
    top = 255 if built.mode == "L" else 65535
    np.testing.assert_allclose(np.asarray(built) / top, windowed, atol=0.5 / top + 1e-6)
    prepare("imagefolder", tmp_path / "scans", tmp_path / "out", size=24, split_fractions={"train": 1.0},
            progress=False)
    shard = datasets.load_from_disk(str(tmp_path / "out"))["train"][0]["image"]
    shard = np.asarray(shard) / (255 if shard.mode == "L" else 65535)
    assert shard.shape == (24, 20) and abs(shard.max() - windowed.max()) < 0.03  # resampling softens the edge column


def test_a_dim_sixteen_bit_set_streamed_into_shards_keeps_its_brightness(tmp_path):
    """prepare_iterable reads the built set's 16-bit PNGs by the bit depth they state, not by the bits their brightest
    value uses (a DICOM windowed to ~0.33 of white came out at ~0.64)."""
    from factory import write_dicom

    from hf_datasets import build_dataset
    from hf_datasets.prepare import prepare_iterable

    pixels = np.tile(np.linspace(0, 4000, 40).astype(np.uint16), (48, 1))
    write_dicom(tmp_path / "scans" / "normal" / "a.dcm", pixels, window=(5000, 6000))
    built = build_dataset("imagefolder", tmp_path / "scans", split_fractions={"train": 1.0}, bits=16)
    source = datasets.IterableDatasetDict({name: part.to_iterable_dataset() for name, part in built.items()})
    prepare_iterable(source, tmp_path / "out", info=built["train"].info, size=24, bits=16, progress=False)
    shard = np.asarray(datasets.load_from_disk(str(tmp_path / "out"))["train"][0]["image"]) / 65535
    assert abs(shard.max() - np.asarray(built["train"][0]["image"]).max() / 65535) < 0.03


def test_a_transparent_png_gives_the_same_pixels_in_sets_shards_and_the_processor(tmp_path):
    """A PNG whose alpha hides part of a bright image: build_dataset (datasets' convert("L")), the image processor
    and pipelines drop the alpha, so prepared shards must too (composited over black they hid half the image)."""
    from PIL import Image

    from hf_datasets import build_dataset
    from modeling_cxrgm import GroupMaskedViTImageProcessor

    rgba = np.zeros((16, 20, 4), np.uint8)
    rgba[..., :3] = np.linspace(40, 220, 20).astype(np.uint8)[None, :, None]
    rgba[..., 3] = 255
    rgba[:, :10, 3] = 0
    path = tmp_path / "films" / "normal" / "scan.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(rgba, "RGBA").save(path)
    built = np.asarray(build_dataset("imagefolder", tmp_path / "films", split_fractions={"train": 1.0})
                       ["train"][0]["image"])
    prepare("imagefolder", tmp_path / "films", tmp_path / "out", size=20, split_fractions={"train": 1.0},
            progress=False)
    shard = np.asarray(datasets.load_from_disk(str(tmp_path / "out"))["train"][0]["image"])
    assert np.array_equal(shard, built)
    processor = GroupMaskedViTImageProcessor(size=20, do_normalize=False)
    seen = processor(Image.open(path)).pixel_values[0, 0, 2:18]  # the 16 x 20 image, padded to 20 x 20
    np.testing.assert_allclose(seen.numpy(), shard / 255.0, atol=1 / 255)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_a_sixteen_bit_colour_png_keeps_its_sixteen_bits_in_sets_shards_predict_and_the_processor(tmp_path, channels):
    """Pillow decodes 16-bit grey + alpha, RGB and RGBA PNGs at 8 bits (it has no mode that holds them): data sets,
    shards, train.predict and the image processor kept the high byte of each channel, so grey levels fewer than 257
    apart in 65535 became one. They are read as 16-bit grey, as a 16-bit grey PNG is: colour by luminance, alpha
    dropped."""
    from factory import write_png16
    from PIL import Image

    from hf_datasets.builders.common import encode_example
    from hf_datasets.images import LUMA, open_image, read_grey, stored_mode
    from modeling_cxrgm import GroupMaskedViTImageProcessor

    pixels = np.random.default_rng(channels).integers(40000, 65536, size=(16, 20, channels)).astype(np.uint16)
    if channels in (2, 4):
        pixels[:, :10, -1] = 0  # transparent: alpha is dropped, as for 8-bit images
    expected = pixels[..., 0] if channels == 2 else pixels[..., :3] @ np.array(LUMA)
    path = write_png16(tmp_path / "scan.png", pixels)
    assert stored_mode(path) == {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    read = {"read_grey": read_grey(path), "predict (open_image)": np.asarray(open_image(path))}
    built = encode_example({"image": str(path), "decode": False}, bits=16)["image"]["bytes"]
    read["build_dataset"] = np.asarray(Image.open(io.BytesIO(built)))
    for source in (str(path), {"bytes": path.read_bytes(), "path": None}):  # a file, and a streamed set's bytes
        prepared = shards.resize_example({"image": source}, size=20, bits=16)["image"]["bytes"]
        read[f"shards from {type(source).__name__}"] = np.asarray(Image.open(io.BytesIO(prepared)))
    for where, grey in read.items():  # 16-bit grey, or floats in [0, 1] by the 16 bits it states
        levels = grey * 65535.0 if grey.dtype.kind == "f" else grey
        assert grey.dtype in (np.uint16, np.float32) and np.abs(levels - expected).max() <= 1, where  # 8 bits: 256
    processor = GroupMaskedViTImageProcessor(size=20, do_normalize=False)
    seen = processor(Image.open(path)).pixel_values[0, 0, 2:18].double().numpy()  # the 16 x 20 image, padded
    np.testing.assert_allclose(seen * 65535, expected, atol=1)


def test_the_report_names_a_masks_file_where_the_mask_is_what_cannot_be_read(tmp_path):
    """A missing or cut mask was reported as the row's image: "img/a2.png: file not found" beside an image that is
    there."""
    from factory import write_image, write_mask

    from hf_datasets.prepare import prepare

    lines = ["image,label,mask,patient_id"]
    for i in range(3):
        write_image(tmp_path / "set" / "img" / f"a{i}.png", seed=i)
        write_mask(tmp_path / "set" / "mask" / f"a{i}.png", shape=(40, 32))
        lines.append(f"img/a{i}.png,normal,mask/a{i}.png,P{i}")
    (tmp_path / "set" / "mask" / "a2.png").unlink()
    (tmp_path / "set" / "labels.csv").write_text("\n".join(lines) + "\n")
    report = prepare("manifest", tmp_path / "set", tmp_path / "out", size=16, progress=False, manifest="labels.csv",
                     split_fractions={"train": 1.0})
    skipped = {entry["path"]: entry["reason"] for entry in report["skipped_files"]}
    assert list(skipped) == ["img/a2.png"] and skipped["img/a2.png"].startswith("mask/a2.png: ")


def test_a_mask_given_as_image_bytes_is_read_as_a_mask_file_is():
    """A streamed set's mask (image bytes) with JPEG noise and grey edges: every value above 0 was lung there, while
    the same mask as a file (and the image processor) takes only values above 127 as lung."""
    from PIL import Image

    from hf_datasets.builders.common import mask_foreground

    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 255
    mask[1, 2:6], mask[6, 2:6], mask[0, :] = 200, 40, 3  # grey edges and faint noise
    image = io.BytesIO()
    Image.fromarray(mask).save(image, format="PNG")
    example = shards.resize_example({"image": {"bytes": image.getvalue(), "path": None},
                                     "mask": {"bytes": image.getvalue(), "path": None}}, size=8, bits=8)
    prepared = np.asarray(Image.open(io.BytesIO(example["mask"]["bytes"])))
    np.testing.assert_array_equal(prepared, mask_foreground(mask).astype(np.uint8) * 255)
    assert prepared.sum() // 255 == 20


def _shard_records(tmp_path, n):
    paths = [str(write_image(tmp_path / "src" / f"scan{i}.png", seed=i)) for i in range(n)]
    return [{"image": p, "path": p, "labels": []} for p in paths]


def test_two_writers_of_one_shard_use_temporary_files_of_their_own(tmp_path):
    """Two preparations writing the same shard (or a killed run's orphaned worker and a new run) shared the name
    data-KKKKK.arrow.partial: the second renamed the first one's half-written file into place (here the first then
    failed, its file gone). Each writer now has its own temporary file and renames it whole."""
    from hf_datasets.schema import make_features

    records, features = _shard_records(tmp_path, 6), make_features(0)
    split_dir = tmp_path / "out" / "train"

    def first_writer_rows():
        for i, rec in enumerate(records):
            if i == 3:  # half way through the first writer, a second one writes the whole shard
                second = shards.write_shard(split_dir, 0, records[:2], features, size=16, bits=8)
                assert second["written"] == 2 and shards.is_finished(split_dir, 0)
            yield rec

    first = shards.write_shard(split_dir, 0, first_writer_rows(), features, size=16, bits=8)
    assert first["written"] == 6
    written = datasets.Dataset.from_file(str(shards.shard_paths(split_dir, 0)[0]))
    assert written["path"] == [r["path"] for r in records]  # the whole file of the writer that renamed last
    assert json.loads(shards.shard_paths(split_dir, 0)[1].read_text())["written"] == 6
    assert sorted(p.name for p in split_dir.iterdir()) == ["data-00000.arrow", "data-00000.report.json"]

    def killed_rows():
        yield records[0]
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):  # a writer stopped half way removes its own temporary file
        shards.write_shard(split_dir, 1, killed_rows(), features, size=16, bits=8)
    assert sorted(p.name for p in split_dir.iterdir()) == ["data-00000.arrow", "data-00000.report.json"]


def test_temporary_files_of_writers_that_are_gone_are_removed_when_a_split_is_finished(tmp_path):
    """Killed runs left their .partial files for good; those of writers still running (this process) or of another
    host (a shared folder) may still become shards and are kept."""
    import os
    import socket
    import subprocess

    data_dir = layouts.cxr_folder(tmp_path / "src")
    prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, progress=False)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host, split_dir = socket.gethostname(), tmp_path / "out" / "train"
    stale = ["data-00000.arrow.partial", "data-00001.report.json.partial",  # named by earlier versions
             f"data-00000.arrow.{host}-{gone}-0a1b2c3d.partial", f"data-00001.report.json.{host}-{gone}-00ff.partial"]
    kept = [f"data-00002.arrow.{host}-{os.getpid()}-0a1b2c3d.partial", "data-00000.arrow.other.host-1-0a1b.partial"]
    stale += [f"state.json.{host}-{gone}-0a1b2c3d.partial", f"dataset_info.json.{host}-{gone}-00ff.partial"]
    for name in stale + kept:
        (split_dir / name).write_bytes(b"half a shard")
    info = split_dir / f"info.{host}-{gone}-0a1b2c3d.partial"  # killed while datasets wrote its files there
    info.mkdir()
    (info / "dataset_info.json").write_text("{")
    folder_files = [f"report.json.{host}-{gone}-0a1b.partial", f"dataset_dict.json.{host}-{gone}-0a1b.partial"]
    for name in folder_files:
        (tmp_path / "out" / name).write_text("{")
    report = prepare("cxr_folder", data_dir, tmp_path / "out", size=16, shard_size=2, progress=False)
    assert report["written"] == 8
    assert sorted(p.name for p in split_dir.glob("*.partial")) == sorted(kept)
    assert not list((tmp_path / "out").glob("*.partial"))


def _streamed(built, change=None):
    """The built set as a stream whose rows hold their image bytes (as a streamed Hub set gives them); `change`
    (split, Dataset) -> Dataset alters it first."""
    streams = {}
    for name, part in built.items():
        part = part.cast_column("image", datasets.Image(decode=False))
        part = part.map(lambda row: {"image": {"bytes": Path(row["image"]["path"]).read_bytes(),
                                               "path": row["image"]["path"]}})
        part = change(name, part) if change else part
        streams[name] = part.cast_column("image", built[name].features["image"]).to_iterable_dataset()
    return datasets.IterableDatasetDict(streams)


def test_prepare_iterable_resumes_only_from_the_source_it_started_from_without_decoding_kept_shards(
        tmp_path, monkeypatch):
    """An interrupted prepare_iterable resumed from another stream (other order, rows, images or label names) kept
    the earlier run's shards beside the new stream's: two data sets mixed without a word. Each shard now records
    what identifies its source rows; a rerun reads the rows of kept shards again, without decoding an image, and
    refuses other ones naming the folder, split and shard. The same stream resumes, resizing only the rest."""
    import hf_datasets
    from PIL import Image

    from hf_datasets.prepare import prepare_iterable

    built = hf_datasets.build_dataset("cxr_folder", layouts.cxr_folder(tmp_path / "src"),
                                      split_fractions={"train": 1.0})
    info, out = built["train"].info, tmp_path / "out"
    run = dict(info=info, size=16, shard_size=3, progress=False)
    real_write = shards.write_shard

    def dying_write(*args, **kwargs):
        if args[1] == 2:
            raise KeyboardInterrupt("killed")
        return real_write(*args, **kwargs)

    monkeypatch.setattr("hf_datasets.prepare.write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        prepare_iterable(_streamed(built), out, **run)
    monkeypatch.setattr("hf_datasets.prepare.write_shard", real_write)
    kept = {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.arrow")}
    assert len(kept) == 2  # rows 0-5 of 8

    other_image = write_image(tmp_path / "other.png", seed=99).read_bytes()
    changes = {
        "order": lambda _, part: part.select(list(reversed(range(part.num_rows)))),
        "a row less": lambda _, part: part.select([0, 1, 2, 4, 5, 6, 7]),
        "an image's pixels": lambda _, part: part.map(
            lambda row, i: {"image": {"bytes": other_image, "path": row["image"]["path"]}} if i == 4 else {},
            with_indices=True),
        "a label": lambda _, part: part.map(lambda row, i: {"labels": [1.0, 0.0]} if i == 1 else {},
                                            with_indices=True),
    }
    for what, change in changes.items():
        with pytest.raises(ValueError, match=rf"^{out}: shard [01] of split 'train' .*use a new --output_dir"):
            prepare_iterable(_streamed(built, change), out, **run)
    renamed = hf_datasets.build_dataset("cxr_folder", tmp_path / "src", split_fractions={"train": 1.0},
                                        classes=["pneumonia", "normal"])["train"].info
    with pytest.raises(ValueError, match=rf"^{out}: prepared with other settings \(.*label_names"):
        prepare_iterable(_streamed(built), out, **dict(run, info=renamed))

    resized, opened = [], []
    real_resize, real_open = shards.resize_example, Image.open
    monkeypatch.setattr(shards, "resize_example", lambda source, **k: resized.append(source) or real_resize(source, **k))
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    report = prepare_iterable(_streamed(built), out, **run)
    assert report["written"] == 8 and len(resized) == 2  # rows 6 and 7 only
    assert len(opened) == 4  # their image and mask: no image of the kept shards was decoded
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert datasets.load_from_disk(str(out))["train"]["path"] == built["train"]["path"]
    with pytest.raises(ValueError, match=rf"^{out}: split 'train' has finished shards beyond the 2 the source fills"):
        prepare_iterable(_streamed(built, lambda _, part: part.select(range(6))), out, **run)


@pytest.mark.parametrize("name", ["dataset_dict.json", "state.json", "dataset_info.json", "report.json"])
def test_a_rerun_stopped_while_writing_the_sets_files_leaves_them_as_they_were(tmp_path, monkeypatch, name):
    """Every run rewrites the prepared set's own files (dataset_dict.json, each split's state.json and
    dataset_info.json, report.json) at its end; they were written in place, so a run stopped there (a full disk, a
    kill) left one empty and the finished set unloadable. Each is now renamed into place whole."""
    import builtins
    import errno

    data_dir, out = layouts.cxr_folder(tmp_path / "src"), tmp_path / "out"
    prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    before = {path: path.read_bytes() for path in out.rglob("*.json")}
    assert any(path.name == name for path in before)
    real_open = io.open

    def full_disk(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode and Path(file).name.startswith(name):  # the file is created (or truncated), then nothing fits
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return handle

    monkeypatch.setattr(builtins, "open", full_disk)
    monkeypatch.setattr(io, "open", full_disk)
    with pytest.raises(OSError, match="No space left"):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    monkeypatch.undo()
    assert {path: path.read_bytes() for path in out.rglob("*.json")} == before
    assert not list(out.rglob("*.partial"))
    assert len(datasets.load_from_disk(str(out))["train"]) > 0


def test_prepare_settings_are_renamed_into_place_whole_and_a_damaged_file_is_named(tmp_path, monkeypatch):
    """prepare_settings.json was written in place: a run killed while writing it left broken JSON, and every rerun then
    failed with a bare JSONDecodeError. It is now written to a temporary file and renamed into place; a damaged one
    (left by an earlier version) is named, and replaced only while the folder holds nothing of a shard."""
    import os

    data_dir, out = layouts.cxr_folder(tmp_path / "src"), tmp_path / "out"
    settings = out / "prepare_settings.json"
    replace = os.replace

    def killed_before_the_settings_are_renamed(src, dst, *args, **kwargs):
        if Path(dst).name == "prepare_settings.json":
            assert json.loads(Path(src).read_text())["dataset"] == "cxr_folder"  # the whole file, in another name
            raise KeyboardInterrupt("killed")
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", killed_before_the_settings_are_renamed)
    with pytest.raises(KeyboardInterrupt):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    monkeypatch.undo()
    assert list(out.iterdir()) == []  # no settings, no temporary file: the folder is as if never used
    assert prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)["written"] == 8
    recorded = settings.read_text()

    settings.write_text(recorded[:20])  # an earlier version killed while rewriting it on a rerun
    with pytest.raises(ValueError, match=r"prepare_settings\.json.*damaged.*new --output_dir"):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    settings.write_text(recorded)
    assert prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)["written"] == 8

    fresh = tmp_path / "fresh"  # killed while writing it on the first run, before any shard: nothing to check
    fresh.mkdir()
    (fresh / "prepare_settings.json").write_text(recorded[:20])
    with pytest.warns(UserWarning, match=r"prepare_settings\.json.*damaged"):
        assert prepare("cxr_folder", data_dir, fresh, size=16, shard_size=2, progress=False)["written"] == 8
    assert json.loads((fresh / "prepare_settings.json").read_text()) == json.loads(recorded)


@pytest.mark.parametrize("streaming", [False, True])
def test_a_resume_after_an_image_was_replaced_in_place_is_refused_without_reading_the_images(
        tmp_path, monkeypatch, streaming):
    """The check of a resume covered each file's path and labels only: an image replaced in place (same path, other
    pixels) between a killed run and its resume was silently written beside shards of the earlier pixels. Each image
    and mask file's size and modification time (os.stat: no file is read) are now recorded too, as build systems do."""
    import builtins
    import io as io_module
    import os

    data_dir, out = layouts.cxr_folder(tmp_path / "src"), tmp_path / "out"
    kill_after_two_shards(monkeypatch, data_dir, out, streaming=streaming)
    monkeypatch.undo()
    kept = {str(data_dir / path) for arrow in out.rglob("data-*.arrow")
            for path in datasets.Dataset.from_file(str(arrow))["path"]}
    assert len(kept) == 4
    replaced = sorted(data_dir.rglob("*.png"))[-1]
    original, stat = replaced.read_bytes(), replaced.stat()
    write_image(replaced, seed=99)  # other pixels under the same name
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    with pytest.raises(ValueError, match=r"changed in place.*new --output_dir"):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, streaming=streaming, progress=False)

    replaced.write_bytes(original)  # put back as it was: the same size and modification time resume
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    opened = []
    for module in (builtins, io_module):
        real_open = module.open
        monkeypatch.setattr(module, "open", lambda file, *a, _open=real_open, **k: opened.append(str(file)) or
                            _open(file, *a, **k))
    report = prepare("cxr_folder", data_dir, out, size=16, shard_size=2, streaming=streaming, progress=False)
    monkeypatch.undo()
    assert report["written"] == 8  # unchanged size and time: resumed
    images = {path for path in opened if path.startswith(str(data_dir / "images"))}
    assert images and not images & kept  # only the images of the shards still to write were read


def test_a_folder_prepared_before_file_states_were_recorded_still_resumes_and_records_them(tmp_path):
    """A folder of an earlier version recorded the files' paths and labels only: it resumes, checked on those, with
    a warning, and the sizes and modification times are recorded for the next resume."""
    import os

    data_dir, out = layouts.cxr_folder(tmp_path / "src"), tmp_path / "out"
    prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    settings = out / "prepare_settings.json"
    earlier = {key: value for key, value in json.loads(settings.read_text()).items() if key != "files"}
    settings.write_text(json.dumps(earlier))
    with pytest.warns(UserWarning, match="earlier version.*replaced in place"):
        assert prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)["written"] == 8
    assert json.loads(settings.read_text()).keys() == earlier.keys() | {"files"}
    replaced = sorted(data_dir.rglob("*.png"))[0]
    stat = replaced.stat()
    write_image(replaced, seed=99)
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    with pytest.raises(ValueError, match="changed in place"):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)
    earlier["size"] = 32  # and what an earlier version recorded is still checked
    settings.write_text(json.dumps(earlier))
    with pytest.raises(ValueError, match=r"other settings \(size differ\)"):
        prepare("cxr_folder", data_dir, out, size=16, shard_size=2, progress=False)


def test_the_data_folder_is_recorded_by_name_and_a_renamed_one_still_resumes(tmp_path, monkeypatch):
    """The settings named the builder (cxr_folder), not the folder it read, so a model trained on the shards named its
    data after the prepared folder ("kermany_64"), not the public set ("kermany_pediatric"), whose licence the card
    then lost. The folder's name (never its path; "." is named as the folder it is) is recorded, and not checked: a
    renamed copy whose rows name the same source still resumes, keeping the name recorded first, and a folder of an
    earlier version, which recorded none, records it on resume, without a warning."""
    import os

    data_dir, out = layouts.cxr_folder(tmp_path / "kermany_pediatric"), tmp_path / "kermany_64"
    options = dict(size=16, shard_size=2, split_fractions={"train": 1.0}, progress=False)
    monkeypatch.chdir(data_dir)
    prepare("cxr_folder", ".", out, **options)
    monkeypatch.chdir(tmp_path)
    settings = out / "prepare_settings.json"
    assert json.loads(settings.read_text())["folder"] == "kermany_pediatric"
    assert str(tmp_path) not in settings.read_text()
    for path in (out / "train").glob("data-00000.*"):
        path.unlink()  # as if the run had been killed before it
    os.rename(data_dir, tmp_path / "copy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare("cxr_folder", tmp_path / "copy", out, **options)["written"] == 8
        assert json.loads(settings.read_text())["folder"] == "kermany_pediatric"
        earlier = {key: value for key, value in json.loads(settings.read_text()).items() if key != "folder"}
        settings.write_text(json.dumps(earlier))
        assert prepare("cxr_folder", tmp_path / "copy", out, **options)["written"] == 8
    assert json.loads(settings.read_text()) == {**earlier, "folder": "copy"}


def test_a_mapped_stream_of_sixteen_bit_images_is_prepared_at_their_bit_depth(tmp_path):
    """A stream mapped before preparation (labels fixed, say) gives its images decoded, as PIL images: prepare_iterable
    failed on them (a TypeError, and another one for a stream mapped without features). They are read as they are,
    not encoded again through datasets' Image feature, whose PNG leaves out the bit depth a 16-bit image states: a
    full-range and a 12-bit PNG give the shards prepare writes from their files, a dim windowed DICOM keeps its
    brightness, masks are kept, and a rerun of the same mapped stream keeps the shards."""
    from PIL import Image

    from factory import write_dicom, write_mask
    from hf_datasets import build_dataset
    from hf_datasets.images import to_bits
    from hf_datasets.prepare import prepare_iterable

    rng = np.random.default_rng(0)
    full = rng.integers(0, 65536, size=(24, 20)).astype(np.uint16)
    full[0, :2] = 0, 65535  # the full 0-65535 range
    twelve = rng.integers(0, 4096, size=(24, 20)).astype(np.uint16)
    twelve[0, :2] = 0, 4095
    (tmp_path / "scans" / "normal").mkdir(parents=True)
    Image.fromarray(full).save(tmp_path / "scans" / "normal" / "full.png")
    Image.fromarray(twelve).save(tmp_path / "scans" / "normal" / "twelve.png")
    assert Image.open(tmp_path / "scans" / "normal" / "full.png").mode == "I;16"
    write_dicom(tmp_path / "scans" / "normal" / "dim.dcm", np.tile(np.linspace(0, 4000, 20).astype(np.uint16), (24, 1)),
                window=(5000, 6000))
    mask_path = write_mask(tmp_path / "mask.png", shape=(24, 20))
    built = build_dataset("imagefolder", tmp_path / "scans", split_fractions={"train": 1.0}, bits=16)
    info = built["train"].info

    def prepared(source, out):
        prepare_iterable(datasets.IterableDatasetDict({"train": source}), out, info=info, size=24, bits=16,
                         progress=False)
        return {row["path"]: row for row in datasets.load_from_disk(str(out))["train"]}

    plain = prepared(built["train"].to_iterable_dataset(), tmp_path / "plain")
    assert np.array_equal(np.asarray(plain["normal/full.png"]["image"]), full)
    assert np.array_equal(np.asarray(plain["normal/twelve.png"]["image"]), to_bits(twelve, 16))
    assert np.asarray(plain["normal/dim.dcm"]["image"]).max() < 0.4 * 65535  # windowed to a third of white

    def with_mask(row):
        with Image.open(mask_path) as mask:
            return {"image": row["image"], "mask": mask.copy()}

    mapped = {"with features": lambda: built["train"].to_iterable_dataset().map(with_mask,
                                                                                  features=built["train"].features),
              "without features": lambda: built["train"].to_iterable_dataset().map(lambda row: {"age": 40.0})}
    for what, stream in mapped.items():
        out = tmp_path / what.replace(" ", "_")
        rows = prepared(stream(), out)
        for path, row in plain.items():
            image = row["image"]
            assert rows[path]["image"].mode == image.mode and rows[path]["image"].info == image.info, (what, path)
            assert np.array_equal(np.asarray(rows[path]["image"]), np.asarray(image)), (what, path)
            if what == "with features":
                assert np.array_equal(np.asarray(rows[path]["mask"]), np.asarray(Image.open(mask_path)))
        kept = {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.arrow")}
        prepared(stream(), out)
        assert {p: p.stat().st_mtime_ns for p in (out / "train").glob("*.arrow")} == kept


def test_a_shard_is_flushed_to_disk_before_it_is_renamed_into_place_and_its_folder_after(tmp_path, monkeypatch):
    """A finished shard was renamed into place unflushed: after a power loss it could count as finished (its report
    there) while its .arrow file was empty or short. Its data are now flushed (fsync) before the rename, the folder
    after it, and only then is the report, flushed alike, renamed into place."""
    import os
    import stat

    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(descriptor):
        status = os.fstat(descriptor)
        events.append(("fsync", status.st_ino, stat.S_ISDIR(status.st_mode)))
        return real_fsync(descriptor)

    def replace(source, target):
        events.append(("replace", Path(target).name))
        return real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    from hf_datasets.schema import make_features

    split_dir = tmp_path / "train"
    shards.write_shard(split_dir, 0, _shard_records(tmp_path, 3), make_features(0), size=16, bits=8)
    data, report = shards.shard_paths(split_dir, 0)
    folder = ("fsync", split_dir.stat().st_ino, True)
    assert events == [("fsync", data.stat().st_ino, False), ("replace", data.name), folder,
                      ("fsync", report.stat().st_ino, False), ("replace", report.name), folder]
    assert datasets.Dataset.from_file(str(data)).num_rows == 3


@pytest.mark.parametrize("streaming", [False, True])
def test_a_finished_shard_whose_file_is_empty_short_or_of_other_rows_is_written_again(tmp_path, streaming):
    """A resume kept any shard whose .arrow and report files were there: one left empty or short by a power loss
    counted as finished, and the prepared folder then failed to load (or lacked rows). Its rows are now read from
    the Arrow metadata and checked against its report; a damaged shard is written again, with a warning naming it,
    and intact ones are kept untouched."""
    from hf_datasets.schema import make_features

    data_dir = layouts.cxr_folder(tmp_path / "src")
    out = tmp_path / "out"
    run = dict(size=16, shard_size=2, split_fractions={"train": 1.0}, streaming=streaming, progress=False)
    prepare("cxr_folder", data_dir, out, **run)
    loaded = datasets.load_from_disk(str(out))["train"]
    first = [(row["path"], np.asarray(row["image"]).tolist()) for row in loaded]
    del loaded  # its files are changed in place below (a rerun never does): no memory map of them is left open
    arrows = [shards.shard_paths(out / "train", k)[0] for k in range(4)]  # 2 rows each
    empty, short, other, intact = arrows
    empty.write_bytes(b"")
    short.write_bytes(short.read_bytes()[: short.stat().st_size // 2])
    shards.write_shard(tmp_path / "one", 0, _shard_records(tmp_path, 1), make_features(0), size=16, bits=8)
    shutil.copyfile(shards.shard_paths(tmp_path / "one", 0)[0], other)  # a whole Arrow file of 1 row, not 2
    unchanged = intact.stat().st_mtime_ns
    with pytest.warns(UserWarning) as caught:
        report = prepare("cxr_folder", data_dir, out, **run)
    damaged = {str(w.message).split(" is damaged")[0]: str(w.message) for w in caught
               if " is damaged" in str(w.message)}
    assert sorted(damaged) == sorted(str(path) for path in (empty, short, other))
    assert "holds 1 rows, its report data-00002.report.json counts 2" in damaged[str(other)]
    assert report["written"] == 8 and intact.stat().st_mtime_ns == unchanged
    again = datasets.load_from_disk(str(out))["train"]
    assert [(row["path"], np.asarray(row["image"]).tolist()) for row in again] == first
    kept = {path: path.stat().st_mtime_ns for path in arrows}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare("cxr_folder", data_dir, out, **run)
    assert not [w for w in caught if " is damaged" in str(w.message)]
    assert {path: path.stat().st_mtime_ns for path in arrows} == kept


def test_a_killed_runs_temporary_settings_file_is_removed_and_never_published(tmp_path):
    """The cleanup of killed runs' temporary files looked at data-* names in split folders only: a run killed while
    it renamed prepare_settings.json into place left its temporary file in the output folder for good. Those of
    writers that are gone go now; those of a writer still running or of another host, and files the package did not
    name, stay. The Hub upload of a prepared folder leaves every temporary file out."""
    import os
    import socket
    import subprocess

    from huggingface_hub.utils import filter_repo_objects

    from model_cards.publish import DATASET_SKIPPED

    data_dir = layouts.cxr_folder(tmp_path / "src")
    out = tmp_path / "out"
    run = dict(size=16, shard_size=4, split_fractions={"train": 1.0}, progress=False)
    prepare("cxr_folder", data_dir, out, **run)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host = socket.gethostname()
    stale = [f"prepare_settings.json.{host}-{gone}-0a1b2c3d.partial"]
    kept = [f"prepare_settings.json.{host}-{os.getpid()}-0a1b2c3d.partial",  # a writer still running
            "prepare_settings.json.other.host-1-0a1b.partial",  # another host's
            f"notes.txt.{host}-{gone}-0a1b2c3d.partial", "prepare_settings.json.partial"]  # not named by the package
    for name in stale + kept:
        (out / name).write_text("{")
    prepare("cxr_folder", data_dir, out, **run)
    assert sorted(p.name for p in out.glob("*.partial")) == sorted(kept)
    (out / "train" / f"data-00000.arrow.{host}-{os.getpid()}-00ff.partial").write_bytes(b"half a shard")
    files = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    uploaded = list(filter_repo_objects(files, ignore_patterns=list(DATASET_SKIPPED)))  # as upload_folder filters
    assert not [name for name in uploaded if ".partial" in name]
    assert {"prepare_settings.json", "dataset_dict.json", "train/data-00000.arrow"} <= set(uploaded)


@pytest.mark.parametrize("streaming", [False, True])
def test_resuming_from_a_renamed_copy_of_the_data_is_refused_not_mixed_into_two_sources(tmp_path, streaming):
    """imagefolder (like dicomdir and manifest) names each row's `source` after the data's folder. The resume check
    compared paths, labels and file states, not `source`: a killed run resumed from a renamed copy (same files,
    same times) wrote the rest under the new name, one output with two sources. It is refused now; a folder of an
    earlier version, which recorded no such digest, still resumes, with a warning, and records it."""
    import os

    root = tmp_path / "site_a"
    for i in range(6):
        write_image(root / ("normal", "pneumonia")[i % 2] / f"p{i:02d}.png", seed=i)
    out = tmp_path / "out"
    options = dict(size=16, shard_size=2, split_fractions={"train": 1.0}, streaming=streaming, progress=False)
    prepare("imagefolder", root, out, **options)
    for path in (out / "train").glob("data-00002.*"):
        path.unlink()  # as if the run had been killed before its last shard
    os.rename(root, tmp_path / "site_a_copy")
    with pytest.raises(ValueError, match="renamed copy of the data"):
        prepare("imagefolder", tmp_path / "site_a_copy", out, **options)
    assert not (out / "train" / "data-00002.arrow").exists()
    os.rename(tmp_path / "site_a_copy", root)
    settings = out / "prepare_settings.json"
    earlier = {key: value for key, value in json.loads(settings.read_text()).items() if key != "columns"}
    settings.write_text(json.dumps(earlier))
    with pytest.warns(UserWarning, match="earlier version.*source named after its folder"):
        assert prepare("imagefolder", root, out, **options)["written"] == 6
    assert set(datasets.load_from_disk(str(out))["train"]["source"]) == {"site_a"}
    assert "columns" in json.loads(settings.read_text())
