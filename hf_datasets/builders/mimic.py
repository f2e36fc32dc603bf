"""MIMIC-CXR-JPG 2.0/2.1: mimic-cxr-2.0.0-{chexpert,negbio,metadata,split}.csv(.gz) and
files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg. Labels come per study (1 / 0 / -1 / blank, resolved by
the `uncertain` and `blank` policies). Official splits train / validate / test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..labels import apply_label_policy
from .chexpert import FINDINGS, raw_label
from .common import Recipe, find_file, iter_table, option_values, record, warn_not_found

CITATION = ("Johnson AEW, Pollard TJ, et al. MIMIC-CXR-JPG, a large publicly available database "
            "of labeled chest radiographs. arXiv:1901.07042, 2019. PhysioNet.")


def _rows(root, stem):
    """The rows of a MIMIC table (.csv.gz or .csv), read one at a time."""
    return iter_table(find_file(root, f"{stem}.csv.gz", f"{stem}.csv"))


def _study_labels(root, labeler: str, names: list[str], uncertain, blank) -> dict:
    """study_id -> its labels in the order of `names`, uncertain and blank entries resolved by the policies."""
    rows = list(_rows(root, f"mimic-cxr-2.0.0-{labeler}"))
    raw = np.array([[raw_label(row[n]) for n in names] for row in rows], np.float32)
    resolved = apply_label_policy(raw.reshape(len(rows), len(names)), names, uncertain=uncertain, blank=blank)
    return {row["study_id"]: values for row, values in zip(rows, resolved)}


def build(data_dir, labeler: str = "chexpert", uncertain="ignore", blank="zeros",
          views=None) -> Recipe:
    """labeler: "chexpert" or "negbio"; views: optional ViewPosition values to keep (a list or one value, any case;
    LATERAL takes LL too)."""
    root = Path(data_dir)
    views = option_values(views)
    if views is not None:  # MIMIC's own values in any case: "AP AXIAL" or "PA LLD" are not "AP" or "PA"
        views = {str(view).strip().upper() for view in views}
        views |= {"LL", "RL"} if "LATERAL" in views else set()
    names = sorted(FINDINGS)
    study_labels = _study_labels(root, labeler, names, uncertain, blank)
    image_views = {row["dicom_id"]: row.get("ViewPosition") or None for row in _rows(root, "mimic-cxr-2.0.0-metadata")}
    unlabelled = np.full(len(names), np.nan, np.float32)
    records, missing = [], []
    for row in _rows(root, "mimic-cxr-2.0.0-split"):
        subject, study, dicom_id = row["subject_id"], row["study_id"], row["dicom_id"]
        view = image_views.get(dicom_id)
        if views is not None and str(view or "").strip().upper() not in views:
            continue
        image = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg"
        if not image.exists():
            missing.append(image.relative_to(root))
            continue
        records.append(record(image, data_dir=root, labels=study_labels.get(study, unlabelled),
                              patient_id=f"mimic_{subject}", study_id=study, view=view,
                              source="mimic_cxr", split=row["split"]))
    warn_not_found("mimic_cxr_jpg", missing, "mimic-cxr-2.0.0-split.csv")
    return Recipe(name="mimic_cxr_jpg", records=records, label_names=names, bits=8,
                  about=f"MIMIC-CXR-JPG ({labeler} labels); uncertain={uncertain!r}, blank={blank!r}.",
                  citation=CITATION, license="PhysioNet Credentialed Health Data License 1.5.0",
                  homepage="https://physionet.org/content/mimic-cxr-jpg/", data_dir=str(root))
