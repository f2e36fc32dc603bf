"""Metrics of a saved model on any split, with a drift report per `source`.

    accelerate launch -m train.evaluate --model outputs/classification/model --dataset kermany --data_dir D --split test

Writes `metrics.json` (all images) and `drift.json` (per source, and the change of each source's metrics against the
in-domain source: by default the most frequent evaluated source the model was trained on, as its run.json records)
to `--output_dir` (default `<model>/eval-<split>`), and prints a table. The 95% intervals resample patients (all
images of each) where the split has patient ids, else images (`bootstrap_unit`); multi-label decisions and a
one-label segmenter's masks cut probabilities at `--threshold` (default 0.5), as train.predict does.

`--model` may be a training checkpoint (`<run>/checkpoints/step_XXXXXXXX`): the model it would export is scored (its
EMA weights where the run keeps an EMA; metrics.json says which, as `weights`), with its run's settings (args.yaml),
and the results go beside it (`<run>/checkpoints/eval-step_XXXXXXXX-<split>`), where retention does not delete them
(a run resumed from an older checkpoint does, when it saves its own checkpoint of that step).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import modeling_cxrgm
from hf_datasets.errors import InvalidInputError, run_script

from . import checkpoint, data, engine
from .config import EvalArgs, TrainArgs, decision_threshold, load_model_source, parse_args, takes_threshold
from .export import write_metrics
from .metrics import (accuracy_difference, bootstrap_unit, compute_metrics, differences, labels_without_auroc,
                      labels_without_ppv, patient_numbers)
from .run import Context
from .run_card import NO_LABEL_OPTIONS, label_policy
from .starting_point import model_inputs_normalisation

TASKS = {
    "GroupMaskedViTForImageClassification": "classification",
    "GroupMaskedViTForSegmentation": "segmentation",
    "GroupMaskedViTForPreTraining": "pretraining",
}
HEADLINE = {"classification": ("auroc_macro", "accuracy", "f1_macro"), "segmentation": ("dice", "iou"),
            "pretraining": ("loss",)}


def load_model(folder):
    """(model, processor, task) from a save_pretrained folder of this package."""
    config = load_model_source(modeling_cxrgm.GroupMaskedViTConfig.from_pretrained, folder, "--model")
    architecture = (config.architectures or [""])[0]
    if architecture not in TASKS:
        raise InvalidInputError(f"{folder}: unsupported architecture {architecture!r}; expected one of {sorted(TASKS)}")
    processor = load_model_source(modeling_cxrgm.GroupMaskedViTImageProcessor.from_pretrained, folder, "--model",
                                  "preprocessor_config.json")
    model = getattr(modeling_cxrgm, architecture).from_pretrained(folder, dtype=torch.float32)  # as it trained
    return model, processor, TASKS[architecture]


def source_names(ds, rows) -> list[str]:
    """The `source` of each of `rows` ("unknown" where empty), without decoding any image."""
    column = list(ds.select_columns(["source"])["source"])
    return [column[int(row)] or "unknown" for row in rows]


def patient_ids(ds, rows) -> list[str | None]:
    """The `patient_id` of each of `rows`: None where empty, and for every row of a set without that column."""
    if "patient_id" not in ds.column_names:
        return [None] * len(rows)
    column = list(ds.select_columns(["patient_id"])["patient_id"])
    return [column[int(row)] or None for row in rows]


def check_in_domain(in_domain: str, sources) -> None:
    if in_domain not in set(sources):
        raise InvalidInputError(f"in-domain source {in_domain!r} is not among the sources {sorted(set(sources))}")


def training_sources(args: EvalArgs, splits, run: TrainArgs | None) -> list[str] | None:
    """The sources of the images the model was trained on: its run.json (written by the training scripts); for a
    checkpoint of run `run`, those of its run's training rows where `splits` are its run's data (the same --dataset,
    --data_dir, --prepared_dir and --dataset_options). None where not known (a model trained elsewhere)."""
    if run is not None:
        if not same_data(run, args):
            return None
        train = datasets.concatenate_datasets([data.split(splits, name) for name in run.train_splits])
        rows = data.task_rows(train, run.task, "The run's training data")
        return sorted(set(source_names(train, range(len(train)) if rows is None else rows)))
    run_file = Path(args.model) / "run.json"
    recorded = json.loads(run_file.read_text()).get("train_sources") if run_file.is_file() else None
    return sorted(recorded) if isinstance(recorded, dict) else None


def same_data(run: TrainArgs, args: EvalArgs) -> bool:
    """Whether the evaluated data are those training run `run` read (its folders resolved)."""
    def where(path):
        return path and os.path.realpath(path)

    return (run.dataset, where(run.data_dir), where(run.prepared_dir), run.dataset_options) == \
        (args.dataset, where(args.data_dir), where(args.prepared_dir), args.dataset_options)


def drift_report(task, results, ds, names, single_label, in_domain=None, bootstrap=0, trained_on=None,
                 missing=(), threshold=0.5) -> dict:
    """Metrics per `source` and each source's difference to the in-domain source: `in_domain`, else the most
    frequent evaluated source among those the model was trained on (`trained_on`), else, where those are unknown
    (None), the most frequent source. When the model was trained on none of the evaluated sources there is no
    in-domain source (None) and no differences: every source is out of domain. `labels_without_auroc` names, per
    source, the labels it has no AUROC of and why (`missing`: those the data set lacks), as its macro AUROC leaves
    them out; a macro average's difference averages the labels both sources have a value of (`metrics.differences`),
    and a multi-label model's accuracy difference pools the (image, label) pairs of the labels both know
    (`metrics.accuracy_difference`), which `delta_labels` names ("all" where both took the same); `bootstrap_unit`
    says, per source, whether its intervals resample patients or images."""
    sources = source_names(ds, results["index"])
    counts = Counter(sources)
    if in_domain is None:
        candidates = [source for source, _ in counts.most_common() if trained_on is None or source in trained_on]
        in_domain = candidates[0] if candidates else None
    else:
        check_in_domain(in_domain, sources)
    rows = {source: [i for i, s in enumerate(sources) if s == source] for source in sorted(counts)}
    patients = patient_ids(ds, results["index"])
    per_source = {source: compute_metrics(task, results, names, single_label, bootstrap, rows=rows[source],
                                          threshold=threshold, patient_ids=patients) for source in rows}
    unranked = {source: labels_without_auroc(task, per_source[source], results, names, single_label, missing,
                                             rows[source]) for source in rows}
    compared = {source: differences(HEADLINE[task], values, per_source[in_domain], names)
                for source, values in per_source.items() if in_domain is not None and source != in_domain}
    if task == "classification" and not single_label:  # its accuracy pools each source's known (image, label) pairs
        for source, (deltas, labels) in compared.items():
            delta, labels["accuracy"] = accuracy_difference(results, names, rows[source], rows[in_domain], threshold)
            if delta is None:
                deltas.pop("accuracy", None)
            else:
                deltas["accuracy"] = delta
    report = {"in_domain": in_domain, "trained_on": trained_on, "num_images": dict(counts), "metrics": per_source,
              "delta_vs_in_domain": {source: deltas for source, (deltas, _) in compared.items()},
              "labels_without_auroc": {s: u for s, u in unranked.items() if u}}
    used = {source: labels for source, (_, labels) in compared.items() if labels}  # those of macro averages
    if used:
        report["delta_labels"] = used
    if bootstrap and task != "pretraining":
        report["bootstrap_unit"] = {source: bootstrap_unit([patients[i] for i in rows[source]]) for source in rows}
    if in_domain is None:
        report["note"] = (f"the model was trained on {trained_on}, none of the evaluated sources: all are out of "
                          "domain (--in_domain_source names a reference to compare them with)")
    return report


def model_labels(ds, names: list[str], single_label: bool):
    """(`ds` labelled in the model's `names`, unmatched names or None when the set has the model's names already).

    Another set's names or order: scored on the labels both have. Exclusive classes: a row is scored on its one
    positive class (unknown entries of it are 0), a row with none or several is not scored."""
    renamed = data.label_names(ds) != names
    if not (renamed or single_label):
        return ds, None
    ds, unmatched = data.align_labels(ds, names, single_label)
    return ds, unmatched if renamed else None


def trained_label_policy(args: EvalArgs, run: TrainArgs | None) -> str | None:
    """The label options the model's training data was read with (`label_policy`): its run's (a checkpoint), else
    its run.json's; None where not recorded."""
    if run is not None:
        return label_policy(run)
    run_file = Path(args.model) / "run.json"
    recorded = json.loads(run_file.read_text()).get("train_datasets") if run_file.is_file() else None
    return recorded[0].get("label_policy") if isinstance(recorded, list) and recorded else None


def fill_run_defaults(args: EvalArgs, task: str, run: TrainArgs | None) -> None:
    """--seed and --batch_size left unset: for a pretraining model those of its training run (run.json; for a
    checkpoint, `run`, its run's arguments), as the corruption of each evaluation batch depends on both, so the loss
    equals the run's evaluation loss; else 0, 32."""
    if task != "pretraining":
        training = {}
    elif run is not None:
        training = {"seed": run.seed, "per_device_batch_size": run.batch_size}
    else:
        run_file = Path(args.model) / "run.json"
        training = json.loads(run_file.read_text()).get("training", {}) if run_file.is_file() else {}
    if args.seed is None:
        args.seed = training.get("seed", 0)
    if args.batch_size is None:
        args.batch_size = training.get("per_device_batch_size", 32)


def main(argv=None) -> dict:
    args = parse_args(EvalArgs, argv)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)  # None: the launcher's setting
    weights = run = None
    if checkpoint.is_checkpoint(args.model):
        model, processor, weights = checkpoint.exported_model(Path(args.model))
        task, run = TASKS[type(model).__name__], checkpoint.run_args(args.model)
        accelerator.print(f"{args.model} is a checkpoint: scoring {checkpoint.WEIGHTS[weights]}"
                          + ("" if run else "; its run's args.yaml is not two folders up: its settings are unknown"))
    else:
        model, processor, task = load_model(args.model)
    threshold = decision_threshold(args.threshold, model.config, args.model)  # refused before the data are read
    fill_run_defaults(args, task, run)
    set_seed(args.seed)
    splits = data.load_splits(args.dataset, args.data_dir, args.prepared_dir, args.dataset_options)
    ds = data.split(splits, args.split)
    names = engine.structure_names(model.config) if task == "segmentation" else []
    single_label = model.config.problem_type != "multi_label_classification"
    missing = []
    if task == "classification":
        names = [model.config.id2label[i] for i in range(model.config.num_labels)]
        ds, unmatched = model_labels(ds, names, single_label)
        if unmatched is not None:
            missing = unmatched["missing"]
            scored = ("no image of them: only the images predicted as one count, as errors" if single_label
                      else "not scored")
            accelerator.print(f"labels aligned to the model's {names}; not in the data set ({scored}): "
                              f"{missing or 'none'}; not predicted by the model (rows of such a class "
                              f"are left out when classes are exclusive): {unmatched['extra'] or 'none'}")
    policy = label_policy(args) if task == "classification" else NO_LABEL_OPTIONS
    if policy != NO_LABEL_OPTIONS:  # e.g. CheXpert's uncertain labels: left out, or read as 0 / 1 (--dataset_options)
        trained = trained_label_policy(args, run)
        accelerator.print(f"labels read with {policy}" + (f" (the model's training labels: {trained})"
                                                          if trained not in (None, policy) else ""))
    rows = data.task_rows(ds, task, f"Split {args.split!r}")
    if args.in_domain_source:  # refused before the evaluation, not after it
        check_in_domain(args.in_domain_source, source_names(ds, range(len(ds)) if rows is None else rows))
    results = score(accelerator, model, processor, ds, rows, task, single_label, args, threshold)
    patients = patient_ids(ds, results["index"])
    metrics = compute_metrics(task, results, names, single_label, args.bootstrap, threshold=threshold,
                              patient_ids=patients)
    unit = bootstrap_unit(patients) if args.bootstrap and task != "pretraining" else None
    if unit:
        drawn = (f"{len(set(patient_numbers(patients)))} patients, each with all its images (an image without a "
                 "patient id counts as one)" if unit == "patient" else "images (the split names no patients)")
        accelerator.print(f"95% intervals: {args.bootstrap} resamples of the {drawn}")
    unranked = labels_without_auroc(task, metrics, results, names, single_label, missing)
    one_valued = {name: why for name, why in unranked.items() if name not in missing}  # the others: named above
    if one_valued:
        accelerator.print(f"no AUROC / AUPRC for the labels of split {args.split!r} without both a positive and a "
                          "negative known label: " + ", ".join(f"{name} ({why})" for name, why in one_valued.items())
                          + "; auroc_macro and auprc_macro average the labels with both")
    unpredicted = labels_without_ppv(task, metrics, results, names, single_label, missing)
    in_the_set = {name: why for name, why in unpredicted.items() if name not in missing}  # the others: named above
    if in_the_set:
        decided = "" if single_label else f" (decisions at the threshold {threshold})"
        accelerator.print(f"no PPV (TP / (TP + FP) would divide by 0) for the labels of split {args.split!r}{decided}: "
                          + ", ".join(f"{name} ({why})" for name, why in in_the_set.items()))
    drift = drift_report(task, results, ds, names, single_label, args.in_domain_source, args.bootstrap,
                         training_sources(args, splits, run), missing, threshold)
    if accelerator.is_main_process:
        output_dir = Path(args.output_dir or checkpoint.results_path(args.model, "eval", f"-{args.split}"))
        text = {"weights": weights, "label_policy": None if policy == NO_LABEL_OPTIONS else policy,
                "labels_without_auroc": unranked or None, "labels_without_ppv": unpredicted or None,
                "bootstrap_unit": unit,
                "threshold": threshold if takes_threshold(model.config) else None}
        write_metrics(metrics, output_dir / "metrics.json", text={k: v for k, v in text.items() if v is not None})
        (output_dir / "drift.json").write_text(json.dumps(drift, indent=2) + "\n")
        print(format_table(task, metrics, drift))
        if "note" in drift:
            print(f"drift: {drift['note']}")
        print(f"metrics -> {output_dir / 'metrics.json'}, per source -> {output_dir / 'drift.json'}")
    return metrics


def score(accelerator, model, processor, ds, rows, task, single_label, args: EvalArgs, threshold=0.5) -> dict:
    """`engine.evaluate`'s results of `model` on the `rows` of `ds` (None: all), read as training reads them."""
    dataset = data.CXRDataset(ds, processor, task, data.SINGLE if single_label else data.MULTI, rows)
    loader = data.make_loader(dataset, args.batch_size, args.seed, False, args.num_workers)
    model, loader = accelerator.prepare(model, loader)
    accelerator.print(f"{task} evaluation: {dataset.counted()} of split {args.split!r}, "
                      f"{accelerator.num_processes} process(es), precision {accelerator.mixed_precision}")
    mean, std = model_inputs_normalisation(processor)
    ctx = Context(task=task, mean=mean, std=std, model_config=accelerator.unwrap_model(model).config,
                  single_label=single_label, threshold=threshold)
    return engine.evaluate(model, loader, accelerator, ctx, seed=args.seed)


def format_table(task, metrics, drift) -> str:
    """Headline metrics for all images and per source."""
    keys = [k for k in HEADLINE[task] if k in metrics]
    lines = [f"{'source':<24}{'images':>8}" + "".join(f"{k:>14}" for k in keys)]
    rows = [("all", sum(drift["num_images"].values()), metrics)]  # every image has a source ("unknown" if none)
    rows += [(s, drift["num_images"][s], m) for s, m in drift["metrics"].items()]
    for name, count, values in rows:
        lines.append(f"{name:<24}{count:>8}" + "".join(
            f"{values[k]:>14.4f}" if k in values else f"{'n/a':>14}" for k in keys))
    return "\n".join(lines)


if __name__ == "__main__":
    run_script(main)
