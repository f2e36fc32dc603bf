"""Wiring of a training run: arguments -> accelerator, data, model, optimiser -> epochs -> best model -> export.

The loop itself is in engine.py; this file only sets things up, decides when to evaluate and save, and exports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
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

from hf_datasets.errors import InvalidInputError
from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTImageProcessor

from . import checkpoint, data, engine
from .augment import AugmentSpec
from .checks import (check_args, check_best_metric_name, check_every_block_trains, check_ignore_index,
                     check_no_earlier_run, check_ranking_metric, check_resumable, check_schedule, checked_init_config,
                     warn_unlearnable_labels)
from .config import TrainArgs, save_args
from .export import export, save_model_atomically, write_metrics
from .metrics import compute_metrics, labels_without_auroc, labels_without_ppv
from .optim import EMA, param_groups, peak_learning_rate
from .run_card import model_card_run, prepared_settings
from .starting_point import build_model, init_folder, model_inputs_normalisation, run_processor
from .visualize import reconstruction_grid, save_grid


# metric that picks the best checkpoint, and whether higher is better
BEST_METRIC = {"pretraining": ("loss", False), "classification": ("auroc_macro", True), "segmentation": ("dice", True)}
HIGHER_IS_BETTER = ("auroc", "auprc", "accuracy", "f1", "dice", "iou", "sensitivity", "specificity", "ppv")


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
    threshold: float = 0.5  # a one-label segmenter's pixels above this probability are its mask (evaluate --threshold)
    # the GMML corruption and the augmentation through torch.compile (`gmml_corrupt`'s and `augment`'s compiled): with
    # CUDA graphs (--torch_compile_mode reduce-overhead) the eager masks' ~70 small kernels were a measured 2.8% of the
    # step, and the loop's step (augmentation included) 0.924 of the bare step's views/s
    compiled_corruption: bool = False
    compiled_augmentation: bool = False


def plain_model(accelerator, model) -> torch.nn.Module:
    """The model without the wrappers `prepare` adds, including the compiled module of a launcher's dynamo backend
    (`accelerate launch --dynamo_backend`), whose parameter names would start with `_orig_mod.`."""
    return accelerator.unwrap_model(model, keep_torch_compile=False)


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
            "nothing to classify; cxr_pool keeps images only, for pretraining, unless its classes option labels the "
            "pool: --dataset_options '{\"classes\": [\"covid\"], \"other_class\": \"non_covid\"}' pools labelled "
            "folders in one label scheme, split by patient")
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
        checkpoint.check_layout(resume, accelerator)
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
        lr=peak_learning_rate(args, accelerator.num_processes), batches_per_epoch=len(train_loader),
        steps_per_epoch=steps_per_epoch, warmup_steps=round(args.warmup_epochs * steps_per_epoch),
        processor=processor, compiled_corruption=args.torch_compile_mode == "reduce-overhead",
        compiled_augmentation=args.torch_compile_mode == "reduce-overhead",
    )
    if resume is not None:
        checkpoint.load(accelerator, resume)
        accelerator.print(f"Resumed from {resume} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
        check_best_model(output_dir, state, args, accelerator)
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


def check_best_model(output_dir: Path, state, args, accelerator) -> None:
    """On resume: `<output_dir>/best` is the best model so far where it holds the checkpoint's best step. Otherwise
    (another folder's checkpoint, or a checkpoint older than the run that wrote best/, whose weights are not this
    run's) the best model is picked anew from this run's next evaluations; a checkpoint with nothing left to train
    then has none to pick from, and is refused."""
    recorded = output_dir / "best" / "metrics.json"
    kept = json.loads(recorded.read_text()).get("step") if recorded.is_file() else None
    if state.best_step is None or kept == state.best_step:
        return
    finished = state.epoch >= args.epochs or bool(args.max_steps and state.step >= args.max_steps)
    if finished:
        raise InvalidInputError(f"{output_dir}: the checkpoint's run has nothing left to train (step {state.step}, "
                                f"epoch {state.epoch} of {args.epochs}) and {output_dir / 'best'} does not hold its "
                                f"best model (step {state.best_step}): give more --epochs, or use the checkpoint "
                                "itself (train.evaluate, train.predict and train.probe take one)")
    where = f"holds step {kept}" if kept is not None else "does not exist"
    accelerator.print(f"{output_dir / 'best'} {where}, not the best model of the run this checkpoint continues "
                      f"(step {state.best_step}): the best model is picked anew from this run's evaluations")
    state.best_metric = state.best_step = None


def _evaluate_and_keep_best(model, eval_loader, accelerator, ctx, args, state, stats, best_name, names, processor,
                            ema):
    """Evaluate (with EMA weights when enabled); save the model to `<output_dir>/best` when the metric improves."""
    output_dir = Path(args.output_dir)
    unwrapped = plain_model(accelerator, model)
    with (ema.swapped(unwrapped) if ema is not None else contextlib.nullcontext()):
        if eval_loader is None:
            metrics, scoring = {"train_loss": stats["loss"]}, {}
            value, improved = stats["loss"], True
        else:
            results = engine.evaluate(model, eval_loader, accelerator, ctx, seed=args.seed)
            metrics = compute_metrics(args.task, results, names, ctx.single_label, threshold=ctx.threshold)
            # how it was scored, as train.evaluate records it: the labels without an AUROC (left out of the macro
            # averages) or a PPV, and the decision threshold of a multi-label classifier or one-label segmenter
            scoring = {"labels_without_auroc": labels_without_auroc(args.task, metrics, results, names,
                                                                    ctx.single_label) or None,
                       "labels_without_ppv": labels_without_ppv(args.task, metrics, results, names,
                                                                ctx.single_label) or None,
                       "threshold": ctx.threshold if (args.task, ctx.single_label) == ("classification", False)
                       or (args.task, ctx.model_config.num_labels) == ("segmentation", 1) else None}
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
                write_metrics(metrics, best / "metrics.json", text={k: v for k, v in scoring.items() if v is not None})
                _replace(best, output_dir / "best")
        accelerator.wait_for_everyone()


def _replace(source: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".old-{target.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        shutil.rmtree(old)
    os.replace(source, target)


