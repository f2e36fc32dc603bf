"""CheXpert (full and small): train.csv / valid.csv beside train/ and valid/ folders, `Path`
column like CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg.
Labels 1 / 0 / -1 (uncertain) / blank are resolved by the `uncertain` and `blank` policies
(see hf_datasets.labels.apply_label_policy). Official splits train / validation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, LayoutError
from ..labels import apply_label_policy
from .common import Recipe, read_table, record

FINDINGS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity",
            "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
            "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]
COMPETITION_TASKS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
TASK_SETS = {"all": FINDINGS, "competition": COMPETITION_TASKS}
RELEASES = ("CheXpert-v1.0-small", "CheXpert-v1.0")
CITATION = ("Irvin J, Rajpurkar P, et al. CheXpert: A Large Chest Radiograph Dataset with "
            "Uncertainty Labels and Expert Comparison. AAAI 2019.")


def raw_label(text: str) -> float:
    """'1.0' -> 1, '0.0' -> 0, '-1.0' -> -1, '' -> NaN."""
    text = (text or "").strip()
    return float(text) if text else float("nan")


def resolve_image(root: Path, relative: str) -> Path:
    """CSV paths start with the release folder name (CheXpert-v1.0[-small]/...); images are looked up below
    `root`, the folder of the CSV files, whatever it is named now."""
    parts = Path(relative).parts
    for candidate in (root / relative, root / Path(*parts[1:])):
        if candidate.exists():
            return candidate
    return root / Path(*parts[1:])


def release_folder(data_dir) -> Path:
    """The folder holding train.csv / valid.csv: data_dir or its CheXpert-v1.0[-small] subfolder (the folder
    the release unpacks into)."""
    root = Path(data_dir)
    for candidate in (root, *(root / name for name in RELEASES)):
        if (candidate / "train.csv").exists() or (candidate / "valid.csv").exists():
            return candidate
    return root


def build(data_dir, uncertain="ignore", blank="zeros", tasks: str = "all",
          frontal_only: bool = False) -> Recipe:
    """data_dir: the release folder (CheXpert-v1.0-small/) or the folder it lies in.
    tasks: "all" (14 labels) or "competition" (the 5 evaluation tasks)."""
    if tasks not in TASK_SETS:
        raise InvalidInputError(f"tasks must be one of {list(TASK_SETS)}, got {tasks!r}")
    root = release_folder(data_dir)
    names = TASK_SETS[tasks]
    records = []
    for csv_name, split in (("train.csv", "train"), ("valid.csv", "validation")):
        if not (root / csv_name).exists():
            continue
        rows = read_table(root / csv_name)
        raw = np.array([[raw_label(row[n]) for n in names] for row in rows], dtype=np.float32)
        labels = apply_label_policy(raw.reshape(len(rows), len(names)), names,
                                    uncertain=uncertain, blank=blank)
        for row, values in zip(rows, labels):
            if frontal_only and row["Frontal/Lateral"] != "Frontal":
                continue
            image = resolve_image(root, row["Path"])
            parts = Path(row["Path"]).parts
            patient, study = parts[-3], f"{parts[-3]}_{parts[-2]}"
            view = row["AP/PA"] or ("LATERAL" if row["Frontal/Lateral"] == "Lateral" else None)
            records.append(record(image, data_dir=root, labels=values, patient_id=patient,
                                  study_id=study, view=view, sex=row["Sex"], age=row["Age"],
                                  source="chexpert", split=split))
    if not records:
        raise LayoutError(data_dir, "no train.csv / valid.csv found")
    return Recipe(name="chexpert", records=records, label_names=names, bits=8,
                  about=f"CheXpert; uncertain={uncertain!r}, blank={blank!r}.", citation=CITATION,
                  license="Stanford University School of Medicine CheXpert Dataset Research Use Agreement",
                  homepage="https://stanfordmlgroup.github.io/competitions/chexpert/",
                  data_dir=str(root))
