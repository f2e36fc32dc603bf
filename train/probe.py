"""Frozen-feature evaluation of an encoder: linear-probe and k-NN accuracy on [CLS; mean patch token] features.

    python -m train.probe --model outputs/pretrain/model --dataset cxr_folder --data_dir D [--random_init]

The encoder is never trained here: features of the `train_split` fit a logistic regression (standardised features)
and a cosine k-NN vote, both scored on `eval_split`. `--random_init` probes the same architecture with fresh
weights (seeded), the baseline a pretrained encoder must beat. A training checkpoint (`<run>/checkpoints/step_XXXXXXXX`)
is probed as the model its run would export from it (its EMA weights where it keeps one). Writes `--output` (JSON;
by default <model>/probe[-random].json, a checkpoint's probe-<checkpoint>[-random].json beside it) and returns the
metrics.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from hf_datasets.errors import InvalidInputError, run_script
from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTImageProcessor, GroupMaskedViTModel
from modeling_cxrgm.modeling_gmvit import pool_tokens

from . import checkpoint, data
from .config import load_model_source, parse_args


@dataclass
class ProbeArgs:
    """Arguments of probe.py."""

    model: str = "outputs/pretrain/model"
    random_init: bool = False  # probe the same architecture with random weights instead
    output: str | None = None  # default: <model>/probe[-random].json; a checkpoint's beside it
    dataset: str | None = None
    data_dir: str | None = None
    dataset_options: dict = field(default_factory=dict)
    prepared_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    k: int = 20
    batch_size: int = 64
    seed: int = 0
    device: str | None = None  # default: cuda when available, else cpu


def load_encoder(folder, random_init: bool = False, seed: int = 0):
    """(encoder, processor) from a save_pretrained folder; `random_init` keeps its config but draws new weights."""
    processor = load_model_source(GroupMaskedViTImageProcessor.from_pretrained, folder, "--model",
                                  "preprocessor_config.json")
    config = load_model_source(GroupMaskedViTConfig.from_pretrained, folder, "--model")
    if not random_init:  # float32, as random init
        return GroupMaskedViTModel.from_pretrained(folder, config=config, dtype=torch.float32).eval(), processor
    torch.manual_seed(seed)
    return GroupMaskedViTModel(config).eval(), processor


def check_single_label(ds, split_name: str) -> None:
    """The probe's classes are the positive label of each row: refuse rows with none or several (multi-label data),
    whose class would be a guess."""
    if data.resolve_label_mode(ds) != data.SINGLE:
        raise InvalidInputError(f"The probe needs single-label data (one positive class per labelled image), but "
                                f"split {split_name!r} has no labelled row, or rows with no or several of its positive "
                                f"labels {data.label_names(ds)}")


def check_two_classes(ds, split_name: str) -> None:
    """The linear probe is fitted on the training split: refuse one whose labelled images are all of one class (a
    small set or a small train_fraction can leave only one), before any feature is extracted."""
    labels = np.asarray(ds.select_columns(["labels"])["labels"], dtype=np.float32)
    counts = (labels[~np.isnan(labels).any(axis=1)] == 1).sum(axis=0).astype(int).tolist()
    if sum(count > 0 for count in counts) < 2:
        raise InvalidInputError(f"The probe needs images of at least two classes in split {split_name!r}, but its "
                                f"labelled images per class are {dict(zip(data.label_names(ds), counts))}")


def check_held_out(train_set, test_set, train_name: str, eval_name: str) -> None:
    """The probe is scored on images it was not fitted to: refuse one split for both (every test image a training
    image, each its own nearest neighbour), and warn, with their number only, when patients have images in both
    splits (splits of one's own), which makes the scores optimistic."""
    if train_name == eval_name:
        raise InvalidInputError(f"--train_split and --eval_split are both {train_name!r}: the probe would be scored on "
                                "the images it was fitted to; score it on another split")
    if "patient_id" in train_set.column_names and "patient_id" in test_set.column_names:
        shared = ({p for p in train_set.select_columns(["patient_id"])["patient_id"] if p}
                  & {p for p in test_set.select_columns(["patient_id"])["patient_id"] if p})
        if shared:
            print(f"warning: {len(shared)} patients have images in both split {train_name!r} and split {eval_name!r}: "
                  "the probe's scores are optimistic", file=sys.stderr)


@torch.no_grad()
def extract_features(encoder, processor, ds, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 2D): [CLS; mean patch token] of the last layer, class indices (N,)) of rows with a known label.

    Runs on the encoder's device."""
    device = next(encoder.parameters()).device
    bits = data.stored_bits(ds)
    storage = data.image_storage(ds)
    rows = data.known_rows(ds)
    features = np.empty((len(rows), 2 * encoder.config.hidden_size), dtype=np.float32)  # filled in place: no copies
    labels = np.empty(len(rows), dtype=np.int64)
    for start in range(0, len(rows), batch_size):
        batch = ds.select(rows[start:start + batch_size])
        images = list(batch["image"])
        data.restate_bit_depths(storage, rows[start:start + batch_size], images, bits)  # lost in a `Dataset.map`
        pixel_values = processor(images, return_tensors="pt")["pixel_values"].to(device)
        hidden = encoder(pixel_values=pixel_values).last_hidden_state
        end = start + len(batch)
        features[start:end] = pool_tokens(hidden, "cls_mean").float().cpu().numpy()
        labels[start:end] = np.asarray(batch["labels"]).argmax(1)
    return features, labels


def probe_scores(train_x, train_y, test_x, test_y, k: int = 20, seed: int = 0) -> dict:
    """Linear-probe accuracy and macro AUROC (logistic regression on standardised features) and cosine k-NN accuracy
    with the k used (`knn_k`: at most the training images; with all of them every vote is the training majority)."""
    scaler = StandardScaler().fit(train_x)
    linear = LogisticRegression(max_iter=5000, random_state=seed).fit(scaler.transform(train_x), train_y)
    probabilities = linear.predict_proba(scaler.transform(test_x))
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_y)), metric="cosine").fit(train_x, train_y)
    scores = {"linear_accuracy": float((linear.predict(scaler.transform(test_x)) == test_y).mean()),
              "knn_accuracy": float((knn.predict(test_x) == test_y).mean()), "knn_k": knn.n_neighbors,
              "num_train": len(train_y), "num_test": len(test_y)}
    auroc = macro_auroc(test_y, probabilities, linear.classes_)
    if auroc is not None:
        scores["linear_auroc"] = auroc
    if len(np.unique(test_y)) < 2:
        scores["note"] = ("the test images are all of one class: both accuracies are the recall of that class, "
                          "and there is no AUROC")
    return scores


def macro_auroc(labels, probabilities, classes) -> float | None:
    """Mean one-vs-rest AUROC over the `classes` (columns of `probabilities`) that have positive and negative
    `labels`; None when none has. A class seen only in training, or only in the test split, is left out."""
    per_class = [roc_auc_score(labels == label, probabilities[:, column]) for column, label in enumerate(classes)
                 if 0 < (labels == label).sum() < len(labels)]
    return float(np.mean(per_class)) if per_class else None


def main(argv=None) -> dict:
    args = parse_args(ProbeArgs, argv)
    with checkpoint.model_folder(args.model) as (folder, weights):
        encoder, processor = load_encoder(folder, args.random_init, args.seed)
    weights = None if args.random_init else weights
    if weights:
        print(f"{args.model} is a checkpoint: probing the encoder of {checkpoint.WEIGHTS[weights]}")
    encoder.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    splits = data.load_splits(args.dataset, args.data_dir, args.prepared_dir, args.dataset_options)
    train_set, test_set = data.split(splits, args.train_split), data.split(splits, args.eval_split)
    check_held_out(train_set, test_set, args.train_split, args.eval_split)
    for name, ds in ((args.train_split, train_set), (args.eval_split, test_set)):
        check_single_label(ds, name)
    check_two_classes(train_set, args.train_split)
    train_x, train_y = extract_features(encoder, processor, train_set, args.batch_size)
    test_x, test_y = extract_features(encoder, processor, test_set, args.batch_size)
    scores = probe_scores(train_x, train_y, test_x, test_y, args.k, args.seed)
    scores["init"] = "random" if args.random_init else "pretrained"
    if weights:
        scores["weights"] = weights
    names, counts = data.label_names(test_set), np.bincount(test_y, minlength=len(data.label_names(test_set)))
    scores["test_images_per_class"] = {name: int(count) for name, count in zip(names, counts)}
    if "note" in scores:
        print(f"warning: split {args.eval_split!r}: {scores['note']} ({scores['test_images_per_class']})",
              file=sys.stderr)
    suffix = f"{'-random' if args.random_init else ''}.json"
    output = Path(args.output or checkpoint.results_path(args.model, "probe", suffix))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(scores, indent=2) + "\n")
    print(json.dumps(scores))
    return scores


if __name__ == "__main__":
    run_script(main)
