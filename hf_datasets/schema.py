"""The one schema every builder produces, and where label names live.

Columns:
    image       datasets.Image: PIL "L" for 8-bit sets, "I;16" for 16-bit sets
    labels      fixed-length float32 vector, 1 = present, 0 = absent, NaN = unknown
                (an empty variable-length list for unlabelled sets such as dicomdir)
    mask        datasets.Image PIL "L" or None: 0 = background, 255 = foreground
    patient_id, study_id, view, sex ("M"/"F"), source, split, path   strings or None
    age         float32 years or None
Label names are stored in the dataset info (`description` holds a JSON object with
"label_names"); read them with `label_names(ds)`.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import datasets

from .errors import InvalidInputError

COLUMNS = ("image", "labels", "mask", "patient_id", "study_id", "view", "sex", "age",
           "source", "split", "path")
STRING_COLUMNS = ("patient_id", "study_id", "view", "sex", "source", "split", "path")


def make_features(n_labels: int, bits: int = 8) -> datasets.Features:
    """Features of the common schema with `n_labels` label columns and 8- or 16-bit images."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    features = {
        "image": datasets.Image(mode="L" if bits == 8 else None),
        "labels": datasets.List(datasets.Value("float32"), length=n_labels or -1),
        "mask": datasets.Image(mode="L"),
    }
    features.update({name: datasets.Value("string") for name in STRING_COLUMNS})
    features["age"] = datasets.Value("float32")
    return datasets.Features({name: features[name] for name in COLUMNS})


def make_info(name: str, names: list[str], *, about: str = "", citation: str = "",
              license: str = "", homepage: str = "", bits: int = 8, folder: str | None = None,
              options: dict | None = None, none_is_no_finding: bool = False) -> datasets.DatasetInfo:
    """DatasetInfo carrying label names, bit depth, attribution and what the set was built from: the name of its
    data folder (`data_folder_name`) and its builder options, which `hf_datasets.prepare` records for model cards;
    `none_is_no_finding`: the labels are every finding the set records, so an image with all of them 0 has none (see
    `none_is_no_finding`)."""
    description = json.dumps({"label_names": list(names), "bits": bits, "about": about, "folder": folder,
                              "options": options, "none_is_no_finding": none_is_no_finding}, default=str)
    return datasets.DatasetInfo(description=description, citation=citation, license=license,
                                homepage=homepage, dataset_name=name)


def data_folder_name(data_dir) -> str | None:
    """The name of a set's data folder (never its path: it names a folder layout's data, e.g. "kermany_pediatric"),
    or None without one (the sample set)."""
    return Path(os.path.abspath(data_dir)).name if data_dir is not None else None


def _metadata(ds) -> dict:
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if not ds:
            raise InvalidInputError("empty DatasetDict has no label names")
        ds = next(iter(ds.values()))
    try:
        return json.loads(ds.info.description or "{}")
    except json.JSONDecodeError as err:
        raise InvalidInputError("dataset info does not come from hf_datasets (no label names)") from err


def label_names(ds) -> list[str]:
    """Label names of a Dataset / DatasetDict built by `build_dataset` (order of `labels`)."""
    meta = _metadata(ds)
    if "label_names" not in meta:
        raise InvalidInputError("dataset info has no label names")
    return list(meta["label_names"])


def none_is_no_finding(ds) -> bool:
    """Whether an image of `ds` with every label 0 is one with no finding (NIH's 'No Finding', which is not one of its
    labels), so a model's 'No Finding' / 'normal' class can be scored on it."""
    return bool(_metadata(ds).get("none_is_no_finding"))


def bit_depth(ds) -> int:
    """8 or 16: the bit depth images of this data set are stored with."""
    return int(_metadata(ds).get("bits", 8))


def with_label_names(ds: datasets.Dataset, names: list[str]) -> datasets.Dataset:
    """Set label names on `ds` (a fresh copy of its info, so other datasets are untouched)."""
    info = copy.deepcopy(ds.info)
    meta = json.loads(info.description or "{}")
    meta["label_names"] = list(names)
    info.description = json.dumps(meta)
    ds._info = info
    return ds
