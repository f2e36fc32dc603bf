"""Predictions of an exported model on DICOM / PNG / JPEG / TIFF / BMP / GIF / WebP files or folders.

    python -m train.predict --model outputs/demo/model --inputs scans/ image.dcm --output predictions.csv

Classification: a CSV (`--output`, default predictions.csv) with one row per image (path, one probability per label,
predicted label). Segmentation: one mask PNG per image (0 / 255, at the image's size) in `--output` (a folder, default
masks, mirroring the inputs' folders below the one that holds them all) and `--output`/masks.csv with mask areas.
An unreadable or unsupported file stops the run naming it (`--on_error raise`), or is reported and listed with its
reason in <table>_skipped.csv beside the table (`--on_error skip`). Rows are written as they come: a stopped run
keeps them, and `--resume` continues it, skipping the files its tables already list. Runs on the GPU when there is
one (`--device`).
The model is loaded with `trust_remote_code=True` from the folder's own code, as on the Hub; a training checkpoint
(`<run>/checkpoints/step_XXXXXXXX`) as the model its run would export from it (its EMA weights where it keeps one).
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, AutoModelForSemanticSegmentation

from hf_datasets.errors import InvalidInputError, MissingInputError, run_script

from . import checkpoint
from .config import PredictArgs, decision_threshold, load_model_source, parse_args

logger = logging.getLogger(__name__)


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively) under folders, sorted per folder. In folders: files with an
    image suffix the data set builders read (`IMAGE_SUFFIXES`: PNG, JPEG, TIFF, BMP, GIF, WebP) and DICOM files under
    any name (PACS exports: `IM0001`, `1.2.840...`); hidden files and an export's DICOMDIR (the index of its files, no
    image) are left out. Only files without an image suffix are opened here (to tell DICOM), so that an image file is
    opened once, when it is read. A file reached twice (named and inside a folder named too, or under two nested
    folders) is kept once, where first reached, and the run says how many such repeats it dropped."""
    from hf_datasets.builders.common import walk_files
    from hf_datasets.dicom import is_dicom_directory
    from hf_datasets.images import IMAGE_SUFFIXES, is_dicom_path

    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += [p for p in walk_files(item, ("",))
                      if p.suffix.lower() in IMAGE_SUFFIXES or (is_dicom_path(p) and not is_dicom_directory(p))]
        elif item.is_file():
            files.append(item)
        else:
            raise MissingInputError(f"No such file or folder: {item}")
    if not files:
        raise InvalidInputError(f"No images (DICOM or {' '.join(IMAGE_SUFFIXES)}) in {inputs}")
    first = {}
    for path in files:
        first.setdefault(path.resolve(), path)
    unique = list(first.values())
    if len(unique) < len(files):
        logger.warning("%d of the %d files found were reached twice through the inputs given: each is predicted once",
                       len(files) - len(unique), len(files))
    return unique


def read_image(path: Path):
    """A DICOM as float [0, 1] (VOI + MONOCHROME1 handled), a float image (TIFF "F") as data sets read it (counts
    above 1 as integers), other files as PIL images at their bit depth.

    Raises a `hf_datasets.errors.DataError` naming the path and the reason (never a DICOM header value); warns,
    naming the path, about a DICOM of another modality than radiography.
    """
    from hf_datasets.dicom import RADIOGRAPH_MODALITIES, read_dicom
    from hf_datasets.images import has_dicom_suffix, open_image, pil_to_grey

    if not has_dicom_suffix(path):
        image = open_image(path)  # None for a DICOM file under another name: its marker is read as the file is opened
        if image is not None:
            return pil_to_grey(image) if image.mode == "F" else image
    image, header = read_dicom(path)
    if header["modality"] is not None and header["modality"] not in RADIOGRAPH_MODALITIES:
        warnings.warn(f"{path}: not a radiograph (its Modality is neither CR nor DX): the model knows chest X-rays "
                      "only, its prediction for this image means nothing", stacklevel=2)
    return image


def is_segmentation(config) -> bool:
    """Whether an exported model's config is a segmentation model's (else a classifier's)."""
    return any(a.endswith("ForSegmentation") for a in config.architectures or [])


def check_predicts(config, model) -> None:
    """Refuse a model that is neither a classifier nor a segmenter (a pretraining export or checkpoint, an encoder):
    loaded as a classifier it would get a new, random head and write meaningless probabilities."""
    architectures = config.architectures or []
    if not any("ForImageClassification" in a or a.endswith("ForSegmentation") for a in architectures):
        named = ", ".join(architectures) or "no architecture in its config"
        raise InvalidInputError(f"--model {model} is no classifier or segmenter ({named}): it makes no predictions; "
                                f"fine-tune it first, e.g. python -m train.finetune_classification --init {model}")


def _size(image) -> tuple[int, int]:
    return (image.shape[0], image.shape[1]) if isinstance(image, np.ndarray) else (image.height, image.width)


class _Files(torch.utils.data.Dataset):
    """Files -> {"path", "pixel_values" (C, S, S), "size" (H, W)}, or {"path", "error": its DataError} for a file
    that cannot be read: returned, not raised, so that it comes back from a worker process as it is (as in
    `data.CXRDataset.__getitems__`)."""

    def __init__(self, files: list[Path], processor):
        self.files, self.processor = files, processor

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from hf_datasets.errors import DataError, ImageReadError

        path = self.files[i]
        try:
            image = read_image(path)
        except DataError as err:
            return {"path": path, "error": err}
        try:
            pixel_values = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        except (ValueError, TypeError) as err:  # an image the model's processor refuses, e.g. beyond its bit depth
            return {"path": path, "error": ImageReadError(path, f"the model's image processor refuses it: {err}")}
        return {"path": path, "pixel_values": pixel_values, "size": _size(image)}


def _collate(items: list[dict]) -> dict:
    """A batch: readable files stacked (pixel_values (B, C, S, S) or None, paths, sizes), unreadable ones listed."""
    readable = [item for item in items if "error" not in item]
    return {"paths": [item["path"] for item in readable], "sizes": [item["size"] for item in readable],
            "pixel_values": torch.stack([item["pixel_values"] for item in readable]) if readable else None,
            "errors": [(item["path"], item["error"]) for item in items if "error" in item]}


@torch.no_grad()
def predict(model_dir, files: list[Path], batch_size: int = 16, on_error: str = "raise", device=None,
            num_workers: int = 0, mask_threshold: float = 0.5):
    """Yield (path, task, result): probabilities (K,) for classification, a 0/1 mask (H, W) for segmentation (a
    one-label segmenter's pixels above `mask_threshold`), or, with `on_error="skip"`, the reason (str) for a file
    that cannot be read (task "skipped").

    `num_workers` processes read and preprocess the files while the model runs (in input order)."""
    if on_error not in ("raise", "skip"):
        raise InvalidInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    segmentation = is_segmentation(config)
    auto = AutoModelForSemanticSegmentation if segmentation else AutoModelForImageClassification
    processor = load_model_source(lambda source: AutoImageProcessor.from_pretrained(source, trust_remote_code=True),
                                  model_dir, "--model", "preprocessor_config.json")
    model = auto.from_pretrained(model_dir, trust_remote_code=True, dtype=torch.float32).eval().to(device)
    multi_label = config.problem_type == "multi_label_classification"
    loader = torch.utils.data.DataLoader(_Files(files, processor), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate, pin_memory=device.type == "cuda")
    for batch in loader:
        for path, error in batch["errors"]:
            if on_error == "raise":
                error.add_note("--on_error skip leaves such files out and lists them")
                raise error
            logger.warning("skipped %s", error)
            yield path, "skipped", error.reason
        if batch["pixel_values"] is None:
            continue
        outputs = model(pixel_values=batch["pixel_values"].to(device, non_blocking=True))
        if segmentation:
            masks = processor.post_process_instance_segmentation(outputs, target_sizes=batch["sizes"],
                                                                 mask_threshold=mask_threshold)
            yield from ((p, "segmentation", m["segmentation"].cpu().numpy()) for p, m in zip(batch["paths"], masks))
        else:
            logits = outputs.logits.float().cpu()
            probabilities = logits.sigmoid() if multi_label else logits.softmax(-1)
            yield from ((p, "classification", row.numpy()) for p, row in zip(batch["paths"], probabilities))


def mask_paths(files: list[Path], output: Path) -> dict[Path, Path]:
    """Where each file's mask goes: its path below the folder that holds all inputs, mirrored under `output`, so
    that files with the same name in different folders (IM-0001.dcm in every study) get masks of their own; files
    of one folder that differ only in their suffix (scan.dcm, scan.png) keep it in the mask's name. Paths as given
    (made absolute), not where symbolic links lead: a folder of links mirrors as the folder."""
    absolute = [Path(os.path.abspath(path)) for path in files]
    root = Path(os.path.commonpath([path.parent for path in absolute]))
    relative = [full.relative_to(root) for full in absolute]
    stems = Counter(path.with_suffix("") for path in set(relative))
    return {path: output / rel.parent / (f"{rel.stem}_mask.png" if stems[rel.with_suffix("")] == 1
                                         else f"{rel.stem}_{rel.suffix.lstrip('.')}_mask.png")
            for path, rel in zip(files, relative)}


class _Table:
    """A CSV written and flushed row by row, so an interrupted run keeps what it predicted. Created at the first
    row; `resume` appends to an existing table, else an earlier run's table is removed at once (a run that writes
    no row to it, e.g. skips no file, must not leave the earlier run's rows beside its own)."""

    def __init__(self, path: Path, fields: list[str], resume: bool):
        self.path, self.fields, self.resume, self.rows = path, fields, resume, 0
        self._handle = self._writer = None
        if not resume:
            path.unlink(missing_ok=True)

    def write(self, row: dict) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append = self.resume and self.path.is_file()
            self._handle = self.path.open("a" if append else "w", newline="")
            self._writer = csv.DictWriter(self._handle, fieldnames=self.fields)
            if not append:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._handle.flush()
        self.rows += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _listed_paths(*tables: Path) -> set[str]:
    """The files in the `path` column of each existing table, as real paths (a resume may name the inputs
    otherwise: `scans/` then `./scans` or `/data/scans`, from another folder: the tables hold absolute paths)."""
    return {os.path.realpath(row["path"]) for table in tables if table.is_file()
            for row in csv.DictReader(table.open(newline=""))}


def check_columns(table: Path, fields: list[str], model) -> None:
    """Refuse to resume into a table of other columns: another model's labels, or its labels in another order, whose
    probabilities would be appended under the wrong names."""
    if not table.is_file():
        return
    with table.open(newline="") as handle:
        header = next(csv.reader(handle), None)
    if header is not None and header != fields:
        raise InvalidInputError(f"--resume: {table} has the columns {header}, but {model} writes {fields} (another "
                                "model, or its labels in another order): resume with the model that wrote it, or "
                                "write to another --output")


def check_args(args: PredictArgs) -> None:
    """Refuse invalid settings before anything runs (a fresh run replaces an earlier run's tables as it starts)."""
    if args.on_error not in ("raise", "skip"):
        raise InvalidInputError(f"--on_error must be raise or skip, got {args.on_error!r}")
    if args.batch_size < 1:
        raise InvalidInputError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.num_workers < 0:
        raise InvalidInputError(f"--num_workers must be 0 (read in this process) or more, got {args.num_workers}")


def main(argv=None) -> Path:
    args = parse_args(PredictArgs, argv)
    check_args(args)
    files = find_images(args.inputs)
    with checkpoint.model_folder(args.model) as (model_dir, weights):
        if weights:
            print(f"{args.model} is a checkpoint: predicting with {checkpoint.WEIGHTS[weights]}")
        return write_predictions(args, files, model_dir)


def write_predictions(args: PredictArgs, files: list[Path], model_dir) -> Path:
    """Predict `files` with the model in `model_dir` into the tables (or mask folder) `args` name."""
    config = load_model_source(lambda source: AutoConfig.from_pretrained(source, trust_remote_code=True), model_dir,
                               "--model")
    check_predicts(config, args.model)
    names = [config.id2label[i] for i in range(config.num_labels)]
    segmentation = is_segmentation(config)
    multi_label = not segmentation and config.problem_type == "multi_label_classification"
    threshold = decision_threshold(args.threshold, config, args.model)  # refused first where it would change nothing
    output = Path(args.output or ("masks" if segmentation else "predictions.csv"))
    if segmentation and output.suffix.lower() == ".csv":
        raise InvalidInputError(f"--output {output}: a segmentation model writes one mask PNG per image into a folder, "
                                f"which --output names (its table is masks.csv in it), e.g. --output "
                                f"{output.with_suffix('')}")
    table_path = output / "masks.csv" if segmentation else output
    skipped_path = table_path.with_name(f"{table_path.stem}_skipped.csv")
    masks = mask_paths(files, output) if segmentation else {}
    fields = ["path", "mask", "mask_fraction"] if segmentation else ["path", *(f"p_{n}" for n in names), "predicted"]
    if args.resume:
        check_columns(table_path, fields, args.model)
        check_columns(skipped_path, ["path", "reason"], args.model)
    done = _listed_paths(table_path, skipped_path) if args.resume else set()
    todo = [path for path in files if os.path.realpath(path) not in done]
    if done:
        print(f"resuming: {len(files) - len(todo)} of {len(files)} files already in {table_path} / {skipped_path.name}")
    table, skipped = _Table(table_path, fields, args.resume), _Table(skipped_path, ["path", "reason"], args.resume)
    try:
        for path, task, result in predict(model_dir, todo, args.batch_size, args.on_error, args.device,
                                          args.num_workers, mask_threshold=threshold):
            if task == "skipped":
                skipped.write({"path": os.path.abspath(path), "reason": result})
            elif task == "segmentation":
                masks[path].parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray((result > 0).astype(np.uint8) * 255, mode="L").save(masks[path])
                table.write({"path": os.path.abspath(path), "mask": str(masks[path]),
                             "mask_fraction": f"{(result > 0).mean():.4f}"})
            else:
                row = {"path": os.path.abspath(path), **{f"p_{n}": f"{v:.6f}" for n, v in zip(names, result)}}
                if multi_label:
                    row["predicted"] = ";".join(n for n, v in zip(names, result) if v >= threshold)
                else:
                    row["predicted"] = names[int(result.argmax())]
                table.write(row)
    finally:
        table.close()
        skipped.close()
    if todo and not table.rows and not done:
        raise InvalidInputError(f"None of the {len(files)} files could be read; reasons in {skipped_path}")
    print(f"{table.rows} predictions -> {table_path}")
    if skipped.rows:
        print(f"{skipped.rows} unreadable files skipped -> {skipped_path}")
    return table_path


if __name__ == "__main__":
    run_script(main)
