"""Data pieces of the quality benchmark: nested patient subsets, label renaming, the deduplicated pool."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
from shared_layout import write_shared_layout  # noqa: E402

from hf_datasets import build_dataset, label_names  # noqa: E402
from hf_datasets.splits import patient_subset  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def test_patient_subset_is_seeded_nested_and_keeps_whole_patients():
    ids = [f"p{i // 2}" for i in range(200)]  # 100 patients, two images each
    small, medium, full = (patient_subset(ids, f, seed=1) for f in (0.1, 0.25, 1.0))
    assert len({p for p, k in zip(ids, small) if k}) == 10 and sum(medium) == 50 and all(full)
    assert all(m for s, m in zip(small, medium) if s)  # nested
    assert small == patient_subset(ids, 0.1, seed=1) and small != patient_subset(ids, 0.1, seed=2)
    assert sum(patient_subset(["a", "b"], 0.1)) == 1  # at least one patient
    with pytest.raises(ValueError):
        patient_subset(ids, 0.0)


def test_patient_subset_with_classes_starts_with_each_class_and_keeps_the_shares():
    """With classes (strata), a subset as small as the number of classes holds one patient of each, every larger
    one about the whole's class shares (within a patient), and the subsets stay nested; patients without a class
    are kept in their share too."""
    from collections import Counter

    ids = [f"p{i}" for i in range(1000)]
    classes = [0] * 800 + [1] * 90 + [2] * 10 + [None] * 100  # None: no single class (unlabelled, several)
    share = Counter(classes)
    previous = set()
    for fraction in (0.004, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
        keep = patient_subset(ids, fraction, seed=1, strata=classes)
        kept = {p for p, k in zip(ids, keep) if k}
        assert len(kept) == max(1, round(fraction * len(ids))) and previous <= kept  # its size, nested
        counts = Counter(c for c, k in zip(classes, keep) if k)
        assert all(counts[c] >= 1 for c in (0, 1, 2))  # every class, from 4 patients on
        if fraction >= 0.05:
            assert all(abs(counts[c] - len(kept) * share[c] / len(ids)) <= 1.5 for c in share), (fraction, counts)
        previous = kept
    # a plain hash order would have left the rarest class out of the 1% subset: 10 of its 1,000 patients
    plain = patient_subset(ids, 0.01, seed=1)
    assert Counter(c for c, k in zip(classes, plain) if k)[2] == 0
    # one class or none: the plain seeded order
    assert patient_subset(ids, 0.1, seed=1, strata=[0] * 1000) == patient_subset(ids, 0.1, seed=1)
    assert patient_subset(ids, 0.1, seed=1, strata=[None] * 1000) == patient_subset(ids, 0.1, seed=1)


def test_train_fraction_subsets_training_patients_only(tmp_path):
    folder = write_shared_layout(tmp_path / "data", patients=20) / "kermany_pediatric"
    split = {"train": 0.5, "test": 0.5}
    full = build_dataset("cxr_folder", folder, split_fractions=split)
    part = build_dataset("cxr_folder", folder, split_fractions=split, train_fraction=0.25, subset_seed=3)
    assert part["test"]["path"] == full["test"]["path"]
    assert 0 < part["train"].num_rows < full["train"].num_rows
    assert set(part["train"]["path"]) <= set(full["train"]["path"])


def test_label_map_renames_before_the_classes_are_found(tmp_path):
    folder = write_shared_layout(tmp_path / "data") / "nih_cxr14"
    ds = build_dataset("cxr_folder", folder, split_fractions={"train": 1.0}, label_map={"no_finding": "normal"})
    assert label_names(ds) == ["normal", "pneumonia"]
    assert sorted(map(tuple, ds["train"]["labels"]))[0] == (0.0, 1.0)


def test_pool_drops_duplicates_and_excluded_patients(tmp_path):
    root = write_shared_layout(tmp_path / "data", patients=6)
    ds = build_dataset("cxr_pool", root)
    assert list(ds) == ["train"] and label_names(ds) == []
    paths = ds["train"]["path"]
    # 6 + 6 + 6 ieee8023 + 1 unjoined hannover image; the v7labs byte copies are dropped, and of the joined pair
    # hannover h0 / ieee8023 covid-0 the first in folder order (hannover) is kept
    assert len(paths) == 19 and not any(p.startswith("v7labs") for p in paths)
    assert "hannover_covid/images/h0.png" in paths and "ieee8023_covid/images/covid-0.png" not in paths
    kept = build_dataset("cxr_pool", root, exclude_patients=["ieee8023_0", "kermany_IM_0001"])["train"]["path"]
    assert len(kept) == 17 and "hannover_covid/images/h0.png" not in kept  # via its ieee8023_patient_id
