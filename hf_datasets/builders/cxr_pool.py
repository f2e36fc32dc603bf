"""Every distinct image of several CXR folders (each with a labels.csv, see cxr_folder), for
self-supervised pretraining: labels are dropped and all images go to the `train` split.

An image is a duplicate when its bytes equal an earlier image's, or when it names a file of the
`join_folder` set in its `join_column` (e.g. v7labs and Hannover rows carry `ieee8023_filename`,
the covid-chestxray-dataset file they were taken from; file stems are compared). The first copy
in folder order is kept. A .dcm / .dicom file whose header's SOP Instance UID is an earlier one's (the same DICOM
exported again, in one folder or another) is a duplicate too, counted by a warning, as in cxr_folder (files listed
under an image name are not opened to tell). `exclude_patients` drops every image whose `patient_id` (or any other
`*patient_id` column) is listed, e.g. the test patients of the downstream tasks. A column named like one of those
read but not exactly ('PatientID', 'File') is refused, naming the rename, as is a row longer or shorter than its
header, as in cxr_folder. A DICOM file is decoded, as in cxr_folder.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

from ..images import has_dicom_suffix
from .common import Recipe, check_column_names, iter_table, option_values, record
from .generic import dicom_header, repeats_image, warn_repeats


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


def build(data_dir, folders: list[str] | None = None, join_column: str = "ieee8023_filename",
          join_folder: str = "ieee8023_covid", exclude_patients: list[str] | None = None) -> Recipe:
    root = Path(data_dir)
    names = option_values(folders) or sorted(p.parent.name for p in root.glob("*/labels.csv"))
    excluded = set(exclude_patients or ())
    seen, records, counts, first_copies, repeats = set(), [], {"duplicates": 0, "excluded": 0}, {}, []
    for name in names:
        folder = root / name
        table = folder / "labels.csv"
        rows = iter_table(table)
        first = next(rows, {})  # a CSV's rows all have its header's columns
        check_column_names(table, first, ("file", "patient_id", "source", "view", "sex", "age", join_column))
        for row in itertools.chain([first] if first else [], rows):
            if excluded & {v for k, v in row.items() if k.endswith("patient_id") and v}:
                counts["excluded"] += 1
                continue
            path = folder / row["file"]
            keys = {"sha1:" + hashlib.sha1(path.read_bytes()).hexdigest()}
            if row.get(join_column):
                keys.add("join:" + _stem(row[join_column]))
            if name == join_folder:
                keys.add("join:" + _stem(row["file"]))
            if keys & seen:
                counts["duplicates"] += 1
                continue
            seen |= keys
            dicom = has_dicom_suffix(path)
            header = dicom_header(path) if dicom else {}
            if repeats_image(header, first_copies, repeats, f"{name}/{row['file']}"):
                counts["duplicates"] += 1
                continue
            records.append(record(path, data_dir=root, decode=dicom,
                                  patient_id=row.get("patient_id") or header.get("patient_id"),
                                  study_id=header.get("study_id"), view=row.get("view") or header.get("view"),
                                  sex=row.get("sex"), age=row.get("age") or None,
                                  source=row.get("source") or name, split="train"))
    warn_repeats(root, repeats)
    return Recipe(name="cxr_pool", records=records, label_names=[], bits=8, data_dir=str(root),
                  about=f"Distinct images of {', '.join(names)} ({counts['duplicates']} duplicates and "
                        f"{counts['excluded']} images of excluded patients left out).")
