"""CXR segmentation metrics as a local `evaluate` module: Dice and IoU per structure and overall, with bootstrap CI.

Inputs per image and per structure (foreground class) pixel counts, so that masks never travel between processes:
`intersection` (K,), `predicted` (K,), `target` (K,). An image where a structure is absent from both prediction and
target scores 1 for it. Output: dice, iou (mean over images and structures), `dice/name`, `iou/name`,
`dice_ci_low` / `dice_ci_high` (a resample draws images, or, given `patients`, patients with all their images).
"""

import datasets
import evaluate
import numpy as np

_KWARGS = """
Args:
    intersection, predicted, target: per image, per structure pixel counts (K,).
    label_names (list[str]): structure names (default structure_0, ...).
    bootstrap (int): resamples for the 95% CI of the mean Dice (0 = none).
    patients (list[int], optional): per image, the number of its patient: the bootstrap draws patients with
        replacement, each with all its images (default: it draws images).
    seed (int): seed of the bootstrap.
"""


def per_image_scores(intersection, predicted, target):
    """Dice and IoU arrays (N, K)."""
    union = predicted + target - intersection
    total = predicted + target
    dice = np.where(total > 0, 2 * intersection / np.maximum(total, 1), 1.0)
    iou = np.where(union > 0, intersection / np.maximum(union, 1), 1.0)
    return dice, iou


class CxrSegmentation(evaluate.Metric):
    def _info(self):
        counts = datasets.Sequence(datasets.Value("int64"))
        return evaluate.MetricInfo(
            description=__doc__, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"intersection": counts, "predicted": counts, "target": counts}),
        )

    def _compute(self, intersection, predicted, target, label_names=None, bootstrap=0, patients=None, seed=0):
        dice, iou = per_image_scores(*(np.asarray(v, dtype=np.float64) for v in (intersection, predicted, target)))
        names = list(label_names or [f"structure_{k}" for k in range(dice.shape[1])])
        out = {"dice": float(dice.mean()), "iou": float(iou.mean()), "num_samples": float(len(dice))}
        for k, name in enumerate(names):
            out[f"dice/{name}"], out[f"iou/{name}"] = float(dice[:, k].mean()), float(iou[:, k].mean())
        if bootstrap:  # per drawn unit (image or patient): its images' summed Dice and its number of images
            units = np.arange(len(dice)) if patients is None else np.unique(patients, return_inverse=True)[1].ravel()
            sums, sizes = np.bincount(units, weights=dice.mean(1)), np.bincount(units)
            rng = np.random.default_rng(seed)
            drawn = (rng.integers(0, len(sizes), len(sizes)) for _ in range(bootstrap))
            means = [sums[units_drawn].sum() / sizes[units_drawn].sum() for units_drawn in drawn]
            out["dice_ci_low"], out["dice_ci_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
        return out
