"""A site's own data in the generic layouts (imagefolder, manifest), built from real CXRs: the 16 Kermany JPEGs of the
sample set and pydicom's test DICOMs."""

import shutil

import pytest

from hf_datasets import build_dataset, label_names
from hf_datasets.builders.kermany import kermany_patient
from hf_datasets.builders.sample import KERMANY_SHA256, sample_files


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def kermany_class(name: str) -> str:
    return "pneumonia" if "bacteria" in name else "normal"


def test_imagefolder_class_is_the_top_folder_of_images_in_patient_sub_folders(tmp_path):
    """ROOT/CLASS/PATIENT/image: the class is CLASS, not each patient's folder."""
    files = sample_files()
    for name in KERMANY_SHA256:
        target = tmp_path / "site" / kermany_class(name) / kermany_patient(name) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[name], target)
    ds = build_dataset("imagefolder", tmp_path / "site", split_fractions={"train": 1.0})
    assert label_names(ds) == ["normal", "pneumonia"]
    assert all(row["labels"] == ([0.0, 1.0] if "bacteria" in row["path"] else [1.0, 0.0])
               for row in ds["train"].remove_columns(["image", "mask"]))
