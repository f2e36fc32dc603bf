"""Every distinct image of several CXR folders (each with a labels.csv, see cxr_folder).

Without `classes`, a pool for self-supervised pretraining: labels are dropped and all images go to the `train` split.
With `classes`, a labelled pool with one label scheme, split by patient (seeded, as cxr_folder): each row's `label` is
matched to `classes` by name and synonym, as evaluation matches labels ('COVID-19' is `covid`, 'No Finding' and
'no_finding' are `normal`), after `label_map` renames it (a folder's label -> one of `classes`, matched alike:
{"COVID-19, ARDS": "covid"}); `other_class`, added to the classes, takes every other labelled row (two classes:
classes=["covid"], other_class="non_covid"); without it such rows keep unknown labels (NaN), as do rows labelled "",
"unlabelled" or "unknown". A warning names, per folder, the labels left unknown or taken as `other_class`, with their
rows. Each row keeps its `source`, for a drift report per source.

An image is a duplicate when its bytes equal an earlier image's, or when it names a file of the `join_folder` set in
its `join_column` (e.g. v7labs and Hannover rows carry `ieee8023_filename`, the covid-chestxray-dataset file they
were taken from; file stems are compared). The first copy in folder order (`folders`) is kept, with its labels; a
warning names the copies left out whose labels differ. A .dcm / .dicom file whose header's SOP Instance UID is an
earlier one's (the same DICOM exported again, in one folder or another) is a duplicate too, counted by a warning, as
in cxr_folder (files listed under an image name are not opened to tell). A .dcm / .dicom file whose header's
Modality is not in `modalities` (default CR and DX, radiographs; None = any) is left out, with a warning naming it.

A patient id names one patient across the folders. A row's other `*patient_id` columns (Hannover's
`ieee8023_patient_id`) name the same patient in another folder, and a duplicate's patient id names its first copy's
patient: such ids are one patient, whose rows all take its ids joined by '+' (`hannover_0+ieee8023_0`), so that its
images share a split. `exclude_patients` drops every image of a patient with a listed id (e.g. the test patients of
the downstream tasks). A column named like one of those read but not exactly ('PatientID', 'File') is refused, naming
the rename, as is a row longer or shorter than its header, as in cxr_folder. A DICOM file is decoded, as in
cxr_folder.
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections import Counter
from pathlib import Path

from ..dicom import RADIOGRAPH_MODALITIES
from ..errors import InvalidInputError
from ..images import has_dicom_suffix
from ..labels import canonical_label
from .common import Recipe, check_column_names, identifier, iter_table, option_values, record, some_names
from .cxr_folder import UNLABELLED
from .generic import dicom_header, is_other_modality, repeats_image, warn_other_modality, warn_repeats


def _stem(name: str) -> str:
    return Path(name).stem


def pooled_folders(paths) -> dict[str, int] | None:
    """Images per pooled folder, in order of first appearance, of rows of a pool given by their `path`s
    (`<folder>/<file>`, relative to the pool's data_dir); None when one lies outside any folder (not a pool's row)."""
    counts = {}
    for path in paths:
        parts = Path(path or "").parts
        if len(parts) < 2:
            return None
        counts[parts[0]] = counts.get(parts[0], 0) + 1
    return counts


class PooledClasses:
    """The label scheme of a labelled pool: `classes` (and `other_class`), which each folder's labels are matched to
    by `canonical_label`, after `label_map`."""

    def __init__(self, classes, label_map=None, other_class=None):
        self.names = list(option_values(classes))
        if other_class is not None:
            self.names.append(other_class)
        if len(self.names) < 2:
            raise InvalidInputError(f"a labelled cxr_pool needs two classes or more, got {self.names}: name them "
                                    "(classes=[\"covid\", \"normal\", \"pneumonia\"]) or one and other_class= for "
                                    "every other label (classes=[\"covid\"], other_class=\"non_covid\")")
        self.by_key = {}
        for name in self.names:
            if not isinstance(name, str) or not name.strip():
                raise InvalidInputError(f"cxr_pool classes are names, got {name!r} (classes {self.names})")
            key = canonical_label(name)
            if key in self.by_key:
                raise InvalidInputError(f"cxr_pool classes {self.by_key[key]!r} and {name!r} are one class: labels "
                                        "are matched to classes by name and synonym ('COVID-19' = 'covid', 'No "
                                        "Finding' = 'normal'); name each class once")
            self.by_key[key] = name
        self.other = other_class
        if not isinstance(label_map or {}, dict):
            raise InvalidInputError(f"cxr_pool label_map maps a folder's label to one of the classes, as a mapping "
                                    f"({{\"COVID-19, ARDS\": \"covid\"}}), got {label_map!r}")
        self.renames = {}
        for label, target in (label_map or {}).items():
            if canonical_label(target) not in self.by_key:
                raise InvalidInputError(f"cxr_pool label_map maps {label!r} to {target!r}, which is none of the "
                                        f"classes {self.names}")
            self.renames[canonical_label(label)] = self.by_key[canonical_label(target)]
        self.unknown, self.taken_as_other = Counter(), Counter()  # (folder, label) -> rows

    def of(self, label: str) -> str | None:
        """The class of a row labelled `label`, None when unknown."""
        label = label.strip()
        if label.casefold() in UNLABELLED:
            return None
        key = canonical_label(label)
        return self.renames.get(key) or self.by_key.get(key) or self.other

    def count(self, folder: str, label: str) -> None:
        """Count a pooled row of `folder` whose `label` matches none of the classes, for `warn`."""
        label = label.strip()
        key = canonical_label(label)
        if label.casefold() not in UNLABELLED and key not in self.renames and key not in self.by_key:
            (self.taken_as_other if self.other is not None else self.unknown)[folder, label] += 1

    def one_hot(self, name: str | None) -> list[float]:
        return [float(name == n) for n in self.names] if name is not None else [float("nan")] * len(self.names)

    def warn(self, root: Path) -> None:
        """Name the folders' labels that matched none of the classes (unknown, or taken as `other_class`)."""
        def listed(counts):  # every label, by folder, so that one matched wrongly shows
            by_folder = {}
            for (folder, label), rows in counts.items():
                by_folder.setdefault(folder, []).append(f"{label!r} ({rows})")
            return "; ".join(f"{folder}: {', '.join(labels)}" for folder, labels in by_folder.items())

        if self.unknown:
            warnings.warn(f"{root}: {sum(self.unknown.values())} rows have labels that are none of the classes "
                          f"{self.names} (nor renamed to one by label_map), so their labels are unknown and they are "
                          f"neither learnt from nor scored: {listed(self.unknown)}; other_class= takes such rows as "
                          "one class", stacklevel=3)
        if self.taken_as_other:
            warnings.warn(f"{root}: {sum(self.taken_as_other.values())} rows have labels that are none of the other "
                          f"classes, so they are {self.other!r} (other_class): {listed(self.taken_as_other)}; "
                          "label_map renames a label to one of the classes", stacklevel=3)


class _Patients:
    """Patient ids found to name one patient (a union-find over ids)."""

    def __init__(self):
        self.parent = {}

    def find(self, patient: str) -> str:
        self.parent.setdefault(patient, patient)
        while self.parent[patient] != patient:
            self.parent[patient] = self.parent[self.parent[patient]]
            patient = self.parent[patient]
        return patient

    def join(self, ids) -> None:
        ids = [i for i in ids if i]
        for other in ids[1:]:
            self.parent[self.find(other)] = self.find(ids[0])


def build(data_dir, folders: list[str] | None = None, join_column: str = "ieee8023_filename",
          join_folder: str = "ieee8023_covid", exclude_patients: list[str] | None = None,
          classes: list[str] | None = None, label_map: dict | None = None, other_class: str | None = None,
          modalities=RADIOGRAPH_MODALITIES) -> Recipe:
    root = Path(data_dir)
    names = option_values(folders) or sorted(p.parent.name for p in root.glob("*/labels.csv"))
    if classes is None and (label_map or other_class is not None):
        raise InvalidInputError("cxr_pool's label_map and other_class label a pool: name its classes too (classes=)")
    scheme = PooledClasses(classes, label_map, other_class) if classes is not None else None
    patients, own_ids = _Patients(), set()
    kept_at, records, anchors, relabelled, first_copies, repeats = {}, [], [], [], {}, []
    duplicates, other_modality = 0, []
    modalities = option_values(modalities)
    for name in names:
        folder = root / name
        table = folder / "labels.csv"
        rows = iter_table(table)
        first = next(rows, {})  # a CSV's rows all have its header's columns
        check_column_names(table, first, ("file", "patient_id", "source", "view", "sex", "age", join_column)
                           + (("label",) if scheme else ()))
        for row in itertools.chain([first] if first else [], rows):
            path = folder / row["file"]
            dicom = has_dicom_suffix(path)
            header = dicom_header(path) if dicom else {}
            if is_other_modality(header, modalities):
                other_modality.append(f"{name}/{row['file']}")
                continue
            own = identifier(row.get("patient_id"), header.get("patient_id"))
            linked = [identifier(v) for k, v in row.items() if k != "patient_id" and k.endswith("patient_id")]
            linked = [v for v in linked if v]
            patients.join([own, *linked])
            own_ids.add(own)
            category = scheme.of(row.get("label") or "") if scheme else None
            keys = {"sha1:" + hashlib.sha1(path.read_bytes()).hexdigest()}
            if row.get(join_column):
                keys.add("join:" + _stem(row[join_column]))
            if name == join_folder:
                keys.add("join:" + _stem(row["file"]))
            shown = f"{name}/{row['file']}"
            copies_of = {kept_at[key] for key in keys if key in kept_at}
            # (a DICOM repeat's labels are compared by warn_repeats)
            repeat = not copies_of and repeats_image(header, first_copies, repeats, shown, category)
            if repeat:
                copies_of = {kept_at[first_copies[header["instance"]][0]]}
            if copies_of:
                duplicates += 1
                for kept in copies_of:
                    if anchors[kept] is None:  # the kept copy named no patient: this copy's is the image's patient
                        anchors[kept] = own or next(iter(linked), None)
                    patients.join([anchors[kept], own, *linked])
                    if scheme and not repeat and records[kept]["category"] != category:
                        relabelled.append(f"{records[kept]['shown']} ({records[kept]['category'] or 'unknown'}) -> "
                                          f"{shown} ({category or 'unknown'})")
                continue
            kept_at.update({key: len(records) for key in keys | {shown}})  # shown: a DICOM repeat's first copy
            if scheme:
                scheme.count(name, row.get("label") or "")
            anchors.append(own or next(iter(linked), None))
            records.append({"shown": shown, "category": category, "row": record(
                path, data_dir=root, decode=dicom, labels=scheme.one_hot(category) if scheme else (), patient_id=own,
                study_id=header.get("study_id"), view=row.get("view") or header.get("view"), sex=row.get("sex"),
                age=row.get("age") or None, source=row.get("source") or name, split=None if scheme else "train")})
    warn_repeats(root, repeats)
    warn_other_modality(root, len(other_modality), some_names(other_modality))
    if relabelled:
        warnings.warn(f"{root}: {len(relabelled)} images are listed again with other labels (the same bytes, or "
                      f"named in {join_column}); the copy first in folder order (`folders`) is kept, with its label "
                      f"(copy kept -> copy left out): "
                      f"{some_names(relabelled)}", stacklevel=2)
    if scheme:
        scheme.warn(root)
    members = {}  # a patient's ids that rows give as their own
    for patient in own_ids - {None}:
        members.setdefault(patients.find(patient), []).append(patient)
    excluded = {patients.find(patient) for patient in option_values(exclude_patients) or ()}
    kept = []
    for entry, anchor in zip(records, anchors):
        group = patients.find(anchor) if anchor else None
        if group in excluded:
            continue
        kept.append(dict(entry["row"], patient_id="+".join(sorted(members.get(group) or [anchor])) if group else None))
    return Recipe(name="cxr_pool", records=kept, label_names=scheme.names if scheme else [], bits=8,
                  data_dir=str(root),
                  about=f"Distinct images of {', '.join(names)} ({duplicates} duplicates and "
                        f"{len(records) - len(kept)} images of excluded patients left out"
                        + (f"; classes {scheme.names})." if scheme else ")."))
