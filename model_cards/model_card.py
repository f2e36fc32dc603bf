"""`write_model_card(model_dir, run)`: the README.md of an exported model, rendered from the run that made it.

The card's YAML carries a `model-index` with every numeric metric and a licence that follows the training data's
terms (`weights_licence`; weights under those terms also get a LICENSE.md that the metadata links to); the body
documents the results of `train.evaluate` found in the folder (`evaluations`, overall and per source), apart from
the training run's own, data provenance, preprocessing (read from the folder's preprocessor_config.json),
architecture and GMML settings (read from its config.json), compute, intended use, limitations, the loading snippet
and citations. Missing facts render as "not recorded"; local paths are reduced to
basenames.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from modeling_cxrgm.image_processing_gmvit import SETTINGS as PROCESSOR_SETTINGS
from modeling_cxrgm.image_processing_gmvit import GroupMaskedViTImageProcessor

from .privacy import basename, find_local_paths, is_local_path, scrub
from .sources import POOLING_BUILDERS, code, describe, lookup

logger = logging.getLogger(__name__)

NOT_RECORDED = "not recorded"
# the cxrgm package's licence: that of the model code files, and of the weights where all their data's terms are
# permissive
PACKAGE_LICENCE = "apache-2.0"
# beside the card of weights under their training data's terms, linked from its `license_link`; written (and removed
# again when the licence changes) only by `write_model_card`, whose first line tells it from a publisher's own file
LICENCE_FILE = "LICENSE.md"
LICENCE_FILE_HEADER = "<!-- Written by cxrgm's model card from the training run's record. -->"
TEMPLATE = Path(__file__).parent / "model_card_template.md"
TASKS = {
    "pretraining": ("image-feature-extraction", "Self-supervised GMML pretraining (masked image reconstruction)"),
    "classification": ("image-classification", "Image classification"),
    "segmentation": ("image-segmentation", "Semantic segmentation"),
}
AUTO_CLASS = {
    "pretraining": "AutoModel",
    "classification": "AutoModelForImageClassification",
    "segmentation": "AutoModelForSemanticSegmentation",
}
# metric name (as in metrics.json) -> (model-index metric type, readable name)
METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "balanced_accuracy": ("accuracy", "Balanced accuracy"),
    "auroc": ("roc_auc", "AUROC"),
    "auroc_macro": ("roc_auc", "AUROC (macro)"),
    "auprc_macro": ("average_precision", "AUPRC (macro)"),
    "f1_macro": ("f1", "F1 (macro)"),
    "dice": ("dice", "Dice"),
    "iou": ("iou", "IoU"),
    "reconstruction_l1": ("l1", "Reconstruction L1 (corrupted pixels)"),
    "loss": ("loss", "Loss"),
}
PER_CLASS = {
    "sensitivity": ("recall", "Sensitivity"),
    "recall": ("recall", "Sensitivity"),
    "specificity": ("specificity", "Specificity"),
    "ppv": ("precision", "PPV"),
    "f1": ("f1", "F1"),
    "auroc": ("roc_auc", "AUROC"),
    "auprc": ("average_precision", "AUPRC"),
    "dice": ("dice", "Dice"),
    "iou": ("iou", "IoU"),
}
# a class's ROC operating point (train.evaluate's `<point>/<class>`) -> its readable name
OPERATING_POINTS = {
    "sensitivity_at_specificity_95": "Sensitivity at 95% specificity",
    "specificity_at_sensitivity_95": "Specificity at 95% sensitivity",
}
# Training bookkeeping that metrics.json may carry (and any `train_*` statistic): not evaluation results.
BOOKKEEPING = {"epoch", "step", "num_samples", "learning_rate", "runtime", "samples_per_second", "steps_per_second"}
# How train.evaluate scored (fields of its metrics.json beside the metrics): shown with its results, never as one.
# Any other field that is no number is shown under its own name.
EVALUATION_SETTINGS = {
    "weights": "Weights scored", "label_policy": "Labels read with", "threshold": "Decision threshold",
    "bootstrap": "Bootstrap resamples", "bootstrap_unit": "Bootstrap resampling unit",
}
LABELS_WITHOUT = {"labels_without_auroc": "No AUROC (left out of the macro averages)",  # metrics.json: label: why
                  "labels_without_ppv": "No PPV (TP + FP = 0)"}
INTERVAL = ("_ci_low", "_ci_high")  # a metric's bootstrap 95% interval: `<metric>_ci_low`, `<metric>_ci_high`
# train.evaluate's headline metrics (its HEADLINE), in its order: the columns of the card's per-source table
SOURCE_METRICS = ("auroc_macro", "accuracy", "f1_macro", "dice", "iou", "loss")
# the training data table's label policy for a task that learns from no image labels (the data's options do not apply)
NO_LABELS = {
    "pretraining": "none: pretraining reads no labels",
    "segmentation": "none: segmentation learns from the masks, as the data give them",
}
ARCHITECTURE = (
    ("image_size", "Input size (px)"), ("patch_size", "Patch size (px)"), ("num_channels", "Input channels"),
    ("hidden_size", "Hidden size"), ("num_hidden_layers", "Blocks"), ("num_attention_heads", "Attention heads"),
    ("intermediate_size", "MLP size"), ("drop_path_rate", "Stochastic depth (last block)"),
)
GMML = (
    ("mask_max_ratio", "Max corrupted fraction r (t ~ U(0.5, r))"), ("mask_align", "Block alignment (px)"),
    ("mask_max_block_fraction", "Max block side (fraction of image)"), ("mask_fill", "Fill"),
    ("replace_ratio", "Replaced fraction (second stage)"), ("replace_prob", "Second-stage probability"),
    ("reconstruction_layers", "Blocks averaged for reconstruction"),
)
CITATIONS = r"""@inproceedings{anwar2024spcxr,
  title     = {{SPCXR}: Self-supervised pretraining using chest X-rays towards a domain specific foundation model},
  author    = {Anwar, Syed Muhammad and Parida, Abhijeet and Atito, Sara and Awais, Muhammad and Nino, Gustavo and
               Kittler, Josef and Linguraru, Marius George},
  booktitle = {IEEE International Conference on Image Processing (ICIP)},
  year      = {2024},
  note      = {arXiv:2211.12944}
}

@article{atito2021sit,
  title   = {{SiT}: Self-supervised vIsion Transformer},
  author  = {Atito, Sara and Awais, Muhammad and Kittler, Josef},
  journal = {arXiv preprint arXiv:2104.03602},
  year    = {2021}
}

@article{atito2022gmml,
  title   = {{GMML} is All you Need},
  author  = {Atito, Sara and Awais, Muhammad and Nandam, Srinivasa and Kittler, Josef},
  journal = {arXiv preprint arXiv:2205.14986},
  year    = {2022}
}"""


def _text(value) -> str:
    """A fact for the card, or "not recorded"."""
    if value is None or value == "" or value == [] or value == {}:
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return " ".join(str(value).split()).replace("|", "\\|")


def _number(value) -> float | None:
    """A finite float, or None for anything else (NaN, strings, lists)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _duration(seconds) -> str:
    value = _number(seconds)
    if value is None:
        return NOT_RECORDED
    hours, rest = divmod(int(round(value)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def describe_metric(name: str, multi_label: bool = False, task: str | None = None) -> tuple[str, str]:
    """metrics.json name -> (model-index type, readable name): sensitivity/pneumonia -> recall, Sensitivity (pneumonia).

    Per-class names use "/" or "_" between the metric and the class (an operating point's, "/"). A multi-label model's accuracy is that of its
    thresholded decisions on every known (image, label) pair, not the share of images with all labels right. A
    pretraining model's loss is GMML's: the L1 reconstruction error on the corrupted pixels.
    """
    key = name.removeprefix("eval_").removeprefix("test_")
    if key == "loss" and task == "pretraining":
        return METRICS["reconstruction_l1"]
    if key == "accuracy" and multi_label:
        return "accuracy", "Accuracy (per image and label)"
    if key in METRICS:
        return METRICS[key]
    point, _, label = key.partition("/")
    if label and point in OPERATING_POINTS:
        return point, f"{OPERATING_POINTS[point]} ({label})"
    prefix, _, label = key.replace("/", "_", 1).partition("_")
    if label and prefix in PER_CLASS:
        kind, readable = PER_CLASS[prefix]
        return kind, f"{readable} ({label.replace('_', ' ')})"
    return key, key.replace("_", " ").capitalize()


def _scalar_metrics(metrics: dict) -> dict:
    """Evaluation numbers only: no bookkeeping or scoring settings, no confusion-matrix cells, no interval bounds, no
    lists."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in BOOKKEEPING and k not in EVALUATION_SETTINGS and not k.startswith(("train_", "confusion"))
            and not k.endswith(INTERVAL)}


def _confusion(metrics: dict, labels) -> tuple[list[str], list[list[str]]]:
    """`confusion/<true>/<predicted>` counts -> (class names, rows of [true, count per predicted class]). The keys are
    read with the model's `labels`, so a class named "a/b" keeps its cells; without them, split at each "/"."""
    names = set(labels) or {name for key in metrics if key.startswith("confusion/") and key.count("/") == 2
                            for name in key.split("/")[1:]}
    cells = {(true, predicted): metrics[key] for true in names for predicted in names
             if _number(metrics.get(key := f"confusion/{true}/{predicted}")) is not None}
    classes = sorted({c for pair in cells for c in pair})
    return classes, [[t, *(f"{cells.get((t, p), 0):g}" for p in classes)] for t in classes]


def _parameter_count(model_dir: Path) -> int | None:
    """Parameters in the folder's safetensors files, read from their headers (no weights loaded)."""
    total, files = 0, sorted(model_dir.glob("*.safetensors"))
    for file in files:
        with open(file, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        total += sum(math.prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    return total if files else None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _repo_name(run: dict, task: str) -> str:
    repo_id = run.get("repo_id")
    if isinstance(repo_id, str) and repo_id and not is_local_path(repo_id):
        return repo_id
    return f"your-username/cxrgm-{task}"


def _dataset_rows(train_datasets, task: str | None = None) -> list[dict]:
    """The training data table's rows; `task` is that of the run that used them (else each entry's own `stage`, that
    of the --init model's run). Its label policy is that of the data where the task learns from image labels
    (classification), else `NO_LABELS`' for the task."""
    rows = []
    for entry in train_datasets if isinstance(train_datasets, list) else []:
        entry = entry if isinstance(entry, dict) else {"name": entry}
        source = lookup(entry.get("name", ""))
        stage = task or entry.get("stage")
        rows.append({
            "name": _text(entry.get("name")),
            "source": describe(entry.get("name"), entry.get("num_images"), entry.get("builder")),
            "population": f"{source.population}, {source.country}" if source else NOT_RECORDED,
            "licence": source.licence if source else NOT_RECORDED,
            "num_images": _text(entry.get("num_images")),
            "splits": _text(entry.get("splits")),
            "label_policy": NO_LABELS.get(str(stage)) or _text(entry.get("label_policy")),
            "stage": f"{task} (this model)" if task else f"{_text(stage)} (the --init model)",
        })
    return rows


def _all_datasets(run: dict) -> list:
    """Every data set in the weights: the --init model's (`earlier_datasets`), then this run's."""
    return [d for key in ("earlier_datasets", "train_datasets") if isinstance(run.get(key), list) for d in run[key]]


def _evaluated_data(run: dict) -> dict:
    """The data the training run's evaluation scored, {name: images, or None where not counted}: a pool's folders
    (`eval_dataset`'s `folders`, counted in its rows; for a record without them, the folders its training data table
    lists for that pool), else the one data set `eval_dataset` names (a registered set's name, a folder layout's
    folder)."""
    eval_dataset = run.get("eval_dataset") if isinstance(run.get("eval_dataset"), dict) else {}
    name, folders = eval_dataset.get("name"), eval_dataset.get("folders")
    if isinstance(folders, dict) and folders:
        return {str(folder): int(count) if _number(count) is not None else None for folder, count in folders.items()}
    if name in POOLING_BUILDERS:
        pooled = {entry["name"]: None for entry in run.get("train_datasets") or [] if isinstance(entry, dict)
                  and entry.get("builder") == name and entry.get("name") not in (None, name)}
        if pooled:
            return pooled
    return {name: None}


def _source_label(name) -> str:
    """A data set on the card's evaluation text: "Kermany pediatric pneumonia (`kermany`)", or `my_clinic`."""
    label = code(_text(name))
    return f"{source.title} ({label})" if (source := lookup(name or "")) else label


def _data_text(counts: dict) -> str:
    """Data sets with their images: "Kermany pediatric pneumonia (`kermany`): 8 images; `my_clinic`: 4 images" (no
    count where it is None)."""
    return "; ".join(_source_label(name) + ("" if count is None else f": {count} images")
                     for name, count in counts.items())


def _unlisted_base_model(run: dict) -> str | None:
    """The name of the model the run started from (its Hub repo id, or a local folder's name) where the record does
    not list the data it was trained on (`earlier_datasets`), else None."""
    base_model = run.get("base_model")
    if not isinstance(base_model, str) or not base_model or run.get("earlier_datasets"):
        return None
    return _text(base_model if base_model.count("/") == 1 and not is_local_path(base_model) else basename(base_model))


def _limitations(run: dict, task: str) -> list[str]:
    """Bullet points on data coverage that follow from the recorded training and evaluation sets."""
    names = [d.get("name", "") if isinstance(d, dict) else d for d in _all_datasets(run)]
    sources = [s for s in (lookup(n) for n in names) if s]
    populations = {s.population for s in sources}
    notes = []
    if not sources and any(names):
        notes.append(f"The training data ({', '.join(f'`{_text(n)}`' for n in names if n)}) are not a public set "
                     "described here: coverage of ages, sites and devices is unknown.")
    elif not sources:
        notes.append("The training data are not recorded: coverage of ages, sites and devices is unknown.")
    elif populations == {"adult"}:
        notes.append("Trained on adult CXRs only: behaviour on children (different anatomy, AP views) is untested.")
    elif populations == {"pediatric"}:
        notes.append("Trained on pediatric CXRs only (children aged 1-5): behaviour on adults is untested.")
    else:
        notes.append("Training data mix adult and pediatric CXRs; results may differ between the two groups.")
    if sources:
        countries = sorted({s.country for s in sources})
        notes.append(f"Sites: {', '.join(countries)}. Other hospitals, scanners and populations may shift results.")
    notes.append(
        "Views: sources differ in PA vs AP (and portable) acquisition, which correlates with site, age and illness "
        "severity; a model can learn such shortcuts. Lateral views are not expected."
    )
    if {"nih", "nih_cxr14", "chexpert", "mimic_cxr_jpg", "padchest"} & {str(n).lower() for n in names}:
        notes.append("Some labels were mined from reports by NLP and are noisy.")
    if "sample" in {str(n).lower() for n in names}:
        used_here = "sample" in {str(d.get("name") if isinstance(d, dict) else d).lower()
                                 for d in run.get("train_datasets") or []}
        notes.append("The sample set (17 images) exercises the code only: " + (
            "its metrics carry no meaning." if used_here else "an encoder pretrained on it has learnt next to nothing."))
    eval_images = _number((run.get("eval_dataset") or {}).get("num_images"))
    trained = (run.get("train_datasets") or [{}])[0]
    if run.get("task") == "pretraining" and isinstance(trained, dict) and isinstance(trained.get("splits"), list) \
            and (run.get("eval_dataset") or {}).get("split") == "+".join(map(str, trained["splits"])):
        notes.append("The reconstruction error was measured on a fixed sample of the training images (no evaluation "
                     "split was given): it shows how well the model reconstructs images it learned from, not others.")
    if eval_images is not None and eval_images < 200:
        notes.append(f"The evaluation set has {int(eval_images)} images: metrics have wide confidence intervals.")
    selection = (run.get("eval_dataset") or {}).get("selected_by")
    if isinstance(selection, dict):
        chosen_by = describe_metric(str(selection.get("metric")), task=run.get("task"))[1]
        notes.append(f"This checkpoint is the one with the best {chosen_by} of "
                     f"{_text(selection.get('evaluations'))} evaluations during training on split "
                     f"`{_text(run['eval_dataset'].get('split'))}`, the split of the results above: they are "
                     "optimistic. Measure it on images it was neither trained nor selected on.")
    base_model = _unlisted_base_model(run)
    if base_model:
        notes.append(f"The base model (`{base_model}`) was trained on data not listed here: see its card for them "
                     "and their licences, which this model's weights are subject to as well.")
    if task == "pretraining":
        notes.append("A pretrained encoder makes no predictions by itself; fine-tune and validate it for any task.")
    notes.append("Performance on any new site must be measured there before drawing conclusions; calibration is not "
                 "guaranteed.")
    return notes


def _model_index(task: str, metrics: dict, names: list, split, multi_label: bool) -> list[EvalResult]:
    """One model-index entry per finite evaluation metric, measured on split `split` of the data sets `names` (None
    where not recorded)."""
    dataset_type = "+".join(_text(name).replace(" ", "-") for name in names)
    dataset_name = ", ".join(source.title if (source := lookup(name or "")) else _text(name) for name in names)
    results = []
    for metric, value in _scalar_metrics(metrics).items():
        number = _number(value)
        if number is None:
            continue
        metric_type, metric_name = describe_metric(metric, multi_label, task)
        results.append(EvalResult(
            task_type=TASKS[task][0], task_name=TASKS[task][1], dataset_type=dataset_type, dataset_name=dataset_name,
            dataset_split=_text(split), metric_type=metric_type, metric_name=metric_name,
            metric_value=round(number, 6),
        ))
    return results


def _json_object(path: Path) -> dict | None:
    """The JSON object in `path`; None, with a warning naming it, where it cannot be read or holds none."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        logger.warning("%s/%s cannot be read (%s): the model card leaves it out", path.parent.name, path.name, error)
        return None
    return value


def evaluations(model_dir) -> list[dict]:
    """What `train.evaluate` wrote into the model folder `model_dir` (its default output, `eval-<split>/`), by folder
    name: [{"folder": "eval-test", "split": "test", "metrics": its metrics.json, "drift": the drift.json beside it, or
    None, "sources": {source: images} from it, or None}]. A file that cannot be read is left out, with a warning naming
    it."""
    found = []
    for path in sorted(Path(model_dir).glob("eval-*/metrics.json")):
        metrics = _json_object(path)
        if metrics is None:
            continue
        drift = _json_object(path.with_name("drift.json")) if path.with_name("drift.json").is_file() else None
        counts = (drift or {}).get("num_images")
        sources = {str(name): int(count) for name, count in counts.items() if _number(count) is not None} \
            if isinstance(counts, dict) else None
        found.append({"folder": path.parent.name, "split": path.parent.name.removeprefix("eval-"),
                      "metrics": metrics, "drift": drift, "sources": sources or None})
    return found


def _scoring_settings(metrics: dict) -> list[tuple[str, str]]:
    """How `metrics` were scored, as (name, value) rows: the `EVALUATION_SETTINGS` (e.g. a multi-label classifier's
    decision threshold), the labels without an AUROC or a PPV with why, and any other field of metrics.json that is no
    number."""
    settings = []
    for key, value in metrics.items():
        if key in EVALUATION_SETTINGS:
            settings.append((EVALUATION_SETTINGS[key], _text(value)))
        elif key in LABELS_WITHOUT and isinstance(value, dict):
            settings.append((LABELS_WITHOUT[key],
                             ", ".join(f"{code(name)} ({_text(why)})" for name, why in value.items())))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            settings.append((code(key), _text(value)))
    return settings


def _evaluation_view(evaluation: dict, task: str, multi_label: bool, labels, run: dict) -> dict:
    """What the card shows of one of `evaluations`: the split, the data (sources and images), the metrics with their
    95% intervals, how they were scored (every other field of metrics.json), the confusion matrix and the metrics per
    source (`_per_source`)."""
    metrics, sources = evaluation["metrics"], evaluation["sources"]
    values = _scalar_metrics(metrics)
    bounded = [key.removesuffix(end) for key in metrics for end in INTERVAL if key.endswith(end)]
    rows = []
    for key in dict.fromkeys([*values, *bounded]):
        value, low, high = (_number(metrics.get(key + end)) for end in ("", *INTERVAL))
        rows.append((describe_metric(key, multi_label, task)[1], "n/a" if value is None else f"{value:.4f}",
                     f"{low:.4f} to {high:.4f}" if low is not None and high is not None else "n/a"))
    settings = _scoring_settings(metrics)
    images = _number(metrics.get("num_samples"))
    if images is None and sources:
        images = sum(sources.values())
    trained_splits = {str(split) for entry in run.get("train_datasets") or [] if isinstance(entry, dict)
                      for split in entry.get("splits") or []}
    trained_sources = run.get("train_sources") if isinstance(run.get("train_sources"), dict) else {}
    return {
        "folder": _text(evaluation["folder"]),
        "split": _text(evaluation["split"]),
        "images": _text(int(images)) if images is not None else NOT_RECORDED,
        "data": _data_text(sources) if sources else "not recorded (no readable drift.json beside its metrics.json)",
        "in_sample": bool(sources) and set(sources) <= set(trained_sources)
        and bool(set(str(evaluation["split"]).split("+")) & trained_splits),
        "metrics": rows,
        "intervals": any(interval != "n/a" for _, _, interval in rows),
        "settings": settings,
        "confusion": _confusion(metrics, labels),
        "per_source": _per_source(evaluation["drift"], task, multi_label),
    }


def _per_source_results(evaluated: list[dict]) -> list[tuple[list, str, dict]]:
    """The headline metrics (`SOURCE_METRICS`) of each source of every `train.evaluate` report with two sources or
    more (its drift.json), as (names, split, metrics) for the model-index: a site's own numbers, not only pooled."""
    results = []
    for evaluation in evaluated:
        per_source = (evaluation["drift"] or {}).get("metrics")
        if not isinstance(per_source, dict) or len(per_source) < 2:
            continue
        for source, values in sorted(per_source.items()):
            if isinstance(values, dict):
                results.append(([source], evaluation["split"], {k: values[k] for k in SOURCE_METRICS if k in values}))
    return results


def _per_source(drift: dict | None, task: str, multi_label: bool) -> dict | None:
    """train.evaluate's drift.json as one table, {"note", "header", "rows"}: a row per source (the in-domain one
    first) with its images and headline metrics (`SOURCE_METRICS`), each with its 95% interval and its change (Δ)
    against the in-domain source, over the labels `delta_labels` names where they are not all, and the labels it has
    no AUROC of, with why (`labels_without_auroc`); None for a report of fewer than two sources."""
    per_source = (drift or {}).get("metrics")
    if not isinstance(per_source, dict) or len(per_source) < 2 or not all(isinstance(v, dict)
                                                                          for v in per_source.values()):
        return None

    def entries(key):  # drift.json's {source: ...} mapping `key`, {} where absent or not one
        value = drift.get(key)
        return {source: found for source, found in value.items() if isinstance(found, dict)} \
            if isinstance(value, dict) else {}

    counts = drift.get("num_images") if isinstance(drift.get("num_images"), dict) else {}
    changes, change_labels, unranked = (entries(key) for key in ("delta_vs_in_domain", "delta_labels",
                                                                 "labels_without_auroc"))
    in_domain = drift.get("in_domain")
    keys = [key for key in SOURCE_METRICS if any(key in values for values in per_source.values())]
    header = ["Source", "Images", *(describe_metric(key, multi_label, task)[1] for key in keys)]
    if unranked:
        header.append("No AUROC (why)")
    rows = []
    for source in sorted(per_source, key=lambda name: name != in_domain):  # stable: the in-domain source first
        values = per_source[source]
        cells = [_source_label(source) + (", in-domain" if source == in_domain else ""),
                 _text(counts.get(source))]
        for key in keys:
            value, low, high = (_number(values.get(key + end)) for end in ("", *INTERVAL))
            cell = "n/a" if value is None else f"{value:.4f}"
            if value is not None and low is not None and high is not None:
                cell += f" ({low:.4f} to {high:.4f})"
            change, over = _number(changes.get(source, {}).get(key)), change_labels.get(source, {}).get(key)
            if change is not None:
                cell += f", Δ {change:+.4f}" + (f" over {', '.join(code(_text(name)) for name in over)}"
                                                if isinstance(over, list) else "")
            elif over == [] and value is not None:
                cell += ", Δ n/a (no label with a value in both)"
            cells.append(cell)
        if unranked:
            cells.append(", ".join(f"{code(_text(name))} ({_text(why)})" for name, why in
                                   unranked.get(source, {}).items()) or "-")
        rows.append(cells)
    trained_on = drift.get("trained_on")
    trained = (f" The model was trained on {', '.join(code(_text(name)) for name in trained_on)}."
               if isinstance(trained_on, list) else " The sources the model was trained on are not recorded.")
    if in_domain is None:
        note = (f"Per source, from its `drift.json`: each metric with its 95% interval (bootstrap) where computed."
                f"{trained} None of these sources is among them: all are out of domain, so no change against an "
                "in-domain source is computed.")
    else:
        note = (f"Per source, from its `drift.json`: each metric with its 95% interval (bootstrap) where computed, "
                f"and its change (Δ) against the in-domain source, {_source_label(in_domain)}.{trained} A macro "
                "average's change averages the labels both sources have a value of"
                + (", and the accuracy's pools the decisions on the labels both know" if multi_label else "")
                + ", named after it where they are not all.")
    return {"note": note, "header": header, "rows": rows}


def weights_licence(run: dict) -> tuple[dict, str]:
    """The card's licence metadata and the text of its Licence section.

    The weights follow their training data's terms (`_restricted_data`): where every data set's terms are known and
    permissive, they carry the package's licence; otherwise `license: other`, with a `license_name` naming the data
    whose terms apply and a `license_link` to `LICENCE_FILE`, which `write_model_card` fills. A licence the run
    record states (`license`, the publisher's choice, with its `license_name` and `license_link` where it is
    `other`) is the metadata's in either case, and the text still says which data's terms apply to the weights."""
    restricted = _restricted_data(run)
    stated, named, link = _stated_licence(run)
    listed = "; ".join(text for _, text in restricted)
    if stated:
        metadata = {"license": stated, **({"license_name": named} if named else {}),
                    **({"license_link": link} if link else {})}
        text = (f"Model weights and code: {_text(stated)}{f' ({_text(named)})' if named else ''}, as stated by the "
                "publisher." + (f" Its terms: [{link}]({link})." if link else ""))
    elif restricted:
        names = "-".join(dict.fromkeys(name for name, _ in restricted))
        metadata = {"license": "other", "license_name": f"training-data-terms-{names}", "license_link": LICENCE_FILE}
        text = (f"Model weights: subject to the terms of the data they were trained on (hence `license: other`), "
                f"which are not all permissive: {listed}. Whoever uses the weights must respect each of them. Model "
                f"code (the `.py` files): {PACKAGE_LICENCE}, the licence of the cxrgm package.")
    else:
        metadata = {"license": PACKAGE_LICENCE}
        text = f"Model weights and code: {PACKAGE_LICENCE}."
    if stated and restricted:
        text += (f" The weights were trained on data whose terms are not all permissive: {listed}. Those terms apply "
                 "to the weights as well, whatever licence is stated here.")
    elif not restricted:
        text += (" The terms of every training source (table above) are permissive: credit each as it asks "
                 "(citations below).")
    return metadata, text


def _stated_licence(run: dict) -> tuple[str | None, str | None, str | None]:
    """The licence the run record states for the weights (the publisher's `--license`), and for `other` its
    `license_name` and `license_link`: each None where not stated."""
    def field(key: str) -> str | None:
        value = run.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    stated = field("license")
    return (stated, *((field("license_name"), field("license_link")) if stated == "other" else (None, None)))


def _restricted_data(run: dict) -> list[tuple[str, str]]:
    """The model's training data whose terms are not known to be permissive (`Source.permissive`), each as (a name
    for a licence id, what the card says of them and their terms): public sets with restrictive terms, local data,
    a pool whose folders were not recorded, a base model's data not listed in the record, or none recorded at all."""
    restricted = {}
    for entry in _all_datasets(run):
        name = entry.get("name") if isinstance(entry, dict) else entry
        source = lookup(name or "")
        if source is not None and source.permissive:
            continue
        label = _text(name)
        if source is not None:
            text = f"{source.title} ({code(label)}: {source.licence})"
        elif label in POOLING_BUILDERS:
            text = f"images pooled by {code(label)} from folders that were not recorded (terms not known)"
        else:
            text = f"local data {code(label)} (terms not recorded)"
        restricted.setdefault(re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "unnamed", text)
    base_model = _unlisted_base_model(run)
    if base_model:
        restricted["base-model"] = f"the base model's training data (`{base_model}`: see its card)"
    if not _all_datasets(run):
        restricted["unrecorded"] = "the training data (not recorded)"
    return list(restricted.items())


def render_model_card(model_dir, run: dict) -> ModelCard:
    """The card as a `huggingface_hub.ModelCard` (see `write_model_card`)."""
    model_dir = Path(model_dir)
    run = scrub(run or {})
    task = run.get("task") if run.get("task") in TASKS else "pretraining"
    config = _read_json(model_dir / "config.json")
    processor = _read_json(model_dir / "preprocessor_config.json")
    metrics = run.get("metrics") if isinstance(run.get("metrics"), dict) else {}
    eval_dataset = run.get("eval_dataset") if isinstance(run.get("eval_dataset"), dict) else {}
    eval_source = lookup(eval_dataset.get("name", ""))
    repo_id = _repo_name(run, task)
    base_model = run.get("base_model")
    hub_base = base_model if isinstance(base_model, str) and base_model.count("/") == 1 else None
    multi_label = config.get("problem_type") == "multi_label_classification"
    training = run.get("training") if isinstance(run.get("training"), dict) else {}
    # a task head trained on an encoder from random init: no GMML anywhere in it (the config's masking settings are
    # defaults it never used)
    from_scratch = task != "pretraining" and training.get("init") == "random"
    tags = ["chest-x-ray", "radiology", "medical-imaging", "vision-transformer", "self-supervised", "gmml", "cxrgm",
            "custom_code", "research-only"]

    evaluated = scrub(evaluations(model_dir))
    # train.evaluate's results first, then the training run's own evaluation
    measured = [(list(e["sources"] or [None]), e["split"], e["metrics"]) for e in evaluated]
    evaluated_data = _evaluated_data(run)
    pooled_by = eval_dataset.get("name") if eval_dataset.get("name") in POOLING_BUILDERS else None
    measured.append((list(evaluated_data), eval_dataset.get("split"), metrics))
    measured += _per_source_results(evaluated)
    licence_metadata, licence_text = weights_licence(run)

    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        library_name="transformers",
        pipeline_tag=TASKS[task][0],
        tags=[tag for tag in tags if not (from_scratch and tag in ("self-supervised", "gmml"))],
        base_model=hub_base,
        eval_results=[result for names, split, results in measured
                      for result in _model_index(task, results, names, split, multi_label)] or None,
        **licence_metadata,
    )
    preprocessing = run.get("preprocessing") if isinstance(run.get("preprocessing"), dict) else {}
    labels = config.get("id2label") or {}
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        title=repo_id.split("/")[-1],
        task=task,
        task_description=TASKS[task][1],
        summary=("A vision transformer for chest X-rays (CXRs), trained from random initialisation, without GMML "
                 "pretraining, with the" if from_scratch else
                 "A group-masked (GMML) vision transformer for chest X-rays (CXRs), built with the"),
        auto_class=AUTO_CLASS[task],
        multi_label=multi_label,
        num_labels=len(labels),
        pipeline_tag=TASKS[task][0],
        repo_id=repo_id,
        metrics=[(describe_metric(k, multi_label, task)[1], f"{v:.4f}" if _number(v) is not None else "n/a")
                 for k, v in _scalar_metrics(metrics).items()],
        confusion=_confusion(metrics, map(str, labels.values())),
        settings=_scoring_settings(metrics),
        eval_dataset={**{k: _text(eval_dataset.get(k)) for k in ("name", "split", "num_images")},
                      "title": eval_source.title if eval_source else None,
                      # a pool's data are its folders, named with their images as train.evaluate's sources are
                      "pooled_by": pooled_by,
                      "data": NOT_RECORDED if pooled_by in evaluated_data else _data_text(evaluated_data)},
        datasets=_dataset_rows(run.get("earlier_datasets"))
        + _dataset_rows(run.get("train_datasets"), task),
        preprocessing=_preprocessing(model_dir, processor, preprocessing),
        architecture=[(label, _text(config.get(key))) for key, label in ARCHITECTURE],
        parameters=_text(f"{count:,}" if (count := _parameter_count(model_dir)) else None),
        gmml=[] if from_scratch else [(label, _text(config.get(key))) for key, label in GMML],
        head=_head(task, config),
        labels=[code(labels[k]) for k in sorted(labels, key=lambda k: int(k))] if task != "pretraining" else [],
        training={
            "init": _text(training.get("init")),
            # a local folder (scrubbed to its name above) is no Hub repo: said so, rather than a bare "model"
            "base_model": "none (random initialisation)" if training.get("init") == "random" and not base_model
            else _text(base_model if hub_base or not isinstance(base_model, str) or not base_model
                       else f"a local checkpoint (`{basename(base_model)}`)"),
            "epochs": _text(training.get("epochs")),
            "batch_size": _text(training.get("batch_size")),
            "learning_rate": _text(training.get("learning_rate")),
            "precision": _text(training.get("precision")),
            "hardware": _text(training.get("hardware")),
            "duration": _duration(training.get("duration_s")),
            "seed": _text(training.get("seed")),
        },
        limitations=_limitations(run, task),
        citations=CITATIONS,
        dataset_citations=sorted({s.citation for s in (lookup(d["name"]) for d in _dataset_rows(
            _all_datasets(run)) + [{"name": name or ""} for name in evaluated_data]) if s}),
        licence=licence_text,
        evaluations=[_evaluation_view(e, task, multi_label, map(str, labels.values()), run) for e in evaluated],
    )
    leaks = find_local_paths(str(card), labels.values())
    if leaks:
        raise ValueError(f"The model card would publish local paths {leaks}; remove them from the run record")
    return card


def _preprocessing(model_dir: Path, saved: dict, recorded: dict) -> dict:
    """The card's preprocessing table. The folder's image processor (`saved`, its preprocessor_config.json) is what
    a user's inputs go through, so every setting comes from it, with the constructor's defaults for those it leaves
    out (as `from_pretrained` fills them), and `settings` repeats them as constructor arguments. Only the windowing,
    which happens before the processor (DICOM decoding), comes from the run's record (`recorded`); so does
    everything for a folder without a processor, whose card says so."""
    windowing = _text(recorded.get("windowing"))
    if not saved:
        return {
            "settings": None, "windowing": windowing,
            "size": _text(recorded.get("size")), "num_channels": _text(recorded.get("num_channels")),
            "resize": f"{_text(recorded.get('resize_mode'))} to {_text(recorded.get('size'))} px",
            "bit_depth": _bit_depth(recorded["bit_depth"]) if "bit_depth" in recorded else NOT_RECORDED,
            "equalize": _equalize(recorded.get("equalize")) if "equalize" in recorded else NOT_RECORDED,
            "normalization": _text(recorded.get("normalization")),
        }
    given = {name: saved[name] for name in PROCESSOR_SETTINGS if name in saved}
    try:
        processor = GroupMaskedViTImageProcessor(**given)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{model_dir.name}/preprocessor_config.json cannot be read as the image processor's "
                         f"settings ({error}); the card states the input convention from it") from error
    settings = {name: getattr(processor, name) for name in PROCESSOR_SETTINGS if name != "normalization"}
    return {
        "settings": ", ".join(f"{name}={value!r}" for name, value in settings.items()),
        "windowing": windowing,
        "size": _text(processor.size),
        "num_channels": _text(processor.num_channels),
        "resize": f"{processor.resize_mode} to {processor.size} px" + {
            "pad": " (aspect ratio kept, centred on black)", "squash": " (stretched)"}[processor.resize_mode],
        "bit_depth": _bit_depth(processor.bit_depth),
        "equalize": _equalize(processor.equalize),
        "normalization": _normalisation(processor),
    }


def _bit_depth(value) -> str:
    """Bits integer inputs are scaled by: 8-bit images by 8, a PNG that states its depth (hf_datasets' 16-bit images)
    by that one, the others by `value`; None means the processor's default for those: the bits the largest value
    needs."""
    if value is None:
        return "native: 8 for 8-bit images, else the bits the largest value needs (8 to 16, e.g. 12)"
    return f"{_text(value)} (wider integer images that do not state their own; 8-bit images: 8)"


def _equalize(value) -> str:
    return "yes, per image" if value else "no"


def _normalisation(processor) -> str:
    """What the processor does to the [0, 1] pixel values: nothing (`do_normalize` false), or (x - mean) / std per
    channel with its own mean and std, named after the preset they are (CXR or ImageNet statistics), else custom."""
    if not processor.do_normalize:
        return "none: pixel values in [0, 1] (do_normalize false)"
    mean, std = processor.image_mean, processor.image_std
    name = "custom"
    for preset, title in (("cxr", "CXR statistics"), ("imagenet", "ImageNet statistics")):
        default = GroupMaskedViTImageProcessor(num_channels=processor.num_channels, normalization=preset)
        if all(math.isclose(a, b, abs_tol=1e-7) for a, b in zip([*mean, *std], [*default.image_mean,
                                                                                 *default.image_std])):
            name = title
            break
    return f"(x - mean) / std per channel, mean {_text(mean)}, std {_text(std)} ({name})"


def _head(task: str, config: dict) -> str:
    if task == "classification":
        return (f"linear classifier on `{_text(config.get('pooling'))}` pooling, "
                f"{_text(config.get('problem_type') or 'single_label_classification')}")
    if task == "segmentation":
        return f"`{_text(config.get('decoder_type'))}` decoder over patch tokens of blocks {_text(config.get('segmentation_layers'))}"
    return "MLP + transposed-convolution reconstruction head, used for pretraining only (`AutoModel` loads the encoder alone)"


def write_model_card(model_dir, run: dict) -> Path:
    """Render the card of the exported model in `model_dir` from `run` and write `model_dir/README.md`; with weights
    under their training data's terms also `LICENCE_FILE`, the card's Licence section on its own (an earlier one of
    ours is removed when the licence no longer needs it; a publisher's own file, also one the stated licence links
    to, is never touched)."""
    model_dir = Path(model_dir)
    path = model_dir / "README.md"
    path.write_text(str(render_model_card(model_dir, run)) + "\n", encoding="utf-8")
    record = scrub(run or {})
    metadata, text = weights_licence(record)
    # the card links the training data's terms, which we write, or a publisher's own licence text, theirs to keep
    links_ours = metadata.get("license_link") == LICENCE_FILE and _stated_licence(record)[2] != LICENCE_FILE
    write_licence_file(model_dir, LICENCE_FILE_HEADER,
                       f"# Licence (`{metadata['license_name']}`)\n\n{text}\n" if links_ours else None,
                       "the training data's terms (the card's Licence section)")
    return path


def write_licence_file(folder: Path, header: str, text: str | None, states: str) -> None:
    """Keep `folder`'s `LICENCE_FILE` as its card needs it: `text` under `header` (the first line, which marks the
    file as ours), or, with `text` None, an earlier one of ours removed. A file of the publisher's own is never
    touched; where the card links it, a warning asks to check that it states `states`."""
    path = folder / LICENCE_FILE
    ours = path.is_file() and path.read_text(encoding="utf-8", errors="replace").startswith(header)
    if text is None:
        if ours:
            path.unlink()
    elif ours or not path.exists():
        path.write_text(f"{header}\n\n{text}", encoding="utf-8")
    else:
        logger.warning("%s holds a %s of its own, which the card's license_link now names: check that it states %s",
                       folder.name, LICENCE_FILE, states)
