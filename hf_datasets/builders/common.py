"""What a builder returns (a Recipe of records) and how records become a DatasetDict.

A record is a dict with the schema's metadata columns plus:
    image       absolute path of the original image file
    decode      True when the file is not directly readable by PIL (DICOM, JSRT raw): it is
                decoded and stored as PNG bytes (8- or 16-bit grey)
    mask        None, a path, or a list of paths whose union is the foreground
    labels      list of floats (NaN = unknown)
    split       official split name or None (then a seeded patient-level split is made)
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import tempfile
import time
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np

from ..errors import DataError, ImageReadError, InvalidInputError, LayoutError
from ..images import (IMAGE_SUFFIXES, MISREAD_TIFF, SIXTEEN_BIT_COLOUR_MODES, encode_png, read_grey, stored_mode,
                      to_bits, upright_size)
from ..schema import COLUMNS, make_features, make_info
from ..splits import (
    DEFAULT_FRACTIONS,
    canonical_split,
    patient_split,
    patient_subset,
    resolve_patient_overlap,
    single_class,
)

SKIP_HINT = 'on_error="skip" leaves unreadable files out of the build instead, naming each in a warning'
SYSTEM_FILES = ("thumbs.db", "ehthumbs.db", "desktop.ini")  # written by Windows beside a folder's files
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # PIL modes of 16-bit and 32-bit grey images


@dataclass
class Recipe:
    """Records plus the facts needed to turn them into a DatasetDict."""

    name: str
    records: list[dict]
    label_names: list[str]
    bits: int = 8
    about: str = ""
    citation: str = ""
    license: str = ""
    homepage: str = ""
    data_dir: str = ""
    none_is_no_finding: bool = False  # every finding is a label: an image with all 0 has none (`make_info`)
    no_whole_image: list[str] = field(default_factory=list)  # image paths of DICOM files kept to be reported when
    # built, as their header showed they hold no whole image (unreadable, cut short, without pixel data)
    extra: dict = field(default_factory=dict)


def identifier(*values) -> str | None:
    """The first of `values` that is given (not None and not blank, as a table's empty cell is; the number 0 is),
    as text without the spaces around it ("P001 " from a spreadsheet is patient P001); None when none is."""
    for value in values:
        text = "" if value is None else str(value).strip()
        if text:
            return text
    return None


def record(image, *, data_dir, labels=(), decode=False, mask=None, patient_id=None, study_id=None,
           view=None, sex=None, age=None, source=None, split=None) -> dict:
    """A record in the common layout; `path` is stored relative to `data_dir`."""
    image = os.fspath(image)
    return {"image": image, "decode": decode, "mask": mask, "labels": [float(v) for v in labels],
            "patient_id": identifier(patient_id), "study_id": identifier(study_id),
            "view": view or None, "sex": normalise_sex(sex), "age": parse_age(age),
            "source": source, "split": (canonical_split(split) or None) if split else None,  # a blank cell: none
            "path": os.path.relpath(image, data_dir)}


def some_names(names, shown: int = 5) -> str:
    """The first `shown` of `names`, and how many more there are: "a, b, c and 12 more"."""
    names = [str(name) for name in names]
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def warn_not_found(name: str, missing: list, listed_in: str, shown: int = 5) -> None:
    """Warn that images listed in the set's label files are not under its folder (a partial download, an image
    archive not unpacked): they are left out, so the splits, an official test set too, are smaller than published."""
    if missing:
        warnings.warn(f"{name}: {len(missing)} images listed in {listed_in} were not found under the data folder and "
                      f"are left out: {some_names(missing, shown)}", stacklevel=3)


def check_class_spellings(path, labels) -> None:
    """LayoutError for class names in `labels` (one per row) that differ only in case ('Pneumonia' and 'pneumonia'):
    each would be a class of its own, splitting one class's rows between two outputs."""
    spellings: dict[str, Counter] = {}
    for label in labels:
        spellings.setdefault(label.casefold(), Counter())[label] += 1
    clashes = [dict(sorted(counts.items())) for counts in spellings.values() if len(counts) > 1]
    if clashes:
        raise LayoutError(path, f"class names that differ only in case would be classes of their own: {clashes} (rows "
                                "per spelling); write each class one way")


def _column_key(name) -> str:
    """A column name without case, spaces or punctuation: 'PatientID', 'Patient ID' and 'patient_id' are alike."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def check_column_names(path, columns, read) -> None:
    """LayoutError for a table's column named like one of those the builder reads, `read`, but not exactly ('Label',
    'PatientID'), while that one is missing: it would be left unread without a word, leaving the set without labels
    or its patients free to cross splits."""
    columns = set(columns)
    known = {_column_key(name): name for name in read}
    misnamed = {column: known[_column_key(column)] for column in sorted(columns - set(read))
                if _column_key(column) in known and known[_column_key(column)] not in columns}
    if misnamed:
        renames = ", ".join(f"{column!r} to {name!r}" for column, name in misnamed.items())
        raise LayoutError(path, f"columns are read by their exact names {list(read)}, so {list(misnamed)} would not "
                                f"be read: rename {renames}")


def option_values(value) -> list | None:
    """A builder option that takes a list of values, given as a list, as one string (what `--option views=PA`
    passes) or None (no filter)."""
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def normalise_sex(value) -> str | None:
    """'M', 'Male', 'm' -> 'M'; 'F', 'Female' -> 'F'; anything else -> None."""
    text = str(value or "").strip().upper()
    return text[0] if text[:1] in ("M", "F") else None


def parse_age(value) -> float | None:
    """'58', '058Y', '45yrs', 58.0 -> years as float; months, weeks and days ('006M', '6 months', '3 weeks',
    '030D') converted; else None."""
    if value is None:
        return None
    text = str(value).strip().upper()
    digits = "".join(ch for ch in text if ch.isdigit() or ch == ".")
    if not digits:
        return None
    try:
        number = float(digits)
    except ValueError:
        return None
    unit = text.lstrip("0123456789. ")[:1]  # DICOM age strings end in D / W / M / Y; words start with the same letter
    return number / {"M": 12.0, "W": 52.0, "D": 365.0}.get(unit, 1.0)


def read_table(path) -> list[dict]:
    """Rows of a CSV file (optionally .gz) as dicts keyed by the header row; a row holding more or fewer values than
    the header names columns is refused (`_check_row_length`), blank lines are passed over."""
    return list(iter_table(path))


def iter_table(path):
    """The rows of `read_table`, read one at a time: a table used in one pass (a metadata file of several hundred
    thousand rows) is never held whole."""
    path = Path(path)
    if not path.exists():
        raise LayoutError(path, "label file not found")
    return _table_rows(path)


def _table_rows(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            for values in reader:
                if not values:  # a blank line
                    continue
                if len(values) != len(header):
                    _check_row_length(path, reader.line_num, len(values), len(header))
                yield dict(zip(header, values))
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # a .gz file cut short, or not gzip at all
            raise LayoutError(path, f"the compressed file is cut short or damaged ({err}): fetch it again") from err
        except UnicodeDecodeError as err:
            with opener(path, "rb") as raw:
                raise not_utf8(path, raw) from err


def _line_breaks(data: bytes) -> int:
    """Line ends in `data` as text files are read: \n, \r\n or \r alone (old Mac spreadsheets)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def not_utf8(path, raw) -> LayoutError:
    """LayoutError naming the line and byte offset of the first byte of `raw` (the file `path` opened in binary mode)
    that is not UTF-8: a table a spreadsheet saved as Latin-1 or Windows-1252 (an 'é' or 'µ' in a name or a unit).
    The encoding is not guessed, which could change a value without a word; no value is written out."""
    line, offset = 1, 0
    for chunk in raw:  # lines split at b"\n", which no UTF-8 character holds
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            line, offset = line + _line_breaks(chunk[:err.start]), offset + err.start
            where = f"line {line} holds a byte that is not UTF-8 (0x{chunk[err.start]:02x} at byte offset {offset})"
            break
        line, offset = line + _line_breaks(chunk), offset + len(chunk)
    else:  # the file changed since it was read
        where = "it holds bytes that are not UTF-8"
    return LayoutError(path, f"{where}: the file was saved in another encoding (a spreadsheet's plain CSV is Latin-1 "
                             "or Windows-1252 on many systems); save it as UTF-8 (Excel: 'CSV UTF-8'; LibreOffice: "
                             "character set 'Unicode (UTF-8)')")


def _check_row_length(path, line: int, values: int, columns: int) -> None:
    """LayoutError naming the table, the line and both counts when a row holds other than one value per column: an
    unquoted comma in a value shifts the values after it into the wrong columns, and a line cut short (a truncated
    download) or one that leaves values out would leave its last columns empty without a word."""
    if values > columns:
        raise LayoutError(path, f"line {line} has {values} values but the header names {columns} columns: put a value "
                                "holding a comma in quotes (\"a, b\"), and name every column in the header")
    if values < columns:
        raise LayoutError(path, f"line {line} has {values} values but the header names {columns} columns: the line is "
                                "cut short (a download or copy that stopped early: fetch the file again) or leaves "
                                "values out (write an empty one as nothing between its commas: a,,c)")


def find_file(data_dir, *names) -> Path:
    """The first of `names` (relative paths) found under `data_dir`, else LayoutError."""
    for name in names:
        candidate = Path(data_dir) / name
        if candidate.exists():
            return candidate
    raise LayoutError(data_dir, f"none of {list(names)} found")


def index_files(data_dir, suffixes=IMAGE_SUFFIXES) -> dict[str, Path]:
    """Map file name -> path for every visible file with one of `suffixes` under `data_dir` (recursive)."""
    found = {}
    for root, name in _visible_files(data_dir):
        if name.lower().endswith(suffixes):
            found.setdefault(name, Path(root) / name)
    return found


def walk_files(data_dir, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    """Sorted paths of every visible file with one of `suffixes` under `data_dir` (recursive)."""
    return sorted(Path(root) / name for root, name in _visible_files(data_dir)
                  if name.lower().endswith(suffixes))


def _visible_files(data_dir):
    """(folder, name) of every file under `data_dir`, leaving out hidden files and folders (.DS_Store,
    the '._' metadata twins macOS writes beside each file, .git), the __MACOSX folders of Mac zips and the
    `SYSTEM_FILES` of Windows (Thumbs.db). Symbolic links to folders are followed (a set assembled from links to
    an archive), each folder walked once however many links lead to it, and never one holding `data_dir` (a link to
    a folder above it, or to /, would walk what lies beside the data)."""
    top = os.path.realpath(data_dir)
    walked = set()
    for root, folders, files in os.walk(data_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in walked or real != top and (top + os.sep).startswith(real.rstrip(os.sep) + os.sep):
            folders[:] = []
            continue
        walked.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith(".") and name != "__MACOSX")
        for name in files:
            if not name.startswith(".") and name.lower() not in SYSTEM_FILES:
                yield root, name


def mask_foreground(grey: np.ndarray) -> np.ndarray:
    """A grey mask -> boolean foreground: any value above 0, but above 127 in a 0/255 mask with grey edges."""
    grey_edges = grey.dtype == np.uint8 and grey.max() == 255 and ((grey > 127) & (grey < 255)).any()
    return grey > (127 if grey_edges else 0)


def first_path(mask):
    """A mask's path, or the first of the paths whose union it is."""
    return mask if isinstance(mask, (str, os.PathLike)) else list(mask)[0]


def read_mask(mask) -> np.ndarray:
    """A mask path, or list of paths to unite, -> uint8 array, 0 background / 255 foreground.

    Any value above 0 is foreground (0/1 masks, label maps), but in a 0/255 mask with grey edges (anti-aliased,
    resized or JPEG: values 128-254 present) only values above 127 are, as in the image processor."""
    paths = [mask] if isinstance(mask, (str, os.PathLike)) else list(mask)
    union = None
    for path in paths:
        part = mask_foreground(read_grey(path))
        if union is not None and part.shape != union.shape:
            raise ImageReadError(path, f"mask of {part.shape[1]}x{part.shape[0]} pixels, but {paths[0]} (the mask "
                                       f"it joins) has {union.shape[1]}x{union.shape[0]}")
        union = part if union is None else union | part
    return union.astype(np.uint8) * 255


def check_mask_fits(mask: np.ndarray, image_shape, mask_path, image_path) -> None:
    """ImageReadError for a mask whose shape (aspect ratio, 2% apart) is not its image's: a mask is resized onto its
    image, which fits one drawn at another resolution, but would stretch this one off the image (the mask of
    another image, or of a cropped or padded copy)."""
    (mask_rows, mask_cols), (rows, cols) = mask.shape, image_shape
    if abs(mask_cols * rows / (mask_rows * cols) - 1) > 0.02:
        raise ImageReadError(mask_path, f"mask of {mask_cols}x{mask_rows} pixels for the image {image_path} of "
                                        f"{cols}x{rows}: another shape, so it would be stretched off the image (the "
                                        "mask of another image?); a mask may be smaller or larger than its image, "
                                        "not of another shape")


def encode_example(rec: dict, bits: int) -> dict:
    """Record -> example of the common schema (decoded images become PNG bytes). Other images stay paths,
    read when used; their headers are read here, so a missing or broken file fails (or is skipped) now.
    A wider-than-8-bit image in an 8-bit set is decoded too, scaled by the bits it uses (as preparation
    does): the schema's convert("L") would clip it to white. So is a float image (TIFF "F") in any set: the
    image processor takes floats in [0, 1] only, and such files also hold 16-bit counts. So is a 16-bit colour or
    grey + alpha PNG in any set, into grey at its full depth: datasets' Image feature (Pillow) would read it at 8 bits.
    So is a TIFF that Pillow misreads by name (`MISREAD_TIFF`: turned by its EXIF Orientation, or 16-bit storing white
    as 0), and a DICOM file listed under an image name (told by its 'DICM' marker as its header is read here)."""
    example = {name: rec.get(name) for name in COLUMNS}
    mode = None if rec["decode"] else stored_mode(rec["image"])  # None for a DICOM file too
    shape = None
    if mode in (None, "F", MISREAD_TIFF) or mode in SIXTEEN_BIT_COLOUR_MODES or (mode in WIDE_MODES and bits == 8):
        grey = read_grey(rec["image"])
        shape = grey.shape
        example["image"] = {"bytes": encode_png(to_bits(grey, bits)), "path": None}
    else:
        example["image"] = {"path": rec["image"], "bytes": None}
    if rec.get("mask") is not None:
        mask = read_mask(rec["mask"])
        check_mask_fits(mask, shape or upright_size(rec["image"])[::-1], first_path(rec["mask"]), rec["image"])
        example["mask"] = {"bytes": encode_png(mask), "path": None}
    return example


def file_stamps(records) -> list:
    """(size, modification time) of each record's image and mask files, None for a missing file: part of the
    datasets cache key, so that a build after a file was replaced or repaired reads it again (and no longer
    returns the earlier build, without the file it skipped or with its old pixels)."""
    def state(path):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return stat.st_size, stat.st_mtime_ns

    states = []
    for rec in records:
        mask = rec.get("mask")
        masks = [] if mask is None else [mask] if isinstance(mask, (str, os.PathLike)) else list(mask)
        states.append([state(rec["image"])] + [state(path) for path in masks])
    return states


# The version of what files decode to, part of every cached split's key: raised when a file's pixels change (2: a
# DICOM's VOI LUT applies after its rescale; 3: a 16-bit colour PNG scaled by its channels' bits, 16-bit WhiteIsZero
# and EXIF-turned TIFFs; 4 and 5: lookup and colour tables decoded here, 8-bit entries over wider values unwrapped),
# so that splits an earlier version cached are built again.
DECODING_VERSION = 5


def cache_fingerprint(records, bits: int, on_error: str, features, split: str) -> str:
    """The datasets cache key of one split: its records, their files' stamps (see `file_stamps`), the settings,
    `DECODING_VERSION` and the code that encodes them. The records are hashed as JSON: datasets' own key pickles
    every record in Python, which took most of a cached build of a large set."""
    digest = hashlib.sha256(json.dumps([records, file_stamps(records), bits, on_error, split, DECODING_VERSION],
                                       default=str).encode())
    digest.update(datasets.fingerprint.Hasher.hash([_generate, features]).encode())
    return digest.hexdigest()


def _generate(records, bits, on_error):
    """Examples of `records`."""
    for rec in records:
        try:
            yield encode_example(rec, bits)
        except DataError as err:
            if on_error == "raise":
                raise
            warnings.warn(f"skipped {err}", stacklevel=2)


def _generate_leaving_errors(records, bits, on_error, error_dir):
    """`_generate`, also leaving a DataError that stops it in `error_dir`. In a worker process (num_proc > 1)
    datasets wraps the error in a DatasetGenerationError whose cause, the file and reason, does not survive the way
    back to the parent; `assemble` reads it from there instead."""
    try:
        yield from _generate(records, bits, on_error)
    except DataError as err:
        left = Path(error_dir) / f"{time.time_ns():020d}-{os.getpid()}.pickle"
        partial = left.with_suffix(".partial")
        try:
            partial.write_bytes(pickle.dumps(err))
            os.replace(partial, left)
        except Exception:  # noqa: BLE001 - never hide the error itself: datasets' wrapper is raised then
            pass
        raise


def _stopping_error(err: datasets.exceptions.DatasetGenerationError, error_dir) -> DataError | None:
    """The DataError that stopped a build: the cause of datasets' error in this process, else the first one a worker
    left in `error_dir`; None when there is none."""
    if isinstance(err.__cause__, DataError):
        return err.__cause__
    for left in sorted(Path(error_dir).glob("*.pickle")):
        try:
            error = pickle.loads(left.read_bytes())
        except Exception:  # noqa: BLE001 - a worker killed while writing it: look at the next one
            continue
        if isinstance(error, DataError):
            return error
    return None


def warn_unknown_patients(name: str, records: list[dict], fractions=None, no_whole_image=()) -> None:
    """Warn when images without a patient id are split into several splits: each counts as a patient of its own, so
    one patient's images may land in two splits (training and test) without a word. The files of `no_whole_image`
    (`Recipe.no_whole_image`) are no images: reported as unreadable when built, they are not counted."""
    unreadable = set(no_whole_image)
    images = [r for r in records if r["image"] not in unreadable]
    unknown = sum(r["patient_id"] is None and r["split"] is None for r in images)
    if unknown and sum(share > 0 for share in (fractions or DEFAULT_FRACTIONS).values()) > 1:
        warnings.warn(f"{name}: {unknown} of {len(images)} images have no patient id, so each counts as a patient of "
                      "its own in the seeded split, and one patient's images may fall into different splits; give "
                      "their patient ids (imagefolder: patient_pattern=, a regex whose first group finds the id in "
                      "the file name, or, if it holds a '/', in the path below the class folder: r'^([^/]+)/' takes "
                      "the folder of each patient, CLASS/<id>/...; manifest, cxr_folder: a patient_id column)",
                      stacklevel=3)


def assign_splits(recipe: Recipe, fractions=None, seed: int = 0, train_fraction: float | None = None,
                  subset_seed: int = 0) -> dict[str, list[dict]]:
    """Group records by split: official splits where given, a seeded patient split of the patients without one
    otherwise (cut by `fractions` among themselves, every class of single-label records spread over the splits:
    `patient_split`'s strata); the result is patient-disjoint. `train_fraction` keeps that
    share of the training patients (seeded by `subset_seed`, nested across fractions, every class first:
    `patient_subset`'s strata); the other splits are untouched."""
    records = recipe.records
    if not records:
        raise LayoutError(recipe.data_dir, f"no images found for data set '{recipe.name}'")
    patients = [r["patient_id"] or r["path"] for r in records]
    official = [r["split"] for r in records]
    if fractions is not None and all(s is not None for s in official):  # asked for, it would go unseen otherwise
        warnings.warn(f"{recipe.name}: split_fractions {dict(fractions)} unused: every image has an official split, "
                      "which is kept (patients never cross it)", stacklevel=2)
    if any(s is None for s in official):
        warn_unknown_patients(recipe.name, records, fractions, recipe.no_whole_image)
        unsplit = [p for p, s in zip(patients, official) if s is None]  # those with an official split are not cut
        classes = [single_class(r.get("labels")) for r, s in zip(records, official) if s is None]
        drawn = iter(patient_split(unsplit, fractions, seed, strata=classes))
        official = [s or next(drawn) for s in official]
        empty = [name for name, share in (fractions or DEFAULT_FRACTIONS).items() if share > 0 and name not in official]
        if empty:  # too few patients for the fractions: the split would just be missing, with no word of why
            warnings.warn(f"{recipe.name}: the seeded patient split of {len(set(unsplit))} patients gives {empty} no "
                          f"patient (split fractions {dict(fractions or DEFAULT_FRACTIONS)}): the data set has no "
                          f"such split; pass split_fractions that leave each split a patient", stacklevel=2)
    splits = resolve_patient_overlap(patients, official, where=recipe.name)
    grouped: dict[str, list[dict]] = {}
    for rec, split, patient in zip(records, splits, patients):
        grouped.setdefault(split, []).append(dict(rec, split=split, patient_id=patient))
    if train_fraction is not None and grouped.get("train"):
        train = grouped["train"]
        keep = patient_subset([r["patient_id"] for r in train], train_fraction, subset_seed,
                              strata=[single_class(r.get("labels")) for r in train])
        grouped["train"] = [r for r, k in zip(train, keep) if k]
    order = {"train": 0, "validation": 1, "test": 2}
    return dict(sorted(grouped.items(), key=lambda kv: (order.get(kv[0], 3), kv[0])))


def warn_left_out(name: str, split: str, records: list[dict], ds, shown: int = 20) -> None:
    """Name the files of `records` that the built split `ds` lacks: those on_error="skip" left out. The build warns
    about each, with its reason, as it reads it; a build read back from the datasets cache reads no file, and without
    this would leave them out without a word."""
    kept = Counter(ds.select_columns(["path"])["path"])  # no image is decoded
    missing = []
    for rec in records:
        if kept[rec["path"]]:
            kept[rec["path"]] -= 1
        else:
            missing.append(rec["path"])
    warnings.warn(f"{name}: {len(missing)} of {len(records)} files of split {split!r} were left out as unreadable "
                  f"(on_error='skip'; the reasons are given when the split is built, not when it is read back from "
                  f"the datasets cache): {some_names(missing, shown)}", stacklevel=3)


def assemble(recipe: Recipe, *, fractions=None, seed=0, streaming=False, num_proc=None,
             cache_dir=None, on_error="raise", train_fraction=None, subset_seed=0, folder=None, options=None):
    """Recipe -> DatasetDict (or IterableDatasetDict when streaming) of the common schema; its info names `folder`
    and `options`, what it was built from (see `make_info`)."""
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    features = make_features(len(recipe.label_names), recipe.bits)
    info = make_info(recipe.name, recipe.label_names, about=recipe.about, citation=recipe.citation,
                     license=recipe.license, homepage=recipe.homepage, bits=recipe.bits, folder=folder,
                     options=options, none_is_no_finding=recipe.none_is_no_finding)
    out = {}
    for split, records in assign_splits(recipe, fractions, seed, train_fraction, subset_seed).items():
        kwargs = {"records": records, "bits": recipe.bits, "on_error": on_error}
        if streaming:
            ds = datasets.IterableDataset.from_generator(_generate, features=features, gen_kwargs=kwargs)
        else:
            try:
                with tempfile.TemporaryDirectory(prefix="cxrgm-errors-") as error_dir:
                    try:  # the fingerprint is the cache key: the generator and error_dir do not change the rows
                        ds = datasets.Dataset.from_generator(
                            _generate_leaving_errors, features=features, gen_kwargs=dict(kwargs, error_dir=error_dir),
                            cache_dir=cache_dir,
                            fingerprint=cache_fingerprint(records, recipe.bits, on_error, features, split),
                            num_proc=num_proc if num_proc and num_proc > 1 and len(records) >= num_proc else None,
                            split=split)
                    except datasets.exceptions.DatasetGenerationError as err:  # the file and reason, not the wrapper
                        if (stopping := _stopping_error(err, error_dir)) is not None:
                            stopping.add_note(SKIP_HINT)
                            raise stopping from None
                        raise
            except ValueError as err:  # every file of the split was skipped: datasets cannot read back no rows
                if on_error != "skip" or "corresponds to no data" not in str(err):
                    raise
                ds = datasets.Dataset.from_dict({name: [] for name in features}, features=features,
                                                split=datasets.Split(split))
            if on_error == "skip" and len(ds) < len(records):
                warn_left_out(recipe.name, split, records, ds)
        ds.info.update(info)
        out[split] = ds
    return datasets.IterableDatasetDict(out) if streaming else datasets.DatasetDict(out)


def text_io(path) -> io.TextIOBase:
    """Open a small text file as UTF-8 (latin-1 fallback for old clinical-reading files)."""
    data = Path(path).read_bytes()
    try:
        return io.StringIO(data.decode("utf-8"))
    except UnicodeDecodeError:
        return io.StringIO(data.decode("latin-1"))
