"""CXR classification metrics as a local `evaluate` module (load it by path; nothing comes from the Hub).

Inputs per image: `predictions` class probabilities (K,), `references` labels (K,): one-hot for single-label sets,
0/1 with NaN = unknown for multi-label sets (soft values in between, such as uncertain labels under a soft policy,
are not scored either). Output: a flat dict of floats (undefined values are left out):
accuracy, f1_macro, auroc_macro, auprc_macro, per class auroc/auprc/sensitivity/specificity/ppv/f1 (`name/class`),
per class (one against the rest, over every cut of its probability) the ROC's two usual operating points: the best
sensitivity at a specificity of at least 95% (`sensitivity_at_specificity_95/class`) and the best specificity at a
sensitivity of at least 95% (`specificity_at_sensitivity_95/class`, a screening cut), the confusion matrix as
`confusion/true/predicted` counts (single-label), and bootstrap 95% CIs
(`auroc_macro_ci_low` / `_high`, `accuracy_ci_low` / `_high`; a resample draws images, or, given `patients`,
patients with all their images; its macro AUROC averages the classes with both label values in it). Multi-label
accuracy is the share of right decisions over every known (image, label) pair. `f1_macro` averages the classes
with a true or a predicted positive among the known entries, as scikit-learn's macro F1 does (a class the split has
no image of counts, as 0, when the model predicts it); `auroc_macro` / `auprc_macro` average the classes with both
label values.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

_DESCRIPTION = __doc__
_KWARGS = """
Args:
    predictions: per image class probabilities (K,).
    references: per image labels (K,), NaN = unknown; multi-label values other than 0 and 1 are not scored.
    single_label (bool): classes are mutually exclusive (argmax decisions); else each class is thresholded.
    label_names (list[str]): class names for the per-class keys (default class_0, class_1, ...).
    threshold (float): decision threshold of multi-label classes.
    bootstrap (int): resamples for the 95% confidence intervals (0 = none).
    patients (list[int], optional): per image, the number of its patient: the bootstrap draws patients with
        replacement, each with all its images, so that the images of one patient do not count as independent
        (default: it draws images).
    seed (int): seed of the bootstrap.
"""


def _ratio(numerator, denominator):
    return float(numerator / denominator) if denominator else None


def _ranking(probabilities, labels, names) -> dict:
    """Per-class AUROC / AUPRC and operating points on known entries; classes with a single label value are skipped."""
    out = {}
    for k, name in enumerate(names):
        known = ~np.isnan(labels[:, k])
        y, p = labels[known, k], probabilities[known, k]
        if len(np.unique(y)) < 2:
            continue
        out[f"auroc/{name}"] = float(roc_auc_score(y, p))
        out[f"auprc/{name}"] = float(average_precision_score(y, p))
        out.update({f"{key}/{name}": value for key, value in _operating_points(y, p).items()})
    for metric in ("auroc", "auprc"):
        values = [v for key, v in out.items() if key.startswith(f"{metric}/")]
        if values:
            out[f"{metric}_macro"] = float(np.mean(values))
    return out


def _operating_points(y, p, level: float = 0.95) -> dict:
    """The best sensitivity among the cuts of `p` with a specificity of at least `level`, and the best specificity
    among those with a sensitivity of at least `level`: labels `y` (N,) 0/1 with both values, scores `p` (N,).
    Every cut between distinct scores counts (tied scores are cut together); "cut nothing" and "cut everything" make
    both always defined."""
    false_positive_rate, sensitivity, _ = roc_curve(y, p, drop_intermediate=False)
    specificity = 1.0 - false_positive_rate
    tolerance = 1e-9  # 19 of 20 negatives is a specificity of 0.95, whatever the float rounding of 1 - 1/20
    percent = round(level * 100)
    return {f"sensitivity_at_specificity_{percent}": float(sensitivity[specificity >= level - tolerance].max()),
            f"specificity_at_sensitivity_{percent}": float(specificity[sensitivity >= level - tolerance].max())}


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


def _tie_groups(scores) -> tuple[np.ndarray, np.ndarray]:
    """(order, starts): the positions of `scores` by increasing score, and the place in that order where each run of
    tied scores starts."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    return order, np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])


def _weighted_auroc(positive, starts, drawn) -> np.ndarray:
    """AUROC of one class under each row of `drawn` (B, N), how often each image was drawn, the images in increasing
    score order with runs of tied scores starting at `starts`: (B,), NaN where a draw holds only one label value.
    P(positive scores above negative) + half the ties, as roc_auc_score."""
    positives = np.add.reduceat(drawn * positive, starts, axis=1)  # (B, groups), increasing score
    negatives = np.add.reduceat(drawn * ~positive, starts, axis=1)
    below = np.cumsum(negatives, axis=1) - negatives
    pairs = positives.sum(1) * negatives.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (positives * (below + 0.5 * negatives)).sum(1) / pairs, np.nan)


def _bootstrap(probabilities, labels, names, single_label, threshold, resamples, seed, patients=None,
               drawn_values: int = 2**20) -> dict:
    """95% percentile intervals of auroc_macro and accuracy over `resamples` draws of the images with replacement,
    or, given `patients` (N,) (any numbers, one per patient), of the patients, each drawn patient's images all
    counting as often as it is drawn (a cluster bootstrap: one patient's images are not independent samples).

    A draw without both label values of a class averages the other classes, as a split does. With a class of a few
    positives, such draws widen the interval towards the other classes' mean; it then covers the macro AUROC more
    often than one of draws that keep both values of every class (skipping the others, or drawing each class's
    positives and negatives apart), which are narrower, though none reaches 95% there.

    Each draw is a vector of counts per image, so one sort of each class's scores serves every draw; draws are taken
    in chunks of at most `drawn_values` counts (and 64 draws), so the memory used does not grow with the images.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    units = np.arange(n) if patients is None else np.unique(np.asarray(patients), return_inverse=True)[1].ravel()
    predicted, true, known = _decisions(probabilities, labels, single_label, threshold)
    if single_label:
        labelled = known[:, 0]
        correct = (labelled & (predicted.argmax(1) == true.argmax(1))).astype(float)
        counted = labelled.astype(float)
    else:
        correct, counted = ((predicted == true) & known).sum(1).astype(float), known.sum(1).astype(float)
    ranked = []  # per class: its known images by increasing score, which of them are positive, starts of tied runs
    for k in range(len(names)):
        rows = np.flatnonzero(~np.isnan(labels[:, k]))
        if not rows.size:  # a label no image knows (one the evaluation set lacks): no AUROC in any draw
            continue
        order, starts = _tie_groups(probabilities[rows, k])
        ranked.append((rows[order], labels[rows[order], k] == 1, starts))
    chunk = max(1, min(64, drawn_values // max(n, 1)))
    aurocs, accuracies = [], []
    for start in range(0, resamples, chunk):
        weights = np.stack([_drawn_counts(rng, units) for _ in range(min(chunk, resamples - start))])  # (B, N)
        per_class = np.stack([_weighted_auroc(positive, starts, np.take(weights, rows, axis=1))
                              for rows, positive, starts in ranked], 1) if ranked else np.empty((len(weights), 0))
        defined = ~np.isnan(per_class)
        with np.errstate(invalid="ignore"):
            aurocs += list(np.where(defined.any(1), np.nansum(per_class, 1) / defined.sum(1), np.nan))
            accuracies += list(np.where(weights @ counted > 0, (weights @ correct) / (weights @ counted), np.nan))
    out = {}
    for key, values in (("auroc_macro", aurocs), ("accuracy", accuracies)):
        values = [v for v in values if not np.isnan(v)]
        if len(values) >= max(10, resamples // 2):
            out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (float(v) for v in np.percentile(values, [2.5, 97.5]))
    return out


def _drawn_counts(rng, units: np.ndarray) -> np.ndarray:
    """How often each image is drawn (N,) when the units (numbered 0..U-1, `units` (N,) each image's) are drawn U
    times with replacement."""
    count = int(units.max()) + 1 if units.size else 0
    return np.bincount(rng.integers(0, count, count), minlength=count)[units].astype(float)


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
                 bootstrap=0, patients=None, seed=0):
        probabilities = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.float64)
        if not single_label:  # a soft target (an uncertain label under a soft policy) is no ground truth: unscored
            labels = np.where(np.isin(labels, (0.0, 1.0)), labels, np.nan)
        names = list(label_names or [f"class_{k}" for k in range(labels.shape[1])])
        out = classification_metrics(probabilities, labels, names, single_label, threshold)
        out["num_samples"] = float(len(labels))
        if bootstrap:
            out.update(_bootstrap(probabilities, labels, names, single_label, threshold, bootstrap, seed, patients))
        return out
