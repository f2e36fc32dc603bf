"""NIH ChestX-ray14: Data_Entry_2017(_v2020).csv, train_val_list.txt / test_list.txt, PNGs
in images/ or images_XXX/images/. `Finding Labels` is split on '|' into the 14 findings, the labels; an image
labelled 'No Finding' has none of them (all 0), as in the set's 14-finding benchmark (per-finding and mean AUROC), so
the findings are learnt as multi-label (a sigmoid each) even where every image has at most one.
Official split: test_list.txt is the test set; train_val_list.txt is cut into train /
validation by a seeded patient split (`validation_fraction`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LayoutError
from ..splits import patient_split
from .common import Recipe, find_file, index_files, iter_table, record, warn_not_found

FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia"]
NO_FINDING = "No Finding"
CITATION = ("Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers RM. ChestX-ray8: Hospital-scale Chest "
            "X-ray Database and Benchmarks on Weakly-Supervised Classification and Localization "
            "of Common Thorax Diseases. CVPR 2017.")


def _read_list(path) -> set[str]:
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def build(data_dir, validation_fraction: float = 0.1, seed: int = 0) -> Recipe:
    table = find_file(data_dir, "Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
    entries = iter_table(table)
    test = _read_list(find_file(data_dir, "test_list.txt"))
    trainval = _read_list(find_file(data_dir, "train_val_list.txt"))
    files = index_files(data_dir, (".png",))
    records, missing = [], []
    for row in entries:
        name = row["Image Index"]
        if name not in test and name not in trainval:
            continue
        if name not in files:
            missing.append(name)
            continue
        found = set(row["Finding Labels"].split("|"))
        unknown = found - set(FINDINGS) - {NO_FINDING}
        if unknown:
            raise LayoutError(data_dir, f"{name}: unknown findings {sorted(unknown)}")
        records.append(record(files[name], data_dir=data_dir,
                              labels=[float(f in found) for f in FINDINGS],
                              patient_id=f"nih_{int(row['Patient ID']):08d}",
                              view=row["View Position"], sex=row["Patient Gender"],
                              age=row["Patient Age"], source="nih_chestxray14",
                              split="test" if name in test else "trainval"))
    warn_not_found("nih", missing, table.name)
    pool = [r for r in records if r["split"] == "trainval"]
    drawn = patient_split([r["patient_id"] for r in pool],
                          {"train": 1 - validation_fraction, "validation": validation_fraction}, seed)
    for rec, split in zip(pool, drawn):
        rec["split"] = split
    return Recipe(name="nih", records=records, label_names=FINDINGS, bits=8,
                  about="NIH ChestX-ray14 (NIH Clinical Center), 14 NLP-mined findings (No Finding: none of them).",
                  citation=CITATION, license="No restrictions (NIH Clinical Center); cite the paper",
                  none_is_no_finding=True,
                  homepage="https://nihcc.app.box.com/v/ChestXray-NIHCC", data_dir=str(data_dir))
