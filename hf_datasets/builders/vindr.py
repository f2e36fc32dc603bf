"""VinDr-CXR: annotations/image_labels_{train,test}.csv + {train,test}/IMAGE_ID.dicom.
Training images have one row per radiologist (`rad_id`); readers are combined by
`readers` = "any" (1 if any reader marks it), "majority" or "mean" (soft label).
Official splits train / test. Images are DICOM, decoded to 16-bit PNG. The test file names the
"Other diseases" label "Other disease"; label names are those of the training file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, LayoutError
from .common import Recipe, find_file, read_table, record, warn_not_found

ID_COLUMNS = ("image_id", "rad_id")
COLUMN_ALIASES = {"Other disease": "Other diseases"}  # image_labels_test.csv -> image_labels_train.csv
CITATION = ("Nguyen HQ, Lam K, Le LT, et al. VinDr-CXR: An open dataset of chest X-rays with "
            "radiologist's annotations. Scientific Data 9, 429 (2022).")
COMBINERS = {
    "any": lambda votes: votes.max(axis=0),
    "majority": lambda votes: (votes.mean(axis=0) > 0.5).astype(np.float32),
    "mean": lambda votes: votes.mean(axis=0),
}


def build(data_dir, readers: str = "any") -> Recipe:
    if readers not in COMBINERS:
        raise InvalidInputError(f"readers must be one of {list(COMBINERS)}, got {readers!r}")
    root = Path(data_dir)
    records, names, missing = [], None, []
    for split in ("train", "test"):
        csv_path = find_file(root, f"annotations/image_labels_{split}.csv", f"image_labels_{split}.csv")
        rows = [{COLUMN_ALIASES.get(k, k): v for k, v in row.items()} for row in read_table(csv_path)]
        names = names or [c for c in rows[0] if c not in ID_COLUMNS]
        absent_columns = [n for n in names if n not in rows[0]]
        if absent_columns:
            raise LayoutError(csv_path, f"label columns {absent_columns} of the training file are missing")
        votes = defaultdict(list)
        for row in rows:
            votes[row["image_id"]].append([float(row[n] or 0) for n in names])
        for image_id, image_votes in votes.items():
            image = root / split / f"{image_id}.dicom"
            if not image.exists():
                missing.append(image.relative_to(root))
                continue
            labels = COMBINERS[readers](np.asarray(image_votes, np.float32))
            records.append(record(image, data_dir=root, labels=labels, decode=True,
                                  patient_id=f"vindr_{image_id}", source="vindr_cxr", split=split))
    warn_not_found("vindr_cxr", missing, "image_labels_train.csv / image_labels_test.csv")
    return Recipe(name="vindr_cxr", records=records, label_names=names, bits=16,
                  about=f"VinDr-CXR image-level labels, readers combined by {readers!r}. Patient "
                        "identity is not released, so each image counts as its own patient.",
                  citation=CITATION, license="PhysioNet Restricted Health Data License 1.5.0",
                  homepage="https://physionet.org/content/vindr-cxr/", data_dir=str(root))
