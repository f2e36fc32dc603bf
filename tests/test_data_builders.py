"""Each builder on a tiny copy of its original layout: schema, labels, splits, masks."""

import gzip
import math
import re
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
import layouts  # noqa: E402
from shared_layout import write_covid_folders  # noqa: E402

from hf_datasets import build_dataset, label_names  # noqa: E402
from hf_datasets.errors import ImageReadError, InvalidInputError, LayoutError  # noqa: E402
from hf_datasets.registry import build_recipe  # noqa: E402
from hf_datasets.schema import COLUMNS, with_label_names  # noqa: E402
from hf_datasets.splits import overlapping_patients  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def build(name, data_dir, **options):
    ds = build_dataset(name, data_dir, cache_dir=str(data_dir) + "_cache", **options)
    for split in ds.values():
        assert list(split.features) == list(COLUMNS)
        assert split.features["labels"].length == (len(label_names(ds)) or -1)
    assert not overlapping_patients(ds)
    return ds


def rows(ds):
    return [row for split in ds.values() for row in split]


def by_path(ds, fragment):
    return next(row for row in rows(ds) if fragment in row["path"])


def test_nih(tmp_path):
    """The labels are the 14 findings, and 'No Finding' is none of them: it used to be a 15th label, which made a
    subset of images with one finding or none (e.g. Pneumonia vs No Finding) look like exclusive classes, so
    --label_mode auto trained a softmax, and put 'No Finding' into the macro AUROC of the 14-finding benchmark."""
    from train.data import MULTI, resolve_label_mode

    ds = build("nih", layouts.nih(tmp_path / "nih"))
    assert set(ds) <= {"train", "validation", "test"} and ds["test"].num_rows == 2
    names = label_names(ds)
    assert len(names) == 14 and "Pleural_Thickening" in names and "No Finding" not in names
    assert sum(by_path(ds, "00000002_000.png")["labels"]) == 0 and sum(by_path(ds, "00000003_000.png")["labels"]) == 1
    at_most_one = [r for r in rows(ds) if sum(r["labels"]) <= 1]
    assert len(at_most_one) == 4 and resolve_label_mode(datasets.Dataset.from_list(
        [{"labels": r["labels"]} for r in at_most_one])) == MULTI
    row = by_path(ds, "00000006_000.png")
    assert row["labels"][names.index("Effusion")] == 1 and row["labels"][names.index("Pleural_Thickening")] == 1
    assert sum(row["labels"]) == 2
    assert row["patient_id"] == "nih_00000006" and row["sex"] == "F" and row["age"] == 61
    assert row["image"].mode == "L" and row["view"] == "PA"
    first = [r for r in rows(ds) if r["patient_id"] == "nih_00000001"]
    assert len(first) == 2 and len({r["split"] for r in first}) == 1


def test_a_normal_class_is_scored_on_nih_images_without_a_finding(tmp_path):
    """A normal / pneumonia classifier (Kermany's) evaluated on NIH: 'No Finding' is no NIH label, so its images
    matched no class and only pneumonia images were scored; they are 'normal' where every finding is 0."""
    from train.data import align_labels

    ds = datasets.concatenate_datasets(list(build("nih", layouts.nih(tmp_path / "nih")).values()))
    aligned, unmatched = align_labels(ds, ["normal", "pneumonia"], single_label=True)
    assert unmatched["missing"] == []
    names = label_names(ds)
    assert sum(1 for row in ds if sum(row["labels"]) == 0) == 2  # the fixture's 'No Finding' images
    for row, labels in zip(ds, aligned["labels"]):
        findings = [name for name, value in zip(names, row["labels"]) if value == 1]
        expected = [1.0, 0.0] if not findings else [0.0, 1.0] if findings == ["Pneumonia"] else None
        assert (labels == expected) if expected else all(v != v for v in labels), (findings, labels)
    plain = datasets.Dataset.from_dict({"labels": [[0.0, 0.0], [1.0, 0.0]]}, features=datasets.Features(
        {"labels": datasets.List(datasets.Value("float32"), length=2)}))
    plain = with_label_names(plain, ["Pneumonia", "Effusion"])  # a set that does not say so: no 'normal' from zeros
    assert align_labels(plain, ["normal", "pneumonia"], single_label=False)[1]["missing"] == ["normal"]


@pytest.mark.parametrize("release", ["CheXpert-v1.0-small", "CheXpert-v1.0"])
def test_chexpert_policies(tmp_path, release):
    data_dir = layouts.chexpert(tmp_path, release)
    ds = build("chexpert", data_dir)
    names = label_names(ds)
    assert set(ds) == {"train", "validation"} and ds["validation"].num_rows == 2
    row = by_path(ds, "patient00002/study2")
    assert math.isnan(row["labels"][names.index("Cardiomegaly")])  # uncertain -> ignore
    assert row["labels"][names.index("No Finding")] == 0  # blank -> zeros
    ones = build("chexpert", data_dir, uncertain="ones", blank="ignore")
    row = by_path(ones, "patient00002/study2")
    assert row["labels"][names.index("Cardiomegaly")] == 1 and math.isnan(row["labels"][names.index("No Finding")])
    mixed = build("chexpert", data_dir, uncertain="mixed", tasks="competition")
    row = by_path(mixed, "patient00002/study2")
    assert label_names(mixed) == ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    assert row["labels"] == [1.0, 0.0, 0.0, 1.0, 0.0]
    lateral = by_path(ds, "view2_lateral")
    assert lateral["view"] == "LATERAL" and lateral["patient_id"] == "patient00002"
    soft = build("chexpert", data_dir, uncertain=0.7)
    assert by_path(soft, "patient00002/study2")["labels"][names.index("Cardiomegaly")] == pytest.approx(0.7)


@pytest.mark.parametrize("release", ["CheXpert-v1.0-small", "CheXpert-v1.0"])
def test_chexpert_from_the_folder_the_release_unpacks_into(tmp_path, release):
    """data_dir may be the folder holding CheXpert-v1.0[-small]/ (it failed: no train.csv / valid.csv found)."""
    release_dir = layouts.chexpert(tmp_path / "download", release)
    ds = build("chexpert", tmp_path / "download")
    expected = build("chexpert", release_dir)
    assert {k: v["path"] for k, v in ds.items()} == {k: v["path"] for k, v in expected.items()}
    assert ds["train"][0]["image"].size == expected["train"][0]["image"].size


def test_chexpert_unknown_tasks_are_refused(tmp_path):
    """Any tasks value but "all" gave the 5 competition labels, so tasks="All" silently dropped 9 of the 14."""
    data_dir = layouts.chexpert(tmp_path)
    with pytest.raises(ValueError, match=r"tasks must be one of \['all', 'competition'\], got 'All'"):
        build("chexpert", data_dir, tasks="All")


def test_mimic(tmp_path):
    ds = build("mimic_cxr_jpg", layouts.mimic(tmp_path))
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 2, "validation": 1, "test": 1}
    names = label_names(ds)
    row = ds["train"][0]
    assert row["labels"][names.index("Atelectasis")] == 1 and math.isnan(row["labels"][names.index("Consolidation")])
    assert row["patient_id"] == "mimic_10000032"
    assert build("mimic_cxr_jpg", tmp_path, views=["PA"])["train"].num_rows == 1


def test_mimic_views_given_as_one_value(tmp_path):
    """`--option views=PA` passes a string; images without a ViewPosition (blank in the metadata) made it fail."""
    layouts.mimic(tmp_path)
    metadata = tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz"
    with gzip.open(metadata, "rt") as handle:
        text = handle.read()
    with gzip.open(metadata, "wt") as handle:
        handle.write(text.replace(",LATERAL,", ",,"))
    ds = build("mimic_cxr_jpg", tmp_path, views="PA")
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 1, "validation": 1}
    assert {row["view"] for row in rows(ds)} == {"PA"}


def _peak_traced_bytes(function) -> int:
    """The most memory Python had allocated at once while `function` ran."""
    import tracemalloc
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _add_wide_rows(table: Path, count: int, width: int, row) -> int:
    """Append `count` rows (`row(i)`, a list of cells) of a table, each with `width` extra characters in its last cell;
    returns the characters added."""
    opener = gzip.open if table.suffix == ".gz" else open
    with opener(table, "rt") as handle:
        text = handle.read()
    extra = "".join(",".join(row(i)) + "x" * width + "\n" for i in range(count))
    with opener(table, "wt") as handle:
        handle.write(text + extra)
    return len(extra)


def test_table_rows_are_read_one_at_a_time(tmp_path):
    """MIMIC's builder kept every row of its metadata file (377k rows of a dozen columns) to look up one column, and
    NIH's every row of Data_Entry, while the records were built: each table is now read a row at a time."""
    from hf_datasets.registry import build_recipe
    layouts.mimic(tmp_path / "mimic")
    added = _add_wide_rows(tmp_path / "mimic" / "mimic-cxr-2.0.0-metadata.csv.gz", 400, 10_000,
                           lambda i: [f"unlisted{i}", "1", "2", "", "PA", "1", "1", "1", "1", "", "", ""])
    assert _peak_traced_bytes(lambda: build_recipe("mimic_cxr_jpg", tmp_path / "mimic")) < added / 2
    layouts.nih(tmp_path / "nih")
    added = _add_wide_rows(tmp_path / "nih" / "Data_Entry_2017_v2020.csv", 400, 10_000,
                           lambda i: [f"unlisted{i}.png", "No Finding", "0", "9", "50", "M", "PA", "1", "1", "1", ""])
    assert _peak_traced_bytes(lambda: build_recipe("nih", tmp_path / "nih")) < added / 2


@pytest.mark.parametrize("name,gone,listed_in", [
    ("nih", "images_001/images/00000004_000.png", "Data_Entry_2017_v2020.csv"),
    ("mimic_cxr_jpg", "files/p10/p10000898/s50771383/14b94c9b-a07dcf16-5f2bb3c8-f41d8aea-4d1dbbb1.jpg",
     "mimic-cxr-2.0.0-split.csv"),
    ("padchest", "1/216840111366964012819207061112010315104455352_04-024-184.png",
     "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"),
    ("vindr_cxr", "test/002a34c58c5b758217ed1f584ccbcfe9.dicom", "image_labels_train.csv / image_labels_test.csv"),
    ("rsna_pneumonia", "stage_2_train_images/00436515-870c-4b36-a041-de91049b9ab4.dcm", "stage_2_train_labels.csv"),
    ("covidx", "test/MIDRC-RICORD-1C-419639-000025-39079-0.png", "the split files")])
def test_images_listed_but_not_found_are_named_in_a_warning(tmp_path, name, gone, listed_in):
    """An image listed in the label files but missing from the folder (an images_XXX.tar.gz not unpacked, a partial
    download) was left out without a word, shrinking even an official test set."""
    layout = {"nih": layouts.nih, "mimic_cxr_jpg": layouts.mimic, "padchest": layouts.padchest,
              "vindr_cxr": layouts.vindr, "rsna_pneumonia": layouts.rsna, "covidx": layouts.covidx}[name]
    data_dir = layout(tmp_path / "set")
    whole = sum(split.num_rows for split in build(name, data_dir).values())
    (data_dir / gone).unlink()
    with pytest.warns(UserWarning, match=rf"{name}: 1 images listed in {re.escape(listed_in)} were not found .*"
                                         rf"{re.escape(Path(gone).name)}"):
        ds = build(name, data_dir)
    assert sum(split.num_rows for split in ds.values()) == whole - 1


def table_lines(tmp_path, name: str, table: str):
    """The public set `name` laid out under tmp_path/set, its label table `table`: (data_dir, path, opener, lines)."""
    layout = {"nih": layouts.nih, "chexpert": layouts.chexpert, "mimic_cxr_jpg": layouts.mimic,
              "padchest": layouts.padchest, "vindr_cxr": layouts.vindr, "rsna_pneumonia": layouts.rsna}[name]
    data_dir = layout(tmp_path / "set")
    path = tmp_path / "set" / table
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return data_dir, path, opener, handle.read().splitlines()


@pytest.mark.parametrize("name,table", [
    ("nih", "Data_Entry_2017_v2020.csv"), ("chexpert", "CheXpert-v1.0-small/train.csv"),
    ("mimic_cxr_jpg", "mimic-cxr-2.0.0-metadata.csv.gz"), ("mimic_cxr_jpg", "mimic-cxr-2.0.0-split.csv.gz"),
    ("padchest", "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"),
    ("vindr_cxr", "annotations/image_labels_test.csv"), ("rsna_pneumonia", "stage_2_train_labels.csv")])
def test_a_label_table_whose_last_line_is_cut_short_is_refused_naming_its_line(tmp_path, name, table):
    """A truncated download ends inside its last line: that row was read with None in its last columns, without a
    word (a record without its view, age or labels), or stopped the build on a TypeError (rsna_pneumonia's Target)."""
    import csv
    data_dir, path, opener, lines = table_lines(tmp_path, name, table)
    lines[-1] = lines[-1][:lines[-1].rindex(",")]  # without its last value
    header, values = (len(next(csv.reader([line]))) for line in (lines[0], lines[-1]))
    assert 1 < values < header
    with opener(path, "wt") as handle:
        handle.write("\n".join(lines))
    with pytest.raises(LayoutError, match=rf"{re.escape(table)}: line {len(lines)} has {values} values but the header "
                                          rf"names {header} columns: the line is cut short"):
        build_dataset(name, data_dir)


def test_a_compressed_table_cut_short_is_refused_naming_it(tmp_path):
    """A truncated download of MIMIC's .csv.gz tables stopped the build on an EOFError that named no file."""
    data_dir = layouts.mimic(tmp_path / "mimic")
    table = data_dir / "mimic-cxr-2.0.0-metadata.csv.gz"
    table.write_bytes(table.read_bytes()[:-40])
    with pytest.raises(LayoutError, match=rf"{re.escape(str(table))}: the compressed file is cut short or damaged "
                                          r"\(Compressed file ended before the end-of-stream marker was reached\): "
                                          r"fetch it again"):
        build_dataset("mimic_cxr_jpg", data_dir)


@pytest.mark.parametrize("name,table", [
    ("nih", "Data_Entry_2017_v2020.csv"), ("chexpert", "CheXpert-v1.0-small/train.csv"),
    ("mimic_cxr_jpg", "mimic-cxr-2.0.0-metadata.csv.gz"),
    ("padchest", "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"),
    ("vindr_cxr", "annotations/image_labels_test.csv"), ("rsna_pneumonia", "stage_2_train_labels.csv")])
def test_a_label_table_not_saved_as_utf8_is_refused_naming_its_line(tmp_path, name, table):
    """A table a spreadsheet saved as Windows-1252 (a 'µ' in a note) stopped the build on a UnicodeDecodeError that
    named no file; its encoding is not guessed."""
    data_dir, path, opener, lines = table_lines(tmp_path, name, table)
    lines[1] += "µ"
    with opener(path, "wb") as handle:
        handle.write("\n".join(lines).encode("cp1252"))
    offset = len(lines[0]) + 1 + len(lines[1]) - 1
    with pytest.raises(LayoutError, match=rf"{re.escape(table)}: line 2 holds a byte that is not UTF-8 \(0xb5 at byte "
                                          rf"offset {offset}\): .*save it as UTF-8"):
        build_dataset(name, data_dir)


def test_padchest_sixteen_bit(tmp_path):
    ds = build("padchest", layouts.padchest(tmp_path))
    names = label_names(ds)
    assert names == ["cardiomegaly", "normal", "pleural effusion"]
    row = by_path(ds, "00-097-011")
    assert row["labels"] == [1.0, 0.0, 1.0] and row["sex"] == "F" and row["age"] == 84
    assert row["image"].mode in ("I;16", "I")
    assert all(math.isnan(v) for v in by_path(ds, "04-024-184")["labels"])
    p2 = [r["split"] for r in rows(ds) if r["patient_id"] == "padchest_p2"]
    assert len(set(p2)) == 1


def test_padchest_options_given_as_one_value(tmp_path):
    """`--option labels=normal` passes a string, which was read letter by letter as six label names."""
    data_dir = layouts.padchest(tmp_path)
    ds = build("padchest", data_dir, labels="normal", projections="PA")
    assert label_names(ds) == ["normal"]
    assert sorted(row["labels"][0] for row in rows(ds) if not math.isnan(row["labels"][0])) == [0.0, 1.0]
    assert {row["view"] for row in rows(ds)} == {"PA"}


@pytest.mark.parametrize("readers,expected", [("any", 1.0), ("majority", 0.0), ("mean", 1 / 3)])
def test_vindr_readers(tmp_path, readers, expected):
    ds = build("vindr_cxr", layouts.vindr(tmp_path), readers=readers)
    names = label_names(ds)
    assert len(names) == 28 and set(ds) == {"train", "test"}
    row = by_path(ds, "000434271f63a053c4128a0ba6352c7f")
    assert row["labels"][names.index("Cardiomegaly")] == pytest.approx(expected)
    assert row["image"].mode in ("I;16", "I") and ds["test"][0]["labels"][names.index("No finding")] == 1


def test_vindr_names_the_training_images_it_does_not_find(tmp_path):
    """Images the label files list but the folder lacks are left out with a warning naming them, the training
    file's too (the check of the label columns used to reset that list, so only the test file's were named)."""
    data_dir = layouts.vindr(tmp_path)
    train_images = sorted((data_dir / "train").glob("*.dicom"))
    train_images[0].unlink()
    with pytest.warns(UserWarning, match=f"vindr_cxr: 1 images listed .* left out: train/{train_images[0].name}"):
        ds = build("vindr_cxr", data_dir)
    assert ds["train"].num_rows == len(train_images) - 1


def test_vindr_test_file_names_other_diseases_as_the_training_file(tmp_path):
    """image_labels_test.csv calls the training file's "Other diseases" column "Other disease"."""
    data_dir = layouts.vindr(tmp_path)
    test_csv = data_dir / "annotations" / "image_labels_test.csv"
    header, row = test_csv.read_text().splitlines()
    values = row.split(",")
    values[header.split(",").index("Other disease")] = "1"
    test_csv.write_text("\n".join([header, ",".join(values)]) + "\n")
    ds = build("vindr_cxr", data_dir)
    names = label_names(ds)
    assert "Other diseases" in names and "Other disease" not in names
    assert ds["test"][0]["labels"][names.index("Other diseases")] == 1


def test_rsna(tmp_path):
    ds = build("rsna_pneumonia", layouts.rsna(tmp_path))
    assert label_names(ds) == ["pneumonia"]
    assert sum(r["labels"][0] for r in rows(ds)) == 1 and len(rows(ds)) == 5
    assert rows(ds)[0]["image"].mode == "L"
    assert {r["labels"][0]: r["view"] for r in rows(ds)} == {1.0: "AP", 0.0: "PA"}  # the headers' ViewPosition


def test_covidx(tmp_path):
    ds = build("covidx", layouts.covidx(tmp_path))
    assert label_names(ds) == ["negative", "positive"]
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 4, "validation": 1, "test": 2}
    assert by_path(ds, "ANON157")["patient_id"] == "covidx_actualmed_5"


def test_covidx_header_line_is_not_a_class(tmp_path):
    data_dir = layouts.covidx(tmp_path)
    for split in ("train", "val", "test"):
        list_file = data_dir / f"{split}.txt"
        list_file.write_text("patient_id filename class data_source\n" + list_file.read_text())
    ds = build("covidx", data_dir)
    assert label_names(ds) == ["negative", "positive"]
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 4, "validation": 1, "test": 2}


def test_covidx_folder_with_several_releases_asks_for_one(tmp_path):
    """Split files of two releases (train.txt and train_COVIDx9A.txt) listed the same images twice, in both
    releases' splits; the builder now asks which release to read, and reads only that one."""
    data_dir = layouts.covidx(tmp_path)
    (data_dir / "train_COVIDx9A.txt").write_text((data_dir / "train.txt").read_text())
    (data_dir / "test_COVIDx9A.txt").write_text((data_dir / "test.txt").read_text())
    with pytest.raises(LayoutError, match="several releases .*'_COVIDx9A'"):
        build("covidx", data_dir)
    ds = build("covidx", data_dir, version="_COVIDx9A")
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 4, "test": 2}  # that release has no val file
    assert {k: v.num_rows for k, v in build("covidx", data_dir, version="").items()} == \
        {"train": 4, "validation": 1, "test": 2}
    with pytest.raises(LayoutError, match="versions here"):
        build("covidx", data_dir, version="_COVIDx8B")


@pytest.mark.parametrize("classes,names", [("binary", ["normal", "pneumonia"]),
                                           ("subtype", ["normal", "bacteria", "virus"])])
def test_kermany(tmp_path, classes, names):
    ds = build("kermany", layouts.kermany(tmp_path), classes=classes)
    assert label_names(ds) == names and set(ds) == {"train", "validation", "test"}
    row = by_path(ds, "person10_virus_35")
    assert row["labels"] == [float(n in ("pneumonia", "virus")) for n in names]
    assert row["image"].mode == "L"  # RGB JPEG decodes grey
    assert by_path(ds, "NORMAL2-IM-0381")["patient_id"] == "kermany_NORMAL2-IM-0381"


def test_kermany_official_test_split_keeps_its_images_and_a_person_stays_in_one_split(tmp_path):
    """IM-0131 (training) and NORMAL2-IM-0131 (test) are two series' numbers, two children: taken for one patient,
    the training image was moved into the official test split. A personN's images are one patient's."""
    data_dir = layouts.kermany(tmp_path)
    (data_dir / "train" / "NORMAL" / "IM-0131-0001.jpeg").write_bytes(
        (data_dir / "train" / "NORMAL" / "IM-0115-0001.jpeg").read_bytes())
    (data_dir / "test" / "NORMAL" / "NORMAL2-IM-0131-0001.jpeg").write_bytes(
        (data_dir / "test" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes())
    ds = build("kermany", data_dir)
    assert sorted(Path(path).name for path in ds["test"]["path"]) == [
        "IM-0001-0001.jpeg", "NORMAL2-IM-0131-0001.jpeg", "person100_bacteria_475.jpeg"]
    assert by_path(ds, "IM-0131")["patient_id"] == "kermany_IM-0131"
    assert {row["patient_id"] for row in rows(ds) if "person1_" in row["path"]} == {"kermany_person1"}


def test_kermany_second_copy_in_the_kaggle_archive_is_not_read(tmp_path):
    """The Kaggle archive unpacks to chest_xray/{train,val,test} plus a copy of them in chest_xray/chest_xray/."""
    data_dir = layouts.kermany(tmp_path)
    shutil.copytree(data_dir, data_dir / "chest_xray")
    for folder in (tmp_path, data_dir):
        ds = build("kermany", folder)
        assert sum(split.num_rows for split in ds.values()) == 9
        assert all(row["path"].count("/") == 2 for row in rows(ds))


def test_montgomery_masks_united(tmp_path):
    ds = build("montgomery", layouts.montgomery(tmp_path))
    row = by_path(ds, "MCUCXR_0104_1")
    assert row["labels"] == [1.0] and row["sex"] == "F" and row["age"] == 42
    mask = np.asarray(row["mask"])
    assert row["mask"].mode == "L" and set(np.unique(mask)) == {0, 255}
    assert mask[20, 6].item() == 255 and mask[20, 25].item() == 255  # left and right lungs


def test_an_image_with_one_lungs_mask_is_kept_without_a_mask(tmp_path):
    """A missing rightMask file (partial download) gave a one-lung mask, teaching the right lung as background."""
    data_dir = layouts.montgomery(tmp_path / "m")
    (data_dir / "MontgomerySet" / "ManualMask" / "rightMask" / "MCUCXR_0104_1.png").unlink()
    with pytest.warns(UserWarning, match="MCUCXR_0104_1.png: only one lung's mask"):
        ds = build("montgomery", data_dir)
    assert by_path(ds, "MCUCXR_0104_1")["mask"] is None and by_path(ds, "MCUCXR_0001_0")["mask"] is not None
    jsrt_dir = layouts.jsrt(tmp_path / "j")
    next(jsrt_dir.rglob("right lung/JPCNN002.gif")).unlink()
    with pytest.warns(UserWarning, match="JPCNN002.IMG: only one lung's mask"):
        ds = build("jsrt", jsrt_dir)
    assert by_path(ds, "JPCNN002")["mask"] is None and by_path(ds, "JPCNN001")["mask"] is not None


def test_left_and_right_masks_of_different_sizes_are_a_data_error_naming_them(tmp_path):
    """Uniting a left and a right lung mask of different sizes failed with numpy's broadcasting error, which
    on_error="skip" did not catch."""
    from PIL import Image

    data_dir = layouts.montgomery(tmp_path)
    right = data_dir / "MontgomerySet" / "ManualMask" / "rightMask" / "MCUCXR_0104_1.png"
    Image.open(right).resize((7, 5)).save(right)
    with pytest.raises(ImageReadError, match=r"rightMask/MCUCXR_0104_1.png: mask of 7x5 pixels, but .*leftMask/"
                                             r"MCUCXR_0104_1.png \(the mask it joins\) has"):
        build("montgomery", data_dir)
    with pytest.warns(UserWarning, match="skipped .*MCUCXR_0104_1.png: mask of 7x5"):
        ds = build("montgomery", data_dir, on_error="skip")
    assert sorted(Path(p).stem for p in ds["train"]["path"]) == ["MCUCXR_0001_0", "MCUCXR_0108_1"]


def test_montgomery_images_of_one_patient_share_a_patient_id(tmp_path):
    """A reading 'NO REPORT (same pt as MCUCXR_0104_1)' marks a second image of that patient."""
    ds = build("montgomery", layouts.montgomery(tmp_path), split_fractions={"train": 0.5, "test": 0.5})
    first, second = by_path(ds, "MCUCXR_0104_1"), by_path(ds, "MCUCXR_0108_1")
    assert first["patient_id"] == second["patient_id"] == "MCUCXR_0104_1" and first["split"] == second["split"]
    assert by_path(ds, "MCUCXR_0001_0")["patient_id"] == "MCUCXR_0001_0"


def test_montgomery_age_is_read_from_the_age_line_not_from_the_finding(tmp_path):
    """A finding with the letters 'age' in it ("image", "stage") replaced the reading's age: by None, or by a
    number in the finding."""
    data_dir = layouts.montgomery(tmp_path)
    readings = data_dir / "MontgomerySet" / "ClinicalReadings"
    (readings / "MCUCXR_0104_1.txt").write_text("Patient's Sex: F\nPatient's Age: 042Y\n\n"
                                                 "left upper lobe cavity, stage 2 changes\n")
    (readings / "MCUCXR_0001_0.txt").write_text("Patient's Sex: M\nPatient's Age: 058Y\n\nnormal image\n")
    ds = build("montgomery", data_dir)
    assert by_path(ds, "MCUCXR_0104_1")["age"] == 42 and by_path(ds, "MCUCXR_0001_0")["age"] == 58
    assert by_path(ds, "MCUCXR_0001_0")["sex"] == "M"


def test_shenzhen(tmp_path):
    ds = build("shenzhen", layouts.shenzhen(tmp_path))
    assert by_path(ds, "CHNCXR_0327_1")["labels"] == [1.0]
    assert by_path(ds, "CHNCXR_0328_1")["mask"] is None
    row = by_path(ds, "CHNCXR_0002_0")
    assert row["mask"] is not None and row["sex"] == "M" and row["age"] == 41


def test_montgomery_and_shenzhen_from_the_kaggle_lung_mask_folder(tmp_path):
    """The Kaggle lung-mask release ('Lung Segmentation/') puts both sets' images in one CXR_png folder."""
    data_dir = tmp_path / "Lung Segmentation"
    montgomery_dir = layouts.montgomery(tmp_path / "m") / "MontgomerySet"
    shenzhen_dir = layouts.shenzhen(tmp_path / "s") / "ChinaSet_AllFiles"
    for set_dir in (montgomery_dir, shenzhen_dir):
        shutil.copytree(set_dir / "CXR_png", data_dir / "CXR_png", dirs_exist_ok=True)
    shutil.copytree(tmp_path / "s" / "mask", data_dir / "masks")
    for stem in ("MCUCXR_0001_0", "MCUCXR_0002_0"):  # that release's Montgomery masks: united, in masks/
        shutil.copy(montgomery_dir / "ManualMask" / "leftMask" / f"{stem}.png", data_dir / "masks" / f"{stem}.png")
    shenzhen = build("shenzhen", data_dir)
    assert sorted(Path(row["path"]).name[:7] for row in rows(shenzhen)) == ["CHNCXR_"] * 4
    montgomery = build("montgomery", data_dir)
    assert sorted(Path(row["path"]).name[:7] for row in rows(montgomery)) == ["MCUCXR_"] * 4
    with_mask = sorted(Path(row["path"]).stem for row in rows(montgomery) if row["mask"] is not None)
    assert with_mask == ["MCUCXR_0001_0", "MCUCXR_0002_0"]


@pytest.mark.parametrize("reading,sex,age", [("femal 32yrs", "F", 32), ("male , 29yrs  \t", "M", 29),
                                             ("Female, 28yrs", "F", 28), ("male 16month", "M", 16 / 12)])
def test_shenzhen_reading_spellings(tmp_path, reading, sex, age):
    """Spellings found in the set's clinical readings."""
    data_dir = layouts.shenzhen(tmp_path)
    (data_dir / "ChinaSet_AllFiles" / "ClinicalReadings" / "CHNCXR_0001_0.txt").write_text(f"{reading}\nnormal\n")
    row = by_path(build("shenzhen", data_dir), "CHNCXR_0001_0")
    assert row["sex"] == sex and row["age"] == pytest.approx(age)


def test_jsrt_folds(tmp_path):
    data_dir = layouts.jsrt(tmp_path)
    ds = build("jsrt", data_dir)
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 2, "test": 2}
    row = by_path(ds, "JPCLN001")
    assert row["labels"] == [1.0] and row["split"] == "train" and row["image"].size == (2048, 2048)
    assert row["image"].mode in ("I;16", "I") and row["mask"].size == (64, 64)
    assert by_path(build("jsrt", data_dir, fold=2), "JPCLN001")["split"] == "test"


def test_cxr_folder(tmp_path):
    ds = build("cxr_folder", layouts.cxr_folder(tmp_path))
    assert label_names(ds) == ["normal", "pneumonia"]
    all_rows = rows(ds)
    assert len(all_rows) == 8 and all(r["mask"] is not None for r in all_rows)
    unlabelled = by_path(ds, "IM-0002")
    assert all(math.isnan(v) for v in unlabelled["labels"]) and unlabelled["view"] == "PA"
    assert by_path(ds, "IM-0001")["labels"] == [0.0, 1.0]


COVID_FOLDERS = ["hannover_covid", "ieee8023_covid", "figure1_covid", "actualmed_covid", "nih_cxr14"]


def test_cxr_pool_pools_labelled_folders_in_one_label_scheme_one_patient_in_one_split(tmp_path):
    """Labelled folders could only be pooled by a hand-written manifest, which had to merge each folder's class names,
    leave out the Hannover images that ieee8023 repeats and give one id to a patient both folders hold (or leak it
    across splits). `classes` pools them so: labels matched by synonym, the rest `other_class`, split by patient."""
    data = write_covid_folders(tmp_path / "data")
    with pytest.warns(UserWarning) as said:
        ds = build("cxr_pool", data, folders=COVID_FOLDERS, classes=["covid"], other_class="non_covid", seed=1,
                   split_fractions={"train": 0.5, "test": 0.5})
    assert label_names(ds) == ["covid", "non_covid"] and sorted(ds) == ["test", "train"]
    assert len(rows(ds)) == 17  # ieee8023's copy of a Hannover image left out
    covid, other = [1.0, 0.0], [0.0, 1.0]
    assert [by_path(ds, f"figure1-{i}")["labels"][0] for i in range(2)] == [1.0, 0.0]  # COVID-19, Pneumonia
    assert all(math.isnan(v) for v in by_path(ds, "figure1-2")["labels"])  # unlabelled
    assert [by_path(ds, f"actualmed-{i}")["labels"] for i in range(2)] == [covid, other]  # 'No finding'
    assert {tuple(r["labels"]) for r in rows(ds) if r["source"] == "nih_cxr14"} == {tuple(other)}
    assert by_path(ds, "hannover_covid/images/h0")["labels"] == covid  # the first folder's copy, not 'No Finding'
    assert {r["source"] for r in rows(ds)} == {"hannover_mhh", "ieee8023", "figure1", "actualmed", "nih_cxr14"}
    # hannover_0 is ieee8023_0: its Hannover images and the one only ieee8023 has are one patient, in one split
    one = [by_path(ds, name) for name in ("images/h0", "images/h2", "covid-0-later")]
    assert {(r["patient_id"], r["split"]) for r in one} == {("hannover_0+ieee8023_0", one[0]["split"])}
    assert by_path(ds, "images/h1")["patient_id"] == "hannover_1"
    messages = [str(w.message) for w in said]
    assert any("1 images are listed again with other labels (the same bytes, or named in ieee8023_filename); the "
               "copy first in folder order (`folders`) is kept, with its label (copy kept -> copy left out): "
               "hannover_covid/images/h0.png (covid) -> "
               "ieee8023_covid/images/covid-0.png (non_covid)" in m for m in messages)
    assert any("7 rows have labels that are none of the other classes, so they are 'non_covid' (other_class): "
               "ieee8023_covid: 'SARS' (1); figure1_covid: 'Pneumonia' (1); actualmed_covid: 'No finding' (1); "
               "nih_cxr14: 'no_finding' (2), 'pneumonia' (2);" in m for m in messages), messages


def test_cxr_pool_label_map_unknown_labels_and_linked_patients_left_out(tmp_path):
    """Several classes with label_map; a label none of them names is unknown, with a warning naming it; leaving out a
    patient (a downstream test patient) leaves out the images of its ids in other folders too."""
    data = write_covid_folders(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"1 rows have labels that are none of the classes \['covid_19', 'normal', "
                                         r"'other pneumonia'\] .*: ieee8023_covid: 'SARS' \(1\);"):
        recipe = build_recipe("cxr_pool", data, folders=COVID_FOLDERS,
                              classes=["covid_19", "normal", "other pneumonia"],
                              label_map={"pneumonia": "Other_Pneumonia"}, exclude_patients=["ieee8023_0"])
    labels = {Path(r["path"]).stem: r["labels"] for r in recipe.records}
    assert labels["actualmed-1"] == [0.0, 1.0, 0.0] and labels["nih-0000"] == [0.0, 1.0, 0.0]  # 'No finding'
    assert labels["nih-0001"] == labels["figure1-1"] == [0.0, 0.0, 1.0] and labels["covid-1"] == [1.0, 0.0, 0.0]
    assert all(math.isnan(v) for v in labels["covid-3"])  # SARS
    assert not {"h0", "h2", "covid-0", "covid-0-later"} & set(labels) and "h1" in labels
    pretraining = build_recipe("cxr_pool", data, folders=COVID_FOLDERS, exclude_patients=["hannover_0"])
    assert {r["split"] for r in pretraining.records} == {"train"} and pretraining.label_names == []
    assert not {"h0", "h2", "covid-0", "covid-0-later"} & {Path(r["path"]).stem for r in pretraining.records}


@pytest.mark.parametrize("options, refusal", [
    ({"classes": ["covid"]}, r"needs two classes or more, got \['covid'\]"),
    ({"classes": ["covid", "COVID-19"]}, r"classes 'covid' and 'COVID-19' are one class"),
    ({"classes": ["covid"], "other_class": "rest", "label_map": {"SARS": "sars"}},
     r"label_map maps 'SARS' to 'sars', which is none of the classes \['covid', 'rest'\]"),
    ({"other_class": "non_covid"}, r"label_map and other_class label a pool: name its classes too"),
])
def test_cxr_pool_refuses_a_label_scheme_it_cannot_apply(tmp_path, options, refusal):
    with pytest.raises(InvalidInputError, match=refusal):
        build_recipe("cxr_pool", write_covid_folders(tmp_path / "data"), **options)


def test_seeded_split_is_reproducible(tmp_path):
    data_dir = layouts.cxr_folder(tmp_path)
    first = build("cxr_folder", data_dir, seed=3, split_fractions={"train": 0.5, "test": 0.5})
    again = build("cxr_folder", data_dir, seed=3, split_fractions={"train": 0.5, "test": 0.5})
    assert first["train"]["path"] == again["train"]["path"]


def test_imagefolder_and_manifest(tmp_path):
    for split in ("train", "test"):
        for cls in ("normal", "pneumonia"):
            for i in range(2):
                from factory import write_image
                write_image(tmp_path / "folder" / split / cls / f"{cls}_{i}.png", seed=i)
    ds = build("imagefolder", tmp_path / "folder")
    assert label_names(ds) == ["normal", "pneumonia"] and ds["test"].num_rows == 4
    # official splits (the train/ and test/ folders) are kept: split_fractions asked for were ignored without a word
    with pytest.warns(UserWarning, match=r"split_fractions \{'train': 0.5, 'test': 0.5\} unused: every image has an "
                                         "official split"):
        assert build("imagefolder", tmp_path / "folder", split_fractions={"train": 0.5, "test": 0.5})["test"].num_rows == 4
    manifest = tmp_path / "folder" / "manifest.jsonl"
    manifest.write_text('{"image": "train/normal/normal_0.png", "labels": [1, 0], "patient_id": "a"}\n'
                        '{"image": "train/pneumonia/pneumonia_0.png", "labels": [0, null], "patient_id": "b"}\n')
    ds = build("manifest", tmp_path / "folder", label_names=["normal", "pneumonia"])
    values = [r["labels"] for r in rows(ds)]
    assert [1.0, 0.0] in values and any(math.isnan(v[1]) for v in values)


def test_dicomdir_filters(tmp_path):
    from factory import write_dicom
    write_dicom(tmp_path / "d" / "a" / "IM0001", view="PA", patient_id="P1")
    write_dicom(tmp_path / "d" / "b" / "IM0002.dcm", view="LL", patient_id="P2")
    write_dicom(tmp_path / "d" / "c.dcm", modality="MR", patient_id="P3")
    (tmp_path / "d" / "notes.txt").write_text("not dicom")
    ds = build("dicomdir", tmp_path / "d", split_fractions={"train": 1.0})
    assert ds["train"].num_rows == 2 and label_names(ds) == []
    assert all(len(r["patient_id"]) == 16 and "P1" not in r["patient_id"] for r in rows(ds))
    assert build("dicomdir", tmp_path / "d", views=["PA"], split_fractions={"train": 1.0})["train"].num_rows == 1


def test_view_options_are_normalised_and_lateral_takes_left_and_right(tmp_path):
    """views=LATERAL left out every LL / RL file (the header's normalised views), views=pa matched nothing, and
    MIMIC's views=LATERAL dropped its LL images."""
    from factory import write_dicom

    from hf_datasets.registry import build_recipe

    for name, view in (("pa", "PA"), ("ll", "LL"), ("rl", "RIGHT LATERAL"), ("lat", "LATERAL"), ("ap", "AP")):
        write_dicom(tmp_path / "dicoms" / f"{name}.dcm", view=view)
    kept = lambda views: sorted(Path(r["image"]).stem for r in build_recipe("dicomdir", tmp_path / "dicoms",
                                                                             views=views).records)
    assert kept("LATERAL") == ["lat", "ll", "rl"] == kept(["LATERAL", "LL"])
    assert kept(["pa", "ap"]) == ["ap", "pa"]
    assert kept("LL") == ["ll"]

    layouts.mimic(tmp_path / "mimic")
    metadata = tmp_path / "mimic" / "mimic-cxr-2.0.0-metadata.csv.gz"
    with gzip.open(metadata, "rt") as handle:
        text = handle.read()
    with gzip.open(metadata, "wt") as handle:
        handle.write(text.replace(",LATERAL,", ",LL,").replace(",AP,", ",AP AXIAL,"))
    assert [r["view"] for r in build_recipe("mimic_cxr_jpg", tmp_path / "mimic", views="lateral").records] == ["LL"]
    assert "AP AXIAL" not in [r["view"] for r in build_recipe("mimic_cxr_jpg", tmp_path / "mimic",
                                                               views=["PA", "AP"]).records]


def test_dicomdir_keeps_one_copy_of_an_image_exported_twice(tmp_path):
    """The same study exported twice (same SOP Instance UIDs) counted each image twice in training and test."""
    from factory import write_dicom
    first = write_dicom(tmp_path / "d" / "export1" / "IM0001", patient_id="P1")
    write_dicom(tmp_path / "d" / "export2" / "IM0002", patient_id="P1", seed=1)
    shutil.copy(first, tmp_path / "d" / "export2" / "IM0001")
    with pytest.warns(UserWarning, match="1 DICOM file.* repeat an image found before"):
        ds = build("dicomdir", tmp_path / "d", split_fractions={"train": 1.0})
    assert sorted(r["path"] for r in rows(ds)) == ["export1/IM0001", "export2/IM0002"]


@pytest.mark.parametrize("cut_name, whole_name", [("a_cut.dcm", "b_whole.dcm"), ("b_cut.dcm", "a_whole.dcm")])
def test_dicomdir_reports_a_cut_copy_of_an_image_instead_of_taking_it_for_a_repeat(tmp_path, cut_name, whole_name):
    """The first 2000 bytes of a CR share its SOP Instance UID: beside the whole file, the cut copy was counted as
    "1 DICOM file(s) repeat an image found before" and never reported as damaged; found first, it was kept and the
    whole copy left out as its repeat. A file that does not hold a whole image is no copy of one: it stays in the set,
    where reading reports it (skipped with its reason with on_error="skip"), and the whole file is kept."""
    import warnings

    from pydicom.data import get_testdata_file

    from hf_datasets.errors import TruncatedDicomError
    from hf_datasets.registry import build_recipe

    source = Path(get_testdata_file("RG1_UNCI.dcm", download=False))
    root = tmp_path / "d"
    root.mkdir()
    shutil.copy(source, root / whole_name)
    with open(source, "rb") as handle:
        (root / cut_name).write_bytes(handle.read(2000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "repeat an image found before"
        recipe = build_recipe("dicomdir", root)
    assert sorted(Path(r["image"]).name for r in recipe.records) == sorted([cut_name, whole_name])
    with pytest.raises(TruncatedDicomError, match=rf"{cut_name}: .*cut short"):
        build_dataset("dicomdir", root, split_fractions={"train": 1.0}, cache_dir=str(tmp_path / "raise"))
    with pytest.warns(UserWarning, match=rf"skipped .*{cut_name}: .*cut short"):
        ds = build_dataset("dicomdir", root, split_fractions={"train": 1.0}, on_error="skip",
                           cache_dir=str(tmp_path / "skip"))
    assert ds["train"]["path"] == [whole_name]


def test_dicomdir_says_how_many_files_its_modality_and_view_filters_left_out(tmp_path):
    """By default dicomdir keeps CR and DX only: a CT and an MR in the folder were left out without a word, as were
    files without the asked view. One warning per filter gives the count and the option that keeps them, and no
    header value (no modality, no view)."""
    import re
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file

    from hf_datasets.registry import build_recipe

    root = tmp_path / "d"
    root.mkdir()
    values = set()
    for name in ("RG1_UNCI.dcm", "CT_small.dcm", "MR_small.dcm"):  # a PA CR; a CT and an MR without a view
        source = get_testdata_file(name, download=False)
        shutil.copy(source, root / name)
        header = pydicom.dcmread(source, stop_before_pixels=True)
        values |= {str(header.get(k)) for k in ("Modality", "PatientName", "PatientID", "SOPInstanceUID")}

    def said(**options):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            recipe = build_recipe("dicomdir", root, **options)
        messages = [str(w.message).replace(str(root), "ROOT") for w in caught]
        for message in messages:
            assert not [value for value in values if re.search(rf"\b{re.escape(value)}\b", message)], message
        return sorted(Path(r["image"]).name for r in recipe.records), messages

    kept, messages = said()
    assert kept == ["RG1_UNCI.dcm"]
    assert len(messages) == 1 and re.search(r"(?i)2 DICOM file\(s\) left out .*modality.*modalities=None", messages[0])
    kept, messages = said(modalities=None, views="PA")
    assert kept == ["RG1_UNCI.dcm"]
    assert len(messages) == 1 and re.search(r"(?i)2 DICOM file\(s\) left out .*view.*views=None", messages[0])
    assert said(modalities=None) == (["CT_small.dcm", "MR_small.dcm", "RG1_UNCI.dcm"], [])


def test_dicomdir_leaves_out_the_exports_dicomdir_index(tmp_path):
    """The DICOMDIR file every DICOM media export holds (the index of its files: DICM marker, no modality, no
    image) stopped the build of such an export as an unreadable image."""
    from factory import write_dicom
    from pydicom.data import get_testdata_file

    write_dicom(tmp_path / "d" / "IMAGES" / "IM0001", patient_id="P1")
    shutil.copy(get_testdata_file("DICOMDIR", download=False), tmp_path / "d" / "DICOMDIR")
    ds = build("dicomdir", tmp_path / "d", split_fractions={"train": 1.0})
    assert [r["path"] for r in rows(ds)] == ["IMAGES/IM0001"]


def test_manifest_of_dicoms_decodes_them_and_keeps_each_patient_in_one_split(tmp_path):
    """A manifest listing PACS files (any name) decodes them, and takes patient, study and view from the header
    when it has no such columns: one patient's studies never land in two splits."""
    from factory import write_dicom

    lines = ["image,label"]
    for patient in range(4):
        for study in range(3):
            name = f"P{patient}/S{study}/IM0001" if study else f"P{patient}/S{study}/IM0001.dcm"
            write_dicom(tmp_path / "set" / name, patient_id=f"MRN{patient}", view="AP" if study else "PA")
            lines.append(f"{name},{'pneumonia' if patient % 2 else 'normal'}")
    (tmp_path / "set" / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = build("manifest", tmp_path / "set", manifest="labels.csv", split_fractions={"train": 0.5, "test": 0.5})
    assert sum(split.num_rows for split in ds.values()) == 12
    assert all(row["image"].mode == "L" and len(row["patient_id"]) == 16 and "MRN" not in row["patient_id"]
               for row in rows(ds))
    assert len({row["patient_id"] for row in rows(ds)}) == 4
    assert {row["view"] for row in rows(ds)} == {"PA", "AP"}


def test_manifest_patient_ids_zero_and_padded_with_spaces_keep_a_patient_in_one_split(tmp_path):
    """A JSON manifest's numeric patient id 0 is an id (it was taken as none: each image a patient of its own), and
    "P1 " from a spreadsheet is patient P1: either way one patient's images could land in two splits."""
    import json

    from factory import write_image

    lines = []
    for image in range(40):
        write_image(tmp_path / "set" / f"{image}.png")
        patient = image // 4
        lines.append({"image": f"{image}.png", "label": "pneumonia" if patient % 2 else "normal",
                      "patient_id": patient if patient < 5 else f"P{patient}" + " " * (image % 2)})
    (tmp_path / "set" / "labels.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    ds = build("manifest", tmp_path / "set", manifest="labels.jsonl",
               split_fractions={"train": 0.5, "validation": 0.25, "test": 0.25})
    splits_of = {}
    for split, rows_ in ds.items():
        for row in rows_.select_columns(["patient_id"]):
            splits_of.setdefault(row["patient_id"], set()).add(split)
    assert len(splits_of) == 10 and all(len(splits) == 1 for splits in splits_of.values())


def test_unknown_name_and_missing_dir():
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("nope", "/tmp")
    with pytest.raises(ValueError, match="needs data_dir"):
        build_dataset("nih")


def test_hidden_files_and_mac_zip_folders_are_not_images(tmp_path):
    """A set unzipped from a Mac archive has ._NAME twins beside each image and a __MACOSX copy of the tree."""
    data_dir = layouts.kermany(tmp_path / "src")
    expected = sum(split.num_rows for split in build("kermany", data_dir).values())
    for image in list(data_dir.rglob("*.jpeg")):
        (image.parent / f"._{image.name}").write_bytes(b"\x00\x05\x16\x07" + bytes(60))
        twin = data_dir / "__MACOSX" / image.relative_to(data_dir).parent / f"._{image.name}"
        twin.parent.mkdir(parents=True, exist_ok=True)
        twin.write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    (data_dir / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    ds = build("kermany", data_dir)
    assert sum(split.num_rows for split in ds.values()) == expected
    assert all(row["image"].size == (32, 40) for row in rows(ds))


def test_missing_or_broken_image_fails_when_built_not_when_read(tmp_path):
    from factory import write_image
    from hf_datasets.errors import ImageReadError
    root = tmp_path / "set"
    write_image(root / "img" / "a.png", seed=0)
    (root / "img" / "notes.png").write_text("not an image")
    (root / "manifest.csv").write_text("image,label\nimg/a.png,normal\nimg/gone.png,pneumonia\n"
                                       "img/notes.png,normal\n")
    with pytest.raises(Exception) as failure:  # datasets wraps the generator's error
        build_dataset("manifest", root, manifest="manifest.csv", split_fractions={"train": 1.0})
    cause = failure.value if isinstance(failure.value, ImageReadError) else failure.value.__cause__
    assert isinstance(cause, ImageReadError) and str(cause).endswith("gone.png: file not found")
    with pytest.warns(UserWarning, match="notes.png: not a recognised image format"):
        ds = build_dataset("manifest", root, manifest="manifest.csv", split_fractions={"train": 1.0},
                           on_error="skip")
    assert ds["train"]["path"] == ["img/a.png"] and ds["train"][0]["image"].size == (32, 40)


def test_a_png_or_jpeg_cut_short_fails_when_built_not_when_read(tmp_path):
    """Only the header was read at build time: a PNG or JPEG cut short (an interrupted copy or download) passed any
    build, on_error="skip" included, and stopped training at its row. A file padded after its end is whole."""
    from PIL import Image

    from hf_datasets.errors import ImageReadError
    from test_publish_cache import real_cxr

    root = tmp_path / "set"
    (root / "normal").mkdir(parents=True)
    (root / "pneumonia").mkdir()
    jpeg = real_cxr().read_bytes()
    (root / "normal" / "whole.jpeg").write_bytes(jpeg)
    (root / "normal" / "padded.jpeg").write_bytes(jpeg + b"\x00" * 16 + b"exporter's trailer")
    Image.open(root / "normal" / "whole.jpeg").save(root / "normal" / "whole.png")
    png = (root / "normal" / "whole.png").read_bytes()
    (root / "pneumonia" / "padded.png").write_bytes(png + b"\x00" * 8)
    for name, data in (("cut.png", png), ("cut.jpeg", jpeg)):
        (root / "pneumonia" / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(Exception) as failure:  # datasets wraps the generator's error
            build_dataset("imagefolder", root, split_fractions={"train": 1.0})
        cause = failure.value if isinstance(failure.value, ImageReadError) else failure.value.__cause__
        assert isinstance(cause, ImageReadError) and f"{name}: corrupt or truncated image" in str(cause)
        with pytest.warns(UserWarning, match=f"{name}: corrupt or truncated image"):
            built = build_dataset("imagefolder", root, split_fractions={"train": 1.0}, on_error="skip")["train"]
        assert sorted(built["path"]) == ["normal/padded.jpeg", "normal/whole.jpeg", "normal/whole.png",
                                         "pneumonia/padded.png"]
        assert all(np.asarray(row["image"]).size for row in built)  # every row kept reads
        (root / "pneumonia" / name).unlink()


def test_a_file_repaired_or_replaced_since_the_last_build_is_read_again(tmp_path):
    """The datasets cache keyed only on the file list: a rebuild returned the earlier build, without the file it
    had skipped (and no warning) or with a DICOM's old pixels."""
    from factory import write_dicom, write_image
    root = tmp_path / "set"
    write_image(root / "normal" / "a.png", seed=0)
    (root / "normal" / "b.png").write_text("not an image yet")
    scan = write_dicom(root / "pneumonia" / "c.dcm", seed=0)
    with pytest.warns(UserWarning, match="b.png"):
        first = build_dataset("imagefolder", root, split_fractions={"train": 1.0}, on_error="skip")["train"]
    assert first["path"] == ["normal/a.png", "pneumonia/c.dcm"]
    old_scan = np.asarray(first[1]["image"])
    write_image(root / "normal" / "b.png", seed=1)
    write_dicom(scan, seed=1)
    again = build_dataset("imagefolder", root, split_fractions={"train": 1.0}, on_error="skip")["train"]
    assert again["path"] == ["normal/a.png", "normal/b.png", "pneumonia/c.dcm"]
    assert not np.array_equal(np.asarray(again[2]["image"]), old_scan)


def test_a_build_from_the_cache_still_names_the_files_it_skipped(tmp_path):
    """on_error="skip" warned about an unreadable file when the split was first built; a second build, read from the
    datasets cache, left the file out without a word (a second training run silently had fewer images)."""
    from factory import write_dicom, write_image
    from pydicom.data import get_testdata_file

    root = tmp_path / "set"
    write_image(root / "normal" / "a.png", seed=0)
    write_dicom(root / "pneumonia" / "b.dcm", seed=0)
    data = Path(get_testdata_file("RG1_UNCR.dcm", download=False)).read_bytes()  # a chest CR, cut short
    (root / "pneumonia" / "broken.dcm").write_bytes(data[:len(data) // 2])
    for build_number in (1, 2):
        with pytest.warns(UserWarning) as caught:
            ds = build_dataset("imagefolder", root, split_fractions={"train": 1.0}, on_error="skip")
        assert ds["train"]["path"] == ["normal/a.png", "pneumonia/b.dcm"]
        summary = [str(w.message) for w in caught if "left out" in str(w.message)]
        assert len(summary) == 1, (build_number, [str(w.message) for w in caught])
        assert "1 of 3 files of split 'train'" in summary[0] and "pneumonia/broken.dcm" in summary[0]


def test_the_cache_key_does_not_pickle_the_records(tmp_path, monkeypatch):
    """datasets keyed its cache on the generator's arguments, pickling every record in Python: most of the time of a
    cached build of a 100k-image set. The records are digested as JSON instead; a second build still reads the cache."""
    from datasets.fingerprint import Hasher
    hashed = []
    original = Hasher.hash.__func__
    monkeypatch.setattr(Hasher, "hash", classmethod(lambda cls, value: hashed.append(repr(value)) or original(cls, value)))
    data_dir = layouts.cxr_folder(tmp_path / "cxr")
    first = build("cxr_folder", data_dir)
    assert hashed and not any("IM-0001.png" in text for text in hashed)
    again = build("cxr_folder", data_dir)
    assert {s: d.cache_files for s, d in again.items()} == {s: d.cache_files for s, d in first.items()}
    from hf_datasets.builders import common

    monkeypatch.setattr(common, "DECODING_VERSION", common.DECODING_VERSION + 1)  # files now decode otherwise
    rebuilt = build("cxr_folder", data_dir)
    assert all(rebuilt[s].cache_files != first[s].cache_files for s in first)


def test_sixteen_bit_images_in_an_eight_bit_set_are_scaled_not_clipped(tmp_path):
    """A 12-bit PNG in an image folder reads as prepare writes it, not as Pillow's convert("L") (all white)."""
    from factory import write_image
    from hf_datasets.images import read_grey, to_bits
    sixteen = write_image(tmp_path / "folder" / "normal" / "sixteen.png", seed=1, mode="I;16")
    write_image(tmp_path / "folder" / "pneumonia" / "eight.png", seed=2)
    ds = build("imagefolder", tmp_path / "folder", split_fractions={"train": 1.0})
    image = by_path(ds, "sixteen")["image"]
    assert image.mode == "L" and np.array_equal(np.asarray(image), to_bits(read_grey(sixteen), 8))


@pytest.mark.parametrize("top", [1.0, 4095.0])
def test_float_tiffs_in_a_sixteen_bit_set_reach_the_image_processor_scaled(tmp_path, top):
    """A float TIFF (PIL "F") holding [0, 1] or 12-bit counts was left as a path in a 16-bit set, and the image
    processor, which takes floats in [0, 1] only, refused the counts at the first training batch."""
    from PIL import Image

    from modeling_cxrgm import GroupMaskedViTImageProcessor
    values = np.tile(np.linspace(0.0, top, 20, dtype=np.float32), (16, 1))
    path = tmp_path / "folder" / "normal" / "scan.tif"
    path.parent.mkdir(parents=True)
    Image.fromarray(values, "F").save(path)
    image = build("imagefolder", tmp_path / "folder", split_fractions={"train": 1.0}, bits=16)["train"][0]["image"]
    assert image.mode in ("I;16", "I")
    seen = GroupMaskedViTImageProcessor(size=20, do_normalize=False)(image).pixel_values[0, 0, 2:18]
    np.testing.assert_allclose(seen.numpy(), values / top, atol=0.5 / 4095 + 1e-6)  # counts: whole numbers


def test_manifest_suffix_in_capitals(tmp_path):
    from factory import write_image
    write_image(tmp_path / "set" / "a.png", seed=0)
    (tmp_path / "set" / "LIST.JSONL").write_text('{"image": "a.png", "label": "normal"}\n')
    ds = build("manifest", tmp_path / "set", manifest="LIST.JSONL", split_fractions={"train": 1.0})
    assert label_names(ds) == ["normal"] and ds["train"]["path"] == ["a.png"]


def test_manifest_without_an_image_column_says_which_columns_it_has(tmp_path):
    """A CSV saved with ';' separators (a European spreadsheet) has one column, 'image;label'."""
    from hf_datasets.errors import LayoutError
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "list.csv").write_text("image;label\na.png;normal\n")
    with pytest.raises(LayoutError, match=r"row 1 names no image: give its file in 'image' \(relative to data_dir\) "
                                          r"or, for a DICOM file, its 'sop_instance_uid' \(columns: \['image;label'\]\)"):
        build_dataset("manifest", tmp_path / "set", manifest="list.csv")


def test_manifest_label_names_found_in_no_row_are_refused(tmp_path):
    """label_names that match no column (here in other capitals) would leave every label unknown (NaN)."""
    from factory import write_image
    from hf_datasets.errors import LayoutError
    write_image(tmp_path / "set" / "a.png", seed=0)
    (tmp_path / "set" / "list.csv").write_text("image,normal,pneumonia\na.png,1,0\n")
    with pytest.raises(LayoutError, match=r"no row has labels for \['Normal', 'Pneumonia'\]"):
        build_dataset("manifest", tmp_path / "set", manifest="list.csv", label_names=["Normal", "Pneumonia"])
    ds = build("manifest", tmp_path / "set", manifest="list.csv", label_names=["normal", "pneumonia"],
               split_fractions={"train": 1.0})
    assert ds["train"]["labels"] == [[1.0, 0.0]]


@pytest.mark.parametrize("value", ["-1", "2", "yes"])
def test_manifest_label_values_training_cannot_use_are_refused(tmp_path, value):
    from factory import write_image
    from hf_datasets.errors import LayoutError
    write_image(tmp_path / "set" / "a.png", seed=0)
    (tmp_path / "set" / "list.csv").write_text(f"image,effusion,edema\na.png,{value},\n")
    with pytest.raises(LayoutError, match=f"label '{value}' for a.png"):
        build_dataset("manifest", tmp_path / "set", manifest="list.csv", label_names=["effusion", "edema"])
    (tmp_path / "set" / "list.csv").write_text("image,effusion,edema\na.png,0.5,\n")
    ds = build("manifest", tmp_path / "set", manifest="list.csv", label_names=["effusion", "edema"],
               split_fractions={"train": 1.0})
    assert ds["train"]["labels"][0][0] == 0.5 and math.isnan(ds["train"]["labels"][0][1])


def test_cxr_folder_without_a_file_column_says_which_columns_it_has(tmp_path):
    from hf_datasets.errors import LayoutError
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "labels.csv").write_text("image,label\nimages/a.png,normal\n")
    with pytest.raises(LayoutError, match=r"labels.csv: no 'file' column \(columns: \['image', 'label'\]\)"):
        build_dataset("cxr_folder", tmp_path / "set")


def test_class_names_are_read_without_surrounding_spaces(tmp_path):
    """A hand-edited sheet writes "normal " in one row and "normal" in the next: one class, not two."""
    from factory import write_image
    for name in ("a", "b", "c"):
        write_image(tmp_path / "set" / "images" / f"{name}.png", seed=0)
    table = "file,label\nimages/a.png,normal\nimages/b.png,normal \nimages/c.png, pneumonia\n"
    (tmp_path / "set" / "labels.csv").write_text(table)
    (tmp_path / "set" / "list.csv").write_text(table.replace("file,", "image,"))
    for ds in (build("cxr_folder", tmp_path / "set", split_fractions={"train": 1.0}),
               build("manifest", tmp_path / "set", manifest="list.csv", split_fractions={"train": 1.0})):
        assert label_names(ds) == ["normal", "pneumonia"]
        assert sorted(ds["train"]["labels"]) == [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]


def test_dicomdir_and_manifest_list_options_given_as_one_string(tmp_path):
    """`--option views=PA modalities=CR` (one string each) filter by that value: no TypeError on a file without a
    view, no substring match ("C" in "CR"); a manifest's label_names="pneumonia" is one label, not one per letter."""
    from factory import write_dicom, write_image

    from hf_datasets.registry import build_recipe

    for name, view, modality in (("pa", "PA", "CR"), ("ap", "AP", "CR"), ("dx", "PA", "DX"), ("none", "", "CR"),
                                 ("c", "PA", "C")):
        write_dicom(tmp_path / "dicoms" / f"{name}.dcm", view=view, modality=modality)
    kept = build_recipe("dicomdir", tmp_path / "dicoms", views="PA", modalities="CR").records
    assert [Path(r["image"]).name for r in kept] == ["pa.dcm"]

    write_image(tmp_path / "set" / "a.png")
    (tmp_path / "set" / "labels.csv").write_text("image,pneumonia\na.png,1\n")
    recipe = build_recipe("manifest", tmp_path / "set", manifest="labels.csv", label_names="pneumonia")
    assert recipe.label_names == ["pneumonia"] and recipe.records[0]["labels"] == [1.0]


def test_ages_in_months_weeks_and_days_become_years():
    from hf_datasets.builders.common import parse_age

    assert [parse_age(v) for v in ("58", "058Y", "45yrs", 58.0, "006M", "6 months", "026W", "3 weeks")] == \
        [58.0, 58.0, 45.0, 58.0, 0.5, 0.5, 0.5, 3 / 52]
    assert parse_age("730D") == parse_age("730 days") == 2.0 and parse_age("unknown") is None


def test_manifest_label_outside_label_names_is_named_in_a_warning(tmp_path):
    """A 'label' value missing from label_names (a typo) got all-zero labels, which made a single-label set train
    and score as multi-label without a word; a class left out on purpose keeps its rows as negatives."""
    from factory import write_image

    from hf_datasets.registry import build_recipe

    for name in ("a", "b", "c"):
        write_image(tmp_path / f"{name}.png")
    (tmp_path / "labels.csv").write_text("image,label\na.png,normal\nb.png,pneumonia\nc.png,pnuemonia\n")
    with pytest.warns(UserWarning, match=r"not in label_names \['normal', 'pneumonia'\]: \{'pnuemonia': 1\}"):
        recipe = build_recipe("manifest", tmp_path, manifest="labels.csv", label_names=["normal", "pneumonia"])
    assert recipe.records[2]["labels"] == [0.0, 0.0]
    (tmp_path / "labels.csv").write_text("image,label\na.png,normal\nb.png,pneumonia\nc.png,\n")
    recipe = build_recipe("manifest", tmp_path, manifest="labels.csv", label_names=["normal", "pneumonia"])
    assert [r["labels"][:1] for r in recipe.records][:2] == [[1.0], [0.0]]


def test_a_jpeg_or_anti_aliased_mask_is_read_as_the_processor_reads_it(tmp_path):
    """Built sets took every value above 0 as lung, so a JPEG mask's noise and an anti-aliased mask's faint edge grew
    the lungs (the image processor takes values above 127 of such masks); 0/1 masks and label maps keep > 0."""
    from PIL import Image, ImageDraw

    from hf_datasets.builders.common import read_mask

    big = Image.new("L", (256, 192), 0)
    ImageDraw.Draw(big).ellipse((32, 32, 224, 160), fill=255)
    big.save(tmp_path / "mask.jpg", quality=75)
    big.resize((64, 48), Image.Resampling.BILINEAR).resize((256, 192), Image.Resampling.BILINEAR).save(
        tmp_path / "smooth.png")
    lung = np.asarray(big) == 255
    for name in ("mask.jpg", "smooth.png"):
        read = read_mask(tmp_path / name) == 255
        assert abs(int(read.sum()) - int(lung.sum())) < 0.01 * lung.sum(), name
    label_map = np.zeros((8, 8), np.uint8)
    label_map[:4, :4], label_map[4:, 4:] = 1, 2
    Image.fromarray(label_map).save(tmp_path / "labels.png")
    assert (read_mask(tmp_path / "labels.png") == 255).sum() == 32


def test_a_seeded_split_left_without_a_patient_is_reported(tmp_path):
    """Four patients at 0.8 / 0.1 / 0.1 leave the test split no patient: the set just had no "test" split, and the
    user learnt it only from a later "no split 'test'" error, without the reason."""
    import warnings

    data_dir = layouts.cxr_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"split of 4 patients gives \['test'\] no patient"):
        ds = build("cxr_folder", data_dir)
    assert sorted(ds) == ["train", "validation"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(build("cxr_folder", data_dir, split_fractions={"train": 0.5, "test": 0.5})) == ["test", "train"]


def test_a_split_whose_files_are_all_unreadable_is_empty_when_skipping(tmp_path):
    """on_error="skip" crashed with datasets' "Instruction 'test' corresponds to no data!" when every file of one
    split was skipped (a DICOM archive with a few damaged files), where streaming and prepare give an empty split."""
    from factory import write_dicom

    from hf_datasets.builders.common import assign_splits
    from hf_datasets.registry import build_recipe
    root = tmp_path / "dicoms"
    write_dicom(root / "good.dcm", patient_id="P1", seed=0)
    (root / "damaged.dcm").write_bytes(b"")
    fractions = {"train": 0.5, "test": 0.5}
    splits = {s: [r["path"] for r in recs] for s, recs in
              assign_splits(build_recipe("dicomdir", root), fractions).items()}
    assert sorted(map(sorted, splits.values())) == [["damaged.dcm"], ["good.dcm"]]  # one file per split
    with pytest.warns(UserWarning, match="skipped .*damaged.dcm: empty file"):
        ds = build("dicomdir", root, split_fractions=fractions, on_error="skip")
    bad_split = next(s for s, paths in splits.items() if paths == ["damaged.dcm"])
    good_split = next(s for s in splits if s != bad_split)
    assert ds[bad_split].num_rows == 0 and ds[good_split]["path"] == ["good.dcm"]
    streamed = build_dataset("dicomdir", root, split_fractions=fractions, on_error="skip", streaming=True)
    assert [sum(1 for _ in streamed[s]) for s in (good_split, bad_split)] == [1, 0]


@pytest.mark.parametrize("name", ["dicomdir", "imagefolder"])
def test_dicom_files_that_hold_no_image_are_not_counted_as_images_without_a_patient_id(tmp_path, name):
    """A .dcm file that is no DICOM (or is cut short) was counted in "N of M images have no patient id" before the
    build reported it as unreadable: the warning counts only the files read as images."""
    import warnings

    from factory import write_dicom
    from pydicom.data import get_testdata_file

    from hf_datasets.builders.common import assign_splits

    folder = tmp_path / "site" / "normal"
    write_dicom(folder / "unknown.dcm", patient_id="", seed=0)
    write_dicom(folder / "known.dcm", patient_id="P2", seed=1)
    (folder / "notes.dcm").write_text("not a DICOM file")
    (folder / "cut.dcm").write_bytes(Path(get_testdata_file("RG1_UNCI.dcm", download=False)).read_bytes()[:2000])
    recipe = build_recipe(name, tmp_path / "site")
    assert len(recipe.records) == 4  # the two unreadable files are kept, to be reported when built
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assign_splits(recipe, {"train": 0.5, "test": 0.5})
    said = [str(w.message) for w in caught if "no patient id" in str(w.message)]
    assert len(said) == 1 and said[0].startswith(f"{name}: 1 of 2 images have no patient id")


@pytest.mark.parametrize("kind", ["image", "dicom"])
def test_an_unreadable_file_stops_a_multi_process_build_with_the_error_naming_it(tmp_path, kind):
    """With num_proc > 1 the error came back from the datasets worker as a bare DatasetGenerationError("An error
    occurred while generating the dataset") whose cause was only a remote traceback; with num_proc=1 it was the data
    error naming the file. Both now give the same error type and message."""
    from factory import write_dicom, write_image

    from hf_datasets.errors import NotDicomError

    root = tmp_path / "set"
    if kind == "image":
        name, error = "imagefolder", ImageReadError
        for i in range(5):
            write_image(root / "normal" / f"scan{i}.png", seed=i)
        bad = root / "normal" / "scan3.png"
        bad.write_bytes(b"not an image")
    else:
        name, error = "dicomdir", NotDicomError
        for i in range(5):
            write_dicom(root / f"P{i}" / f"IM{i}.dcm", patient_id=f"P{i}", seed=i)
        bad = root / "P3" / "IM3.dcm"
        bad.write_bytes(b"\0" * 200)
    raised = {}
    for num_proc in (1, 2):
        with pytest.raises(error) as caught:
            build_dataset(name, root, split_fractions={"train": 1.0}, num_proc=num_proc,
                          cache_dir=tmp_path / f"cache{num_proc}")
        raised[num_proc] = caught.value
    assert type(raised[2]) is type(raised[1]) and str(raised[2]) == str(raised[1])
    assert raised[2].path == str(bad) and str(raised[2]).startswith(f"{bad}: ")


def test_a_pooled_copy_gives_its_patient_to_a_first_copy_without_one(tmp_path):
    """Folder a lists images without patient ids, folder b the same images (same bytes) with each patient's id and a
    second image of that patient: the kept copy (a's) had no patient, so it was split apart from the patient's other
    image."""
    import csv

    from factory import write_image

    from hf_datasets.builders.common import assign_splits

    rows = {"a": [], "b": []}
    for i in range(20):
        for folder in ("a", "b"):
            write_image(tmp_path / "pool" / folder / f"x{i}.png", seed=i)
        write_image(tmp_path / "pool" / "b" / f"y{i}.png", seed=100 + i)
        rows["a"].append({"file": f"x{i}.png", "label": "covid", "patient_id": ""})
        rows["b"] += [{"file": f"x{i}.png", "label": "covid", "patient_id": f"B{i}"},
                      {"file": f"y{i}.png", "label": "normal", "patient_id": f"B{i}"}]
    for folder, table in rows.items():
        with open(tmp_path / "pool" / folder / "labels.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["file", "label", "patient_id"])
            writer.writeheader()
            writer.writerows(table)
    recipe = build_recipe("cxr_pool", tmp_path / "pool", folders=["a", "b"], classes=["covid", "normal"])
    assert {r["path"]: r["patient_id"] for r in recipe.records}["a/x0.png"] == "B0"
    split_of = {r["path"]: split for split, records in assign_splits(recipe, seed=0).items() for r in records}
    assert all(split_of[f"a/x{i}.png"] == split_of[f"b/y{i}.png"] for i in range(20))


def test_dicom_patient_ids_padded_with_spaces_and_modalities_in_lower_case(tmp_path):
    """"  00003" from one export is "00003" from another (DICOM pads LO values; pydicom keeps leading spaces): two
    patients by their hashes, split apart. modalities=["dx"] left out every DX file."""
    from factory import write_dicom

    from hf_datasets.builders.generic import build_dicomdir

    for i in range(4):
        write_dicom(tmp_path / "a" / f"p{i}_1.dcm", patient_id=f"{i:05d}", seed=i, modality="DX")
        write_dicom(tmp_path / "b" / f"p{i}_2.dcm", patient_id=f"  {i:05d}", seed=10 + i, modality="DX")
    recipe = build_dicomdir(tmp_path, modalities=["dx"])
    patients = {Path(r["path"]).stem: r["patient_id"] for r in recipe.records}
    assert len(patients) == 8 and all(patients[f"p{i}_1"] == patients[f"p{i}_2"] for i in range(4))


def test_a_patients_rows_in_a_held_out_split_of_its_own_name_are_not_moved_into_train(tmp_path):
    """Rows of patients P0-P3 without a split (drawn) and with split "external" (a held-out site): their external
    rows went into train, as any name but test and validation ranked below it. A blank split cell is no split (it
    stopped the build on a bare StopIteration)."""
    from factory import write_image

    from hf_datasets.builders.common import assign_splits
    from hf_datasets.builders.generic import build_manifest

    lines = ["image,label,patient_id,split"]
    for i in range(20):
        write_image(tmp_path / "site_a" / f"{i}.png", seed=i)
        lines.append(f"site_a/{i}.png,{'normal' if i % 2 else 'pneumonia'},P{i},{' ' if i == 7 else ''}")
    for i in range(4):
        write_image(tmp_path / "site_b" / f"{i}.png", seed=50 + i)
        lines.append(f"site_b/{i}.png,normal,P{i},external")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"4 patients appear in several official splits; .*\(test > validation > "
                                         r"another named split > train\)"):
        splits = assign_splits(build_manifest(tmp_path, manifest="m.csv"), seed=0)
    assert sorted(r["path"] for r in splits["external"]) == [f"site_a/{i}.png" for i in range(4)] + [
        f"site_b/{i}.png" for i in range(4)]
    assert sum(len(records) for records in splits.values()) == 24
