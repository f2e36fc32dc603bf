"""Prepare pre-resized grey training shards from any supported data set.

    python -m hf_datasets.prepare --dataset NAME --data_dir D --output_dir O --size 256 --num_proc N

Output: a folder for `datasets.load_from_disk` giving a DatasetDict of the common schema with
images resized so the longer side is --size (uint8 PNG, or uint16 with --bits 16) and masks
resized alike. Shards of --shard_size images are kept across runs: a rerun after a kill only
writes the missing ones. report.json lists every skipped file with its reason; found = written +
skipped; a split (or the whole set) whose files are all skipped is an error. --streaming reads the
set in one sequential pass in one process (each file read once, straight into its shard, no
datasets cache), for sources larger than local disk or behind a slow mount; `prepare_iterable` does the same for an IterableDatasetDict, e.g. a streamed Hub set. A streamed
rerun reads the rows of kept shards again, without decoding them, and refuses a source that no longer
gives the rows they were written from (another source, order, size or content).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import multiprocessing
import os
import re
import warnings
from collections import Counter
from itertools import islice
from pathlib import Path

import datasets
import numpy as np
from PIL import Image as PILImage
from tqdm.auto import tqdm

from .builders.common import assign_splits
from .errors import InvalidInputError, run_script
from .images import stated_bits
from .registry import available_datasets, build_recipe
from .schema import COLUMNS, data_folder_name, make_features, make_info
from .shards import (finish_split, is_finished, remove_stale_partials, shard_exists, shard_paths,
                     write_atomically, write_shard)


def _shard_job(job):
    split_dir, index, records, features, size, bits = job
    return len(records), write_shard(Path(split_dir), index, records, features, size=size, bits=bits)


def _chunks(items, size):
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _summary(reports_by_split: dict[str, list[dict]], output_dir: Path, size: int, bits: int) -> dict:
    skipped = [dict(entry, split=split) for split, reports in reports_by_split.items()
               for report in reports for entry in report["skipped"]]
    written = {split: sum(r["written"] for r in reports) for split, reports in reports_by_split.items()}
    summary = {"found": sum(written.values()) + len(skipped), "written": sum(written.values()),
               "skipped": len(skipped), "written_per_split": written, "size": size, "bits": bits,
               "skipped_by_error": dict(Counter(e["error"] for e in skipped)), "skipped_files": skipped}
    write_atomically(output_dir / "report.json", json.dumps(summary, indent=2))
    _refuse_unreadable_splits(summary, output_dir / "report.json")
    return summary


def _refuse_unreadable_splits(summary: dict, report: Path) -> None:
    """Refuse a set, or a split of it, whose files were all skipped: it has no image to train or evaluate on. The
    counts are those of every shard, kept from an earlier run or written by this one."""
    skipped = Counter(entry["split"] for entry in summary["skipped_files"])
    empty = [split for split, written in summary["written_per_split"].items() if not written and skipped[split]]
    if not empty:
        return
    listed = f"each skipped file is listed with its reason under skipped_files in {report}"
    if not summary["written"]:
        raise InvalidInputError(f"No file could be read ({summary['skipped']} skipped: {summary['skipped_by_error']}): "
                                f"the prepared set has no image; {listed}")
    several = len(empty) > 1
    splits = ", ".join(f"{split!r} ({skipped[split]} skipped)" for split in empty)
    raise InvalidInputError(f"No file of split{'s' if several else ''} {splits} could be read: "
                            f"{'these splits have' if several else 'the split has'} no image (the others were "
                            f"written); {listed}")


def _check_sizes(size: int, shard_size: int) -> None:
    """Refuse a size or shard size below 1 (they gave 1-pixel images, or no shard at all: an empty set)."""
    if size < 1 or shard_size < 1:
        raise InvalidInputError(f"size and shard_size must be positive, got size={size}, shard_size={shard_size}")


_FOLDER_FILES = re.compile(r"prepare_settings\.json|dataset_dict\.json|report\.json")  # the output folder's own
# settings that later versions record, with what an earlier version's folder, which lacks them, cannot tell
_ADDED_SINCE = {"files": "image or mask files replaced in place",
                "options": "a set streamed (prepare_iterable) from a build with other builder options",
                "columns": "a changed source, patient, study, view, sex, age or split value (a source named after "
                           "its folder changes with the folder's name)"}
# settings recorded for the model card, never checked: the name of the data's folder (never its path), which names a
# folder layout's data (cxr_folder: "kermany_pediatric", a public set); a renamed copy resumes as before (a source named
# after its folder is refused by `columns`), keeping the name recorded first
_UNCHECKED = ("folder",)
# the columns of each record that `columns` digests: images and masks are told by `files`, paths and labels by `records`
_DIGESTED_COLUMNS = tuple(name for name in COLUMNS if name not in ("image", "mask", "path", "labels"))


def _check_settings(output_dir: Path, settings: dict) -> None:
    """Record the run's settings; refuse to resume into a folder prepared with other settings. The file is renamed
    into place whole. A damaged one (an earlier version wrote it in place, and a kill could cut it short) is refused,
    naming it, when the folder holds anything of a shard, whose settings it can then no longer check; before any
    shard there is nothing to mix, and it is replaced, with a warning. A folder of an earlier version, which lacks
    settings recorded since (`_ADDED_SINCE`), is checked on what it recorded, and they are added to its file.
    `_UNCHECKED` settings are not compared; the first recorded are kept, and added to a file that lacks them."""
    path = output_dir / "prepare_settings.json"
    recorded = None
    if path.exists():
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
            damage = None if isinstance(recorded, dict) else "not a JSON object"
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            damage = str(err)
        if damage is not None:
            if next(output_dir.glob("*/data-*"), None) is not None:
                raise InvalidInputError(f"{path} is damaged ({damage}): the settings the shards in {output_dir} "
                                        "were prepared with cannot be checked, so they are not resumed; use a new "
                                        "--output_dir (or restore the file)")
            warnings.warn(f"{path} is damaged ({damage}); no shard was written yet: it is replaced by this run's "
                          "settings", stacklevel=3)
            recorded = None
    unrecorded = [key for key in _ADDED_SINCE if recorded is not None and key in settings and key not in recorded]
    if unrecorded:  # a folder of an earlier version: checked on what it recorded
        warnings.warn(f"{path} was written by an earlier version, which recorded no {', '.join(unrecorded)}: "
                      f"{'; '.join(_ADDED_SINCE[key] for key in unrecorded)} since then cannot be told; they are "
                      "recorded from now on", stacklevel=3)
    expected = {key: value for key, value in settings.items() if key not in unrecorded and key not in _UNCHECKED}
    kept = {key: recorded[key] for key in _UNCHECKED if key in (recorded or {})}
    if recorded is not None:
        recorded = {key: value for key, value in recorded.items() if key not in _UNCHECKED}
    if recorded is not None and recorded != json.loads(json.dumps(expected)):
        differ = sorted(key for key in recorded.keys() | expected.keys()
                        if json.dumps(recorded.get(key)) != json.dumps(expected.get(key)))
        if differ == ["files"]:  # the same paths and labels (records), in the same order
            raise InvalidInputError(f"{output_dir}: an image or mask file changed in place since the folder was "
                                    "prepared (another size or modification time under the same path); resuming would "
                                    "mix two versions of the set: use a new --output_dir (or put the files back)")
        if differ == ["columns"]:  # the same files, paths and labels, with other values in the other columns
            raise InvalidInputError(f"{output_dir}: the same files give other source, patient, study, view, sex, age "
                                    "or split values than when the folder was prepared (e.g. a renamed copy of the "
                                    "data, whose source is named after its folder); resuming would mix both in one "
                                    "data set: use a new --output_dir (or the folder it was prepared from)")
        raise InvalidInputError(f"{output_dir}: prepared with other settings ({', '.join(differ)} differ): "
                                f"{json.dumps(recorded)}, not {json.dumps(settings)}; use a new --output_dir")
    if recorded is None or unrecorded or any(key in settings and key not in kept for key in _UNCHECKED):
        write_atomically(path, json.dumps({**settings, **kept}))


def _value_identity(value):
    """What identifies an image or mask value without decoding it: a digest of its bytes, else its file's size and
    modification time (not its path: the same files reached by another path, a folder moved or mounted elsewhere,
    resume; the row's `path` below the data's folder tells which file it is); one that came decoded (a PIL image or
    numpy array, from a mapped stream) by a digest of its pixels, mode and stated bit depth."""
    if isinstance(value, (PILImage.Image, np.ndarray)):
        image = value if isinstance(value, PILImage.Image) else PILImage.fromarray(
            value.astype(np.float32) if value.dtype.kind == "f" else value)
        digest = hashlib.sha256(json.dumps([image.mode, image.size, stated_bits(image)]).encode())
        digest.update(image.tobytes())
        return "pixels:" + digest.hexdigest()
    if isinstance(value, dict):
        if value.get("bytes"):
            return "sha256:" + hashlib.sha256(value["bytes"]).hexdigest()
        return None if value.get("path") is None else ["file", _file_state(value["path"])]
    if isinstance(value, (list, tuple)):
        return [_value_identity(v) for v in value]
    return None if value is None else ["file", _file_state(value)]


def _source_rows(chunk: list[dict]) -> dict:
    """What identifies the source rows of one shard, read without decoding an image: their number and a digest of
    each row's columns (images and masks by their bytes' digest or path)."""
    digest = hashlib.sha256()
    for row in chunk:
        identity = {name: _value_identity(row.get(name)) if name in ("image", "mask") else row.get(name)
                    for name in COLUMNS}
        digest.update(json.dumps(identity, sort_keys=True, default=str).encode() + b"\n")
    return {"rows": len(chunk), "digest": digest.hexdigest()[:32]}


def _check_kept_shard(output_dir: Path, split: str, index: int, shard_size: int, source: dict) -> None:
    """Refuse to keep a finished shard that an earlier run wrote from other source rows than this run reads for it
    (another source, order, size or content); a shard of an earlier version, which recorded none, is kept."""
    recorded = json.loads(shard_paths(output_dir / split, index)[1].read_text()).get("source")
    if recorded is None or recorded == source:
        return
    first = index * shard_size
    if recorded["rows"] != source["rows"]:
        what = (f"holds {recorded['rows']} source rows from row {first} on, but the source now gives "
                f"{source['rows']} there (a source of another size)")
    else:
        what = (f"was written from other source rows {first}-{first + source['rows'] - 1} than the source gives "
                f"now (another source, order or content)")
    raise InvalidInputError(f"{output_dir}: shard {index} of split {split!r} {what}; resuming would mix two data sets: "
                            "use a new --output_dir (or the source it was prepared from)")


def _records_digest(splits: dict[str, list[dict]]) -> str:
    """A digest of which file goes to which split with which labels: kept shards of an earlier run hold other
    images when the set changed since (files added or removed, labels edited), so such a rerun is refused."""
    listing = {split: [(r["path"], r["labels"]) for r in records] for split, records in splits.items()}
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def _columns_digest(splits: dict[str, list[dict]]) -> str:
    """A digest of each record's source, patient, study, view, sex, age and split: a rerun on the same files whose
    records name another source (a builder that names it by the data's folder, run on a renamed copy) or other
    patients would write them into the same output as the kept shards' values, so it is refused."""
    listing = {split: [[r.get(name) for name in _DIGESTED_COLUMNS] for r in records]
               for split, records in splits.items()}
    return hashlib.sha256(json.dumps(listing, default=str).encode()).hexdigest()[:16]


def _file_state(path) -> list[int] | None:
    """[size, modification time in ns] of a file, from os.stat (the file is not read); None where there is none."""
    try:
        status = os.stat(path)
    except OSError:  # a missing or unreadable file, reported as skipped when its shard is written
        return None
    return [status.st_size, status.st_mtime_ns]


def _files_digest(splits: dict[str, list[dict]]) -> str:
    """A digest of the size and modification time of every record's image and mask file(s), as build systems use
    them: an image replaced in place (same path, other pixels) since an earlier run changes it, while no file is
    read (a stat each)."""
    digest = hashlib.sha256()
    for records in splits.values():
        for r in records:
            masks = r.get("mask")
            masks = [] if masks is None else [masks] if isinstance(masks, (str, os.PathLike)) else list(masks)
            digest.update(json.dumps([_file_state(path) for path in [r["image"], *masks]]).encode() + b"\n")
    return digest.hexdigest()[:16]


def _finish(output_dir: Path, shard_counts: dict[str, int], info) -> dict[str, list[dict]]:
    for split, n in shard_counts.items():
        if n == 0:  # a split without records still gets one (empty) shard, so load_from_disk opens it
            write_shard(output_dir / split, 0, [], info.features, size=1, bits=8, source=_source_rows([]))
            shard_counts[split] = 1
    reports = {split: finish_split(output_dir / split, n, info) for split, n in shard_counts.items()}
    write_atomically(output_dir / "dataset_dict.json", json.dumps({"splits": list(shard_counts)}))
    remove_stale_partials(output_dir, _FOLDER_FILES)  # a killed run's temporary settings, index or report
    return reports


def prepare(name: str, data_dir, output_dir, *, size: int = 256, bits: int = 8, num_proc: int = 1,
            shard_size: int = 1000, seed: int = 0, split_fractions=None, streaming: bool = False,
            progress: bool = True, **options) -> dict:
    """Prepare shards of data set `name`; returns the report (also written to report.json)."""
    _check_sizes(size, shard_size)
    output_dir = Path(output_dir)
    recipe = build_recipe(name, data_dir, seed=seed, **options)
    features = make_features(len(recipe.label_names), bits)
    folder = data_folder_name(data_dir)
    info = make_info(recipe.name, recipe.label_names, about=recipe.about, citation=recipe.citation,
                     license=recipe.license, homepage=recipe.homepage, bits=bits, folder=folder, options=options,
                     none_is_no_finding=recipe.none_is_no_finding)
    info.features = features
    splits = assign_splits(recipe, split_fractions, seed)
    output_dir.mkdir(parents=True, exist_ok=True)  # settings are recorded once the set could be read
    _check_settings(output_dir, {"dataset": name, "size": size, "bits": bits, "shard_size": shard_size,
                                 "seed": seed, "split_fractions": split_fractions, "streaming": streaming,
                                 "options": options, "records": _records_digest(splits),
                                 "files": _files_digest(splits), "columns": _columns_digest(splits),
                                 "folder": folder})
    if streaming:  # one sequential pass: each file is read once, straight into its shard
        return _write_streams(splits, output_dir, info=info, size=size, bits=bits, shard_size=shard_size,
                              progress=progress)
    jobs, shard_counts, total = [], {}, 0
    for split, records in splits.items():
        split_dir = output_dir / split
        chunks = list(_chunks(records, shard_size))
        shard_counts[split] = len(chunks)
        for index, chunk in enumerate(chunks):
            if not is_finished(split_dir, index):
                jobs.append((str(split_dir), index, chunk, features, size, bits))
                total += len(chunk)
    bar = tqdm(total=total, unit="img", desc=f"Preparing {name}", disable=not progress)
    if num_proc > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(num_proc) as pool:
            for count, _ in pool.imap_unordered(_shard_job, jobs):
                bar.update(count)
    else:
        for job in jobs:
            bar.update(_shard_job(job)[0])
    bar.close()
    return _summary(_finish(output_dir, shard_counts, info), output_dir, size, bits)


def prepare_iterable(source: datasets.IterableDatasetDict, output_dir, *, info, size: int = 256,
                     bits: int = 8, shard_size: int = 1000, progress: bool = True) -> dict:
    """Stream an IterableDatasetDict of the common schema (e.g. from `build_dataset(..., streaming=True)` or a
    streamed Hub set) into shards; finished shards are kept on rerun. Its images and masks may come undecoded or
    decoded (PIL images or arrays: a mapped stream, with or without features); decoded ones are read as they are, at
    their bit depth, never encoded again through datasets' Image feature. What `info` says the set was built from
    (`build_dataset` names its data folder and builder options) is recorded as `prepare` records it, for model cards;
    None for a set not built here (e.g. a Hub set). A folder started with another size, bit depth, shard size,
    splits, features, label names or builder options is refused, and so is one whose finished shards were written
    from other rows than the source gives now (another source, order, size or content): their rows are read again to
    check that, without decoding or writing them. A source that decodes as it streams (`build_dataset(...,
    streaming=True)` of a DICOM set) still does so for those rows: for the sets built here `prepare(...,
    streaming=True)` passes kept shards without opening their files."""
    _check_sizes(size, shard_size)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        built = json.loads(info.description or "{}")
    except json.JSONDecodeError:  # a set not built here: its features still name its labels
        built = {}
    built = built if isinstance(built, dict) else {}
    info = _prepared_info(info, built, bits)
    _check_settings(output_dir, {"dataset": info.dataset_name, "size": size, "bits": bits, "shard_size": shard_size,
                                 "splits": list(source), "label_names": built.get("label_names"),
                                 "features": info.features.to_dict(), "options": built.get("options"),
                                 "folder": built.get("folder")})
    streams = {split: _undecoded(iterable) for split, iterable in source.items()}
    return _write_streams(streams, output_dir, info=info, size=size, bits=bits, shard_size=shard_size,
                          progress=progress)


def _prepared_info(info, built: dict, bits: int):
    """The shards' DatasetInfo: the common schema at `bits` (a 16-bit preparation of an 8-bit set's stream holds
    16-bit images, which its features must not read as 8-bit "L"; a stream mapped without features names none), and
    a description that says `bits` where the set was built here."""
    if built.get("label_names") is not None:
        count = len(built["label_names"])
    elif info.features is not None and "labels" in info.features:
        count = max(info.features["labels"].length, 0)
    else:
        raise InvalidInputError("prepare_iterable: the stream's info names no labels (no label names in its "
                                "description, no labels feature): pass the info of the set it streams")
    prepared = copy.deepcopy(info)
    prepared.features = make_features(count, bits)
    if built:
        prepared.description = json.dumps({**built, "bits": bits}, default=str)
    return prepared


def _undecoded(iterable):
    """`iterable` giving its images and masks undecoded where its features name them. A stream without features (one
    mapped without them) gives them as its rows hold them: decoded ones are read as they are (see `write_shard`)."""
    for name in ("image", "mask"):
        if iterable.features is not None and name in iterable.features:
            iterable = iterable.cast_column(name, datasets.Image(decode=False))
    return iterable


def _write_streams(streams: dict, output_dir, *, info, size: int, bits: int, shard_size: int,
                   progress: bool) -> dict:
    """Write each split's examples (an iterable of records or undecoded examples) in order into shards of
    `shard_size`; unreadable files are reported by `write_shard`. Finished shards are kept once their rows, read
    again but not decoded, are the ones they were written from (see `_check_kept_shard`)."""
    output_dir = Path(output_dir)
    shard_counts = {}
    for split, examples in streams.items():
        split_dir = output_dir / split
        index = -1
        stream = tqdm(examples, unit="img", desc=f"Streaming {split}", disable=not progress)
        for index, chunk in enumerate(_chunks(stream, shard_size)):
            source = _source_rows(chunk)
            if is_finished(split_dir, index):
                _check_kept_shard(output_dir, split, index, shard_size, source)
            else:
                write_shard(split_dir, index, chunk, info.features, size=size, bits=bits, source=source)
        shard_counts[split] = index + 1
        if index == -1 and is_finished(split_dir, 0):  # an empty split's empty shard, or rows the source lost
            _check_kept_shard(output_dir, split, 0, shard_size, _source_rows([]))
        if shard_exists(split_dir, max(index + 1, 1)):
            ends = index * shard_size + len(chunk) if index >= 0 else 0
            raise InvalidInputError(f"{output_dir}: split {split!r} has finished shards beyond the {index + 1} the "
                                    f"source fills now (it ends after {ends} rows: a source of another size); resuming "
                                    "would mix two data sets: use a new --output_dir (or the source it was prepared "
                                    "from)")
    return _summary(_finish(output_dir, shard_counts, info), output_dir, size, bits)


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _split_fractions(text: str) -> dict:
    """--split_fractions: a JSON object of split name -> fraction; anything else is an error that says so."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object of split fractions, e.g. "
                                         '\'{"train": 0.8, "test": 0.2}\'')
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_datasets.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=available_datasets())
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8)
    parser.add_argument("--num_proc", type=int, default=1)
    parser.add_argument("--shard_size", type=int, default=1000, help="images per shard")
    parser.add_argument("--seed", type=int, default=0, help="seed of patient-level splits")
    parser.add_argument("--split_fractions", type=_split_fractions, default=None,
                        help='seeded patient split where the set has none, e.g. \'{"train": 0.8, "test": 0.2}\'')
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help='builder option, value parsed as JSON when possible (e.g. uncertain="ones")')
    args = parser.parse_args(argv)
    report = prepare(args.dataset, args.data_dir, args.output_dir, size=args.size, bits=args.bits,
                     num_proc=args.num_proc, shard_size=args.shard_size, seed=args.seed,
                     split_fractions=args.split_fractions, streaming=args.streaming, **_parse_options(args.option))
    print(f"found {report['found']}, written {report['written']}, skipped {report['skipped']} "
          f"{report['skipped_by_error']}; report: {Path(args.output_dir) / 'report.json'}")
    return 0


if __name__ == "__main__":
    run_script(main)
