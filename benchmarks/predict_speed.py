"""Throughput of `train.predict` on full-size DICOMs: files read and preprocessed in the main process vs by workers.

The inputs are N links to the real 1955x1841 chest CR of the sample set; the model is any exported classifier
(default: the one `make demo` exports). One JSON line per setting, then the ratio.

    python -m benchmarks.predict_speed [--model outputs/demo/model] [--files 96] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from hf_datasets.builders.sample import CR_NAME, sample_files
from train.predict import predict


def images_per_second(model: str, files: list[Path], batch_size: int, num_workers: int) -> float:
    """Images/s of the whole predict loop (model load and worker start-up included)."""
    started = time.perf_counter()
    count = sum(1 for _ in predict(model, files, batch_size, num_workers=num_workers))
    return count / (time.perf_counter() - started)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="outputs/demo/model")
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    source = sample_files()[CR_NAME]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for i in range(args.files):
            files.append(Path(folder) / f"cr{i:04d}.dcm")
            os.symlink(source, files[-1])
        for num_workers in (0, args.workers):
            rate = images_per_second(args.model, files, args.batch_size, num_workers)
            rows.append({"name": "predict_dicom", "num_workers": num_workers, "img_per_s": round(rate, 1),
                         "files": args.files, "threads": torch.get_num_threads()})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"ratios": {"workers_over_main_process": round(rows[1]["img_per_s"] / rows[0]["img_per_s"], 3)}}))
    return rows


if __name__ == "__main__":
    main()
