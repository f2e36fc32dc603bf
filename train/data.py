"""Data sets -> batches of unit-range images with labels, in a seeded, resumable order.

A batch is a dict: `pixel_values` (B, C, S, S), not normalised (conversion, augmentation and normalisation run
batched on the device, see engine.py and augment.py): uint8 0-255 for 8-bit sources, a quarter of the bytes to
copy to the device, else float32 in [0, 1]; `index` int64 (B,) rows of the split; and for fine-tuning `labels`:
class indices (B,) int64 (single-label), float (B, K) with NaN = unknown (multi-label) or masks (B, S, S) uint8.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import torch

from hf_datasets.errors import DataError, ImageReadError, InvalidInputError, LayoutError, MissingInputError

logger = logging.getLogger(__name__)

SINGLE, MULTI = "single", "multi"
EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


PREPARED_OPTIONS = ("train_fraction", "subset_seed")  # the build options that still apply to prepared shards


def load_splits(dataset: str | None, data_dir: str | None, prepared_dir: str | None, options: dict | None = None):
    """A DatasetDict from prepared shards (`prepared_dir`) or built from the original layout (`dataset`).

    Prepared shards take `train_fraction` / `subset_seed` (the same patients as `build_dataset` keeps); other
    options were applied when they were prepared and are refused here rather than silently ignored."""
    if prepared_dir:
        try:
            loaded = datasets.load_from_disk(prepared_dir)
        except FileNotFoundError as error:  # no such folder, or one that holds no saved data set
            raise MissingInputError(f"--prepared_dir {prepared_dir}: no prepared data set there ({error}); write one "
                                    "with python -m hf_datasets.prepare") from error
        splits = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
        return _prepared_subset(splits, dict(options or {}), prepared_dir)
    if not dataset:
        raise InvalidInputError("No data: pass --dataset NAME [--data_dir DIR] or --prepared_dir DIR")
    if (options or {}).get("streaming"):
        raise InvalidInputError("--dataset_options streaming: training and evaluation need random access to the rows; "
                                "for a set larger than local disk, write shards in one pass (python -m "
                                "hf_datasets.prepare --streaming) and pass --prepared_dir")
    import hf_datasets

    try:
        return hf_datasets.build_dataset(dataset, data_dir, **(options or {}))
    except DataError as error:
        if isinstance(error, LayoutError) or (options or {}).get("on_error") == "skip":
            raise  # a folder without the expected files: leaving files out would not help
        raise with_skip_hint(error, options) from error


SKIP_OPTION = {"on_error": "skip"}


def with_skip_hint(error, options: dict | None = None):
    """A `DataError` of the same type and path whose reason adds how to leave such files out: --dataset_options with
    "on_error": "skip" (merged into the options the run already gave), not the note of `build_dataset`'s own
    argument. The message keeps to the file and the builder's reason, which never holds DICOM header values."""
    skip = json.dumps({**(options or {}), **SKIP_OPTION}, default=str)
    return type(error)(error.path, f"{error.reason}. To leave unreadable files out of the data instead (each one is "
                                   f"named in a warning), pass --dataset_options '{skip}'")


def _prepared_subset(splits, options: dict, prepared_dir: str):
    """`splits` with only `options["train_fraction"]` of the training patients (seeded by `subset_seed`)."""
    from hf_datasets.splits import patient_subset, single_class

    others = sorted(set(options) - set(PREPARED_OPTIONS))
    if others:
        raise InvalidInputError(f"--dataset_options {others} do not apply to --prepared_dir {prepared_dir} (its shards "
                                "were built with the options given to hf_datasets.prepare); only "
                                f"{list(PREPARED_OPTIONS)} do")
    fraction = options.get("train_fraction")
    if fraction is None or "train" not in splits:
        return splits
    train = splits["train"]
    columns = train.select_columns(["patient_id", "labels"])  # no image is decoded
    # the training rows preparation could not read count too, as in build_dataset, which draws before reading
    skipped = [entry for entry in _report(prepared_dir).get("skipped_files", [])
               if entry.get("split") == "train" and "patient_id" in entry]
    patients = list(columns["patient_id"]) + [entry["patient_id"] for entry in skipped]
    labels = list(columns["labels"]) + [entry["labels"] for entry in skipped]
    keep = patient_subset(patients, fraction, options.get("subset_seed", 0),
                          strata=[single_class(values) for values in labels])[:len(train)]
    return datasets.DatasetDict({**splits, "train": train.select([i for i, kept in enumerate(keep) if kept])})


def _report(prepared_dir: str) -> dict:
    """The prepared folder's report.json ({} where it has none: shards made otherwise)."""
    path = Path(prepared_dir) / "report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def split(splits, name: str):
    """One split by name, with a clear error when it is missing or empty."""
    if name not in splits:
        raise InvalidInputError(f"The data set has no split {name!r}; it has {sorted(splits)}")
    if len(splits[name]) == 0:
        raise InvalidInputError(f"Split {name!r} of the data set is empty")
    return splits[name]


def label_names(ds) -> list[str]:
    import hf_datasets

    return hf_datasets.label_names(ds)


def align_labels(ds, target_names: list[str], single_label: bool):
    """`ds` with its labels in the order of `target_names` (a model's), names matched through hf_datasets' synonyms
    ("No Finding" = "normal", "Effusion" = "Pleural Effusion"; the set's pneumonia_bacterial and pneumonia_viral
    together give a model's pneumonia, positive where either is); a set whose labels are all its findings (NIH:
    `none_is_no_finding`) gives a model's "No Finding" / "normal" as every finding 0. Labels the set lacks are unknown
    (NaN); single-label:
    a row with one positive class is 0 for the others, a row with none or several of them becomes unknown too.
    Only the labels column is rewritten.

    Returns (dataset, unmatched): unmatched = {"missing": target labels the set lacks, "extra": set labels the model
    does not predict}. ValueError when the two share no label."""
    from hf_datasets.labels import canonical_label, harmonise_labels, label_columns
    from hf_datasets.schema import none_is_no_finding, with_label_names

    source = label_names(ds)
    values = np.asarray(ds["labels"], dtype=np.float32).reshape(len(ds), len(source))
    aligned, missing = harmonise_labels(values, source, target_names)
    if none_is_no_finding(ds):  # (NIH) a model's 'No Finding' / 'normal': 1 where every finding is 0
        for target, name in enumerate(target_names):
            if missing[target] and canonical_label(name) == canonical_label("No Finding"):
                aligned[:, target] = np.where((values == 1).any(axis=1), 0.0,
                                              np.where(np.isnan(values).any(axis=1), np.nan, 1.0))
                missing[target] = False
    if missing.all():
        raise InvalidInputError(f"The model predicts {target_names} but the data set's labels are {source}: none in "
                                "common")
    if single_label:  # exclusive classes: a row of a known class is 0 for the others, even those the set lacks
        positive = (aligned == 1).sum(axis=1) == 1
        aligned[positive] = np.nan_to_num(aligned[positive], nan=0.0)
        aligned[~positive] = np.nan
    used = {column for columns in label_columns(source, target_names) for column in columns}
    unmatched = {"missing": [name for name, lacks in zip(target_names, missing) if lacks],
                 "extra": [name for column, name in enumerate(source) if column not in used]}
    feature = datasets.List(datasets.Value("float32"), length=len(target_names))
    relabelled = (ds.add_column("aligned_labels", aligned.tolist(), feature=feature).remove_columns("labels")
                  .rename_column("aligned_labels", "labels"))
    return with_label_names(relabelled, target_names), unmatched


def known_rows(ds) -> list[int]:
    """Rows with at least one known label."""
    return [i for i, row in enumerate(ds["labels"]) if any(v == v for v in row)]


def mask_rows(ds) -> list[int]:
    """Rows with a mask (read from the Arrow column: no mask is decoded)."""
    present = ds.select_columns(["mask"]).with_format("arrow")[:]["mask"].is_valid()
    return np.flatnonzero(present.to_numpy(zero_copy_only=False)).tolist()


def task_rows(ds, task: str, role: str) -> list[int] | None:
    """The rows `task` learns from or scores: those with a known label (classification) or with a mask
    (segmentation; a set may have masks for some images only, which are checked by `warn_inverted_masks`); None
    (every row) otherwise. ValueError naming `role` when there is none."""
    if task == "classification":
        rows, needed = known_rows(ds), "a known label"
    elif task == "segmentation" and "mask" in ds.column_names:
        rows, needed = mask_rows(ds), "a mask"
    else:
        return None
    if not rows:
        raise InvalidInputError(f"{role} ({len(ds)} rows) has no row with {needed}")
    if task == "segmentation":
        warn_inverted_masks(ds, rows, role)
    return rows


# Lungs cover about 0.25-0.45 of a chest X-ray, so masks whose foreground is on average more than this fraction of
# their image are most likely inverted (lungs black, background white: 0.55-0.75)
INVERTED_MASK_FRACTION = 0.5
MASK_SAMPLE = 64  # masks decoded to tell, evenly spaced over the rows


def warn_inverted_masks(ds, rows: list[int], role: str) -> None:
    """Warn, naming `role` and the fraction, when the masks of `rows` (`MASK_SAMPLE` of them at most) cover on average
    more than `INVERTED_MASK_FRACTION` of their image: a segmenter would learn the background as lungs. Foreground is
    what data building reads as lung (`mask_foreground`: nonzero, above 127 in a 0/255 mask with grey edges). A mask
    that cannot be decoded leaves the check out: training names it when it reads it."""
    from hf_datasets.builders.common import mask_foreground

    picked = [rows[i] for i in np.linspace(0, len(rows) - 1, min(len(rows), MASK_SAMPLE)).round().astype(int)]
    try:
        masks = ds.select_columns(["mask"])[picked]["mask"]
    except (OSError, SyntaxError, ValueError):  # what PIL raises inside datasets' decoding
        return
    fraction = float(np.mean([mask_foreground(np.asarray(mask)).mean() for mask in masks]))
    if fraction > INVERTED_MASK_FRACTION:
        logger.warning(f"{role}: its masks cover {fraction:.2f} of their image on average ({len(picked)} of "
                       f"{len(rows)} masks read), while lungs cover about 0.25-0.45 of a chest X-ray: the masks look "
                       "inverted (lungs black, background white). Lungs must be nonzero (white) in a mask and the "
                       "background 0, or the model learns the background as lungs")


def resolve_label_mode(ds, mode: str = "auto") -> str:
    """"single" when every row with known labels is one-hot (mutually exclusive classes), else "multi"; a requested
    "single" on rows that are not one-hot is refused (their class would be a guess)."""
    if mode not in (SINGLE, MULTI, "auto"):
        raise InvalidInputError(f"label_mode must be auto, single or multi, got {mode!r}")
    if mode == MULTI:
        return mode
    labels = np.asarray(list(ds.select_columns(["labels"])["labels"]), dtype=np.float32)  # (N, K); no image decoded
    known = labels[~np.isnan(labels).all(axis=1)] if labels.size else labels
    one_hot = np.isin(known, (0.0, 1.0)).all(axis=1) & (known.sum(axis=1) == 1)
    if mode == SINGLE and not one_hot.all():
        raise InvalidInputError(f"label_mode single, but {int((~one_hot).sum())} of {len(known)} labelled rows are "
                                "not one-hot (several or no positive classes, or soft / unknown values); use label_mode "
                                "multi or auto")
    return SINGLE if len(known) and one_hot.all() else MULTI


def several_positives(ds) -> bool:
    """Whether a row has more than one positive label (unknown entries aside): no exclusive classes then."""
    labels = np.asarray(list(ds.select_columns(["labels"])["labels"]), dtype=np.float32)
    return bool(labels.size) and bool(((labels == 1).sum(axis=1) > 1).any())


ITEM_CACHE_BYTES = 128 * 2**20  # per process: a 224-px grey 8-bit set of up to 2,600 images


class CXRDataset(torch.utils.data.Dataset):
    """Rows of an hf_datasets split as images at `size` (processor without normalisation).

    task: "pretraining" (images only), "classification" (labels per `label_mode`) or "segmentation" (masks).
    uint8: images as uint8 0-255 instead of float32 (lossless for 8-bit images, which the processor gives in 8-bit
    levels, as it gives them to evaluation and prediction); by default when the first image is 8-bit and the set is
    not a 16-bit one (whose first image may happen to be 8-bit). A grey 8-bit image that needs no resizing (shards
    prepared at the training size) is then only decoded and padded, which is several times faster.

    cache_bytes: a set whose items all fit in this many bytes keeps each item once made, in every process that reads
    it (each loader worker holds its own copy): a small labelled set is then decoded once per worker, not once per
    epoch, whose start would otherwise wait for its first batch to be decoded. Items are deterministic (the
    augmentation runs on the device), so a kept item is the item (its tensors are shared: change
    them out of place). 0 keeps none.
    """

    def __init__(self, ds, processor, task: str, label_mode: str = MULTI, rows: list[int] | None = None,
                 uint8: bool | None = None, cache_bytes: int = ITEM_CACHE_BYTES):
        self.ds, self.processor, self.task, self.label_mode = ds, processor, task, label_mode
        self.rows = list(range(len(ds))) if rows is None else rows
        self.sources = ds.select_columns(["path"]) if "path" in ds.column_names else None  # for error messages
        self.origins = ds.select_columns(["source"]) if "source" in ds.column_names else None  # see source_counts
        if task == "segmentation" and "mask" not in ds.column_names:
            raise InvalidInputError("Segmentation needs a data set with a `mask` column")
        if task == "pretraining":  # decode nothing but the image
            self.ds = ds.select_columns(["image"])
        self.bits = stored_bits(ds)
        self.storage = image_storage(ds) if self.bits == 16 else None  # for `restate_bit_depths`
        if uint8 is None:
            first = self._row(0)["image"] if self.rows else None
            uint8 = getattr(first, "mode", None) in EIGHT_BIT_MODES and self.bits != 16
        self.uint8 = uint8
        self.cache = {} if len(self.rows) * self.item_bytes() <= cache_bytes else None

    def counted(self, noun: str = "images") -> str:
        """"N images", saying of how many rows when the task leaves rows without a mask (or known label) out."""
        if len(self.rows) == len(self.ds) or self.task == "pretraining":  # (its evaluation: a sample, not a filter)
            return f"{len(self.rows)} {noun}"
        needed = "a mask" if self.task == "segmentation" else "a known label"
        return f"{len(self.rows)} {noun} (those of {len(self.ds)} with {needed})"

    def source_counts(self) -> dict[str, int] | None:
        """Images per `source` (the data set each row came from, "unknown" where empty) of the rows; None when the
        set has no source column."""
        if self.origins is None:
            return None
        column = self.origins["source"]
        return dict(sorted(Counter(column[i] or "unknown" for i in self.rows).items()))

    def item_bytes(self) -> int:
        """Bytes of one item's image (and mask) tensors."""
        pixels = self.processor.size ** 2
        image = pixels * self.processor.num_channels * (1 if self.uint8 else 4)
        return image + (pixels if self.task == "segmentation" else 0)

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, i: int) -> dict:
        """Row `i` with its images decoded; an image that cannot be decoded raises an ImageReadError naming it. A
        16-bit image that lost the bit depth it stated states it again (`restate_bit_depths`)."""
        try:
            row = self.ds[self.rows[i]]
            restate_bit_depths(self.storage, [self.rows[i]], [row["image"]], self.bits)
            return row
        except (OSError, SyntaxError, ValueError) as err:  # what PIL raises inside datasets' decoding
            raise ImageReadError(self._name(i), f"image cannot be decoded ({err}); "
                                 "python -m hf_datasets.prepare skips such files and lists them") from err

    def _name(self, i: int) -> str:
        """Row `i` as errors name it: "row 3 (PNEUMONIA/x.jpeg)"."""
        source = (self.sources[self.rows[i]]["path"] if self.sources is not None else None) or "?"
        return f"row {self.rows[i]} ({source})"

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """The items of one batch, as a loader reads them; a batch with an image that cannot be read is
        [{"error": its DataError}] instead, which `collate` passes on and `raise_unreadable` raises where the batch
        arrives. So a loader worker's error reaches the main process as it is: raised in the worker, torch would
        rebuild it from its message alone, which a DataError (a path and a reason) cannot be, and end the run on a
        RuntimeError holding the worker's traceback."""
        try:
            return [self[i] for i in indices]
        except DataError as error:
            return [{"error": error}]

    def __getitem__(self, i: int) -> dict:
        if self.cache is None:
            return self._make_item(i)
        if i not in self.cache:
            self.cache[i] = self._make_item(i)
        return dict(self.cache[i])

    def _make_item(self, i: int) -> dict:
        row = self._row(i)
        masks = None
        if self.task == "segmentation":
            if row["mask"] is None:
                raise DataError(self._name(i), "has no mask")
            masks = [row["mask"]]
        pixels = self._grey_uint8(row["image"]) if masks is None else None
        if pixels is None:
            out = self.processor.preprocess([row["image"]], segmentation_maps=masks, do_normalize=False)
            pixels = out["pixel_values"][0]
            if self.uint8:
                pixels = pixels.mul(255).round_().to(torch.uint8)
        item = {"pixel_values": pixels, "index": torch.tensor(self.rows[i])}
        if self.task == "pretraining":  # where the image lies in its padded square: views are drawn from it alone
            height, width = _image_size(row["image"])
            resized_h, resized_w, top, left = self.processor._geometry(height, width)
            item["content"] = torch.tensor([top, left, resized_h, resized_w])
        if self.task == "segmentation":
            item["labels"] = self._mask_uint8(out["labels"][0], i)
        elif self.task == "classification":
            labels = torch.tensor(row["labels"], dtype=torch.float32)
            item["labels"] = labels.argmax() if self.label_mode == SINGLE else labels
        return item

    def _mask_uint8(self, labels: torch.Tensor, i: int) -> torch.Tensor:
        """int64 (S, S) class indices -> uint8: an eighth of the bytes to copy; 255 is the usual ignore value."""
        if labels.numel() and (labels.min() < 0 or labels.max() > 255):
            raise DataError(self._name(i), f"mask values must be class indices 0-255 (255 = ignore), got "
                                           f"{int(labels.min())}..{int(labels.max())}")
        return labels.to(torch.uint8)

    def _grey_uint8(self, image) -> torch.Tensor | None:
        """An "L" image already at the processor's size -> uint8 (1, S, S), padded as the processor pads; else None."""
        processor = self.processor
        if not self.uint8 or getattr(image, "mode", None) != "L" or processor.num_channels != 1 or processor.equalize:
            return None
        height, width = image.height, image.width
        resized_h, resized_w, top, left = processor._geometry(height, width)
        if (resized_h, resized_w) != (height, width):
            return None
        canvas = torch.zeros(1, processor.size, processor.size, dtype=torch.uint8)
        canvas[0, top:top + height, left:left + width] = torch.from_numpy(np.array(image))
        return canvas


def _image_size(image) -> tuple[int, int]:
    """(height, width) of a PIL image or an (H, W[, C]) array."""
    if hasattr(image, "height"):
        return image.height, image.width
    return tuple(np.asarray(image).shape[:2])


def image_storage(ds):
    """The image column of `ds` as stored (bytes and path, not decoded): `restate_bit_depths` reads it."""
    return ds.select_columns(["image"]).with_format("arrow")


def restate_bit_depths(storage, indices: list[int], images: list, bits: int | None) -> None:
    """Give each of `images` (decoded from rows `indices` of a data set whose images are stored with `bits`,
    `stored_bits`; `storage`: its `image_storage`) that lost the bit depth it stated that depth again, in place.

    Every 16-bit image hf_datasets encodes (decoded DICOMs, JSRT, prepared shards) is scaled to 16 bits and says so in
    its PNG (`BIT_DEPTH_KEY`), which the image processor scales it by. datasets' Image feature encodes an image again
    without that text chunk when a `Dataset.map` returns it, and the processor then took the depth from the image's
    brightest value: a dim windowed image came out brighter. Such an image is a 16-bit one that states no depth and
    is stored without a path, as encoded from pixels; it is given the set's 16 bits. Original files always keep a
    path (read from it, kept through a map that returns them, or stored with their bytes by `save_to_disk`), so
    PadChest's 12 bits stored in 16 are still scaled by the bits they use; images of 8-bit sets are left alone. (A map
    that returns new pixels made from such a file, 12 bits in 16, should scale them to 16 bits: they are read as 16.)"""
    from hf_datasets.images import BIT_DEPTH_KEY, stated_bits

    if bits != 16:
        return
    lost = [k for k, image in enumerate(images) if getattr(image, "mode", None) in SIXTEEN_BIT_MODES
            and stated_bits(image) is None]
    if not lost:
        return
    stored = storage[[indices[k] for k in lost]].column("image").combine_chunks()
    paths = stored.field("path").to_pylist()
    for k, path in zip(lost, paths):
        if path is None:
            images[k].info[BIT_DEPTH_KEY] = "16"


def stored_bits(ds) -> int | None:
    """The bit depth an hf_datasets set declares for its images (None for other data sets)."""
    from hf_datasets.schema import bit_depth

    try:
        return bit_depth(ds)
    except ValueError:
        return None


class EpochSampler(torch.utils.data.Sampler):
    """Indices 0..n-1, shuffled by a generator seeded with (seed, epoch): the order is a function of the epoch."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def collate(items: list[dict]) -> dict:
    """torch's batch of `items`, or the error item that `CXRDataset.__getitems__` gives for a batch it cannot read."""
    return items[0] if "error" in items[0] else torch.utils.data.default_collate(items)


def raise_unreadable(batch: dict) -> None:
    """Raise the DataError of a batch that could not be read (see `CXRDataset.__getitems__`)."""
    if "error" in batch:
        raise batch["error"]


def make_loader(dataset: CXRDataset, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0,
                prefetch_factor: int = 4):
    """DataLoader over an `EpochSampler` (reach it as `loader.sampler` before `accelerator.prepare`); pass each batch
    to `raise_unreadable` before using it.

    Workers (`num_workers` > 0) stay alive across epochs and keep `prefetch_factor` batches each in flight; batches
    land in pinned memory when a GPU is present, so the copy to it can run asynchronously.
    """
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), seed, shuffle), collate_fn=collate,
        num_workers=num_workers, persistent_workers=num_workers > 0, drop_last=False,
        pin_memory=torch.cuda.is_available(), prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
