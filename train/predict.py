"""Predictions of an exported model on DICOM / PNG / JPEG files or folders.

    python -m train.predict --model outputs/demo/model --inputs scans/ image.dcm --output predictions.csv

Classification: a CSV with one row per image (path, one probability per label, predicted label). Segmentation: one
mask PNG per image (0 / 255, at the image's size) in `--output` (a folder) and `--output`/masks.csv with mask areas.
An unreadable or unsupported file stops the run naming it (`--on_error raise`), or is reported and listed with its
reason in <table>_skipped.csv beside the table (`--on_error skip`). Runs on the GPU when there is one (`--device`).
The model is loaded with `trust_remote_code=True` from the folder's own code, as on the Hub.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, AutoModelForSemanticSegmentation

from .config import PredictArgs, parse_args

SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")
logger = logging.getLogger(__name__)


def find_images(inputs: list[str]) -> list[Path]:
    """Image files named directly or found (recursively) under folders, sorted per folder."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in SUFFIXES)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"No such file or folder: {item}")
    if not files:
        raise ValueError(f"No DICOM/PNG/JPEG images in {inputs}")
    return files


def read_image(path: Path):
    """A DICOM as float [0, 1] (VOI + MONOCHROME1 handled), other files as PIL images at their bit depth.

    Raises a `hf_datasets.errors.DataError` naming the path and the reason (never a DICOM header value).
    """
    from hf_datasets.dicom import read_dicom
    from hf_datasets.images import open_image

    if path.suffix.lower() in (".dcm", ".dicom"):
        return read_dicom(path)[0]
    return open_image(path)


def _size(image) -> tuple[int, int]:
    return (image.shape[0], image.shape[1]) if isinstance(image, np.ndarray) else (image.height, image.width)


class _Files(torch.utils.data.Dataset):
    """Files -> {"path", "pixel_values" (C, S, S), "size" (H, W)}, or {"path", "error": (error class, reason)} for a
    file that cannot be read (the error travels as class + reason: a worker process can send those back)."""

    def __init__(self, files: list[Path], processor):
        self.files, self.processor = files, processor

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        from hf_datasets.errors import DataError

        path = self.files[i]
        try:
            image = read_image(path)
        except DataError as err:
            return {"path": path, "error": (type(err), err.reason)}
        pixel_values = self.processor(images=[image], return_tensors="pt")["pixel_values"][0]
        return {"path": path, "pixel_values": pixel_values, "size": _size(image)}


def _collate(items: list[dict]) -> dict:
    """A batch: readable files stacked (pixel_values (B, C, S, S) or None, paths, sizes), unreadable ones listed."""
    readable = [item for item in items if "error" not in item]
    return {"paths": [item["path"] for item in readable], "sizes": [item["size"] for item in readable],
            "pixel_values": torch.stack([item["pixel_values"] for item in readable]) if readable else None,
            "errors": [(item["path"], *item["error"]) for item in items if "error" in item]}


@torch.no_grad()
def predict(model_dir, files: list[Path], batch_size: int = 16, on_error: str = "raise", device=None,
            num_workers: int = 0):
    """Yield (path, task, result): probabilities (K,) for classification, a 0/1 mask (H, W) for segmentation, or,
    with `on_error="skip"`, the reason (str) for a file that cannot be read (task "skipped").

    `num_workers` processes read and preprocess the files while the model runs (in input order)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    segmentation = any(a.endswith("ForSegmentation") for a in config.architectures or [])
    auto = AutoModelForSemanticSegmentation if segmentation else AutoModelForImageClassification
    model = auto.from_pretrained(model_dir, trust_remote_code=True).eval().to(device)
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    multi_label = config.problem_type == "multi_label_classification"
    loader = torch.utils.data.DataLoader(_Files(files, processor), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate, pin_memory=device.type == "cuda")
    for batch in loader:
        for path, error_class, reason in batch["errors"]:
            error = error_class(path, reason)
            if on_error == "raise":
                error.add_note("--on_error skip leaves such files out and lists them")
                raise error
            logger.warning("skipped %s", error)
            yield path, "skipped", reason
        if batch["pixel_values"] is None:
            continue
        outputs = model(pixel_values=batch["pixel_values"].to(device, non_blocking=True))
        if segmentation:
            masks = processor.post_process_semantic_segmentation(outputs, target_sizes=batch["sizes"])
            yield from ((p, "segmentation", m.cpu().numpy()) for p, m in zip(batch["paths"], masks))
        else:
            logits = outputs.logits.float().cpu()
            probabilities = logits.sigmoid() if multi_label else logits.softmax(-1)
            yield from ((p, "classification", row.numpy()) for p, row in zip(batch["paths"], probabilities))


def main(argv=None) -> Path:
    args = parse_args(PredictArgs, argv)
    files = find_images(args.inputs)
    output = Path(args.output)
    config = AutoConfig.from_pretrained(args.model, trust_remote_code=True)
    names = [config.id2label[i] for i in range(config.num_labels)]
    rows, skipped = [], []
    for path, task, result in predict(args.model, files, args.batch_size, args.on_error, args.device, args.num_workers):
        if task == "skipped":
            skipped.append({"path": str(path), "reason": result})
        elif task == "segmentation":
            output.mkdir(parents=True, exist_ok=True)
            mask_path = output / f"{path.stem}_mask.png"
            Image.fromarray((result > 0).astype(np.uint8) * 255, mode="L").save(mask_path)
            rows.append({"path": str(path), "mask": str(mask_path), "mask_fraction": f"{(result > 0).mean():.4f}"})
        else:
            row = {"path": str(path), **{f"p_{n}": f"{v:.6f}" for n, v in zip(names, result)}}
            if config.problem_type == "multi_label_classification":
                row["predicted"] = ";".join(n for n, v in zip(names, result) if v >= args.threshold)
            else:
                row["predicted"] = names[int(result.argmax())]
            rows.append(row)
    if not rows:
        raise ValueError(f"None of the {len(files)} files could be read: {skipped[0]['path']}: {skipped[0]['reason']}")
    table = output / "masks.csv" if "mask" in rows[0] else output
    table.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(table, rows)
    print(f"{len(rows)} predictions -> {table}")
    if skipped:
        listing = table.with_name(f"{table.stem}_skipped.csv")
        _write_csv(listing, skipped)
        print(f"{len(skipped)} unreadable files skipped -> {listing}")
    return table


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
