"""CXR classification metrics as a local `evaluate` module (load it by path; nothing comes from the Hub).

Inputs per image: `predictions` class probabilities (K,), `references` labels (K,): one-hot for single-label sets,
0/1 with NaN = unknown for multi-label sets. Output: a flat dict of floats (undefined values are left out):
accuracy, f1_macro, auroc_macro, auprc_macro, per class auroc/auprc/sensitivity/specificity/ppv/f1 (`name/class`),
the confusion matrix as `confusion/true/predicted` counts (single-label), and bootstrap 95% CIs
(`auroc_macro_ci_low` / `_high`, `accuracy_ci_low` / `_high`).
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

_DESCRIPTION = __doc__
_KWARGS = """
Args:
    predictions: per image class probabilities (K,).
    references: per image labels (K,), NaN = unknown.
    single_label (bool): classes are mutually exclusive (argmax decisions); else each class is thresholded.
    label_names (list[str]): class names for the per-class keys (default class_0, class_1, ...).
    threshold (float): decision threshold of multi-label classes.
    bootstrap (int): resamples for the 95% confidence intervals (0 = none).
    seed (int): seed of the bootstrap.
"""


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else None


def _ranking(probabilities, labels, names) -> dict:
    """Per-class AUROC / AUPRC on known entries; classes with a single label value are skipped."""
    out = {}
    for k, name in enumerate(names):
        known = ~np.isnan(labels[:, k])
        y, p = labels[known, k], probabilities[known, k]
        if len(np.unique(y)) < 2:
            continue
        out[f"auroc/{name}"] = float(roc_auc_score(y, p))
        out[f"auprc/{name}"] = float(average_precision_score(y, p))
    for metric in ("auroc", "auprc"):
        values = [v for key, v in out.items() if key.startswith(f"{metric}/")]
        if values:
            out[f"{metric}_macro"] = float(np.mean(values))
    return out


def _decisions(probabilities, labels, single_label, threshold):
    """(predicted, true, known) as 0/1 arrays (N, K)."""
    if single_label:
        known = np.broadcast_to(~np.isnan(labels).any(1, keepdims=True), labels.shape)
        eye = np.eye(labels.shape[1])
        return eye[probabilities.argmax(1)], eye[np.nan_to_num(labels).argmax(1)], known
    return (probabilities >= threshold).astype(float), np.nan_to_num(labels), ~np.isnan(labels)


def _counting(probabilities, labels, names, single_label, threshold) -> dict:
    predicted, true, known = _decisions(probabilities, labels, single_label, threshold)
    out = {}
    f1s = []
    for k, name in enumerate(names):
        p, t = predicted[known[:, k], k], true[known[:, k], k]
        tp, fp = float((p * t).sum()), float((p * (1 - t)).sum())
        fn, tn = float(((1 - p) * t).sum()), float(((1 - p) * (1 - t)).sum())
        for key, value in (("sensitivity", _ratio(tp, tp + fn)), ("specificity", _ratio(tn, tn + fp)),
                           ("ppv", _ratio(tp, tp + fp)), ("f1", _ratio(2 * tp, 2 * tp + fp + fn))):
            if value is not None:
                out[f"{key}/{name}"] = value
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    rows = known[:, 0] if single_label else None
    if single_label:
        out["accuracy"] = float((predicted[rows].argmax(1) == true[rows].argmax(1)).mean()) if rows.any() else None
        for i, truth in enumerate(names):
            for j, guess in enumerate(names):
                out[f"confusion/{truth}/{guess}"] = float(((true[rows, i] == 1) & (predicted[rows, j] == 1)).sum())
    else:
        out["accuracy"] = float((predicted == true)[known].mean()) if known.any() else None
    if f1s:
        out["f1_macro"] = float(np.mean(f1s))
    return {k: v for k, v in out.items() if v is not None}


def classification_metrics(probabilities, labels, names, single_label, threshold=0.5) -> dict:
    """All metrics of one sample of images."""
    return {**_ranking(probabilities, labels, names), **_counting(probabilities, labels, names, single_label, threshold)}


def _bootstrap(probabilities, labels, names, single_label, threshold, resamples, seed) -> dict:
    rng = np.random.default_rng(seed)
    draws = {"auroc_macro": [], "accuracy": []}
    for _ in range(resamples):
        rows = rng.integers(0, len(labels), len(labels))
        values = {**_ranking(probabilities[rows], labels[rows], names),
                  **_counting(probabilities[rows], labels[rows], names, single_label, threshold)}
        for key in draws:
            if key in values:
                draws[key].append(values[key])
    out = {}
    for key, values in draws.items():
        if len(values) >= max(10, resamples // 2):
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    return out


class CxrClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float32")),
                "references": datasets.Sequence(datasets.Value("float32")),
            }),
        )

    def _compute(self, predictions, references, single_label=True, label_names=None, threshold=0.5,
                 bootstrap=0, seed=0):
        probabilities = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.float64)
        names = list(label_names or [f"class_{k}" for k in range(labels.shape[1])])
        out = classification_metrics(probabilities, labels, names, single_label, threshold)
        out["num_samples"] = float(len(labels))
        if bootstrap:
            out.update(_bootstrap(probabilities, labels, names, single_label, threshold, bootstrap, seed))
        return out
