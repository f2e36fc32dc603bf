"""Predictions of an exported model on DICOM / PNG / JPEG files or folders.

    python -m train.predict --model outputs/demo/model --inputs scans/ image.dcm --output predictions.csv

Classification: a CSV with one row per image (path, one probability per label, predicted label). Segmentation: one
mask PNG per image (0 / 255, at the image's size) in `--output` (a folder) and `--output`/masks.csv with mask areas.
The model is loaded with `trust_remote_code=True` from the folder's own code, as on the Hub.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, AutoModelForSemanticSegmentation

from .config import PredictArgs, parse_args

SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg")


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
    """A DICOM as float [0, 1] (VOI + MONOCHROME1 handled), other files as PIL images at their bit depth."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        from hf_datasets.dicom import read_dicom

        return read_dicom(path)[0]
    image = Image.open(path)
    image.load()
    return image


def _size(image) -> tuple[int, int]:
    return (image.shape[0], image.shape[1]) if isinstance(image, np.ndarray) else (image.height, image.width)


@torch.no_grad()
def predict(model_dir, files: list[Path], batch_size: int = 16, threshold: float = 0.5):
    """Yield (path, task, result): probabilities (K,) for classification, a 0/1 mask (H, W) for segmentation."""
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=True)
    segmentation = any(a.endswith("ForSegmentation") for a in config.architectures or [])
    auto = AutoModelForSemanticSegmentation if segmentation else AutoModelForImageClassification
    model = auto.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    multi_label = config.problem_type == "multi_label_classification"
    for start in range(0, len(files), batch_size):
        paths = files[start:start + batch_size]
        images = [read_image(p) for p in paths]
        outputs = model(**processor(images=images, return_tensors="pt"))
        if segmentation:
            masks = processor.post_process_semantic_segmentation(outputs, target_sizes=[_size(i) for i in images])
            yield from ((p, "segmentation", m.numpy()) for p, m in zip(paths, masks))
        else:
            logits = outputs.logits.float()
            probabilities = logits.sigmoid() if multi_label else logits.softmax(-1)
            yield from ((p, "classification", row.numpy()) for p, row in zip(paths, probabilities))


def main(argv=None) -> Path:
    args = parse_args(PredictArgs, argv)
    files = find_images(args.inputs)
    output = Path(args.output)
    config = AutoConfig.from_pretrained(args.model, trust_remote_code=True)
    names = [config.id2label[i] for i in range(config.num_labels)]
    rows = []
    for path, task, result in predict(args.model, files, args.batch_size, args.threshold):
        if task == "segmentation":
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
    table = output / "masks.csv" if rows and "mask" in rows[0] else output
    table.parent.mkdir(parents=True, exist_ok=True)
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} predictions -> {table}")
    return table


if __name__ == "__main__":
    main()
