"""COVIDx CXR-2/3/4 and COVIDx8/9: split files with lines `patient_id filename class source`
(train*.txt, val*.txt, test*.txt), optionally after a header line, and images in train/, val/, test/.
Labels are one-hot over the classes found (e.g. negative / positive, or COVID-19 / normal / pneumonia).
Fixed test file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import LayoutError
from .common import IMAGE_SUFFIXES, Recipe, record, warn_not_found

CITATION = ("Wang L, Lin ZQ, Wong A. COVID-Net: a tailored deep convolutional neural network design "
            "for detection of COVID-19 cases from chest X-ray images. Scientific Reports 10, 2020.")


def parse_line(line: str):
    """'P1 some file.png positive cohen' -> ('P1', 'some file.png', 'positive', 'cohen')."""
    parts = line.split()
    if len(parts) < 4:
        return None
    return parts[0], " ".join(parts[1:-2]), parts[-2], parts[-1]


def is_header(parsed) -> bool:
    """A parsed first line whose file name is not an image's, e.g. 'patient_id filename class data_source'."""
    return not parsed[1].lower().endswith(IMAGE_SUFFIXES)


def _split_files(root: Path, version: str | None) -> list[tuple[str, Path]]:
    """(split, list file) pairs of one release: `train{version}.txt`, `val{version}.txt`, `test{version}.txt`.
    LayoutError when `version` is None and the folder holds several releases' split files (e.g. train.txt and
    train_COVIDx9A.txt), which would list many images twice, perhaps in different splits."""
    found = {}
    for split in ("train", "val", "test"):
        for path in sorted(root.glob(f"{split}*.txt")):
            found.setdefault(path.stem[len(split):], []).append((split, path))
    if version is not None:
        if version not in found:
            raise LayoutError(root, f"no split files train{version}.txt / test{version}.txt; versions here: "
                                    f"{sorted(found)}")
        return found[version]
    if len(found) > 1:
        raise LayoutError(root, f"split files of several releases ({', '.join(repr(v) for v in sorted(found))}): "
                                "choose one with the builder option version, e.g. version='_COVIDx9A'")
    return next(iter(found.values()), [])


def build(data_dir, version: str | None = None) -> Recipe:
    """`version`: the split files' suffix, needed only when the folder holds several releases' split files."""
    root = Path(data_dir)
    entries = []
    for split, list_file in _split_files(root, version):
        for number, line in enumerate(list_file.read_text().splitlines()):
            parsed = parse_line(line)
            if parsed and not (number == 0 and is_header(parsed)):
                entries.append((split, *parsed))
    if not entries:
        raise LayoutError(root, "no train*.txt / val*.txt / test*.txt split files")
    names = sorted({cls for _, _, _, cls, _ in entries})
    records, missing = [], []
    for split, patient, file_name, cls, source in entries:
        image = root / split / file_name
        if not image.exists():
            missing.append(f"{split}/{file_name}")
            continue
        records.append(record(image, data_dir=root, labels=[float(cls == n) for n in names],
                              patient_id=f"covidx_{source}_{patient}", source=source, split=split))
    warn_not_found("covidx", missing, "the split files")
    return Recipe(name="covidx", records=records, label_names=names, bits=8,
                  about="COVIDx chest X-ray benchmark (COVID-Net); labels one-hot over classes.",
                  citation=CITATION, license="Per-source licences; see the COVID-Net repository",
                  homepage="https://github.com/lindawangg/COVID-Net", data_dir=str(root))
