"""Write resized grey examples into Arrow shards and assemble them into a folder that
`datasets.load_from_disk` opens as a DatasetDict.

Layout: OUT/dataset_dict.json, OUT/SPLIT/{state.json, dataset_info.json, data-KKKKK.arrow,
data-KKKKK.report.json}. A shard is finished when both its .arrow and .report.json exist;
both are written to temporary names of their own writer (host, process id and a random part:
two preparations, or a killed one's orphaned workers and a new run, never share one) and
renamed into place, so a killed run leaves no half shard. Temporary files of writers that are
gone are removed once their split is finished.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import socket
from pathlib import Path

import numpy as np
from datasets.arrow_writer import ArrowWriter
from PIL import Image

from .errors import DataError
from .schema import COLUMNS
from .images import encode_png, pil_to_grey, read_grey, resize_longer_side, to_bits


def shard_paths(split_dir: Path, index: int) -> tuple[Path, Path]:
    return split_dir / f"data-{index:05d}.arrow", split_dir / f"data-{index:05d}.report.json"


def is_finished(split_dir: Path, index: int) -> bool:
    data, report = shard_paths(split_dir, index)
    return data.exists() and report.exists()


# data-KKKKK.arrow.HOST-PID-RANDOM.partial (and .report.json.); data-KKKKK.arrow.partial of earlier versions
_PARTIAL = re.compile(r"data-\d+\.(?:arrow|report\.json)\.(?:(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]+\.)?partial")


def partial_path(path: Path) -> Path:
    """A temporary name for `path`, in its folder (so that `os.replace` moves it into place atomically), that no other
    writer uses: the host, process id and a random part."""
    return path.with_name(f"{path.name}.{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.partial")


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all: to a temporary file of this writer, flushed to disk (fsync), then
    renamed into place; a writer stopped on the way removes its temporary file and leaves `path` as it was."""
    partial = partial_path(path)
    try:
        with open(partial, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _writer_is_gone(name: str) -> bool:
    """Whether the writer of temporary file `name` has ended: a process of this host that no longer runs, or a
    writer of an earlier version (those named no writer). Writers on other hosts, or alive, may still be writing."""
    match = _PARTIAL.fullmatch(name)
    if match is None:
        return False
    if match["pid"] is None:
        return True
    if match["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process, or no permission to ask: treat it as running
        return False
    return False


def remove_stale_partials(split_dir: Path) -> list[Path]:
    """Remove the temporary files that writers which are gone left in `split_dir` (killed runs); returns them."""
    removed = []
    for path in sorted(split_dir.glob("*.partial")):
        if _writer_is_gone(path.name):
            path.unlink(missing_ok=True)
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
            with Image.open(io.BytesIO(value["bytes"])) as image:
                image.load()
                return pil_to_grey(image)
        except OSError as err:
            raise DataError(value.get("path") or "<bytes>", f"corrupt image bytes ({err})") from err
    path = value["path"] if isinstance(value, dict) else value
    return read_grey(path if os.path.isabs(path) or not data_dir else os.path.join(data_dir, path))


def resize_example(source: dict, *, size: int, bits: int, data_dir=None) -> dict:
    """Source example (image given as path or undecoded value; mask as path(s) or value)
    -> output example with PNG bytes, longer side = `size`, grey `bits`-bit image and 0/255 mask."""
    from .builders.common import mask_foreground, read_mask

    image = resize_longer_side(_grey_from_image_value(source["image"], data_dir), size)
    example = {name: source.get(name) for name in COLUMNS}
    example["image"] = {"bytes": encode_png(to_bits(image, bits)), "path": None}
    mask = source.get("mask")
    if mask is not None:
        values = read_mask(mask) if isinstance(mask, (str, os.PathLike, list, tuple)) else \
            mask_foreground(_grey_from_image_value(mask, data_dir)).astype(np.uint8) * 255
        resized = Image.fromarray(values).resize(image.shape[::-1], Image.Resampling.NEAREST)
        example["mask"] = {"bytes": encode_png(np.asarray(resized)), "path": None}
    return example


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
            except DataError as err:
                report["skipped"].append({"path": source.get("path"), "error": type(err).__name__,
                                          "reason": err.reason})
            except (OSError, ValueError, MemoryError, Image.DecompressionBombError) as err:
                report["skipped"].append({"path": source.get("path"), "error": type(err).__name__,
                                          "reason": "unreadable image"})
        writer.finalize()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, data_path)  # atomic: the shard is this writer's whole file or another writer's
    write_atomically(report_path, json.dumps(report))
    return report


def finish_split(split_dir: Path, n_shards: int, info) -> list[dict]:
    """Write state.json / dataset_info.json for the finished shards; return their reports."""
    files = [shard_paths(split_dir, k)[0].name for k in range(n_shards)]
    fingerprint = hashlib.sha256("".join(files).encode() + str(split_dir).encode()).hexdigest()[:16]
    state = {"_data_files": [{"filename": f} for f in files], "_fingerprint": fingerprint,
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": split_dir.name}
    (split_dir / "state.json").write_text(json.dumps(state, indent=2))
    remove_stale_partials(split_dir)
    info.write_to_directory(str(split_dir), pretty_print=True)
    return [json.loads(shard_paths(split_dir, k)[1].read_text()) for k in range(n_shards)]
