"""benchmarks/bundle_data.py: the resized copy gives the train scripts the originals' pixels and masks."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
from factory import write_image  # noqa: E402
from shared_layout import write_shared_layout  # noqa: E402

from benchmarks import bundle_data  # noqa: E402
from hf_datasets import build_dataset  # noqa: E402
from modeling_cxrgm import GroupMaskedViTImageProcessor  # noqa: E402
from train.data import CXRDataset  # noqa: E402

SIZE = 24  # the fixture's images are 40 x 32: every image and mask is resized


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def items(data_dir, dataset, task, **options):
    ds = build_dataset(dataset, data_dir, **options)["train"]
    wrapped = CXRDataset(ds, GroupMaskedViTImageProcessor(size=SIZE), task)
    return [wrapped[i] for i in range(len(wrapped))]


def assert_same_items(original, copy):
    assert len(original) == len(copy) > 0
    for a, b in zip(original, copy):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_copy_gives_the_same_training_items_as_the_originals(tmp_path):
    source = write_shared_layout(tmp_path / "data")
    copy = tmp_path / "copy"
    report = bundle_data.main(["--data_dir", str(source), "--output_dir", str(copy), "--size", str(SIZE)])
    assert report["skipped"] == [] and len(report["folders"]) == 5

    for name in ("kermany_pediatric", "nih_cxr14"):
        assert_same_items(items(source / name, "cxr_folder", "classification"),
                          items(copy / name, "cxr_folder", "classification"))
    lungs = "v7labs_covid_lungseg"
    segmentation = items(copy / lungs, "cxr_folder", "segmentation")
    assert_same_items(items(source / lungs, "cxr_folder", "segmentation"), segmentation)
    assert all(0 < (item["labels"] == 1).sum() < SIZE * SIZE for item in segmentation)  # masks survived the resize
    # the pool drops the same duplicates (byte copies stay byte copies) and keeps the same images
    original_pool, copied_pool = (build_dataset("cxr_pool", d)["train"] for d in (source, copy))
    assert [Path(p).name for p in original_pool["path"]] == [Path(p).name for p in copied_pool["path"]]
    assert_same_items(items(source, "cxr_pool", "pretraining"), items(copy, "cxr_pool", "pretraining"))


def test_bad_rows_are_reported_and_a_rerun_only_fills_in_what_is_missing(tmp_path):
    source = write_shared_layout(tmp_path / "data", patients=4)
    (source / "nih_cxr14" / "images" / "nih-0001.png").write_bytes(b"not a png")
    write_image(source / "kermany_pediatric" / "images" / "kermany_IM-0002.png", mode="I;16")
    copy = tmp_path / "copy"
    report = bundle_data.bundle(source, copy, SIZE)

    reasons = {Path(entry["path"]).name: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == {"nih-0001.png", "kermany_IM-0002.png"}
    assert "not 8-bit" in reasons["kermany_IM-0002.png"]
    assert json.loads((copy / "report.json").read_text())["skipped"] == report["skipped"]
    nih_rows = (copy / "nih_cxr14" / "labels.csv").read_text()
    assert "nih-0001.png" not in nih_rows and "nih-0000.png" in nih_rows

    # a run killed mid-way: one folder unfinished, one image lost
    image = copy / "ieee8023_covid" / "images" / "covid-1.png"
    expected = image.read_bytes()
    image.unlink()
    (copy / "ieee8023_covid" / "labels.csv").unlink()
    kept = (copy / "kermany_pediatric" / "labels.csv").stat().st_mtime_ns
    again = bundle_data.bundle(source, copy, SIZE)
    assert image.read_bytes() == expected
    assert again["folders"]["ieee8023_covid"].startswith("written")
    assert again["folders"]["kermany_pediatric"] == "kept from an earlier run"
    assert (copy / "kermany_pediatric" / "labels.csv").stat().st_mtime_ns == kept
    with pytest.raises(ValueError, match="not size 32"):
        bundle_data.bundle(source, copy, 32)
