"""Lung segmentation sets: Montgomery, Shenzhen (with third-party masks) and JSRT + SCR.

Masks are stored as PIL "L", 0 = background, 255 = lung (left and right united).
Montgomery / Shenzhen file names end in _0 (normal) or _1 (tuberculosis); JSRT names start
JPCLN (nodule) or JPCNN (no nodule).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from ..errors import InvalidInputError, LayoutError
from .common import Recipe, record, text_io, walk_files

MONTGOMERY_CITATION = ("Jaeger S, Candemir S, Antani S, et al. Two public chest X-ray datasets for "
                       "computer-aided screening of pulmonary diseases. Quant Imaging Med Surg 2014.")
JSRT_CITATION = ("Shiraishi J, et al. Development of a digital image database for chest radiographs "
                 "with and without a lung nodule. AJR 174, 2000. Masks: van Ginneken B, Stegmann MB, "
                 "Loog M. Segmentation of anatomical structures in chest radiographs using supervised "
                 "methods (SCR). Medical Image Analysis 10, 2006.")


SAME_PATIENT = re.compile(r"same (?:pt|patient) as (MCUCXR_\d+_[01])", re.IGNORECASE)
READING_FIELD = re.compile(r"\s*(?:patient\W?s\s+)?(sex|age)\s*:(.*)", re.IGNORECASE)  # "Patient's Age: 044Y"


def _descend(root: Path, marker: str, *names: str) -> Path:
    """Return root or the first child folder in `names` that contains `marker`."""
    for candidate in (root, *(root / n for n in names)):
        if (candidate / marker).exists():
            return candidate
    raise LayoutError(root, f"no '{marker}' folder found")


def _images(root: Path, prefix: str) -> list[Path]:
    """The set's own images in root/CXR_png: the Kaggle lung-mask release puts both sets' images in one CXR_png."""
    return [path for path in walk_files(root / "CXR_png", (".png",)) if path.name.upper().startswith(prefix)]


def tb_label(stem: str) -> float:
    """'MCUCXR_0001_0' -> 0.0, 'CHNCXR_0327_1' -> 1.0."""
    return float(stem.rsplit("_", 1)[-1] == "1")


def _montgomery_reading(path: Path):
    """(sex, age, stem of another image of the same patient or None) from a clinical reading."""
    if not path.exists():
        return None, None, None
    sex = age = same_as = None
    for line in text_io(path):
        field = READING_FIELD.match(line)  # only the header lines: a finding's words ("image", "stage 2") are no age
        if field and field.group(1).lower() == "sex" and sex is None:
            sex = field.group(2)
        elif field and field.group(1).lower() == "age" and age is None:
            age = field.group(2)
        match = SAME_PATIENT.search(line)
        if match:
            same_as = match.group(1).upper()
    return sex, age, same_as


def _patients(links: dict[str, str | None]) -> dict[str, str]:
    """stem -> patient: images linked (directly or through others) share the first stem of their group."""
    group = {stem: {stem} for stem in links}
    for stem, other in links.items():
        if other in group and group[other] is not group[stem]:
            merged = group[stem] | group[other]
            for member in merged:
                group[member] = merged
    return {stem: min(members) for stem, members in group.items()}


def _mask_folder_files(folder: Path) -> dict[str, Path]:
    """File name -> path of the PNGs in 'mask' / 'masks' folders under `folder` (third-party releases)."""
    return {path.name: path for path in walk_files(folder, (".png",)) if path.parent.name.lower() in ("mask", "masks")}


def _both_lungs(masks: list[Path], image: Path) -> list[str] | None:
    """The left and right lung mask files of `image`, or None when not both are there: a mask of one lung would
    teach the other as background, so the image is kept without a mask (and a warning names it)."""
    if len(masks) == 1:
        warnings.warn(f"{image}: only one lung's mask ({masks[0]}); the image is kept without a mask", stacklevel=3)
    return sorted(str(mask) for mask in masks) if len(masks) == 2 else None


def build_montgomery(data_dir) -> Recipe:
    """Images of one patient (readings say e.g. 'NO REPORT (same pt as MCUCXR_0162_1)') share a patient_id. Masks:
    ManualMask/{leftMask,rightMask} (united), else a combined STEM_mask.png or STEM.png in a 'masks' folder (the
    Kaggle lung-segmentation release)."""
    root = _descend(Path(data_dir), "CXR_png", "MontgomerySet")
    combined = _mask_folder_files(Path(data_dir))
    images = _images(root, "MCUCXR_")
    readings = {image.stem: _montgomery_reading(root / "ClinicalReadings" / f"{image.stem}.txt")
                for image in images}
    patients = _patients({stem: same_as for stem, (_, _, same_as) in readings.items()})
    records = []
    for image in images:
        stem = image.stem
        fallback = combined.get(f"{stem}_mask.png") or combined.get(image.name)
        sides = [m for m in (root / "ManualMask" / side / image.name for side in ("leftMask", "rightMask"))
                 if m.exists()]
        masks = [str(fallback)] if fallback and len(sides) < 2 else _both_lungs(sides, image)
        sex, age, _ = readings[stem]
        records.append(record(image, data_dir=root, labels=[tb_label(stem)], patient_id=patients[stem],
                              mask=masks, sex=sex, age=age,
                              view="PA", source="montgomery"))
    return Recipe(name="montgomery", records=records, label_names=["tuberculosis"], bits=8,
                  about="Montgomery County TB set (NLM); left + right lung masks united.",
                  citation=MONTGOMERY_CITATION, license="Public domain (U.S. NLM); cite the paper",
                  homepage="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html", data_dir=str(root))


def _shenzhen_reading(path: Path):
    if not path.exists():
        return None, None
    first = text_io(path).readline().strip().lower()
    match = re.match(r"(male|female|femal)\s*,?\s*(\d+)\s*(yrs?|days?|months?)?", first)  # 'femal' in a real file
    if not match:
        return None, None
    unit = (match.group(3) or "y")[0].upper()
    return match.group(1), f"{match.group(2)}{'Y' if unit == 'Y' else unit}"


def build_shenzhen(data_dir, mask_dir=None) -> Recipe:
    """mask_dir: folder of third-party masks named STEM_mask.png or STEM.png (default: a
    'mask' / 'masks' folder found under data_dir)."""
    root = _descend(Path(data_dir), "CXR_png", "ChinaSet_AllFiles")
    masks = _mask_folder_files(Path(mask_dir) if mask_dir else Path(data_dir))
    records = []
    for image in _images(root, "CHNCXR_"):
        stem = image.stem
        mask = masks.get(f"{stem}_mask.png") or masks.get(image.name)
        sex, age = _shenzhen_reading(root / "ClinicalReadings" / f"{stem}.txt")
        records.append(record(image, data_dir=root, labels=[tb_label(stem)], patient_id=stem,
                              mask=str(mask) if mask else None, sex=sex, age=age, view="PA",
                              source="shenzhen"))
    return Recipe(name="shenzhen", records=records, label_names=["tuberculosis"], bits=8,
                  about="Shenzhen No.3 Hospital TB set (NLM); lung masks from a third-party release.",
                  citation=MONTGOMERY_CITATION, license="Public domain (U.S. NLM); masks per their release",
                  homepage="https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html", data_dir=str(root))


def build_jsrt(data_dir, fold: int = 1) -> Recipe:
    """Images: *.IMG (2048x2048 12-bit raw, decoded to 16-bit PNG). Masks: SCR
    fold1/ fold2/ .../{left lung,right lung}/NAME.gif (1024x1024). fold=1 trains on SCR fold 1 and
    tests on fold 2; fold=2 the reverse; images in neither fold get a seeded split."""
    if fold not in (1, 2):
        raise InvalidInputError(f"fold must be 1 or 2, got {fold}")
    root = Path(data_dir)
    lung_masks: dict[str, list[Path]] = {}
    folds: dict[str, str] = {}
    for mask in walk_files(root, (".gif",)):
        if mask.parent.name.lower() in ("left lung", "right lung"):
            lung_masks.setdefault(mask.stem, []).append(mask)
            fold_dir = next((p.name for p in mask.parents if re.fullmatch(r"fold[12]", p.name)), None)
            if fold_dir:
                folds[mask.stem] = "train" if fold_dir == f"fold{fold}" else "test"
    records = []
    for image in walk_files(root, (".img",)):
        stem = image.stem
        records.append(record(image, data_dir=root, labels=[float(stem.upper().startswith("JPCLN"))],
                              decode=True, patient_id=stem, mask=_both_lungs(lung_masks.get(stem, []), image),
                              view="PA", source="jsrt", split=folds.get(stem)))
    return Recipe(name="jsrt", records=records, label_names=["nodule"], bits=16,
                  about="JSRT database with SCR lung masks (left + right lung united, 1024x1024).",
                  citation=JSRT_CITATION, license="JSRT database terms; SCR masks for research use",
                  homepage="http://db.jsrt.or.jp/eng.php", data_dir=str(root))
