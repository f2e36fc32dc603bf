"""Seeded patient-level splits and patient-overlap checks."""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict, deque

from .errors import InvalidInputError

DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "validation", "val": "validation",
                 "validate": "validation", "validation": "validation", "dev": "validation",
                 "test": "test", "testing": "test"}


def canonical_split(name: str) -> str:
    """Map official split names (valid, validate, val, ...) to train / validation / test."""
    return SPLIT_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())


def _patient_rank(patient_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{patient_id}".encode()).hexdigest()


def single_class(labels) -> int | None:
    """The class of an image whose labels have exactly one positive and every other one negative, else None (no
    label, several, or an unknown one): what the seeded split and the training subsets spread (their strata)."""
    labels = list(labels or [])
    positives = [index for index, value in enumerate(labels) if value == 1.0]
    if len(positives) == 1 and sum(value == 0.0 for value in labels) == len(labels) - 1:
        return positives[0]
    return None


def _class_groups(patients: list[str], patient_ids: list[str], strata: list | None) -> dict:
    """Class group -> its patients, in the order of `patients`: a patient's group is the sorted tuple of its items'
    classes in `strata` (per item, or None), None where it has none."""
    classes = {}
    for patient, stratum in zip(patient_ids, strata or ()):
        classes.setdefault(patient, set()).update([] if stratum is None else [stratum])
    groups = {}
    for patient in patients:
        groups.setdefault(tuple(sorted(classes.get(patient, ()), key=str)) or None, []).append(patient)
    return groups


def patient_split(patient_ids: list[str], fractions: dict | None = None, seed: int = 0,
                  strata: list | None = None) -> list[str]:
    """Assign every item a split so that all items of a patient share one split.

    Patients are ordered by a seeded hash and cut by `fractions` (split -> fraction, normalised to sum 1); returns
    the split name for each item, in input order. With `strata` (per item: its class, or None) and two classes or
    more, the splits keep those sizes but are filled smallest first, each with one patient of every class while it
    has room (a small site's validation split could otherwise hold one class only, where no AUROC exists), then
    with the class furthest below its share; the largest split takes the rest. A patient's class: those of its items.
    """
    fractions = dict(fractions or DEFAULT_FRACTIONS)
    patients = sorted(set(patient_ids), key=lambda p: _patient_rank(p, seed))
    sizes, start, cumulative, total = {}, 0, 0.0, sum(fractions.values())
    for split, fraction in fractions.items():
        cumulative += fraction / total
        stop = len(patients) if split == list(fractions)[-1] else round(cumulative * len(patients))
        sizes[split], start = stop - start, stop
    groups = _class_groups(patients, patient_ids, strata)
    if len(set(groups) - {None}) < 2:
        order = patients
    else:
        order = _stratified_order(groups, sizes, len(patients))
    assignment, start = {}, 0
    for split, size in sizes.items():
        assignment.update((patient, split) for patient in order[start:start + size])
        start += size
    return [assignment[p] for p in patient_ids]


def _stratified_order(groups: dict, sizes: dict, count: int) -> list[str]:
    """The patients of `groups` (class -> patients in hash order; None: no class) ordered so that cutting them by
    `sizes` (split -> patients, in order) gives each split but the largest one patient of every class while it has
    room, then patients of the class furthest below its share of that split."""
    remaining = {group: deque(members) for group, members in groups.items()}
    chosen = {}
    for split in sorted(sizes, key=sizes.get)[:-1]:  # smallest first
        taken = dict.fromkeys(groups, 0)
        chosen[split] = []
        for _ in range(sizes[split]):
            group = min((g for g in groups if remaining[g]),
                        key=lambda g: (g is None or taken[g] > 0, taken[g] - sizes[split] * len(groups[g]) / count,
                                       str(g)))
            chosen[split].append(remaining[group].popleft())
            taken[group] += 1
    rest = [patient for members in remaining.values() for patient in members]
    return [patient for split in sizes for patient in (rest if split not in chosen else chosen[split])]


def patient_subset(patient_ids: list[str], fraction: float, seed: int = 0, strata: list | None = None) -> list[bool]:
    """Keep the first `fraction` of the patients (at least one) in a seeded order; True per kept item.

    For one seed the subsets are nested: every patient kept at 10% is also kept at 25% and 100%. Without `strata`
    the order is a seeded hash; with them (per item: its class, or None, as `patient_split` takes) and two classes
    or more, it starts with one patient of every class and then takes the class furthest below its share, so that
    a small subset holds every class there is and each subset about the whole's class shares.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInputError(f"fraction must lie in (0, 1], got {fraction}")
    patients = sorted(set(patient_ids), key=lambda p: _patient_rank(p, seed))
    groups = _class_groups(patients, patient_ids, strata)
    if len(set(groups) - {None}) >= 2:
        patients = _balanced_prefix_order(groups, len(patients))
    kept = set(patients[:max(1, round(fraction * len(patients)))])
    return [p in kept for p in patient_ids]


def _balanced_prefix_order(groups: dict, count: int) -> list[str]:
    """The patients of `groups` (class group -> patients in hash order; None: no class) in one order whose every
    prefix is about class-balanced: first one patient of each class group, then, at each place, the group furthest
    below its share of the prefix so far (the group without a class among them)."""
    remaining = {group: deque(members) for group, members in groups.items()}
    order = [remaining[group].popleft() for group in sorted((g for g in groups if g is not None), key=str)]
    taken = {group: int(group is not None) for group in groups}
    while len(order) < count:
        length = len(order) + 1
        group = min((g for g in groups if remaining[g]),
                    key=lambda g: (taken[g] - length * len(groups[g]) / count, str(g)))
        order.append(remaining[group].popleft())
        taken[group] += 1
    return order


def resolve_patient_overlap(patient_ids: list[str], splits: list[str], where: str = "") -> list[str]:
    """Move every image of a patient found in several splits into one: test > validation > any other named split
    (a held-out site's "external") > train.

    Official split files sometimes leak patients; a warning reports how many moved.
    """
    seen = defaultdict(set)
    for patient, split in zip(patient_ids, splits):
        seen[patient].add(split)
    clashes = {p: s for p, s in seen.items() if len(s) > 1}
    if not clashes:
        return list(splits)
    rank = {"test": 0, "validation": 1, "train": 3}  # another name (2): held out, before train
    keep = {p: min(s, key=lambda n: (rank.get(n, 2), n)) for p, s in clashes.items()}
    warnings.warn(f"{where}: {len(clashes)} patients appear in several official splits; all their images were "
                  "moved to one split (test > validation > another named split > train)", stacklevel=2)
    return [keep.get(p, s) for p, s in zip(patient_ids, splits)]


def overlapping_patients(dataset_dict) -> set[str]:
    """Patient ids present in more than one split of a DatasetDict (empty set when disjoint)."""
    owners = defaultdict(set)
    for split, ds in dataset_dict.items():
        for patient in ds["patient_id"]:
            owners[patient].add(split)
    return {p for p, s in owners.items() if len(s) > 1}
