"""The benchmark data at one training size, small enough to carry to a GPU host.

    python -m benchmarks.bundle_data --data_dir ../shared/data --output_dir offline/data --size 224

Copies every folder of `--data_dir` that has a labels.csv (the layout of ../shared/data), and the top-level README
(sources and licences), with each 8-bit image and mask resized exactly as the image processor resizes it for
`--size` (longer side = size, aspect ratio kept, no padding). The train scripts read the copy at `--image_size SIZE`
and get the same pixels and masks as from the originals, since the processor only pads an image already at its size;
byte-identical sources stay byte-identical, so the pretraining pool drops the same duplicates. ../shared/data
shrinks from 61 to 45 MiB at 224 px, and the loader only decodes and pads.

A folder is finished once its labels.csv is written (last); each file is written under a temporary name and renamed,
so a rerun after a kill redoes only what is missing. A row whose image or mask cannot be used is left out of the
copy and listed with its path and the reason in `<output_dir>/report.json`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from modeling_cxrgm import GroupMaskedViTImageProcessor

EIGHT_BIT_MODES = ("L", "LA", "RGB", "RGBA", "P")


def _write_png(array: np.ndarray, path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG", optimize=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, path)


def _open_8bit(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
    if image.mode not in EIGHT_BIT_MODES:
        raise ValueError(f"image mode {image.mode} is not 8-bit (the copy keeps 8 bits per pixel)")
    return image


def resize_image(processor: GroupMaskedViTImageProcessor, image: Image.Image) -> np.ndarray:
    """An 8-bit image -> uint8 (h, w): the processor's grey, resized image without its padding, rounded to 8 bits."""
    pixels = processor.preprocess([image], do_normalize=False)["pixel_values"][0, 0]
    height, width, top, left = processor._geometry(image.height, image.width)
    return pixels[top:top + height, left:left + width].mul(255).round().to(torch.uint8).numpy()


def resize_mask(processor: GroupMaskedViTImageProcessor, mask: Image.Image) -> np.ndarray:
    """A mask image -> uint8 (h, w): its values resized by the processor's nearest-neighbour rule, not padded."""
    values = np.array(mask.convert("L") if mask.mode in ("RGB", "RGBA") else mask, dtype=np.float32)
    resized = processor._fit(torch.from_numpy(values)[None], "nearest", 0.0)[0]
    height, width, top, left = processor._geometry(*values.shape)
    return resized[top:top + height, left:left + width].round().to(torch.uint8).numpy()


def bundle_folder(source: Path, target: Path, processor: GroupMaskedViTImageProcessor) -> list[dict]:
    """Resize one labels.csv folder into `target`; returns the rows left out ({path, reason})."""
    with open(source / "labels.csv", newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header, rows = reader.fieldnames, list(reader)
    kept, skipped = [], []
    for row in rows:
        columns = [c for c in ("file", "mask_file") if row.get(c)]
        try:
            for column in columns:
                out = target / row[column]
                if out.exists():
                    continue
                image = _open_8bit(source / row[column])
                resize = resize_image if column == "file" else resize_mask
                _write_png(resize(processor, image), out)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            skipped.append({"path": str(source / row[column]), "reason": f"{type(error).__name__}: {error}"})
            continue
        if "size" in row:
            with Image.open(target / row["file"]) as written:
                row["size"] = f"{written.width}x{written.height}"
        kept.append(row)
    partial = target / "labels.csv.partial"
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(partial, target / "labels.csv")
    return skipped


def bundle(data_dir, output_dir, size: int = 224) -> dict:
    """Resize every labels.csv folder of `data_dir` into `output_dir`; returns (and writes) report.json."""
    data_dir, output_dir = Path(data_dir), Path(output_dir)
    folders = sorted(p.parent for p in data_dir.glob("*/labels.csv"))
    if not folders:
        raise FileNotFoundError(f"{data_dir}: no folder with a labels.csv")
    output_dir.mkdir(parents=True, exist_ok=True)
    settings_path = output_dir / "bundle_settings.json"
    if settings_path.exists() and json.loads(settings_path.read_text())["size"] != size:
        raise ValueError(f"{output_dir} holds a copy at {settings_path.read_text()}, not size {size}; use a new folder")
    settings_path.write_text(json.dumps({"size": size}))
    processor = GroupMaskedViTImageProcessor(size=size, num_channels=1)
    report = {"size": size, "folders": {}, "skipped": []}
    for folder in folders:
        target = output_dir / folder.name
        if (target / "labels.csv").exists():
            report["folders"][folder.name] = "kept from an earlier run"
            continue
        skipped = bundle_folder(folder, target, processor)
        report["skipped"] += skipped
        report["folders"][folder.name] = f"written, {len(skipped)} rows left out"
    for extra in data_dir.glob("README*"):
        shutil.copy(extra, output_dir / extra.name)
    (output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--size", type=int, default=224, help="the training --image_size the copy is for")
    args = parser.parse_args(argv)
    report = bundle(args.data_dir, args.output_dir, args.size)
    for name, state in report["folders"].items():
        print(f"{name}: {state}")
    for entry in report["skipped"]:
        print(f"left out {entry['path']}: {entry['reason']}")
    return report


if __name__ == "__main__":
    main()
