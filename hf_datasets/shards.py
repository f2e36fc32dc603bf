"""Write resized grey examples into Arrow shards and assemble them into a folder that
`datasets.load_from_disk` opens as a DatasetDict.

Layout: OUT/dataset_dict.json, OUT/SPLIT/{state.json, dataset_info.json, data-KKKKK.arrow,
data-KKKKK.report.json}. A shard is finished when both its .arrow and .report.json exist and the
.arrow file holds the rows its report counts (read from Arrow metadata; a damaged one is written
again). Both are written to temporary names of their own writer (host, process id and a random part:
two preparations, or a killed one's orphaned workers and a new run, never share one), flushed to
disk and renamed into place, the data before the report, so neither a killed run nor a power loss
leaves a half shard that counts as finished. Temporary files of writers that are
gone are removed once their split is finished (`remove_stale_partials`, which also serves the other
files renamed into place: prepare's settings, the sample cache).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter
from PIL import Image

from .errors import DataError
from .schema import COLUMNS
from .images import effective_top, encode_png, load_full_depth, pil_to_grey, read_grey, resize_longer_side, to_bits


def shard_paths(split_dir: Path, index: int) -> tuple[Path, Path]:
    return split_dir / f"data-{index:05d}.arrow", split_dir / f"data-{index:05d}.report.json"


def shard_exists(split_dir: Path, index: int) -> bool:
    """Whether shard `index` has both its files, whole or not."""
    data, report = shard_paths(split_dir, index)
    return data.exists() and report.exists()


def is_finished(split_dir: Path, index: int) -> bool:
    """Whether shard `index` is finished: both its files are there, its report reads, and its .arrow file's Arrow
    metadata (no image is decoded) gives the rows the report counts. One that is there but damaged (its file cut
    short or left empty by a power loss before an earlier version flushed it) is not: it is written again, with a
    warning naming it."""
    if not shard_exists(split_dir, index):
        return False
    data, report = shard_paths(split_dir, index)
    damage = _shard_damage(data, report)
    if damage is not None:
        warnings.warn(f"{data} is damaged ({damage}): the shard is written again", stacklevel=2)
        return False
    return True


def _shard_damage(data: Path, report: Path) -> str | None:
    """What is wrong with a shard's files, else None."""
    try:
        written = json.loads(report.read_text(encoding="utf-8"))["written"]
    except (OSError, ValueError, KeyError, TypeError) as err:  # ValueError: JSON or UTF-8 errors
        return f"its report {report.name} is unreadable: {type(err).__name__}: {err}"
    try:
        rows = arrow_rows(data)
    except (OSError, pa.ArrowException) as err:
        return f"unreadable: {err}"
    if rows != written:
        return f"it holds {rows} rows, its report {report.name} counts {written}"
    return None


def arrow_rows(path: Path) -> int:
    """The rows of an Arrow stream file (as datasets writes them), read from its record batches' metadata: the file is
    memory-mapped and no column is decoded. Raises pyarrow's error for a file cut short or not Arrow at all."""
    with pa.memory_map(str(path)) as source:
        return sum(batch.num_rows for batch in pa.ipc.open_stream(source))


# What `partial_path` names the temporary files of: NAME.HOST-PID-RANDOM.partial. Shards of earlier versions used
# data-KKKKK.arrow.partial and data-KKKKK.report.json.partial, naming no writer.
SHARD_FILES = re.compile(r"data-\d+\.(?:arrow|report\.json)")
# a finished split folder's files: its shards, and the bookkeeping `finish_split` writes (datasets' into `info/`)
SPLIT_FILES = re.compile(rf"{SHARD_FILES.pattern}|state\.json|dataset_info\.json|LICENSE|info")


def partial_path(path: Path) -> Path:
    """A temporary name for `path`, in its folder (so that `os.replace` moves it into place atomically), that no other
    writer uses: the host, process id and a random part."""
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.partial")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: to a temporary file of this writer, then moved into place durably
    (`move_into_place`); a writer stopped on the way removes its temporary file and leaves `path` as it was."""
    partial = partial_path(path)
    try:
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    move_into_place(partial, path)


def move_into_place(partial: Path, path: Path) -> None:
    """Rename the written temporary file `partial` to `path` (atomic) so that it survives a power loss: its data are
    flushed to disk (fsync) before the rename, so `path` is never a short or empty file after one, and the folder
    after it, so that the rename itself is kept. On failure before the rename `partial` is removed."""
    try:
        flush_to_disk(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    flush_to_disk(path.parent)


def flush_to_disk(path: Path) -> None:
    """fsync a file's data, or a folder's entries (a rename in it) where the platform and file system can."""
    folder = Path(path).is_dir()
    if folder and os.name == "nt":  # a folder cannot be opened to flush it; NTFS logs the rename itself
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as err:
        if not (folder and err.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)):
            raise  # (some file systems cannot flush a folder: its files are flushed all the same)
    finally:
        os.close(descriptor)


def _writer_is_gone(name: str, targets: re.Pattern = SHARD_FILES) -> bool:
    """Whether `name` is a temporary file (`partial_path`) of a file that `targets` matches, whose writer has ended:
    a process of this host that no longer runs, or a shard writer of an earlier version (those named no writer).
    Writers on other hosts, or alive, may still be writing; other files are not temporary files of this package."""
    legacy = name.removesuffix(".partial")
    if legacy != name and SHARD_FILES.fullmatch(legacy) and targets.fullmatch(legacy):
        return True
    match = re.fullmatch(rf"(?P<target>.+)\.{re.escape(socket.gethostname())}-(?P<pid>\d+)-[0-9a-f]+\.partial", name)
    if match is None or not targets.fullmatch(match["target"]):
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process, or no permission to ask: treat it as running
        return False
    return False


def remove_stale_partials(folder: Path, targets: re.Pattern = SHARD_FILES) -> list[Path]:
    """Remove the temporary files that writers which are gone (killed runs) left in `folder` for the files `targets`
    matches (by default the shards of a split folder); returns them."""
    removed = []
    for path in sorted(folder.glob("*.partial")):
        if _writer_is_gone(path.name, targets):
            try:
                if path.is_dir():  # the folder `finish_split` has datasets write its files into
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError:  # a folder this process may not change (a shared read-only cache): left as it is
                continue
            removed.append(path)
    return removed


def _grey_from_image_value(value, data_dir) -> np.ndarray:
    """A datasets.Image value -> grey array: undecoded ({"bytes", "path"}), a file path, or decoded (a PIL image or a
    numpy array: a mapped stream gives its images decoded). A decoded image is read as it is, never encoded again
    through datasets' Image feature, whose PNG leaves out the bit depth a 16-bit image states (`BIT_DEPTH_KEY`)."""
    if isinstance(value, Image.Image):
        return pil_to_grey(value)
    if isinstance(value, np.ndarray):
        return pil_to_grey(Image.fromarray(value.astype(np.float32) if value.dtype.kind == "f" else value))
    if isinstance(value, dict) and value.get("bytes"):
        try:
            handle = io.BytesIO(value["bytes"])
            with Image.open(handle) as image:
                return pil_to_grey(load_full_depth(image, handle))
        except OSError as err:
            raise DataError(value.get("path") or "<bytes>", f"corrupt image bytes ({err})") from err
    path = value["path"] if isinstance(value, dict) else value
    return read_grey(path if os.path.isabs(path) or not data_dir else os.path.join(data_dir, path))


def resize_example(source: dict, *, size: int, bits: int, data_dir=None) -> dict:
    """Source example (image given as path or undecoded value; mask as path(s) or value)
    -> output example with PNG bytes, longer side = `size`, grey `bits`-bit image and 0/255 mask."""
    from .builders.common import check_mask_fits, first_path, mask_foreground, read_mask

    original = _grey_from_image_value(source["image"], data_dir)
    image = resize_longer_side(original, size)
    example = {name: source.get(name) for name in COLUMNS}
    # scaled by the file's bit depth: resizing can take the brightest pixel, which tells it, below a power of two
    top = effective_top(original) if original.dtype.kind in "iu" else None
    example["image"] = {"bytes": encode_png(to_bits(image, bits, top)), "path": None}
    mask = source.get("mask")
    if mask is not None:
        is_path = isinstance(mask, (str, os.PathLike, list, tuple))
        values = read_mask(mask) if is_path else \
            mask_foreground(_grey_from_image_value(mask, data_dir)).astype(np.uint8) * 255
        image_name = source.get("path") or "image"
        check_mask_fits(values, original.shape, first_path(mask) if is_path else image_name, image_name)
        resized = Image.fromarray(values).resize(image.shape[::-1], Image.Resampling.NEAREST)
        example["mask"] = {"bytes": encode_png(np.asarray(resized)), "path": None}
    return example


def _reason_naming_the_file(err, source: dict, data_dir) -> str:
    """`err`'s reason, prefixed with the file it is about where that is not the row's image (its mask), shown below
    the data's folder as the row's `path` is."""
    shown = source.get("path")
    if shown is None or os.path.normpath(err.path).endswith(os.path.normpath(shown)):
        return err.reason
    image = source.get("image")
    image = str((image or {}).get("path") if isinstance(image, dict) else image)
    root = data_dir or (image[:-len(shown)] if image.endswith(shown) else None)
    failed = os.path.relpath(err.path, root) if root and os.path.isabs(err.path) else err.path
    return f"{failed}: {err.reason}"


def write_shard(split_dir: Path, index: int, examples, features, *, size: int, bits: int,
                data_dir=None, source: dict | None = None) -> dict:
    """Resize and write one shard; returns its report {written, skipped: [{path, error, reason}]}, plus `source`
    (what identifies the source rows, checked when a rerun keeps the shard) where given."""
    split_dir.mkdir(parents=True, exist_ok=True)
    data_path, report_path = shard_paths(split_dir, index)
    partial = partial_path(data_path)
    report = {"shard": index, "written": 0, "skipped": []}
    if source is not None:
        report["source"] = source
    writer = ArrowWriter(features=features, path=str(partial))
    try:
        for source in examples:
            try:
                writer.write(resize_example(source, size=size, bits=bits, data_dir=data_dir))
                report["written"] += 1
            except DataError as err:  # its patient and labels: a training subset draws from the rows written or not
                report["skipped"].append({"path": source.get("path"), "error": type(err).__name__,
                                          "reason": _reason_naming_the_file(err, source, data_dir),
                                          "patient_id": source.get("patient_id"), "labels": source.get("labels")})
            except (OSError, ValueError, MemoryError, Image.DecompressionBombError) as err:
                report["skipped"].append({"path": source.get("path"), "error": type(err).__name__,
                                          "reason": "unreadable image"})
        writer.finalize()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    move_into_place(partial, data_path)  # atomic: the shard is this writer's whole file or another writer's
    write_atomically(report_path, json.dumps(report))  # after the data: a report counts only rows on disk
    return report


def finish_split(split_dir: Path, n_shards: int, info) -> list[dict]:
    """Write state.json / dataset_info.json for the finished shards, each renamed into place whole (a run stopped while
    writing them leaves the earlier ones); return their reports."""
    files = [shard_paths(split_dir, k)[0].name for k in range(n_shards)]
    fingerprint = hashlib.sha256("".join(files).encode() + str(split_dir).encode()).hexdigest()[:16]
    state = {"_data_files": [{"filename": f} for f in files], "_fingerprint": fingerprint,
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": split_dir.name}
    write_atomically(split_dir / "state.json", json.dumps(state, indent=2))
    remove_stale_partials(split_dir, SPLIT_FILES)
    scratch = partial_path(split_dir / "info")  # datasets writes its files there; each is then renamed into place
    scratch.mkdir()
    try:
        info.write_to_directory(str(scratch), pretty_print=True)
        for written in sorted(scratch.iterdir()):
            move_into_place(written, split_dir / written.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [json.loads(shard_paths(split_dir, k)[1].read_text()) for k in range(n_shards)]
