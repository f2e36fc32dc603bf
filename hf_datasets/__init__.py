"""Chest X-ray data sets for cxrgm: DICOM reading, builders, label policies, prepared shards."""

from .dicom import read_dicom
from .labels import apply_label_policy, harmonise_dataset, harmonise_labels
from .registry import available_datasets, build_dataset
from .schema import bit_depth, label_names

__all__ = ["apply_label_policy", "available_datasets", "bit_depth", "build_dataset",
           "harmonise_dataset", "harmonise_labels", "label_names", "read_dicom"]
