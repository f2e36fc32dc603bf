"""Wiring of a training run: arguments -> accelerator, data, model, optimiser -> epochs -> best model -> export.

The loop itself is in engine.py; this file only sets things up, decides when to evaluate and save, and exports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no run lock
    fcntl = None

import datasets
import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from huggingface_hub.utils import HFValidationError, validate_repo_id

from hf_datasets.errors import InvalidInputError, MissingInputError
from hf_datasets.registry import FOLDER_LAYOUTS
from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTImageProcessor
from modeling_cxrgm.image_processing_gmvit import PAD_LABEL

from . import checkpoint, data, engine
from .augment import AugmentSpec
from .config import TrainArgs, load_yaml, save_args
from .export import export, save_model_atomically, write_metrics
from .metrics import compute_metrics, metric_names
from .optim import EMA, param_groups
from .starting_point import (MODEL_CLASSES, build_model, init_config, init_folder, model_inputs_normalisation,
                             run_processor)
from .visualize import reconstruction_grid, save_grid

logger = logging.getLogger(__name__)

# metric that picks the best checkpoint, and whether higher is better
BEST_METRIC = {"pretraining": ("loss", False), "classification": ("auroc_macro", True), "segmentation": ("dice", True)}
# builder options that decide what the labels are: the model card's label policy
LABEL_OPTIONS = ("uncertain", "blank", "readers", "labeler", "tasks", "labels", "classes", "label_column", "label_map",
                 "label_names")
# the uncertain / blank switches: stated on the card even when left at the builder's default
POLICY_OPTIONS = ("uncertain", "blank")
HIGHER_IS_BETTER = ("auroc", "auprc", "accuracy", "f1", "dice", "iou", "sensitivity", "specificity", "ppv")
# What a resumed run may change: where things are, how the run is operated, and its length (`epochs`: a run can be
# extended; its schedules then span the new length), not what each step computes (`init`: the weights come from the
# checkpoint, and the image processor from the checkpoint too, see `run_processor`)
RESUME_MAY_CHANGE = frozenset({
    "output_dir", "data_dir", "prepared_dir", "init", "num_workers", "epochs", "max_steps", "torch_compile",
    "torch_compile_mode", "save_every_steps", "save_total_limit", "resume_from_checkpoint", "eval_every_epochs",
    "log_every_steps", "report_to", "card", "hub_model_id",
})


@dataclass
class Context:
    """What the engine needs besides model, data and optimiser."""

    task: str
    mean: list[float]
    std: list[float]
    model_config: GroupMaskedViTConfig
    single_label: bool = True
    augment: AugmentSpec | None = None
    lr: float = 0.0
    batches_per_epoch: int = 0
    steps_per_epoch: int = 0
    warmup_steps: int = 0
    processor: GroupMaskedViTImageProcessor | None = None  # the run's, saved into each checkpoint


def plain_model(accelerator, model) -> torch.nn.Module:
    """The model without the wrappers `prepare` adds, including the compiled module of a launcher's dynamo backend
    (`accelerate launch --dynamo_backend`), whose parameter names would start with `_orig_mod.`."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


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
    """--init's config (`init_config`), loaded before the data so that a wrong --init is refused at once; None from
    random, and for a run resumed from a checkpoint that recorded its model: its config and weights come from there,
    and --init is only where they first came from (it may be gone by then)."""
    if args.init == "random" or (resume is not None and (resume / "config.json").is_file()):
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


LABEL_MODES = {True: "single-label: one class per image (softmax; --label_mode auto chooses it when every labelled "
                     "training image has exactly one positive class and no evaluation image has several)",
               False: "multi-label: any number of positive labels per image (a sigmoid per label)"}


def load_data(args: TrainArgs, processor):
    """Training and evaluation `CXRDataset`s, label names and label mode. Errors early on empty or unlabelled data."""
    splits = data.load_splits(args.dataset, args.data_dir, args.prepared_dir, args.dataset_options)
    parts = [data.split(splits, name) for name in args.train_splits]
    unused = {name: len(ds) for name, ds in splits.items()
              if name not in args.train_splits and name != args.eval_split and len(ds)}
    if args.task == "pretraining" and unused:  # e.g. the seeded validation and test patients of a DICOM archive
        PartialState().print(f"pretraining on {args.train_splits} only: the set's other splits {unused} (images per "
                             "split) are not used; --train_splits names the splits to pretrain on")
    names = data.label_names(parts[0]) if args.task == "classification" else []  # segmentation: the model's
    if args.task == "classification" and not names:
        raise InvalidInputError(
            f"The data set{f' {args.dataset!r}' if args.dataset else ''} has no labels (no label names), so there is "
            "nothing to classify; cxr_pool keeps images only, for pretraining: to pool labelled folders, list their "
            "images in a manifest (columns image, label, patient_id, source), one copy of each and one patient_id "
            "per patient across the folders (cxr_pool's rows name the distinct images)")
    train = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    evaluation = data.split(splits, args.eval_split) if args.eval_split else None
    mode = data.MULTI
    if args.task == "classification":  # auto: not exclusive classes when an evaluation row has several positives
        mode = data.resolve_label_mode(train, args.label_mode)
        if args.label_mode == "auto" and mode == data.SINGLE and evaluation is not None \
                and data.label_names(evaluation) == names and data.several_positives(evaluation):
            mode = data.MULTI  # (other label names: refused below, naming them)

    def wrap(ds, role):
        if mode == data.SINGLE and role == "evaluation":  # scored on its one positive class, as train.evaluate does
            ds, _ = data.align_labels(ds, names, single_label=True)
        rows = data.task_rows(ds, args.task, f"The {role} data")
        width = len(ds.select_columns(["labels"])[0]["labels"]) if args.task == "classification" else None
        if width is not None and width != len(names):  # (the labels column alone: no image is decoded here)
            raise InvalidInputError(f"The {role} data has {width} labels but the label names are {names}")
        return data.CXRDataset(ds, processor, args.task, mode, rows)

    train_set = wrap(train, "training")
    if args.task == "classification":
        warn_unlearnable_labels(train_set, names, subset="train_fraction" in (args.dataset_options or {}))
    if evaluation is not None:
        eval_set = wrap(evaluation, "evaluation")
    else:
        eval_set = train_set if args.task == "pretraining" else None
    return train_set, eval_set, names, mode


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
    """AUROC / AUPRC need positives and negatives of a class in the evaluation rows, a class's sensitivity, PPV and
    F1 its positives, its specificity its negatives: refuse before training, not at the first evaluation, when the
    metric that picks the best model cannot be computed there."""
    metric, _, name = best_name.partition("/")
    if not metric.startswith(("auroc", "auprc")) and not (name and metric in ("sensitivity", "specificity", "ppv",
                                                                                "f1")):
        return
    labels = np.asarray(eval_set.ds.select_columns(["labels"])["labels"], dtype=np.float32)[eval_set.rows]
    positives, negatives = (labels == 1).any(axis=0), (labels == 0).any(axis=0)
    if metric.startswith(("auroc", "auprc")):
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


def learning_rate(args: TrainArgs, num_processes: int) -> float:
    """`args.lr`, else blr scaled by the effective batch: blr * batch * accumulation * processes / divisor."""
    if args.lr is not None:
        return args.lr
    return args.blr * args.batch_size * args.grad_accum_steps * num_processes / args.lr_batch_divisor


def _tracker_config(args: TrainArgs) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in dataclasses.asdict(args).items()}


def _is_better(name: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    higher = any(name.startswith(prefix) for prefix in HIGHER_IS_BETTER)
    return value > best if higher else value < best


# pretraining without --eval_split evaluates (reconstruction loss that picks the best model, reconstruction grids) on
# this many training images at most, spread evenly over the training set: not on all of it, which at scale costs as
# much as an epoch of training each time
PRETRAIN_EVAL_IMAGES = 256


def pretraining_sample(train_set: data.CXRDataset, size: int | None = None) -> data.CXRDataset:
    """A fixed sample of `size` (PRETRAIN_EVAL_IMAGES) training images (all of them when there are fewer), evenly
    spaced over the set, so every evaluation sees the same images (and, seeded by their batch, the same corruption)."""
    size = PRETRAIN_EVAL_IMAGES if size is None else size
    if len(train_set.rows) <= size:
        return train_set
    picked = np.linspace(0, len(train_set.rows) - 1, size).round().astype(int)
    return data.CXRDataset(train_set.ds, train_set.processor, train_set.task, train_set.label_mode,
                           [train_set.rows[i] for i in picked], uint8=train_set.uint8)


RUN_LOCK = ".run.lock"


@contextlib.contextmanager
def output_dir_lock(output_dir: Path, main: bool):
    """Hold `<output_dir>/.run.lock` (on the main process) while the run trains: a second run started or resumed there
    meanwhile (e.g. beside the worker that a signal to a one-process launcher alone leaves training) is refused, as
    both would write the same checkpoints and export. The lock goes with the process, however it ends."""
    if not main or fcntl is None:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(output_dir / RUN_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise InvalidInputError(f"{output_dir} is in use by another run that is still training (process {holder}): "
                                    "let it end or stop it (to stop a one-process `accelerate launch`, signal its "
                                    "python worker or press Ctrl-C) before starting or resuming a run there") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def run_training(args: TrainArgs) -> dict:
    """Train, evaluate every `eval_every_epochs`, keep the best model, export it; returns the exported metrics."""
    if args.mixed_precision is None:  # the launcher's flag or config file, as an Accelerator() without it reads them
        args = dataclasses.replace(args, mixed_precision=os.environ.get("ACCELERATE_MIXED_PRECISION", "no"))
    # a resumed run whose checkpoint recorded its model needs nothing from --init: a Hub repo id that is neither cached
    # here nor reachable (offline, another machine) then only names where the weights first came from
    folder, init_repo = init_folder(args.init, required=not args.resume_from_checkpoint)
    given = args  # args.yaml and resuming keep the repo id as given, not this machine's HF cache folder of it
    args = dataclasses.replace(args, init=folder)
    check_args(args)
    check_schedule(args)
    prepared = prepared_settings(args.prepared_dir)  # for the card: read (and a damaged one named) before training
    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.grad_accum_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
    )
    with output_dir_lock(output_dir, accelerator.is_main_process):
        return _train(args, given, accelerator, output_dir, folder, init_repo, prepared)


def _train(args: TrainArgs, given: TrainArgs, accelerator: Accelerator, output_dir: Path, folder, init_repo,
           prepared) -> dict:
    """run_training's run, once its output_dir is held."""
    set_seed(args.seed)
    resume = checkpoint.choose(accelerator, args.resume_from_checkpoint, output_dir)
    if resume is not None:
        check_resumable(given, output_dir, resume)
        checkpoint.check_process_count(resume, accelerator.num_processes)
    else:
        check_no_earlier_run(output_dir)
        if args.resume_from_checkpoint:  # "latest" before the first save (a preempted job relaunched with it)
            accelerator.print(f"No checkpoint in {output_dir / 'checkpoints'} yet: starting from step 0")
    if folder == init_repo and not (resume is not None and (resume / "config.json").is_file()):
        init_folder(given.init)  # not at hand, and no checkpoint to resume the model from: raises, naming it
    init = checked_init_config(args, resume)
    if accelerator.is_main_process:
        save_args(given, output_dir)
    processor = run_processor(args, resume)
    train_set, eval_set, names, mode = load_data(args, processor)
    single_label = mode == data.SINGLE
    best_name = args.metric_for_best or BEST_METRIC[args.task][0]
    if args.task == "pretraining" and eval_set is train_set and not args.metric_for_best:
        best_name = "loss"
    if args.task == "pretraining" and eval_set is train_set:  # no --eval_split: a fixed sample of the training set
        eval_set = pretraining_sample(train_set)
    if args.task == "classification" and eval_set is not None:
        check_ranking_metric(best_name, eval_set, names)
    model = build_model(args, names, single_label, resume, init)
    # what each checkpoint's config.json names (save_pretrained only sets it when the first best model is saved)
    model.config.architectures = [type(model).__name__]
    if args.task == "segmentation":  # Dice / IoU per structure, named as the model names them ("dice/lungs")
        names = engine.structure_names(model.config)
    if eval_set is not None:
        check_best_metric_name(best_name, args.task, names)
    if model.config.num_channels != args.num_channels:
        raise InvalidInputError(f"Model has {model.config.num_channels} channels, --num_channels is "
                                f"{args.num_channels}")
    check_ignore_index(model.config, args.task)
    check_every_block_trains(model.config, args.task, accelerator)
    groups = param_groups(model, model.config.num_hidden_layers, args.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=0.0, fused=accelerator.device.type == "cuda" or None)
    train_loader = data.make_loader(train_set, args.batch_size, args.seed, True, args.num_workers)
    eval_loader = data.make_loader(eval_set, args.batch_size, args.seed, False, args.num_workers) if eval_set else None
    if args.torch_compile or args.torch_compile_mode:  # in place: checkpoints keep plain parameter names
        model.compile(dynamic=False, mode=args.torch_compile_mode)  # a graph per batch shape (the last may be smaller)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    eval_loader = accelerator.prepare(eval_loader) if eval_loader is not None else None

    state = checkpoint.TrainState()
    ema = EMA(plain_model(accelerator, model), args.ema_decay) if args.ema_decay else None
    checkpoint.track(accelerator, state, ema)
    steps_per_epoch = math.ceil(len(train_loader) / args.grad_accum_steps)
    mean, std = model_inputs_normalisation(processor)
    ctx = Context(
        task=args.task, augment=AugmentSpec.from_args(args), mean=mean, std=std,
        model_config=plain_model(accelerator, model).config, single_label=single_label,
        lr=learning_rate(args, accelerator.num_processes), batches_per_epoch=len(train_loader),
        steps_per_epoch=steps_per_epoch, warmup_steps=round(args.warmup_epochs * steps_per_epoch),
        processor=processor,
    )
    if resume is not None:
        checkpoint.load(accelerator, resume)
        accelerator.print(f"Resumed from {resume} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    if args.report_to != "none":
        # TensorBoard hides what a stopped run logged after its checkpoint (steps after state.step), which this run
        # logs again: otherwise its curves went back and repeated those steps
        accelerator.init_trackers("cxrgm", config=_tracker_config(args),
                                  init_kwargs={"tensorboard": {"purge_step": state.step + 1}})
    accelerator.print(
        f"{args.task}: {train_set.counted('training images')}, "
        f"{eval_set.counted('evaluation images') if eval_set else '0 evaluation images'}, "
        f"{accelerator.num_processes} process(es), lr {ctx.lr:.3g}, {steps_per_epoch} steps/epoch x {args.epochs} epochs"
        + (f"; {LABEL_MODES[single_label]}" if args.task == "classification" else "")
    )

    while state.epoch < args.epochs:
        train_loader.set_epoch(state.epoch)  # reaches the sampler under DDP, where a skipping loader's does not
        loader = train_loader
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(train_loader, state.batch_in_epoch)  # shares the sampler
            loader.set_epoch(state.epoch)
        stats = engine.train_one_epoch(model, loader, optimizer, accelerator, state, ctx, args, ema)
        stopping = bool(args.max_steps and state.step >= args.max_steps)
        if state.batch_in_epoch >= len(train_loader):
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        last = stopping or state.epoch >= args.epochs
        due = state.batch_in_epoch == 0 and (state.epoch % args.eval_every_epochs == 0 or last) or stopping
        if due and state.evaluated_step != state.step:  # (a run resumed where its evaluation was done skips it)
            _evaluate_and_keep_best(model, eval_loader, accelerator, ctx, args, state, stats, best_name, names,
                                    processor, ema)
        # an epoch's end is saved when it is evaluated (as the run's end is) or is a --save_every_steps step, which
        # train_one_epoch left to this point: not every epoch, which with a few labelled images is one step long
        if due or (args.save_every_steps and state.step % args.save_every_steps == 0):
            checkpoint.save(accelerator, output_dir, state.step, args.save_total_limit, processor, ctx.model_config)
        if stopping:
            break

    metrics = json.loads((output_dir / "best" / "metrics.json").read_text())
    if accelerator.is_main_process:
        epochs_trained = state.epoch + state.batch_in_epoch / len(train_loader)  # < --epochs after --max_steps
        # evaluations the best model was picked from, as counted; resumed from a checkpoint that kept no count: every
        # eval_every_epochs epochs and at the end of the run, as the run's final arguments schedule them
        evaluations = state.evaluations if state.evaluations is not None else \
            state.epoch // args.eval_every_epochs + bool(state.epoch % args.eval_every_epochs or state.batch_in_epoch)
        run = model_card_run(args, accelerator, processor, train_set, eval_set, state.elapsed(), epochs_trained,
                             selected_by=best_name if eval_loader is not None else None, evaluations=evaluations,
                             init_repo=init_repo, prepared=prepared)
        model_dir = export(output_dir / "best", output_dir, metrics, run, card=args.card)
        chosen = metrics.get(best_name) if eval_loader is not None else None
        where = f"split {args.eval_split!r}" if args.eval_split else "a sample of the training images"
        picked = f", {best_name} {chosen:.4f} on {where}" if chosen is not None else ""
        print(f"best model (step {int(metrics['step'])}{picked}) -> {model_dir}")
    accelerator.wait_for_everyone()
    for tracker in accelerator.trackers:  # the process group stays: see `hf_datasets.errors.run_script`
        tracker.finish()
    return metrics


def _evaluate_and_keep_best(model, eval_loader, accelerator, ctx, args, state, stats, best_name, names, processor,
                            ema):
    """Evaluate (with EMA weights when enabled); save the model to `<output_dir>/best` when the metric improves."""
    output_dir = Path(args.output_dir)
    unwrapped = plain_model(accelerator, model)
    with (ema.swapped(unwrapped) if ema is not None else contextlib.nullcontext()):
        if eval_loader is None:
            metrics = {"train_loss": stats["loss"]}
            value, improved = stats["loss"], True
        else:
            results = engine.evaluate(model, eval_loader, accelerator, ctx, seed=args.seed)
            metrics = compute_metrics(args.task, results, names, ctx.single_label)
            value = metrics.get(best_name)
            if value is None:  # undefined on these predictions (the PPV of a class predicted for no image)
                improved = state.best_step is None  # no better than any defined value; the first model is kept
                accelerator.print(f"step {state.step}: {best_name} is undefined on these predictions: "
                                  f"{'kept as the best model until one has it' if improved else 'not an improvement'}")
            else:
                improved = _is_better(best_name, value, state.best_metric)
            if "example" in results and accelerator.is_main_process:
                example = results["example"]
                grid = reconstruction_grid(example["clean"], example["corrupted"], example["reconstruction"],
                                           example["mask"], ctx.mean, ctx.std)
                save_grid(grid, output_dir / "grids" / f"step_{state.step:08d}.png")
                for tracker in accelerator.trackers:
                    if hasattr(tracker, "log_images"):
                        tracker.log_images({"reconstruction": grid}, step=state.step, dataformats="HW")
        metrics = {**metrics, **{f"train_{k}": v for k, v in stats.items()}, "epoch": state.epoch, "step": state.step}
        accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=state.step)
        accelerator.print(f"step {state.step}: " + ", ".join(
            f"{k} {v:.4f}" for k, v in metrics.items() if "/" not in k and k not in ("epoch", "step")))
        state.evaluated_step = state.step
        state.evaluations = None if state.evaluations is None else state.evaluations + 1
        if improved:
            state.best_metric, state.best_step = value, state.step
            weights = accelerator.get_state_dict(unwrapped)  # on every process: under FSDP this gathers the shards
            if accelerator.is_main_process:
                best = save_model_atomically(unwrapped, processor, output_dir / ".best-next", weights)
                write_metrics(metrics, best / "metrics.json")
                _replace(best, output_dir / "best")
        accelerator.wait_for_everyone()


def _replace(source: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".old-{target.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        shutil.rmtree(old)
    os.replace(source, target)


def model_card_run(args: TrainArgs, accelerator, processor, train_set, eval_set, duration_s: float,
                   epochs_trained: float, selected_by: str | None = None, evaluations: int = 1,
                   init_repo: str | None = None, prepared: dict | None = None) -> dict:
    """The `run` description the model card is written from (metrics are added by export). `selected_by`: the
    metric that picked the exported model among `evaluations` evaluations on the evaluation split; `init_repo`: the
    Hub repo id --init was fetched for (the card's base model); `prepared`: --prepared_dir's `prepared_settings`
    (read here when not given)."""
    if prepared is None:
        prepared = prepared_settings(args.prepared_dir)
    name = data_name(args, prepared)
    # the builder that read the data: a folder layout's data are named by their folder, so the card names it too
    builder = (prepared or {}).get("dataset") if args.prepared_dir else args.dataset
    hardware = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "CPU"
    # --init is a local folder: absolute, so that the card never takes a relative one (pre/model) for a Hub repo id
    init = "random" if args.init == "random" else str(Path(args.init).resolve())
    run = {
        "task": args.task,
        "train_datasets": [{"name": name, "num_images": len(train_set), "splits": list(args.train_splits),
                            "label_policy": label_policy(args, prepared),
                            **({"builder": builder} if builder else {})}],
        "eval_dataset": {"name": name, "split": args.eval_split or "+".join(args.train_splits),
                         "num_images": len(eval_set) if eval_set else 0},
        "preprocessing": {"size": processor.size, "num_channels": processor.num_channels,
                          "resize_mode": processor.resize_mode, "normalization": processor.normalization,
                          "bit_depth": processor.bit_depth, "equalize": processor.equalize,
                          "windowing": "DICOM: modality LUT, header VOI (window or VOI LUT), MONOCHROME1 inverted; "
                                       "PNG/JPEG: as stored"},
        "training": {"epochs": round(epochs_trained, 2), "batch_size": args.batch_size * args.grad_accum_steps
                     * accelerator.num_processes, "learning_rate": learning_rate(args, accelerator.num_processes),
                     "precision": args.mixed_precision, "hardware": f"{accelerator.num_processes} x {hardware}",
                     "duration_s": round(duration_s, 1), "seed": args.seed, "per_device_batch_size": args.batch_size,
                     "init": "random" if init == "random" else ("gmml" if _is_gmml(init) else init_repo or init)},
    }
    if builder == "cxr_pool":  # a pool is its folders: the card lists each (a public set's title and licence)
        # the folders of the training rows' paths (relative to the pool's data_dir: <folder>/<file>; duplicates and
        # excluded patients already left out), else the pool's `folders` option, else its folders with a labels.csv
        paths, rows = getattr(train_set, "sources", None), getattr(train_set, "rows", None)
        options = ((prepared or {}).get("options") if args.prepared_dir else args.dataset_options) or {}
        members = []
        if paths is not None and rows is not None:
            paths, counts = paths["path"], {}
            for i in rows:
                parts = Path(paths[i] or "").parts
                counts[parts[0] if len(parts) > 1 else None] = counts.get(parts[0] if len(parts) > 1 else None, 0) + 1
            members = [] if None in counts else list(counts.items())  # a path outside any folder: not a pool's
        if not members:
            folders = options.get("folders")
            if not folders and args.data_dir and Path(args.data_dir).is_dir():
                folders = sorted(path.parent.name for path in Path(args.data_dir).glob("*/labels.csv"))
            members = [(str(member), None) for member in folders or ()]
        if members:
            entry = run["train_datasets"][0]
            run["train_datasets"] = [{**entry, "name": member, "num_images": count, "builder": builder}
                                     for member, count in members]
    sources = train_set.source_counts() if isinstance(train_set, data.CXRDataset) else None
    if sources is not None:  # the data sets the model saw: train.evaluate's drift report takes them as in-domain
        run["train_sources"] = sources
    if selected_by and evaluations > 1:  # the card's results then come from the split that chose the model
        run["eval_dataset"]["selected_by"] = {"metric": selected_by, "evaluations": evaluations}
    if init != "random":
        run["base_model"] = init_repo or _declared_repo(init) or init
        if earlier := _init_datasets(init):
            run["earlier_datasets"] = earlier
    if args.hub_model_id:
        run["repo_id"] = args.hub_model_id
    return run


def prepared_settings(prepared_dir: str | None) -> dict | None:
    """What --prepared_dir's prepare_settings.json says the shards were prepared from: {"dataset": the builder's name
    or None, "options": its build options, or None where they cannot be told, "folder": the name of the data's folder,
    or None (an earlier version recorded none)}; None without --prepared_dir or such a file (shards saved otherwise).
    It only names the data and their label policy on the card: a damaged file (an earlier version wrote it in place,
    and a kill could cut it short) is warned about, naming it, and the card then names the data by their folder and
    the label policy "unknown". run_training reads it before training, since the
    card is written after it."""
    if not prepared_dir:
        return None
    path = Path(prepared_dir) / "prepare_settings.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
        dataset, options, folder = saved.get("dataset"), saved.get("options", {}), saved.get("folder")
        if not all(value is None or isinstance(value, str) for value in (dataset, folder)) or \
                not isinstance(options, dict):
            raise ValueError(f"its dataset {dataset!r}, folder {folder!r} or options {options!r} are not names and a "
                             "mapping")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        logger.warning(f"{path} cannot be read ({error}): the model card names the training data by their folder "
                       "and their label policy \"unknown\"; the shards themselves are used as they are")
        return {"dataset": None, "options": None, "folder": None}
    return {"dataset": dataset, "options": options, "folder": folder}


def data_name(args: TrainArgs, prepared: dict | None = None) -> str:
    """The training data's name on the card: a public set's builder name (for --prepared_dir, the one it was prepared
    from: `prepared`, its `prepared_settings`, read here when not given), whose source, licence and population the
    card then gives; a folder layout's folder (kermany_pediatric, not cxr_folder; for --prepared_dir the one it was
    prepared from, else, from an earlier version, which recorded none, the prepared folder)."""
    dataset, folder = args.dataset, args.data_dir
    if args.prepared_dir:
        prepared = prepared if prepared is not None else prepared_settings(args.prepared_dir)
        dataset, folder = (prepared or {}).get("dataset"), (prepared or {}).get("folder") or args.prepared_dir
    if dataset and dataset not in FOLDER_LAYOUTS:
        return dataset
    return Path(os.path.abspath(folder or "data")).name  # "." names the folder it is


def label_policy(args, prepared: dict | None = None) -> str:
    """The label options a run's data (`args`: TrainArgs or EvalArgs) was built with (for --prepared_dir: when it was
    prepared, `prepared`, its `prepared_settings`, read here when not given), e.g. "blank=zeros, uncertain=ones", "default", or "unknown" (a
    damaged prepare_settings.json). A set with uncertain / blank switches always states both, those left at their
    default included."""
    options, dataset = args.dataset_options, args.dataset
    if args.prepared_dir:
        prepared = prepared if prepared is not None else prepared_settings(args.prepared_dir)
    if args.prepared_dir and prepared is not None:
        options, dataset = prepared["options"], prepared["dataset"]
        if options is None:
            return "unknown"
    options = {**_policy_defaults(dataset), **options}
    chosen = sorted(set(options) & set(LABEL_OPTIONS))
    return ", ".join(f"{name}={_option_text(options[name])}" for name in chosen) or "default"


def _policy_defaults(dataset: str | None) -> dict:
    """The defaults of the named builder's uncertain / blank switches ({} for a set without them)."""
    import importlib
    import inspect

    from hf_datasets.registry import BUILDERS

    if dataset not in BUILDERS:
        return {}
    module, function = BUILDERS[dataset]
    builder = getattr(importlib.import_module(f"hf_datasets.builders.{module}"), function)
    return {name: parameter.default for name, parameter in inspect.signature(builder).parameters.items()
            if name in POLICY_OPTIONS}


def _option_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _declared_repo(path: str) -> str | None:
    """The Hub repo id a local --init export was made for (its run.json's `repo_id`, from that run's
    --hub_model_id), else None: the card's base model is then that repo, not a local folder's name."""
    run_file = Path(path) / "run.json"
    try:
        repo_id = json.loads(run_file.read_text()).get("repo_id") if run_file.is_file() else None
    except (OSError, ValueError, AttributeError):  # a damaged record names no repo
        return None
    return repo_id if isinstance(repo_id, str) and repo_id.count("/") == 1 else None


def _init_datasets(path: str) -> list[dict]:
    """The data sets a local --init export's weights were trained on, from its run.json: those its own --init had
    (`earlier_datasets`), then its `train_datasets`, each with the `stage` (that run's task) that used it; none for
    a folder without a readable record (a Hub download carries none: the card points at the base model's card)."""
    run_file = Path(path) / "run.json"
    try:
        record = json.loads(run_file.read_text()) if run_file.is_file() else {}
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    earlier = [d for d in record.get("earlier_datasets") or [] if isinstance(d, dict)]
    own = [{**d, "stage": record.get("task")} for d in record.get("train_datasets") or [] if isinstance(d, dict)]
    return earlier + own


def _is_gmml(path: str) -> bool:
    """Whether the --init folder holds a GMML pretraining model (False once it is gone: a resumed run may outlive it,
    and the card then names the folder)."""
    config = Path(path) / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    return any(a.endswith("ForPreTraining") for a in architectures)

