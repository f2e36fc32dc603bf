"""Kermany pediatric pneumonia: chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg. Only these folders
are read: the Kaggle archive holds a second copy of the set in chest_xray/chest_xray/.

File names: IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg, person1_bacteria_1.jpeg,
person1_virus_6.jpeg. Labels are one-hot over ["normal", "pneumonia"] (classes="binary")
or ["normal", "bacteria", "virus"] (classes="subtype"). Official splits.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InvalidInputError, LayoutError
from .common import Recipe, record, walk_files

KERMANY_CITATION = ("Kermany DS, Goldbaum M, et al. Identifying Medical Diagnoses and Treatable "
                    "Diseases by Image-Based Deep Learning. Cell 172(5):1122-1131, 2018. "
                    "Data: Mendeley Data, v2, doi:10.17632/rscbjbr9sj.2 (CC BY 4.0).")
CLASS_SETS = {"binary": ["normal", "pneumonia"], "subtype": ["normal", "bacteria", "virus"]}


def kermany_patient(file_name: str) -> str:
    """'IM-0131-0001.jpeg' -> 'IM-0131'; 'NORMAL2-IM-0131-0001.jpeg' -> 'NORMAL2-IM-0131', another child (the
    NORMAL2 series is numbered on its own: both numbers are in the set, one in its training and one in its test
    split, of children who look nothing alike); 'person1946_bacteria_4875.jpeg' -> 'person1946'."""
    stem = Path(file_name).stem
    match = re.match(r"((?:NORMAL2-)?IM-\d+)", stem) or re.match(r"(person\d+)", stem)
    return match.group(1) if match else stem


def _class_of(folder: str, file_name: str, classes: str) -> str:
    if folder.upper() == "NORMAL":
        return "normal"
    if classes == "binary":
        return "pneumonia"
    return "virus" if "virus" in file_name.lower() else "bacteria"


def build(data_dir, classes: str = "binary") -> Recipe:
    if classes not in CLASS_SETS:
        raise InvalidInputError(f"classes must be one of {list(CLASS_SETS)}, got {classes!r}")
    names = CLASS_SETS[classes]
    root = Path(data_dir)
    if (root / "chest_xray").is_dir() and not (root / "train").is_dir():
        root = root / "chest_xray"
    records = []
    for path in walk_files(root):
        if len(path.relative_to(root).parts) != 3:  # e.g. the Kaggle archive's second copy, chest_xray/chest_xray/
            continue
        split, folder, name = path.relative_to(root).parts
        if folder.upper() not in ("NORMAL", "PNEUMONIA") or split.lower() not in ("train", "val", "test"):
            continue
        label = _class_of(folder, name, classes)
        records.append(record(path, data_dir=root, labels=[float(label == c) for c in names],
                              patient_id=f"kermany_{kermany_patient(name)}",
                              source="kermany", split=split))
    if not records:
        raise LayoutError(data_dir, "no {train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg files")
    return Recipe(name="kermany", records=records, label_names=names, bits=8,
                  about="Kermany pediatric chest X-rays (Guangzhou), normal vs pneumonia.",
                  citation=KERMANY_CITATION, license="CC BY 4.0",
                  homepage="https://data.mendeley.com/datasets/rscbjbr9sj/2", data_dir=str(root))
