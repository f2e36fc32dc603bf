"""Why drift ranks below chance: image-level cues that separate pneumonia from normal in opposite directions in
nih_cxr14 and kermany_pediatric.

    python -m benchmarks.drift_cues [--data_dir ../shared/data] [--image_size 112] [--models M ...] [--output F]
                                    [--max_aspect A]

Each image of the two sets (the quality benchmark's 70/30 patient split) is taken as the model sees it (the image
processor at --image_size, padded to a square, not normalised), and reduced to a few global cues: mean grey level,
its standard deviation, the mean of the central half of the image, the fraction of dark pixels (< 0.1) and the
fraction of padding. Printed: per-class means; each cue's AUROC for pneumonia on both test splits (0.5: no signal,
below 0.5: lower in pneumonia); a logistic regression on the standardised cues, fitted on one set's training split and
scored on both test splits (the drift protocol with five numbers per image instead of a network). With --models
(exported classifiers with the classes normal / pneumonia), the Spearman correlation of each model's pneumonia
probability with each cue on both test splits, and its AUROC. --max_aspect crops every image wider than A (width /
height) to its central A x height part first, which takes most of the shape cue away (the padding). Everything also
goes to --output (JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

import hf_datasets
from benchmarks.quality import KERMANY, NIH, NIH_OPTIONS, SPLIT
from modeling_cxrgm import GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor
from train.data import known_rows

SETS = {NIH: NIH_OPTIONS, KERMANY: {}}
CUES = ("mean", "std", "centre_mean", "dark_fraction", "padding_fraction")


def crop_to_aspect(image, max_aspect: float | None):
    """The central part of `image` no wider than `max_aspect` x its height (unchanged when narrower or no limit)."""
    if max_aspect is None or image.width <= max_aspect * image.height:
        return image
    width = round(max_aspect * image.height)
    left = (image.width - width) // 2
    return image.crop((left, 0, left + width, image.height))


def image_cues(processor: GroupMaskedViTImageProcessor, image) -> list[float]:
    """One image -> the CUES of its (size, size) model input in [0, 1] (padding included, as the model sees it)."""
    pixels = processor.preprocess([image], do_normalize=False)["pixel_values"][0, 0]
    height, width, top, left = processor._geometry(image.height, image.width)
    centre = pixels[top + height // 4: top + 3 * height // 4, left + width // 4: left + 3 * width // 4]
    return [pixels.mean().item(), pixels.std().item(), centre.mean().item(), (pixels < 0.1).float().mean().item(),
            1 - height * width / processor.size ** 2]


def load_split(data_dir: Path, name: str, split: str, max_aspect: float | None = None):
    """(rows of `split` with a known label, cropped to `max_aspect`, pneumonia indicator (N,)) of one set, split as in
    the quality benchmark."""
    ds = hf_datasets.build_dataset("cxr_folder", data_dir / name, split_fractions=SPLIT, **SETS[name])[split]
    names = hf_datasets.label_names(ds)
    if names != ["normal", "pneumonia"]:
        raise ValueError(f"{name}: expected the classes ['normal', 'pneumonia'], got {names}")
    rows = known_rows(ds)
    column = list(ds.select_columns(["labels"])["labels"])  # without decoding the images
    labels = np.array([int(np.argmax(column[i])) for i in rows])
    ds = ds.select(rows)
    if max_aspect is not None:
        ds = ds.map(lambda row: {"image": crop_to_aspect(row["image"], max_aspect)})
    return ds, labels


@torch.no_grad()
def pneumonia_probability(model_dir, ds, batch_size: int = 64) -> np.ndarray:
    """P(pneumonia) of an exported classifier for every row of `ds`."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # float32, as it trained and as train.evaluate scores it (transformers keeps a bf16 / fp16 file's dtype)
    model = GroupMaskedViTForImageClassification.from_pretrained(model_dir, dtype=torch.float32).eval().to(device)
    processor = GroupMaskedViTImageProcessor.from_pretrained(model_dir)
    index = {name: i for i, name in model.config.id2label.items()}["pneumonia"]
    out = []
    for start in range(0, len(ds), batch_size):
        images = ds[start:start + batch_size]["image"]
        logits = model(pixel_values=processor.preprocess(images)["pixel_values"].to(device)).logits.cpu()
        out.append(logits.float().softmax(-1)[:, index].numpy())
    return np.concatenate(out)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rho, rounded; None where either side is constant (e.g. no padding in a set of square images)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return round(float(spearmanr(a, b).statistic), 3)


def cue_report(data_dir: Path, image_size: int, models: list[str], max_aspect: float | None = None) -> dict:
    processor = GroupMaskedViTImageProcessor(size=image_size)
    data = {}
    for name in SETS:
        for split in ("train", "test"):
            ds, y = load_split(data_dir, name, split, max_aspect)
            data[name, split] = (ds, np.array([image_cues(processor, image) for image in ds["image"]]), y)
    report = {"image_size": image_size, "max_aspect": max_aspect, "class_means": {}, "cue_auroc": {},
              "logistic_regression": {}, "models": {}}
    for name in SETS:
        _, x, y = data[name, "test"]
        report["class_means"][name] = {label: dict(zip(CUES, x[y == k].mean(0).round(4).tolist()))
                                       for k, label in enumerate(("normal", "pneumonia"))}
        report["cue_auroc"][name] = {cue: round(roc_auc_score(y, x[:, j]), 3) for j, cue in enumerate(CUES)}
    for train_on in SETS:
        _, x, y = data[train_on, "train"]
        scaler = StandardScaler().fit(x)
        fit = LogisticRegression(max_iter=1000).fit(scaler.transform(x), y)
        report["logistic_regression"][train_on] = {
            f"auroc_on_{test_on}": round(roc_auc_score(yt, fit.predict_proba(scaler.transform(xt))[:, 1]), 3)
            for test_on in SETS for _, xt, yt in [data[test_on, "test"]]}
    for model_dir in models:
        report["models"][model_dir] = {}
        for test_on in SETS:
            ds, x, y = data[test_on, "test"]
            p = pneumonia_probability(model_dir, ds)
            report["models"][model_dir][test_on] = {
                "auroc": round(roc_auc_score(y, p), 3),
                **{f"spearman_{cue}": rank_correlation(p, x[:, j]) for j, cue in enumerate(CUES)}}
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first sentence spans two lines
    parser.add_argument("--data_dir", default="../shared/data")
    parser.add_argument("--image_size", type=int, default=112, help="the models' input size (CPU preset: 112)")
    parser.add_argument("--models", nargs="*", default=[], help="exported normal/pneumonia classifiers to correlate")
    parser.add_argument("--output", default="outputs/drift_cues.json")
    parser.add_argument("--max_aspect", type=float, help="crop images wider than this (width / height) to it first")
    args = parser.parse_args(argv)
    report = cue_report(Path(args.data_dir), args.image_size, args.models, args.max_aspect)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
