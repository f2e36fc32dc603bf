"""The embedded sample set, label policies, harmonisation and patient splits."""

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from hf_datasets import apply_label_policy, build_dataset, harmonise_dataset, harmonise_labels, label_names
from hf_datasets.builders import sample
from hf_datasets.errors import LayoutError
from hf_datasets.splits import overlapping_patients, patient_split


@pytest.fixture(scope="module")
def sample_ds(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cxrgm_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXRGM_CACHE", str(cache))
        patch.setenv("HF_DATASETS_CACHE", str(cache / "hf"))
        yield build_dataset("sample", cache_dir=str(cache / "hf")), cache


def test_sample_splits_and_labels(sample_ds):
    ds, _ = sample_ds
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 12, "test": 4, "unlabelled": 1}
    assert label_names(ds) == ["normal", "pneumonia"]
    for split in ("train", "test"):
        labels = np.array(ds[split]["labels"])
        assert set(labels.argmax(1)) == {0, 1} and np.all(labels.sum(1) == 1)
    assert not overlapping_patients(ds)
    cr = ds["unlabelled"][0]
    assert all(math.isnan(v) for v in cr["labels"]) and cr["image"].mode == "L"
    assert cr["image"].size == (1841, 1955) and cr["view"] == "PA"


def test_sample_images_are_real_and_attributed(sample_ds):
    ds, cache = sample_ds
    row = ds["train"][0]
    assert row["image"].mode == "L" and min(row["image"].size) > 500
    info = ds["train"].info
    assert "CC BY 4.0" in info.license and "Kermany" in info.citation and "pydicom-data" in info.description
    for name, digest in sample.KERMANY_SHA256.items():
        cached = cache / "sample" / "kermany" / name
        assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest


def test_sample_cache_rejects_tampered_copy(sample_ds, monkeypatch):
    _, cache = sample_ds
    monkeypatch.setenv("CXRGM_CACHE", str(cache))
    name = next(iter(sample.KERMANY_SHA256))
    target = cache / "sample" / "kermany" / name
    target.write_bytes(b"tampered")
    files = sample.sample_files()  # a bad cached copy is replaced from the package
    assert hashlib.sha256(files[name].read_bytes()).hexdigest() == sample.KERMANY_SHA256[name]


def test_filled_sample_cache_needs_no_package(sample_ds, monkeypatch):
    _, cache = sample_ds
    monkeypatch.setenv("CXRGM_CACHE", str(cache))
    sample.sample_files()  # every copy verified
    monkeypatch.setattr(sample.importlib.util, "find_spec", lambda name, *args: None)  # no package installed
    files = sample.sample_files()
    assert len(files) == 17 and all(path.is_file() for path in files.values())
    (cache / "sample" / "kermany" / next(iter(sample.KERMANY_SHA256))).unlink()
    with pytest.raises(LayoutError, match="package not installed"):  # a missing copy needs the package again
        sample.sample_files()
    monkeypatch.undo()
    monkeypatch.setenv("CXRGM_CACHE", str(cache))
    assert len(sample.sample_files()) == 17  # refilled for the other tests of this module


RAW = np.array([[1, 0, -1, np.nan], [-1, -1, np.nan, 1]], np.float32)
NAMES = ["Atelectasis", "Cardiomegaly", "Edema", "Pleural Effusion"]


@pytest.mark.parametrize("uncertain,blank,expected", [
    ("ignore", "zeros", [[1, 0, np.nan, 0], [np.nan, np.nan, 0, 1]]),
    ("zeros", "ignore", [[1, 0, 0, np.nan], [0, 0, np.nan, 1]]),
    ("ones", "zeros", [[1, 0, 1, 0], [1, 1, 0, 1]]),
    ("mixed", "zeros", [[1, 0, 1, 0], [1, 0, 0, 1]]),
    (0.55, "ignore", [[1, 0, 0.55, np.nan], [0.55, 0.55, np.nan, 1]]),
])
def test_label_policies(uncertain, blank, expected):
    out = apply_label_policy(RAW, NAMES, uncertain=uncertain, blank=blank)
    np.testing.assert_allclose(out, np.array(expected, np.float32))
    assert np.isnan(RAW[0, 3]) and RAW[0, 2] == -1  # input untouched


def test_bad_policy():
    with pytest.raises(ValueError, match="uncertain policy"):
        apply_label_policy(RAW, NAMES, uncertain="maybe")


@pytest.mark.parametrize("policy", [{"uncertain": -1}, {"blank": 2}, {"uncertain": 1.5}])
def test_a_number_outside_zero_to_one_is_no_soft_label(policy):
    """uncertain=-1 or blank=2 were accepted and trained a sigmoid towards targets it cannot reach."""
    with pytest.raises(ValueError, match=r"policy as a number is a soft label in \[0, 1\]"):
        apply_label_policy(RAW, NAMES, **policy)


def test_harmonise_labels_and_mask():
    values = np.array([[1, 0, 1]], np.float32)
    out, missing = harmonise_labels(values, ["Effusion", "Pleural_Thickening", "No Finding"],
                                    ["Pleural Effusion", "Pneumonia", "normal"])
    np.testing.assert_array_equal(missing, [False, True, False])
    assert out[0, 0] == 1 and math.isnan(out[0, 1]) and out[0, 2] == 1
    assert values.tolist() == [[1, 0, 1]]


def test_labels_of_one_name_are_combined_and_labels_the_data_cannot_tell_apart_are_missing():
    """A model's pneumonia from a set's pneumonia_bacterial and pneumonia_viral: positive where either is (only the
    last of the two was taken, so bacterial rows lost their positive class); a model's pneumonia_bacterial and
    pneumonia_viral from a set's one pneumonia column: missing, not both the same column."""
    values = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0], [np.nan, np.nan, 0], [np.nan, np.nan, np.nan],
                       [np.nan, 1, np.nan]], np.float32)
    out, missing = harmonise_labels(values, ["normal", "pneumonia_bacterial", "pneumonia_viral"],
                                    ["normal", "pneumonia"])
    assert not missing.any()
    np.testing.assert_array_equal(out[:, 1], [1, 1, 0, np.nan, np.nan, 1])  # unknown unless a positive settles it
    out, missing = harmonise_labels(np.array([[0, 1]], np.float32), ["normal", "pneumonia"],
                                    ["normal", "pneumonia_bacterial", "pneumonia_viral"])
    assert missing.tolist() == [False, True, True] and out[0, 0] == 0 and np.isnan(out[0, 1:]).all()
    out, missing = harmonise_labels(np.array([[0, 1, 0]], np.float32), ["Normal", "Pneumonia Viral", "Pneumonia_Bacterial"],
                                    ["normal", "pneumonia_bacterial", "pneumonia_viral"])
    assert not missing.any() and out.tolist() == [[0, 0, 1]]  # spelt alike: each its own column


def test_a_classifier_head_is_reordered_by_labels_spelt_alike_not_only_by_synonym():
    """A head of pneumonia_bacterial / pneumonia_viral continued on data labelled the other way round: both names are
    'pneumonia' by synonym, and both data labels took head row 0."""
    from types import SimpleNamespace

    from train.starting_point import head_order

    base = SimpleNamespace(num_labels=3, id2label={0: "normal", 1: "pneumonia_bacterial", 2: "pneumonia_viral"})
    assert head_order(base, ["pneumonia_viral", "normal", "pneumonia_bacterial"]) == [2, 0, 1]
    assert head_order(base, ["No Finding", "pneumonia_bacterial", "pneumonia_viral"]) == [0, 1, 2]
    assert head_order(base, ["normal", "pneumonia", "covid"]) is None


def test_harmonise_dataset_returns_new_dataset(sample_ds):
    ds, _ = sample_ds
    before = ds["train"]["labels"]
    new, missing = harmonise_dataset(ds, ["pneumonia", "covid_19"])
    assert missing.tolist() == [False, True] and label_names(new) == ["pneumonia", "covid_19"]
    assert label_names(ds) == ["normal", "pneumonia"] and ds["train"]["labels"] == before
    row = new["train"][0]
    assert row["labels"][0] == before[0][1] and math.isnan(row["labels"][1])


def test_patient_split_keeps_patients_together():
    patients = [f"p{i // 3}" for i in range(300)]
    splits = patient_split(patients, seed=1)
    by_patient = {}
    for patient, split in zip(patients, splits):
        by_patient.setdefault(patient, set()).add(split)
    assert all(len(s) == 1 for s in by_patient.values())
    assert splits.count("train") == 240 and splits == patient_split(patients, seed=1)
    assert splits != patient_split(patients, seed=2)


def test_rows_without_an_official_split_are_cut_by_the_fractions_among_themselves():
    """A manifest naming the split of some rows only (another site's images all `test`) had its other rows cut by
    a seeded split drawn over every patient, those with an official split included: site A's 10 patients got the
    fractions only by chance (in a real archive, no validation patient at all). The cut now spans the patients
    without an official split."""
    from hf_datasets.builders.common import Recipe, assign_splits, record

    site_a = [record(f"/d/site_a/{i}.png", data_dir="/d", patient_id=f"A{i}", source="site_a") for i in range(10)]
    site_b = [record(f"/d/site_b/{i}.png", data_dir="/d", patient_id=f"B{i}", source="site_b", split="test")
              for i in range(30)]
    for seed in range(3):
        splits = assign_splits(Recipe("manifest", site_a + site_b, ["normal"]), seed=seed)
        per_site = {name: sorted(r["source"] for r in rows) for name, rows in splits.items()}
        assert per_site == {"train": ["site_a"] * 8, "validation": ["site_a"], "test": ["site_a"] + ["site_b"] * 30}


def test_two_writers_filling_the_sample_cache_use_temporary_files_of_their_own(tmp_path, monkeypatch):
    """Two processes filling the cache at once (two ranks of `accelerate launch`, two test workers) both copied
    through NAME.partial: the second renamed the first one's half-written copy into place, and the first then failed
    with FileNotFoundError on its own rename. Each writer now copies to a temporary file of its own."""
    source = tmp_path / "package" / "scan.jpeg"
    source.parent.mkdir()
    source.write_bytes(b"a sample image" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "sample" / "kermany" / "scan.jpeg"
    copy = sample.shutil.copyfile
    calls = []

    def copy_while_another_writer_fills_the_cache(src, dst, *args, **kwargs):
        calls.append(Path(dst))
        copied = copy(src, dst, *args, **kwargs)
        if len(calls) == 1:  # before the first writer renames its copy, a second writer fills the cache
            sample._copy_verified(source, target, digest)
            assert target.read_bytes() == source.read_bytes()
        return copied

    monkeypatch.setattr(sample.shutil, "copyfile", copy_while_another_writer_fills_the_cache)
    sample._copy_verified(source, target, digest)
    assert target.read_bytes() == source.read_bytes()
    assert len(calls) == 2 and calls[0] != calls[1] and calls[0].parent == target.parent  # a name of its own each
    assert [p.name for p in target.parent.iterdir()] == ["scan.jpeg"]  # no temporary file left

    def failing_copy(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(sample.shutil, "copyfile", failing_copy)
    target.unlink()
    with pytest.raises(OSError, match="disk full"):  # a writer that fails removes its own temporary file
        sample._copy_verified(source, target, digest)
    assert list(target.parent.iterdir()) == []

    monkeypatch.setattr(sample.shutil, "copyfile", copy)
    sample._copy_verified(source, target, digest)

    def replace_of_a_file_in_use(src, dst):
        raise PermissionError(f"{dst} is in use")  # (Windows refuses to replace a file another process has open)

    monkeypatch.setattr(sample.os, "replace", replace_of_a_file_in_use)
    sample._copy_verified(source, target, digest)  # another writer's verified copy is there: kept
    assert [p.name for p in target.parent.iterdir()] == ["scan.jpeg"]
    target.write_bytes(b"tampered")
    with pytest.raises(PermissionError):  # but not a bad one
        sample._copy_verified(source, target, digest)
    monkeypatch.undo()
    assert [p.name for p in target.parent.iterdir()] == ["scan.jpeg"]


def test_temporary_copies_that_killed_writers_left_in_the_sample_cache_are_removed(sample_ds, monkeypatch):
    """A writer killed while copying a sample file left its temporary copy (NAME.HOST-PID-RANDOM.partial) in the cache
    for good: the cleanup of killed writers' files looked at prepared shards only. Those of writers that are gone go
    now; those of a writer still running or of another host, and other files, stay."""
    import os
    import socket
    import subprocess
    import sys

    _, cache = sample_ds
    monkeypatch.setenv("CXRGM_CACHE", str(cache))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host, name = socket.gethostname(), next(iter(sample.KERMANY_SHA256))
    kermany, cr = cache / "sample" / "kermany", cache / "sample" / "cr"
    stale = [kermany / f"{name}.{host}-{gone}-0a1b2c3d.partial", cr / f"{sample.CR_NAME}.{host}-{gone}-00ff.partial"]
    kept = [kermany / f"{name}.{host}-{os.getpid()}-0a1b2c3d.partial", kermany / f"{name}.other.host-1-0a1b.partial",
            kermany / f"notes.txt.{host}-{gone}-0a1b2c3d.partial"]
    for path in stale + kept:
        path.write_bytes(b"half a copy")
    try:
        assert len(sample.sample_files()) == 17
        assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    finally:
        for path in kept:
            path.unlink(missing_ok=True)


def test_a_seeded_split_gives_each_small_split_every_class():
    """A small site (15 normal patients, 5 with pneumonia, some with two images) cut 0.8 / 0.1 / 0.1: its validation
    split of 2 patients held normal images only for most seeds, where no AUROC exists. Each split keeps its size and
    now gets a patient of each class while it has room; a large set keeps each class's share in every split; a set
    without classes (pretraining, multi-finding images) is cut as before."""
    from collections import Counter

    from hf_datasets.builders.common import Recipe, assign_splits, record

    records = [record(f"/d/{c}{i}_{k}.png", data_dir="/d", patient_id=f"{c}{i}", labels=labels)
               for c, n, labels in (("n", 15, [1.0, 0.0]), ("p", 5, [0.0, 1.0])) for i in range(n)
               for k in range(1 + i % 2)]
    for seed in range(5):
        splits = assign_splits(Recipe("manifest", records, ["normal", "pneumonia"]), seed=seed)
        patients = {name: {r["patient_id"] for r in rows} for name, rows in splits.items()}
        assert sum(map(len, patients.values())) == 20  # each patient in one split
        classes = {name: Counter(patient[0] for patient in members) for name, members in patients.items()}
        assert classes == {"train": Counter(n=13, p=3), "validation": Counter(n=1, p=1), "test": Counter(n=1, p=1)}

    patients = [f"x{i}" for i in range(1000)]
    rare = [i % 10 == 0 for i in range(1000)]
    assert Counter(zip(rare, patient_split(patients, strata=rare))) == {
        (False, "train"): 720, (False, "validation"): 90, (False, "test"): 90,
        (True, "train"): 80, (True, "validation"): 10, (True, "test"): 10}
    assert patient_split(patients, seed=3, strata=[None] * 1000) == patient_split(patients, seed=3)
