"""Label policies (uncertain / blank) and harmonisation of label lists across data sets.

Raw CheXpert-style labels use 1 = positive, 0 = negative, -1 = uncertain, NaN = blank.
Outputs use 1 / 0 / soft values and NaN = unknown (ignored by a masked loss).
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from .errors import InvalidInputError

UNCERTAIN_POLICIES = ("ignore", "zeros", "ones", "mixed")
BLANK_POLICIES = ("ignore", "zeros", "ones")
# CheXpert competition mix: uncertain -> 1 for these, -> 0 for every other label.
MIXED_ONES = ("atelectasis", "edema")
# Synonyms across NIH, CheXpert, MIMIC, PadChest, VinDr, Kermany and COVID sets (canonical forms).
ALIASES = {
    "effusion": "pleural_effusion",
    "pleural_thickening": "pleural_thickening",
    "normal": "no_finding",
    "nodule_mass": "nodule_mass",
    "covid": "covid_19",
    "covid19": "covid_19",
    "pneumonia_viral": "pneumonia",
    "pneumonia_bacterial": "pneumonia",
    "tb": "tuberculosis",
}


def _spelling(name: str) -> str:
    """'Pleural Effusion' / 'pleural-effusion' -> 'pleural_effusion' (no synonyms)."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


def canonical_label(name: str) -> str:
    """'Pleural Effusion' / 'pleural_effusion' / 'Effusion' -> 'pleural_effusion'."""
    key = _spelling(name)
    return ALIASES.get(key, key)


def label_columns(source_names: list[str], target_names: list[str]) -> list[list[int]]:
    """Per target label, the source columns that give it: the one spelt alike ('Pleural Effusion' for
    'pleural_effusion'), else every one of the same canonical name ('Effusion'; pneumonia_bacterial and
    pneumonia_viral both give 'pneumonia'), else none. None either where several targets share the canonical name
    and the source has no column spelt as the target: the source cannot tell them apart."""
    spelt = {_spelling(name): column for column, name in enumerate(source_names)}
    by_canonical: dict[str, list[int]] = {}
    for column, name in enumerate(source_names):
        by_canonical.setdefault(canonical_label(name), []).append(column)
    targets_per_canonical = Counter(canonical_label(name) for name in target_names)
    columns = []
    for name in target_names:
        if _spelling(name) in spelt:
            columns.append([spelt[_spelling(name)]])
        elif targets_per_canonical[canonical_label(name)] > 1:
            columns.append([])
        else:
            columns.append(by_canonical.get(canonical_label(name), []))
    return columns


def _policy_value(policy, name: str, kind: str) -> float:
    if isinstance(policy, (int, float)) and not isinstance(policy, bool):
        if not 0 <= policy <= 1:  # a target outside [0, 1] has no meaning for a sigmoid (and -1 kept "uncertain")
            raise InvalidInputError(f"{kind} policy as a number is a soft label in [0, 1], got {policy!r}")
        return float(policy)
    if policy == "ignore":
        return float("nan")
    if policy == "zeros":
        return 0.0
    if policy == "ones":
        return 1.0
    if policy == "mixed" and kind == "uncertain":
        return 1.0 if canonical_label(name) in MIXED_ONES else 0.0
    allowed = UNCERTAIN_POLICIES if kind == "uncertain" else BLANK_POLICIES
    raise InvalidInputError(f"{kind} policy must be one of {allowed} or a number, got {policy!r}")


def apply_label_policy(raw, names: list[str], *, uncertain="ignore", blank="zeros") -> np.ndarray:
    """Resolve uncertain (-1) and blank (NaN) entries; returns a new float32 array.

    Args:
        raw: (n, k) or (k,) array of 1 / 0 / -1 / NaN.
        names: the k label names (used by the "mixed" policy).
        uncertain: "ignore" (NaN) | "zeros" | "ones" | "mixed" (U-Ones for Atelectasis
            and Edema, U-Zeros otherwise) | a number in [0, 1] (soft label).
        blank: "ignore" (NaN) | "zeros" | "ones" | a number in [0, 1].
    """
    values = np.array(raw, dtype=np.float32, copy=True)
    if values.shape[-1] != len(names):
        raise ValueError(f"labels have {values.shape[-1]} columns but {len(names)} names")
    blank_mask = np.isnan(values)
    uncertain_mask = values == -1
    for column, name in enumerate(names):
        values[..., column][uncertain_mask[..., column]] = _policy_value(uncertain, name, "uncertain")
        values[..., column][blank_mask[..., column]] = _policy_value(blank, name, "blank")
    return values


def harmonise_labels(values, source_names: list[str], target_names: list[str]):
    """Reorder labels to `target_names`, matching names as `label_columns` does; a target that several source
    columns give (pneumonia from pneumonia_bacterial and pneumonia_viral) is positive where any of them is, else
    their largest value where all are known, else unknown.

    Args:
        values: (n, k) or (k,) array in the order of `source_names`.
    Returns:
        (new_values, missing): new (n, t) float32 array (NaN where the source has no such
        label) and a (t,) bool array, True for target labels the source lacks.
        The input is never modified.
    """
    values = np.asarray(values, dtype=np.float32)
    columns = label_columns(source_names, target_names)
    missing = np.array([not c for c in columns], dtype=bool)
    out = np.full(values.shape[:-1] + (len(target_names),), np.nan, dtype=np.float32)
    for target, sources in enumerate(columns):
        if sources:
            given = values[..., sources]
            known = ~np.isnan(given)
            largest = np.where(known, given, -np.inf).max(axis=-1)
            out[..., target] = np.where(known.all(axis=-1) | (largest == 1), largest, np.nan)
    return out, missing


def harmonise_dataset(ds, target_names: list[str]):
    """Harmonise the `labels` column of a Dataset or DatasetDict to `target_names`.

    Returns (new_dataset, missing) where missing is the (t,) bool mask of target labels
    the set does not provide (their values are NaN). The input dataset is not modified.
    """
    import datasets

    from .schema import label_names, with_label_names

    source_names = label_names(ds)
    _, missing = harmonise_labels(np.zeros(len(source_names)), source_names, target_names)

    def convert(split_ds):
        features = split_ds.features.copy()
        features["labels"] = datasets.List(datasets.Value("float32"), length=len(target_names))
        new = split_ds.map(
            lambda batch: {"labels": harmonise_labels(
                np.asarray(batch["labels"], dtype=np.float32).reshape(-1, len(source_names)),
                source_names, target_names)[0].tolist()},
            batched=True, features=features, desc="Harmonising labels")
        return with_label_names(new, target_names)

    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({k: convert(v) for k, v in ds.items()}), missing
    return convert(ds), missing
