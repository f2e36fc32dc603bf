"""Metrics of evaluation results: local `evaluate` metric modules, loaded by path (never from the Hub), the patients
their bootstrap draws, and the differences between two samples' metrics."""

from pathlib import Path

import evaluate
import numpy as np

HERE = Path(__file__).parent
PER_LABEL = {"classification": ("auroc", "auprc", "sensitivity", "specificity", "ppv", "f1",
                                "sensitivity_at_specificity_95", "specificity_at_sensitivity_95"),
             "segmentation": ("dice", "iou")}
MACRO = {"auroc_macro": "auroc", "auprc_macro": "auprc", "f1_macro": "f1"}  # a macro average: its per-label metric


def load(name: str) -> "evaluate.EvaluationModule":
    """`cxr_classification` or `cxr_segmentation`, loaded from this folder."""
    return evaluate.load(str(HERE / name), experiment_id=None)


def patient_numbers(patient_ids) -> np.ndarray | None:
    """Per image (N,), the number of its patient, from its patient id (an image without one, None or "", is a
    patient of its own), for a bootstrap that draws patients; None when no image has a patient id (the bootstrap
    then draws images)."""
    ids = [patient or None for patient in patient_ids]
    if not any(ids):
        return None
    named = {patient: number for number, patient in enumerate(sorted({p for p in ids if p}))}
    return np.array([named[p] if p else len(named) + image for image, p in enumerate(ids)])


def bootstrap_unit(patient_ids) -> str:
    """What `compute_metrics`' bootstrap draws for images of these patient ids: "patient" where any has one, else
    "image"."""
    return "image" if patient_numbers(patient_ids) is None else "patient"


def compute_metrics(task: str, results: dict, names: list[str], single_label: bool, bootstrap: int = 0,
                    rows=None, threshold: float = 0.5, patient_ids=None) -> dict:
    """Flat metrics of `engine.evaluate` results (optionally only the positions `rows` of them).

    Pretraining: the reconstruction loss. Classification / segmentation: the local evaluate modules, multi-label
    decisions at probabilities from `threshold` up; `bootstrap` resamples for the 95% intervals draw the patients of
    `patient_ids` (one per result, see `patient_numbers`) where it has any, else the images.
    """
    pick = slice(None) if rows is None else np.asarray(rows)
    if task == "pretraining":  # the L1 error over the corrupted values of these images
        return {"loss": float(results["l1_error"][pick].sum() / max(results["l1_count"][pick].sum(), 1.0))}
    patients = None if patient_ids is None else patient_numbers(np.asarray(patient_ids, dtype=object)[pick])
    if task == "classification":
        labels = results["labels"][pick]
        if single_label:
            labels = np.eye(len(names), dtype=np.float32)[labels]
        return load("cxr_classification").compute(
            predictions=results["probabilities"][pick], references=labels, single_label=single_label,
            label_names=names, threshold=threshold, bootstrap=bootstrap, patients=patients,
        )
    counts = {key: results[key][pick] for key in ("intersection", "predicted", "target")}
    return load("cxr_segmentation").compute(**counts, label_names=names, bootstrap=bootstrap, patients=patients)


def labels_without_auroc(task, metrics, results, names, single_label, missing=(), rows=None) -> dict[str, str]:
    """The labels `metrics` (of the `rows` of `results`) has no AUROC of, each with why: not in the data set (one of
    `missing`), or its known labels in those images are only positive, only negative, or none."""
    if task != "classification":
        return {}
    labels = results["labels"] if rows is None else results["labels"][np.asarray(rows, dtype=int)]
    if single_label:
        labels = np.eye(len(names))[labels]
    reasons = {}
    for k, name in enumerate(names):
        if f"auroc/{name}" in metrics:
            continue
        values = np.unique(labels[np.isin(labels[:, k], (0.0, 1.0)), k])  # a soft label is unscored
        reasons[name] = ("not in the data set" if name in missing else
                         ("only positive" if values[0] else "only negative") if len(values) else "none known")
    return reasons


def labels_without_ppv(task, metrics, results, names, single_label, missing=(), rows=None) -> dict[str, str]:
    """The labels `metrics` (of the `rows` of `results`) has no PPV of, each with why: not in the data set (one of
    `missing`), none known in those images, or not predicted for any image (a multi-label decision: at the
    threshold), so that the PPV, TP / (TP + FP), divides by 0."""
    if task != "classification":
        return {}
    labels = results["labels"] if rows is None else results["labels"][np.asarray(rows, dtype=int)]
    reasons = {}
    for k, name in enumerate(names):
        if f"ppv/{name}" in metrics:
            continue
        known = len(labels) > 0 if single_label else bool((~np.isnan(labels[:, k])).any())
        reasons[name] = ("not predicted for any image" if known else
                         "not in the data set" if name in missing else "none known")
    return reasons


def differences(keys, values: dict, reference: dict, names: list[str]) -> tuple[dict, dict]:
    """`values` - `reference` for each of `keys` both have, and the labels each macro average's difference used.

    A macro average (`MACRO`) of two samples can average different labels (a source without positives of one, or
    without the label at all, has no AUROC of it): its difference is that of the averages over the labels both have
    a value of, so it compares like with like. Returns (differences, labels): labels[key] is "all" where both
    averaged the same labels, else the labels its difference averaged ([] and no difference where they share
    none)."""
    out, labels = {}, {}
    for key in keys:
        if key in MACRO:
            per_label = MACRO[key]
            own, theirs = ({name for name in names if f"{per_label}/{name}" in side} for side in (values, reference))
            if own == theirs and key in values and key in reference:
                out[key], labels[key] = values[key] - reference[key], "all"
                continue
            labels[key] = [name for name in names if name in own & theirs]
            if labels[key]:
                out[key] = float(np.mean([values[f"{per_label}/{name}"] for name in labels[key]])
                                 - np.mean([reference[f"{per_label}/{name}"] for name in labels[key]]))
        elif key in values and key in reference:
            out[key] = values[key] - reference[key]
    return out, labels


def known_labels(labels: np.ndarray, names: list[str]) -> list[str]:
    """The `names` of the columns of multi-label `labels` (N, K) with a known value (0 or 1) in any row: NaN is
    unknown and a soft value unscored, as `compute_metrics` scores them."""
    return [name for k, name in enumerate(names) if np.isin(labels[:, k], (0.0, 1.0)).any()]


def accuracy_difference(results: dict, names: list[str], rows, reference_rows,
                        threshold: float = 0.5) -> tuple[float | None, list[str] | str]:
    """A multi-label model's accuracy on the `rows` of `results` minus that on its `reference_rows`, and the labels
    the difference compared ("all" where both samples know the same labels).

    Its accuracy pools the known (image, label) pairs of a sample, so two samples that know different labels (a
    source without one) would be compared over different labels: the difference is that of the accuracies over the
    labels both know a value of, so it compares like with like (None and [] where they share none)."""
    own, theirs = (set(known_labels(results["labels"][np.asarray(sample, dtype=int)], names))
                   for sample in (rows, reference_rows))
    shared = [name for name in names if name in own & theirs]
    if not shared:
        return None, []
    columns = [names.index(name) for name in shared]
    restricted = {key: results[key][:, columns] for key in ("labels", "probabilities")}
    accuracy, reference = (compute_metrics("classification", restricted, shared, False, rows=sample,
                                           threshold=threshold)["accuracy"] for sample in (rows, reference_rows))
    return accuracy - reference, "all" if own == theirs else shared


def metric_names(task: str, names: list[str]) -> list[str]:
    """The metrics `compute_metrics` can return for `task` and label `names` (one that is undefined on some split,
    such as an AUROC where a class has a single label value, is left out there), bookkeeping and confusion cells aside.
    """
    if task == "pretraining":
        return ["loss"]
    overall = ["accuracy", "f1_macro", "auroc_macro", "auprc_macro"] if task == "classification" else ["dice", "iou"]
    return overall + [f"{metric}/{name}" for metric in PER_LABEL[task] for name in names]
