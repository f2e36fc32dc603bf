"""Time of the bootstrap confidence intervals of `train.evaluate` beside the direct method, on the same draws.

Direct: recompute every metric (sklearn AUROC and AUPRC per class, decisions) on each resample of the images.
Ours (`cxr_classification._bootstrap`): each resample is a vector of counts per image, so one sort of each class's
scores serves a whole chunk of resamples. Synthetic scores at the size of the NIH ChestX-ray14 test set (25,596
images, 14 labels) by default; both give the same intervals (tested).

    python -m benchmarks.bootstrap_speed [--images 25596] [--labels 14] [--resamples 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

import train.metrics


def classification_module():
    path = Path(train.metrics.__file__).parent / "cxr_classification" / "cxr_classification.py"
    spec = importlib.util.spec_from_file_location("cxr_classification_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=25596)
    parser.add_argument("--labels", type=int, default=14)
    parser.add_argument("--resamples", type=int, default=100)
    args = parser.parse_args(argv)
    module = classification_module()
    rng = np.random.default_rng(0)
    labels = (rng.random((args.images, args.labels)) < 0.1).astype(float)
    probabilities = np.clip(labels * 0.3 + rng.random(labels.shape) * 0.7, 0, 1)
    names = [f"label_{k}" for k in range(args.labels)]

    started = time.perf_counter()
    draws = np.random.default_rng(0)
    for _ in range(args.resamples):
        rows = draws.integers(0, args.images, args.images)
        module.classification_metrics(probabilities[rows], labels[rows], names, single_label=False)
    direct = time.perf_counter() - started
    started = time.perf_counter()
    module._bootstrap(probabilities, labels, names, False, 0.5, args.resamples, seed=0)
    ours = time.perf_counter() - started
    row = {"images": args.images, "labels": args.labels, "resamples": args.resamples,
           "direct_s": round(direct, 3), "cxrgm_s": round(ours, 4), "speedup": round(direct / ours, 1)}
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
