"""Generic layouts: class-per-folder images, a CSV/JSONL manifest, and a folder of DICOM files."""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path

from ..dicom import (RADIOGRAPH_MODALITIES, hash_identifier, is_dicom_directory, normalise_view, quiet_value_checks,
                     read_header, wanted_views)
from ..errors import LayoutError
from ..images import IMAGE_SUFFIXES, is_dicom_path
from ..splits import canonical_split
from .common import (Recipe, check_class_spellings, check_column_names, identifier, not_utf8, option_values,
                     read_table, record, some_names, walk_files)

SPLIT_FOLDERS = ("train", "training", "val", "valid", "validation", "test", "testing")


def _patient(below_class: Path, pattern: str) -> str | None:
    """The patient id `pattern` finds in the file stem or, for a pattern holding a '/', in the path below the class
    folder without the file's suffix ('<MRN>/study1/1'): its first group, else the whole match; None where it finds
    none."""
    text = below_class.with_suffix("").as_posix() if "/" in pattern else below_class.stem
    match = re.search(pattern, text)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _check_pattern_found(root: Path, pattern: str, unmatched: list[Path], total: int) -> None:
    """LayoutError when `pattern` found a patient id in none of the `total` images, a warning counting and naming
    the `unmatched` ones when it missed some."""
    if not unmatched:
        return
    names = some_names(image.relative_to(root).as_posix() for image in unmatched)
    if len(unmatched) == total:
        raise LayoutError(root, f"patient_pattern {pattern!r} finds a patient id in none of the {total} images (in "
                                "the file name without its suffix or, for a pattern holding a '/', in the path below "
                                f"the class folder): {names}")
    warnings.warn(f"{root}: patient_pattern {pattern!r} finds no patient id in {len(unmatched)} of {total} images, "
                  f"which have none then (a DICOM file keeps its header's): {names}", stacklevel=3)


def dicom_header(path) -> dict:
    """Modality, normalised view and hashed patient / study ids from a DICOM file's header (None for each when the
    header cannot be read: the file is reported when its pixels are), its SOP Instance UID, and whether the file
    holds a whole image (a header not cut short, followed by all of its pixel data)."""
    with quiet_value_checks():
        header, whole = read_header(path)
        return {"modality": header.get("Modality"), "view": normalise_view(header.get("ViewPosition")),
                "instance": header.get("SOPInstanceUID"), "patient_id": hash_identifier(header.get("PatientID")),
                "study_id": hash_identifier(header.get("StudyInstanceUID")), "whole": whole}


def is_other_modality(header: dict, modalities) -> bool:
    """Whether a DICOM header (`dicom_header`) names a Modality not among `modalities` (None: any is wanted; "dx"
    is DX)."""
    modality = header.get("modality")
    if modalities is None or modality is None:
        return False
    return str(modality).strip().upper() not in {str(wanted).strip().upper() for wanted in modalities}


def warn_other_modality(root: Path, count: int, where: str = "") -> None:
    """Warn that `count` DICOM files under `root` (`where`: a table's rows or files naming them) were left out for
    their Modality (counts only: no modality, neither those met nor those asked for, is written out)."""
    if count:
        where = f" ({where})" if where else ""
        warnings.warn(f"{root}: {count} DICOM file(s){where} left out as their Modality is not among the wanted ones "
                      "(the `modalities` option; its default keeps radiographs only): pass modalities=None to keep "
                      "any modality, or list the ones wanted", stacklevel=3)


def repeats_image(header: dict, first_copies: dict, repeats: list, name: str, labels=None) -> bool:
    """Whether a DICOM file (`dicom_header`) repeats an image found before: its SOP Instance UID is a key of
    `first_copies` (e.g. a study exported twice); then (the first copy's name and labels, this file's) is added to
    `repeats`, else this file becomes the image's first copy. `name` is the file as warnings name it, `labels` its
    labels (a class, or floats with NaN for unknown). A file that holds no whole image (cut short, or without pixel
    data) is no copy of one: it never repeats one, nor stands for it (a damaged copy found first must not displace a
    whole one)."""
    instance = header.get("instance")
    if not header.get("whole") or instance is None:
        return False
    if instance in first_copies:
        repeats.append((first_copies[instance], (name, labels)))
        return True
    first_copies[instance] = (name, labels)
    return False


def _same_labels(first, second) -> bool:
    """Whether two copies' labels are alike: the same class, or the same floats, NaN (unknown) matching NaN."""
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(a == b or (math.isnan(a) and math.isnan(b))
                                                 for a, b in zip(first, second))
    return first == second


def warn_repeats(where: Path, repeats: list) -> None:
    """Warn that the DICOM files of `repeats` (`repeats_image`) were left out, and how many of them had other labels
    than the copy kept, naming a few of those with the copy kept (counts and paths only: no UID or other header value
    is written out)."""
    if not repeats:
        return
    message = (f"{where}: {len(repeats)} DICOM file(s) repeat an image found before (same SOP Instance UID); the first "
               "copy of each is kept")
    relabelled = [f"{kept} -> {name}" for (kept, kept_labels), (name, labels) in repeats
                  if not _same_labels(kept_labels, labels)]
    if relabelled:
        message += (f", with its labels: {len(relabelled)} of the copies left out had other labels, which are not "
                    f"used (copy kept -> copy left out: {some_names(relabelled)}); give each image one set of labels "
                    "(list it once, or keep it in the folder of its class only)")
    warnings.warn(message, stacklevel=3)


def _warn_left_out(root: Path, files: list[Path], why: str) -> None:
    """Warn that `files` (under `root`) are left out, saying why and naming a few."""
    if files:
        names = some_names(file.relative_to(root).as_posix() for file in files)
        warnings.warn(f"{root}: {len(files)} file(s) left out, {why}: {names}", stacklevel=3)


def _warn_classes_in_one_split_each(root: Path, entries: list) -> None:
    """Warn when two or more split folders share no class folder: in a real split each class has images in several
    splits, while patient folders put straight into the split folders (ROOT/train/<MRN>/x.png), split by patient,
    never repeat, and each became a class of its own."""
    classes = {}
    for _, split, cls, *_ in entries:
        if split is not None:
            classes.setdefault(split, set()).add(cls)
    if len(classes) < 2 or len(set.union(*classes.values())) < sum(map(len, classes.values())):
        return
    names = some_names(sorted(set.union(*classes.values())))
    warnings.warn(f"{root}: the split folders ({', '.join(sorted(classes))}) share no class folder, so every class "
                  "has images in one split only: the folders directly under a split folder are the classes "
                  "(ROOT/SPLIT/CLASS/...); if they are patient or study folders, move each into the folder of its "
                  f"class (ROOT/SPLIT/CLASS/<patient>/x.png). Class folders: {names}", stacklevel=3)


def build_imagefolder(data_dir, patient_pattern: str | None = None, modalities=RADIOGRAPH_MODALITIES,
                      bits: int = 8) -> Recipe:
    """ROOT/CLASS/... or ROOT/SPLIT/CLASS/... (SPLIT in train/val/test): the class is the folder directly under ROOT
    (or SPLIT), whose images may lie in sub-folders of any depth (e.g. one per patient or study: CLASS/<patient>/x.png,
    never <patient>/CLASS/x.png nor a patient folder directly under ROOT or SPLIT, which would be a class; a warning
    says when the split folders share no class folder, as patient folders there would); images may be
    PNG/JPEG (.jpe, .jfif too)/TIFF/BMP/GIF/WebP or DICOM (any name, as PACS exports write them; an export's DICOMDIR
    index is left out); a warning counts and names the files left out: images directly in ROOT or in a SPLIT folder
    (in no class folder) and files of other formats in the class folders (hidden and system files, such as .DS_Store
    and Thumbs.db, and files of other formats in ROOT, such as a README, are passed over);
    labels one-hot over the sorted class folder names. patient_pattern: regex on the file stem whose first group is
    the patient id, or, if it holds a '/', on the path below the class folder with '/' between folders and without
    the file's suffix (r"^([^/]+)/" takes the first folder's name: CLASS/<MRN>/1.png), refused if it finds an id in
    no image, and a warning names the images it finds none in; default (and for those): a DICOM file's
    hashed header PatientID, else none (each image counts as its own patient, with a warning where a seeded split is
    drawn); a DICOM file's study and view come from its header. As in dicomdir, DICOM files whose Modality is not in
    `modalities` (default CR and DX, radiographs; None = any) and repeats of an image found before (same SOP Instance
    UID) are left out, with a warning that counts each, and counts and names the repeats lying in another class
    folder than the copy kept (whose class the image takes), each with that copy."""
    root = Path(data_dir)
    modalities = option_values(modalities)
    entries, in_root, other_format, other_modality, first_copies, repeats = [], [], [], 0, {}, []
    for image in walk_files(root, ("",)):
        dicom = is_dicom_path(image)
        readable = dicom or image.suffix.lower() in IMAGE_SUFFIXES
        if dicom and is_dicom_directory(image):
            continue
        parts = image.relative_to(root).parts
        if image.parent == root or (len(parts) == 2 and parts[0].lower() in SPLIT_FOLDERS):
            in_root += [image] if readable else []  # other files beside the class folders (a README) are no images
        elif not readable:
            other_format.append(image)
        else:
            header = dicom_header(image) if dicom else {}
            if is_other_modality(header, modalities):
                other_modality += 1
                continue
            split = canonical_split(parts[0]) if len(parts) >= 3 and parts[0].lower() in SPLIT_FOLDERS else None
            cls = parts[1] if split else parts[0]
            if repeats_image(header, first_copies, repeats, "/".join(parts), cls):
                continue
            entries.append((image, split, cls, Path(*parts[2 if split else 1:]), dicom, header))
    _warn_left_out(root, in_root, "images directly in the folder or in a split folder (train, val, test), outside "
                                  "any class folder (move each into the folder of its class: ROOT/CLASS/... or "
                                  "ROOT/SPLIT/CLASS/...)")
    suffixes = Counter(file.suffix.lower() or "no suffix" for file in other_format)
    _warn_left_out(root, other_format, f"neither images of a format read ({' '.join(IMAGE_SUFFIXES)}) nor DICOM "
                                       f"(files per suffix: {dict(suffixes.most_common())})")
    warn_other_modality(root, other_modality)
    warn_repeats(root, repeats)
    _warn_classes_in_one_split_each(root, entries)
    check_class_spellings(root, [cls for _, _, cls, *_ in entries])
    names = sorted({cls for _, _, cls, *_ in entries})
    if not names:
        raise LayoutError(root, "no CLASS/IMAGE files found")
    records, unmatched, no_whole_image = [], [], []
    for image, split, cls, below_class, dicom, header in entries:
        if dicom and not header["whole"]:
            no_whole_image.append(str(image))
        patient = _patient(below_class, patient_pattern) if patient_pattern else None
        if patient_pattern and patient is None:
            unmatched.append(image)
        patient = patient or header.get("patient_id")
        records.append(record(image, data_dir=root, labels=[float(cls == n) for n in names], decode=dicom,
                              patient_id=patient, study_id=header.get("study_id"), view=header.get("view"),
                              source=root.name, split=split))
    if patient_pattern:
        _check_pattern_found(root, patient_pattern, unmatched, len(entries))
    return Recipe(name="imagefolder", records=records, label_names=names, bits=bits,
                  about=f"Image folder {root.name}: one class per sub-folder.", data_dir=str(root),
                  no_whole_image=no_whole_image)


MANIFEST_COLUMNS = ("image", "sop_instance_uid", "label", "labels", "mask", "patient_id", "study_id", "view", "sex",
                    "age", "source", "split")


def _files_by_instance(root: Path) -> dict[str, str]:
    """SOP Instance UID -> path (relative to `root`) of the first DICOM file under `root`, in path order, holding that
    image whole (an export's DICOMDIR index, a file cut short or without pixel data holds none)."""
    found = {}
    for path in walk_files(root, ("",)):
        if is_dicom_path(path) and not is_dicom_directory(path):
            header = dicom_header(path)
            if header["whole"] and header["instance"]:
                found.setdefault(str(header["instance"]), path.relative_to(root).as_posix())
    return found


def _manifest_rows(path: Path) -> list[dict]:
    """The rows of a CSV (`read_table`) or JSONL manifest; LayoutError naming the line of a JSONL line that is no
    JSON object, and that of a byte that is not UTF-8 in either."""
    if path.suffix.lower() != ".jsonl":
        return read_table(path)
    rows = []
    with path.open(encoding="utf-8-sig") as handle:
        try:
            lines = list(handle)
        except UnicodeDecodeError as err:
            with path.open("rb") as raw:
                raise not_utf8(path, raw) from err
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.rstrip("\n"))  # a column counted on this line, not the next
        except json.JSONDecodeError as err:
            raise LayoutError(path, f"line {number} is not JSON ({err.msg} at column {err.colno}): each line holds "
                                    "one object, {\"image\": \"a.png\", \"label\": \"normal\"}") from None
        if not isinstance(row, dict):
            raise LayoutError(path, f"line {number} is JSON but no object ({{...}}): each line holds one object, "
                                    "{\"image\": \"a.png\", \"label\": \"normal\"}")
        rows.append(row)
    return rows


def _label_value(value, path: Path, image) -> float:
    """A manifest label: empty / null -> NaN (unknown), else a number in [0, 1]; LayoutError for anything else
    (e.g. CheXpert's -1 for uncertain, or text), which training would take as a target."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not (math.isnan(number) or 0.0 <= number <= 1.0):
        raise LayoutError(path, f"label {value!r} for {image}: labels are 1 (present), 0 (absent), a soft value in "
                                "between, or empty (unknown)")
    return number


def _class_name(row: dict) -> str:
    """The row's `label` without surrounding spaces (a spreadsheet's "normal " is "normal"); "" if none."""
    return str(row.get("label") if row.get("label") is not None else "").strip()


def build_manifest(data_dir, manifest: str = "manifest.jsonl", label_names: list[str] | None = None,
                   bits: int = 8, modalities=RADIOGRAPH_MODALITIES) -> Recipe:
    """A CSV or JSONL file (relative to data_dir) with one row per image:
    `image` (path relative to data_dir) or, for a DICOM image, `sop_instance_uid` (the files under data_dir are then
    searched for the one holding it, the first in path order; rows whose UID none holds are left out, with a warning
    counting and naming those rows by number, never by UID; a row giving both whose file holds another UID is
    refused), and either `labels` (JSONL list, with `label_names`),
    one column per name in `label_names` (CSV), or `label` (a class name, one-hot encoded);
    optional mask, patient_id, study_id, view, sex, age, source, split. DICOM images (any name) are decoded; their
    patient and study ids (hashed) and view come from the header where the row gives none. A row whose DICOM file
    repeats an image listed before (same SOP Instance UID) is left out, with a warning that counts them, as in
    dicomdir, and counts and names those whose labels differ from the row kept (whose labels the image takes), each
    with that row's file. As in dicomdir, a row whose DICOM file's Modality is not in `modalities` (default CR and
    DX, radiographs; None = any) is left out, with a warning that counts them and names their rows by number (a
    hospital export's table may list a CT scout or a screenshot beside the radiographs)."""
    root = Path(data_dir)
    path = root / manifest
    if not path.exists():
        tables = sorted(p.name for p in root.glob("*") if p.suffix.lower() in (".csv", ".jsonl"))
        raise LayoutError(path, "manifest not found: name the CSV or JSONL file (relative to data_dir) with the "
                                "`manifest` option: build_dataset(..., manifest=\"labels.csv\"), prepare's --option "
                                "manifest=labels.csv, training's --dataset_options '{\"manifest\": \"labels.csv\"}'; "
                                f"{root} holds {', '.join(tables) if tables else 'no .csv or .jsonl file'}")
    rows = _manifest_rows(path)
    if not rows:
        raise LayoutError(path, "manifest has no rows")
    columns = {column for row in rows for column in row}
    check_column_names(path, columns - set(option_values(label_names) or ()), MANIFEST_COLUMNS)
    check_class_spellings(path, [_class_name(r) for r in rows if _class_name(r)])
    classes = sorted({_class_name(r) for r in rows} - {""})
    names = option_values(label_names) or classes
    by_instance = _files_by_instance(root) if any(not r.get("image") and r.get("sop_instance_uid") for r in rows) \
        else {}
    records, unlabelled, unknown, first_copies, repeats, not_found, disagreeing = [], 0, Counter(), {}, [], [], []
    no_whole_image, other_modality = [], []
    modalities = option_values(modalities)
    for number, row in enumerate(rows, start=1):
        instance = str(row.get("sop_instance_uid") or "").strip()
        if not row.get("image") and instance:
            if instance not in by_instance:
                not_found.append(number)
                continue
            row = {**row, "image": by_instance[instance]}
        if not row.get("image"):
            raise LayoutError(path, f"row {number} names no image: give its file in 'image' (relative to data_dir) or, "
                                    f"for a DICOM file, its 'sop_instance_uid' (columns: {list(row)})")
        if isinstance(row.get("labels"), list):
            values = [_label_value(v, path, row["image"]) for v in row["labels"]]
        elif label_names and all(n in row for n in names):
            values = [_label_value(row[n], path, row["image"]) for n in names]
        elif _class_name(row):
            values = [float(_class_name(row) == n) for n in names]
            unknown.update([] if _class_name(row) in names else [_class_name(row)])
        else:
            values = [float("nan")] * len(names)
            unlabelled += 1
        if len(values) != len(names):
            raise LayoutError(path, f"row for {row.get('image')} has {len(values)} labels, expected {len(names)}")
        mask = row.get("mask") or None
        image = root / row["image"]
        dicom = is_dicom_path(image)
        header = dicom_header(image) if dicom else {}
        if instance and header.get("instance") and str(header["instance"]) != instance:
            disagreeing.append(f"row {number} ({row['image']})")
        if is_other_modality(header, modalities):
            other_modality.append(number)
            continue
        if repeats_image(header, first_copies, repeats, row["image"], values):
            continue
        if dicom and not header["whole"]:
            no_whole_image.append(str(image))
        records.append(record(image, data_dir=root, labels=values, decode=dicom,
                              mask=str(root / mask) if mask else None,
                              patient_id=identifier(row.get("patient_id"), header.get("patient_id")),
                              study_id=identifier(row.get("study_id"), header.get("study_id")),
                              view=row.get("view") or header.get("view"), sex=row.get("sex"), age=row.get("age"),
                              source=row.get("source") or root.name, split=row.get("split") or None))
    if unknown:  # all-zero rows make a single-label set multi-label: right for a class left out on purpose, not a typo
        warnings.warn(f"{path}: 'label' values not in label_names {names}: {dict(unknown)} (rows per value); those "
                      "rows are negative for every name (a multi-label set); fix them if a name is misspelt",
                      stacklevel=2)
    if disagreeing:  # rows and files only: a UID is a header value
        raise LayoutError(path, f"{len(disagreeing)} rows name in 'image' a DICOM file holding another image than "
                                f"their 'sop_instance_uid': {some_names(disagreeing)}; the table's paths and UIDs "
                                "disagree, so its labels may belong to other images (give one of the two columns, or "
                                "correct them)")
    if not_found:  # row numbers only: a UID is a header value
        warnings.warn(f"{path}: {len(not_found)} rows name a sop_instance_uid that no DICOM file under {root} holds "
                      f"(whole); they are left out: rows {some_names(not_found)}", stacklevel=2)
    warn_repeats(path, repeats)
    warn_other_modality(path, len(other_modality), f"rows {some_names(other_modality)}")
    if label_names and unlabelled == len(rows):
        raise LayoutError(path, f"no row has labels for {names}: give one column per name (CSV), a 'labels' "
                                f"list (JSONL) or a 'label' class name (columns: {list(rows[0])})")
    return Recipe(name="manifest", records=records, label_names=names, bits=bits,
                  about=f"Manifest {manifest}.", data_dir=str(root), no_whole_image=no_whole_image)


def build_dicomdir(data_dir, modalities=RADIOGRAPH_MODALITIES, views=None, bits: int = 16) -> Recipe:
    """Every DICOM file under data_dir (found by the 'DICM' marker under any name, or by a .dcm / .dicom suffix, so
    that an empty or damaged one is reported rather than left out unseen) whose
    Modality is in `modalities` (default CR and DX, radiographs; None = any) and normalised view in `views` (None =
    any; LATERAL takes LL and RL); a warning says how many files each of these left out.
    Patient / study ids are hashes of the header values; no labels. A file repeating an image found before (the same
    SOP Instance UID, e.g. a study exported twice) is left out, so that no image counts twice; so is an export's
    DICOMDIR, the index of its files, which holds no image. A file that holds no whole image (cut short, or without
    pixel data) is no copy of one: it is kept, to be reported when read, and never stands for the image."""
    root = Path(data_dir)
    modalities, views = option_values(modalities), wanted_views(option_values(views))  # views=PA is one view
    records, no_whole_image, first_copies, repeats, other_modality, other_view = [], [], {}, [], 0, 0
    for path in walk_files(root, ("",)):
        if not is_dicom_path(path) or is_dicom_directory(path):
            continue
        header = dicom_header(path)
        if is_other_modality(header, modalities):
            other_modality += 1
            continue
        if views is not None and header["view"] not in views:
            other_view += 1
            continue
        if repeats_image(header, first_copies, repeats, path.relative_to(root).as_posix()):
            continue
        if not header["whole"]:
            no_whole_image.append(str(path))
        records.append(record(path, data_dir=root, decode=True, source=root.name, patient_id=header["patient_id"],
                              study_id=header["study_id"], view=header["view"]))
    warn_other_modality(root, other_modality)
    if other_view:  # counts only: no view, neither those met nor those asked for, is written out
        warnings.warn(f"{root}: {other_view} DICOM file(s) left out as their view (ViewPosition) is not among the "
                      "wanted ones or not given (the `views` option): pass views=None to keep any view",
                      stacklevel=2)
    warn_repeats(root, repeats)
    return Recipe(name="dicomdir", records=records, label_names=[], bits=bits,
                  about=f"DICOM files under {root.name} (modalities {modalities}).", data_dir=str(root),
                  no_whole_image=no_whole_image)
