"""Checks of a training run's arguments, model and data, made before it trains: each refuses a wrong input, saying
how to fix it, or warns where the run can go on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from huggingface_hub.utils import HFValidationError, validate_repo_id

from hf_datasets.errors import InvalidInputError, MissingInputError
from modeling_cxrgm import GroupMaskedViTConfig
from modeling_cxrgm.image_processing_gmvit import PAD_LABEL

from . import checkpoint, data
from .config import TrainArgs, load_yaml
from .metrics import metric_names
from .starting_point import MODEL_CLASSES, init_config, resumed_config

logger = logging.getLogger(__name__)


# What a resumed run may change: where things are, how the run is operated, and its length (`epochs`: a run can be
# extended; its schedules then span the new length), not what each step computes (`init`: the weights come from the
# checkpoint, and the image processor from the checkpoint too, see `run_processor`)
RESUME_MAY_CHANGE = frozenset({
    "output_dir", "data_dir", "prepared_dir", "init", "num_workers", "epochs", "max_steps", "torch_compile",
    "torch_compile_mode", "save_every_steps", "save_total_limit", "resume_from_checkpoint", "eval_every_epochs",
    "log_every_steps", "report_to", "card", "hub_model_id",
})


def check_resumable(args: TrainArgs, output_dir: Path, resume: Path) -> None:
    """A run resumes with the arguments it started with (args.yaml of output_dir, else of the run whose checkpoint
    `resume` is), but for RESUME_MAY_CHANGE: another batch size, seed, data, model or optimiser setting would
    continue a different run from the middle of this one."""
    runs = (output_dir, resume.parent.parent)  # .../<run>/checkpoints/step_XXXXXXXX
    saved_path = next((run / "args.yaml" for run in runs if (run / "args.yaml").is_file()), None)
    if saved_path is None:
        return
    saved = TrainArgs(**load_yaml(saved_path, TrainArgs))
    changed = [f"{f.name} {getattr(saved, f.name)!r} -> {getattr(args, f.name)!r}" for f in dataclasses.fields(args)
               if f.name not in RESUME_MAY_CHANGE and getattr(saved, f.name) != getattr(args, f.name)]
    if changed:
        raise InvalidInputError(f"{saved_path.parent} started with other arguments ({'; '.join(changed)}): resume with "
                                "the same ones, or start a new --output_dir (--init from this run's export to keep its "
                                "weights)")


def check_no_earlier_run(output_dir: Path) -> None:
    """A new run refuses an output_dir that holds an earlier run's checkpoints: retention keeps the highest steps, so
    they would outlive the new run's own, and `--resume_from_checkpoint latest` would continue the earlier run."""
    found = checkpoint.checkpoints(output_dir)
    if found:
        raise InvalidInputError(f"{output_dir} holds checkpoints of an earlier run (up to {found[-1].name}): continue "
                                "it with --resume_from_checkpoint latest, or start a new --output_dir")


def check_args(args: TrainArgs) -> None:
    if args.task not in MODEL_CLASSES:
        raise InvalidInputError(f"task must be one of {sorted(MODEL_CLASSES)}, got {args.task!r}")
    if args.clip_mode not in ("per_param", "global"):
        raise InvalidInputError(f"clip_mode must be per_param or global, got {args.clip_mode!r}")
    if args.torch_compile_mode not in (None, "default", "reduce-overhead", "max-autotune"):
        raise InvalidInputError(f"torch_compile_mode must be default, reduce-overhead or max-autotune, got "
                                f"{args.torch_compile_mode!r}")
    if args.mixed_precision not in ("no", "bf16", "fp16"):
        raise InvalidInputError(f"mixed_precision must be no, bf16 or fp16, got {args.mixed_precision!r}")
    if args.epochs < 1 or args.batch_size < 1 or args.grad_accum_steps < 1:
        raise InvalidInputError("epochs, batch_size and grad_accum_steps must be positive")
    if args.max_steps is not None and args.max_steps < 1:  # -1, "no limit" elsewhere, stopped before the first step
        raise InvalidInputError(f"max_steps must be positive (or None: every --epochs), got {args.max_steps}")
    if args.save_total_limit < 0:
        raise InvalidInputError(f"save_total_limit must be 0 (no checkpoints) or more, got {args.save_total_limit}")
    intervals = {"eval_every_epochs": args.eval_every_epochs, "log_every_steps": args.log_every_steps,
                 "lr_batch_divisor": args.lr_batch_divisor}
    if min(intervals.values()) < 1:  # (the last epoch is always evaluated)
        raise InvalidInputError(f"{', '.join(intervals)} must be positive, got {intervals}")
    amounts = {"warmup_epochs": args.warmup_epochs, "weight_decay": args.weight_decay, "drop_path": args.drop_path,
               "label_smoothing": args.label_smoothing, "min_lr": args.min_lr}
    if min(amounts.values()) < 0:
        raise InvalidInputError(f"{', '.join(amounts)} must not be negative, got {amounts}")
    chances = {"hflip_p": args.hflip_p, "jitter_p": args.jitter_p, "blur_p": args.blur_p}
    if not all(0 <= p <= 1 for p in chances.values()):  # 2 (or 50 meant as percent) would silently mean "always"
        raise InvalidInputError(f"{', '.join(chances)} are probabilities in [0, 1], got {chances}")
    for name in ("crop_scale", "crop_ratio"):  # random-resized-crop ranges: (low, high)
        low_high = getattr(args, name)
        if len(low_high) != 2 or min(low_high) <= 0:
            raise InvalidInputError(f"{name} must be two positive numbers (low, high), got {low_high}")
    fields = {f.name for f in dataclasses.fields(GroupMaskedViTConfig)} | {"num_labels"}
    unknown = sorted(set(args.model_config) - fields)
    if unknown:  # the config would keep them as unused attributes: a misspelt setting would silently do nothing
        raise InvalidInputError(f"model_config has unknown fields {unknown}; valid names are the GroupMaskedViTConfig "
                                f"fields: {sorted(fields)}")
    check_hub_model_id(args.hub_model_id)
    inputs = [name for name in ("image_size", "num_channels") if name in args.model_config]
    if inputs:  # the image processor is built from the flags: the model must take its input from them too
        raise InvalidInputError(f"model_config sets {inputs[0]}: use --{inputs[0]} instead (it sets the model's input "
                                "and the image processor's alike)")


def check_hub_model_id(repo_id: str | None) -> None:
    """--hub_model_id is the repo the card's examples load from, and `train.publish` pushes to: a Hub repo id
    `user/name`. Anything else ended on the card as given, or (a path) silently became a placeholder."""
    if repo_id is None:
        return
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise InvalidInputError(f"--hub_model_id must be a Hub repo id 'user/name' (letters, digits, '-', '_' and "
                                f"'.', not starting or ending with '-' or '.'), got {repo_id!r}")


def checked_init_config(args: TrainArgs, resume: Path | None):
    """The config the run's model is built from, loaded before the data so that a wrong --init (or checkpoint) is
    refused at once: --init's (`init_config`); None from random; for a run resumed from a checkpoint that recorded its
    model, that model's (`resumed_config`): its config and weights come from there, and --init is only where they
    first came from (it may be gone by then; where it is at hand, its config is read too, and a damaged one named)."""
    if resume is not None and (resume / "config.json").is_file():
        return resumed_config(args, resume)
    if args.init == "random":
        return None
    if not (Path(args.init) / "config.json").is_file():
        raise MissingInputError(f"--init {args.init}: no config.json there (expected a save_pretrained folder)")
    return init_config(args)


def check_schedule(args: TrainArgs) -> None:
    """Warn when warm-up takes the whole run: the learning rate then never reaches --lr nor decays (a recipe's
    warm-up with fewer --epochs than the recipe's)."""
    if args.warmup_epochs >= args.epochs:
        logger.warning(f"warmup_epochs {args.warmup_epochs} >= epochs {args.epochs}: the learning rate climbs for the "
                       f"whole run, to {args.epochs / args.warmup_epochs:.0%} of --lr, and never "
                       "decays; give fewer --warmup_epochs")


def check_ignore_index(config, task: str) -> None:
    """A segmenter's `semantic_loss_ignore_index` marks the pixels no class is scored on (padding; see
    modeling_gmvit.segmentation_targets): one that is also a class index would leave that class out of the loss and
    the metrics (0 or 1 for a one-map model, whose targets are 0 / 1)."""
    if task != "segmentation":
        return
    classes = max(config.num_labels, 2)
    ignore = config.semantic_loss_ignore_index
    if isinstance(ignore, bool) or not isinstance(ignore, int) or 0 <= ignore < classes:
        raise InvalidInputError(f"semantic_loss_ignore_index {ignore!r} is a class index of this "
                                f"{config.num_labels}-label segmenter (0..{classes - 1}): that class would be neither "
                                f"learnt nor scored; use an integer outside it, e.g. {PAD_LABEL} (the default) or -100")


def check_every_block_trains(config, task: str, accelerator) -> None:
    """Blocks after the deepest one a head reads get no gradient: DDP stops at the second step, so several processes
    are refused here with the fix; one process is warned (the blocks cost compute and learn nothing)."""
    if task == "pretraining":
        field, deepest = "reconstruction_layers", max(config.reconstruction_layers)
    elif task == "segmentation" and config.decoder_type == "progressive":
        field, deepest = "segmentation_layers", max(config.segmentation_layers)
    else:
        return
    if deepest >= config.num_hidden_layers:
        return
    message = (f"{field} {list(getattr(config, field))} leave blocks {deepest + 1}-{config.num_hidden_layers} of "
               f"{config.num_hidden_layers} without a gradient; use num_hidden_layers {deepest} or read the last block")
    if accelerator.num_processes > 1:
        raise InvalidInputError(message)
    logger.warning(message)


def warn_unlearnable_labels(train_set: data.CXRDataset, names: list[str], subset: bool = False) -> None:
    """Warn, naming them, about the labels no training image has (a few patients, or a small --dataset_options
    train_fraction, can leave a class out of the training split): the model cannot learn to predict them. `subset`:
    the run keeps a train_fraction of the patients, which another subset_seed draws anew."""
    labels = np.asarray(train_set.ds.select_columns(["labels"])["labels"], dtype=np.float32)[train_set.rows]
    counts = (labels > 0).sum(axis=0).astype(int).tolist()  # soft positives (uncertain=0.7) teach the label too
    absent = [name for name, count in zip(names, counts) if count == 0]
    if absent:
        logger.warning(f"The training data ({len(train_set)} labelled images) has no positive image of {absent} "
                       f"(positives per label: {dict(zip(names, counts))}): the model cannot learn to predict "
                       f"{'them' if len(absent) > 1 else 'it'}; use more training patients"
                       + (", or another subset_seed" if subset else ""))


def check_best_metric_name(best_name: str, task: str, names: list[str]) -> None:
    """Refuse, before training, a metric_for_best that evaluation never computes (not at the first evaluation)."""
    known = metric_names(task, names)
    if best_name not in known:
        raise InvalidInputError(f"--metric_for_best {best_name!r} is not a {task} metric; choose one of {known}")


def check_ranking_metric(best_name: str, eval_set: data.CXRDataset, names: list[str]) -> None:
    """AUROC / AUPRC and the ROC's operating points need positives and negatives of a class in the evaluation rows, a
    class's sensitivity, PPV and F1 its positives, its specificity its negatives: refuse before training, not at the
    first evaluation, when the metric that picks the best model cannot be computed there."""
    metric, _, name = best_name.partition("/")
    ranking = metric.startswith(("auroc", "auprc", "sensitivity_at_", "specificity_at_"))
    if not ranking and not (name and metric in ("sensitivity", "specificity", "ppv", "f1")):
        return
    labels = np.asarray(eval_set.ds.select_columns(["labels"])["labels"], dtype=np.float32)[eval_set.rows]
    positives, negatives = (labels == 1).any(axis=0), (labels == 0).any(axis=0)
    if ranking:
        ranked = positives & negatives
        if not (ranked.any() if best_name.endswith("_macro") else ranked[names.index(name)]):
            raise InvalidInputError(f"--metric_for_best {best_name} cannot be computed on the evaluation split: no "
                                    f"class has both positive and negative images there (labels {names}); pass an "
                                    "evaluation split with both, or --metric_for_best accuracy")
        return
    needed, have = ("negative", negatives) if metric == "specificity" else ("positive", positives)
    if not have[names.index(name)]:
        raise InvalidInputError(f"--metric_for_best {best_name} cannot be computed on the evaluation split: it has no "
                                f"{needed} image of {name}; pass an evaluation split with some, or --metric_for_best "
                                "accuracy")
