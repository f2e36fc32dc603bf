"""RSNA Pneumonia Detection: stage_2_train_labels.csv (patientId,x,y,width,height,Target; one row
per box) + stage_2_train_images/PATIENTID.dcm (8-bit DICOM). One label: "pneumonia" (Target). The view (AP / PA:
AP films go with the sicker patients) is each DICOM header's ViewPosition, the set's only record of it.
No official labelled test set: seeded patient-level split.
"""

from __future__ import annotations

from pathlib import Path

from .common import Recipe, find_file, iter_table, record, warn_not_found
from .generic import dicom_header

CITATION = ("Shih G, Wu CC, Halabi SS, et al. Augmenting the National Institutes of Health Chest "
            "Radiograph Dataset with Expert Annotations of Possible Pneumonia. Radiology: AI 2019.")


def build(data_dir) -> Recipe:
    root = Path(data_dir)
    targets: dict[str, float] = {}
    table = find_file(root, "stage_2_train_labels.csv", "stage_1_train_labels.csv")
    for row in iter_table(table):
        targets[row["patientId"]] = max(targets.get(row["patientId"], 0.0), float(row["Target"]))
    image_dir = find_file(root, "stage_2_train_images", "stage_1_train_images")
    missing = [f"{pid}.dcm" for pid in targets if not (image_dir / f"{pid}.dcm").exists()]
    warn_not_found("rsna_pneumonia", missing, table.name)
    records = [record(image_dir / f"{pid}.dcm", data_dir=root, labels=[target], decode=True,
                      patient_id=f"rsna_{pid}", view=dicom_header(image_dir / f"{pid}.dcm")["view"],
                      source="rsna_pneumonia")
               for pid, target in targets.items() if (image_dir / f"{pid}.dcm").exists()]
    return Recipe(name="rsna_pneumonia", records=records, label_names=["pneumonia"], bits=8,
                  about="RSNA Pneumonia Detection Challenge (2018) stage 2 training labels.",
                  citation=CITATION, license="RSNA / Kaggle competition data terms of use",
                  homepage="https://www.kaggle.com/c/rsna-pneumonia-detection-challenge",
                  data_dir=str(root))
