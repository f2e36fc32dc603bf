"""Local `evaluate` metric modules, loaded by path (never from the Hub)."""

from pathlib import Path

import evaluate

HERE = Path(__file__).parent
PER_LABEL = {"classification": ("auroc", "auprc", "sensitivity", "specificity", "ppv", "f1"),
             "segmentation": ("dice", "iou")}


def load(name: str) -> "evaluate.EvaluationModule":
    """`cxr_classification` or `cxr_segmentation`, loaded from this folder."""
    return evaluate.load(str(HERE / name), experiment_id=None)


def compute_metrics(task: str, results: dict, names: list[str], single_label: bool, bootstrap: int = 0,
                    rows=None) -> dict:
    """Flat metrics of `engine.evaluate` results (optionally only the positions `rows` of them).

    Pretraining: the reconstruction loss. Classification / segmentation: the local evaluate modules.
    """
    import numpy as np

    pick = slice(None) if rows is None else np.asarray(rows)
    if task == "pretraining":  # the L1 error over the corrupted values of these images
        return {"loss": float(results["l1_error"][pick].sum() / max(results["l1_count"][pick].sum(), 1.0))}
    if task == "classification":
        labels = results["labels"][pick]
        if single_label:
            labels = np.eye(len(names), dtype=np.float32)[labels]
        return load("cxr_classification").compute(
            predictions=results["probabilities"][pick], references=labels, single_label=single_label,
            label_names=names, bootstrap=bootstrap,
        )
    counts = {key: results[key][pick] for key in ("intersection", "predicted", "target")}
    return load("cxr_segmentation").compute(**counts, label_names=names, bootstrap=bootstrap)


def metric_names(task: str, names: list[str]) -> list[str]:
    """The metrics `compute_metrics` can return for `task` and label `names` (one that is undefined on some split,
    such as an AUROC where a class has a single label value, is left out there), bookkeeping and confusion cells aside.
    """
    if task == "pretraining":
        return ["loss"]
    overall = ["accuracy", "f1_macro", "auroc_macro", "auprc_macro"] if task == "classification" else ["dice", "iou"]
    return overall + [f"{metric}/{name}" for metric in PER_LABEL[task] for name in names]

