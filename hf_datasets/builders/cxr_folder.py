"""A prepared CXR folder: labels.csv (`file`, `label` and/or `mask_file`, `patient_id`, `source`,
optional `view`, `sex`, `age`, ...) beside the images and masks; a column named like one of these but not exactly
('Label', 'PatientID') is refused, naming the rename, and so is a row with more or fewer values than the header
names columns, naming its line. Labels are one-hot over the
class names (sorted, or `classes`) after renaming by `label_map` (e.g. {"no_finding": "normal"});
rows whose label is empty, "unlabelled" or not in `classes` get NaN labels. Seeded patient-level split. A DICOM file
(named .dcm / .dicom: files are not opened to tell) is decoded; its hashed patient and study ids and view come from
its header where the row gives none. One listed under an image name (a PACS export's x.png) is told by its 'DICM'
marker when it is read, and decoded too; its ids and view come from the row alone. A .dcm / .dicom row repeating an
image listed before (the same SOP Instance UID in its header) is left out, with a warning that counts them and
names those whose label differs from the row kept, as in manifest; so is one whose header's Modality is not in
`modalities` (default CR and DX, radiographs; None = any), with a warning naming its row by number.
"""

from __future__ import annotations

from pathlib import Path

from ..dicom import RADIOGRAPH_MODALITIES
from ..errors import LayoutError
from ..images import has_dicom_suffix
from .common import (Recipe, check_class_spellings, check_column_names, find_file, identifier, option_values,
                     read_table, record, some_names)
from .generic import dicom_header, is_other_modality, repeats_image, warn_other_modality, warn_repeats

UNLABELLED = ("", "unlabelled", "unlabeled", "unknown")


def build(data_dir, classes: list[str] | None = None, label_column: str = "label",
          label_map: dict | None = None, modalities=RADIOGRAPH_MODALITIES) -> Recipe:
    root = Path(data_dir)
    table = find_file(root, "labels.csv")
    rows = read_table(table)
    check_column_names(table, {column for row in rows for column in row},
                       ("file", label_column, "mask_file", "patient_id", "source", "view", "sex", "age"))
    if rows and "file" not in rows[0]:
        raise LayoutError(table, f"no 'file' column (columns: {list(rows[0])})")
    rename = dict(label_map or {})
    stated = [(r.get(label_column) or "").strip() for r in rows]  # a spreadsheet's "normal " is "normal"
    labels = [rename.get(label, label) for label in stated]
    check_class_spellings(table, [label for label in labels if label not in UNLABELLED])
    found = sorted(set(labels) - set(UNLABELLED))
    names = list(classes) if classes else found
    records, no_whole_image, first_copies, repeats, other_modality = [], [], {}, [], []
    modalities = option_values(modalities)
    for number, (row, label) in enumerate(zip(rows, labels), start=1):
        values = [float(label == n) for n in names] if label in names else [float("nan")] * len(names)
        mask = row.get("mask_file") or None
        image = root / row["file"]
        dicom = has_dicom_suffix(image)
        header = dicom_header(image) if dicom else {}
        if is_other_modality(header, modalities):
            other_modality.append(number)
            continue
        if repeats_image(header, first_copies, repeats, row["file"], values):
            continue
        if dicom and not header["whole"]:
            no_whole_image.append(str(image))
        records.append(record(image, data_dir=root, labels=values, decode=dicom,
                              mask=str(root / mask) if mask else None,
                              patient_id=identifier(row.get("patient_id"), header.get("patient_id")),
                              study_id=header.get("study_id"), view=row.get("view") or header.get("view"),
                              sex=row.get("sex"), age=row.get("age") or None,
                              source=row.get("source") or root.name))
    warn_repeats(table, repeats)
    warn_other_modality(table, len(other_modality), f"rows {some_names(other_modality)}")
    return Recipe(name="cxr_folder", records=records, label_names=names, bits=8,
                  about=f"CXR folder {root.name} (labels.csv).", data_dir=str(root), no_whole_image=no_whole_image)
