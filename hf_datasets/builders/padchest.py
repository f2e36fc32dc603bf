"""PadChest: PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv(.gz) + 16-bit PNGs in
numbered folders (ImageDir) or flat. `Labels` is a Python-style list string; label names are
every finding present (sorted) unless `labels` is given. No official split.
"""

from __future__ import annotations

import ast
from pathlib import Path

from .common import Recipe, find_file, index_files, option_values, read_table, record, warn_not_found

CSV_NAME = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"
CITATION = ("Bustos A, Pertusa A, Salinas JM, de la Iglesia-Vaya M. PadChest: A large chest x-ray "
            "image dataset with multi-label annotated reports. Medical Image Analysis 66, 2020.")


def parse_findings(text: str) -> list[str] | None:
    """"['pleural effusion', ' cardiomegaly']" -> ['pleural effusion', 'cardiomegaly']; None if
    the row has no parseable labels."""
    try:
        values = ast.literal_eval(text or "")
    except (ValueError, SyntaxError):
        return None
    return [str(v).strip() for v in values if str(v).strip()] if isinstance(values, list) else None


def _age(birth: str, study_date: str):
    try:
        return float(int(study_date[:4]) - int(float(birth)))
    except (TypeError, ValueError):
        return None


def build(data_dir, labels: list[str] | None = None, projections=None) -> Recipe:
    """labels: label names to keep (default: all found); projections: e.g. ["PA", "AP"]; each a list or one value."""
    labels, projections = option_values(labels), option_values(projections)
    rows = read_table(find_file(data_dir, CSV_NAME, CSV_NAME + ".gz"))
    files = index_files(data_dir, (".png",))
    parsed = [parse_findings(row["Labels"]) for row in rows]
    names = list(labels) if labels else sorted({f for fs in parsed if fs for f in fs})
    records, missing = [], []
    for row, findings in zip(rows, parsed):
        if projections is not None and row["Projection"] not in projections:
            continue
        if row["ImageID"] not in files:
            missing.append(row["ImageID"])
            continue
        values = [float("nan")] * len(names) if findings is None else \
            [float(n in findings) for n in names]
        records.append(record(files[row["ImageID"]], data_dir=data_dir, labels=values,
                              patient_id=f"padchest_{row['PatientID']}", study_id=row["StudyID"],
                              view=row["Projection"], sex=row["PatientSex_DICOM"],
                              age=_age(row["PatientBirth"], row["StudyDate_DICOM"]),
                              source="padchest"))
    warn_not_found("padchest", missing, CSV_NAME)
    return Recipe(name="padchest", records=records, label_names=names, bits=16,
                  about="PadChest (Hospital San Juan, Alicante); 16-bit PNGs, report-derived labels.",
                  citation=CITATION, license="PadChest Dataset Research Use Agreement",
                  homepage="https://bimcv.cipf.es/bimcv-projects/padchest/", data_dir=str(Path(data_dir)))
