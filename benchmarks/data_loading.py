"""Throughput of the data side, per CPU core (single process).

1. prepare: original files -> resized grey PNG shards (hf_datasets.prepare), images/s.
2. loading prepared shards: PNG decode + resize to 224x224 + uint8 torch tensor, images/s, read
   (a) in batches of undecoded bytes (what a fast DataLoader worker does) and
   (b) item by item through datasets' own Image decoding.
3. DICOM preparation: what `prepare` does per DICOM file (hf_datasets.shards.resize_example: read_dicom of the
   real 1955x1841 chest CR, 16-bit grey, resize, 8-bit PNG), images/s.

    python -m benchmarks.data_loading [--data_root ../shared/data] [--size 256]

Uses every cxr_folder set under --data_root when present, else the embedded sample set.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from hf_datasets.prepare import prepare
from hf_datasets.shards import resize_example

TARGET = 224


def to_tensor_224(image: Image.Image) -> torch.Tensor:
    """PIL grey image -> (224, 224) uint8 tensor."""
    resized = image.convert("L").resize((TARGET, TARGET), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(resized))


def bench_prepare(data_root: Path, out: Path, size: int) -> tuple[float, int]:
    folders = sorted(p.parent for p in data_root.glob("*/labels.csv"))
    start, count = time.perf_counter(), 0
    for folder in folders:
        report = prepare("cxr_folder", folder, out / folder.name, size=size, progress=False)
        count += report["written"]
    if not folders:
        count = prepare("sample", None, out / "sample", size=size, progress=False)["written"]
    return count / (time.perf_counter() - start), count


def bench_loading_bytes(paths: list[Path], batch: int = 256) -> tuple[float, int]:
    parts = [datasets.load_from_disk(str(p)) for p in paths]
    splits = [d.cast_column("image", datasets.Image(decode=False)).select_columns(["image"])
              for dd in parts for d in dd.values()]
    start, count = time.perf_counter(), 0
    for ds in splits:
        for offset in range(0, ds.num_rows, batch):
            for value in ds[offset: offset + batch]["image"]:
                to_tensor_224(Image.open(io.BytesIO(value["bytes"])))
                count += 1
    return count / (time.perf_counter() - start), count


def bench_loading_items(paths: list[Path], limit: int = 500) -> tuple[float, int]:
    ds = max((d for p in paths for d in datasets.load_from_disk(str(p)).values()), key=len)
    n = min(limit, ds.num_rows)
    start = time.perf_counter()
    for i in range(n):
        to_tensor_224(ds[i]["image"])
    return n / (time.perf_counter() - start), n


def bench_dicom(size: int, repeats: int = 20) -> tuple[float, int]:
    from pydicom.data import get_testdata_file

    source = {"image": get_testdata_file("RG1_UNCR.dcm", download=False)}
    resize_example(source, size=size, bits=8)
    start = time.perf_counter()
    for _ in range(repeats):
        resize_example(source, size=size, bits=8)
    return repeats / (time.perf_counter() - start), repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(tmp, "hf_cache"))
        out = Path(tmp) / "prepared"
        rate, n = bench_prepare(Path(args.data_root), out, args.size)
        print(f"prepare (decode + resize to {args.size} + PNG): {rate:8.0f} images/s/core  ({n} images)")
        prepared = sorted(p for p in out.iterdir() if (p / "dataset_dict.json").exists())
        rate, n = bench_loading_bytes(prepared)
        print(f"load shards, batched bytes -> 224 uint8 tensor: {rate:8.0f} images/s/core  ({n} images)"
              f"  -> x16 cores = {16 * rate:,.0f} images/s")
        rate, n = bench_loading_items(prepared)
        print(f"load shards, datasets item decode -> 224 tensor: {rate:8.0f} images/s/core  ({n} images)")
    rate, n = bench_dicom(args.size)
    print(f"DICOM prepare (1955x1841 CR: resize_example): {rate:8.1f} images/s/core  ({n} images)")


if __name__ == "__main__":
    main()
