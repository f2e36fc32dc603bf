"""Milliseconds from an epoch's start to its last batch, for the training loader over a small labelled set (the
fine-tuning case: a few patients, an epoch of one to a few batches), with the per-worker item cache and without.

    python -m benchmarks.epoch_latency [--data_dir ../shared/data/kermany_pediatric] [--workers 2] [--epochs 15]

The set is loaded as `train.finetune_classification` loads it (cxr_folder, 70/30 patient split, the given fractions of
the training patients, --image_size, batch 64), with a loader made as the training makes it. One JSON line per
fraction: the median epoch after the first (which starts the workers), cached and not, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from train import data
from train.config import TrainArgs
from train.run import load_data
from train.starting_point import build_processor

ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    for folder in (ROOT.parent / "shared" / "data", ROOT / "offline" / "data"):
        if (folder / "kermany_pediatric" / "labels.csv").is_file():
            return folder / "kermany_pediatric"
    raise SystemExit("No kermany_pediatric folder in ../shared/data or offline/data: pass --data_dir")


def epoch_ms(dataset: data.CXRDataset, batch_size: int, workers: int, epochs: int) -> float:
    """Median milliseconds of epochs 1..epochs-1 through a training loader over `dataset`."""
    loader = data.make_loader(dataset, batch_size, seed=0, shuffle=True, num_workers=workers)
    times = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for batch in loader:
            data.raise_unreadable(batch)  # an unreadable batch is no batch delivered
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1000


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", type=Path, help="a cxr_folder set (default: kermany_pediatric)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    for fraction in args.fractions:
        train_args = TrainArgs(
            task="classification", dataset="cxr_folder", data_dir=str(data_dir), image_size=args.image_size,
            dataset_options={"split_fractions": {"train": 0.7, "test": 0.3}, "train_fraction": fraction,
                             "subset_seed": 0},
            output_dir="unused", train_splits=["train"], eval_split=None)
        train_set, _, _, mode = load_data(train_args, build_processor(train_args))
        plain = data.CXRDataset(train_set.ds, train_set.processor, "classification", mode, train_set.rows,
                                cache_bytes=0)
        kept = data.CXRDataset(train_set.ds, train_set.processor, "classification", mode, train_set.rows)
        row = {"data": data_dir.name, "fraction": fraction, "images": len(kept), "workers": args.workers,
               "batches_per_epoch": -(-len(kept) // args.batch_size), "items_kept": kept.cache is not None,
               "ms_per_epoch_without_cache": round(epoch_ms(plain, args.batch_size, args.workers, args.epochs), 1),
               "ms_per_epoch_with_cache": round(epoch_ms(kept, args.batch_size, args.workers, args.epochs), 1)}
        row["ratio"] = round(row["ms_per_epoch_without_cache"] / row["ms_per_epoch_with_cache"], 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
