"""The training loop: `train_one_epoch` and `evaluate`, shared by pretraining, classification and segmentation.

One step (per micro-batch): a generator seeded by (seed, epoch, batch, rank) draws this batch's augmentation and GMML
corruption on the device, and the same seed re-seeds torch's global RNG (dropout, stochastic depth), so a resumed run
replays exactly what an uninterrupted one does. Batches come in as uint8 or unit-range float images (see data.py)
and are converted and normalised on the device.

No step waits for the device: losses stay on it and are read (reduced over processes, checked for NaN/inf, logged)
every `log_every_steps` optimiser steps, before every checkpoint and at the end of the epoch, so a non-finite loss
still stops the run naming its step before anything computed from it is saved.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from tqdm.auto import tqdm

from . import checkpoint, data
from modeling_cxrgm import gmml_corrupt
# the model's own rule: the image processor's padding label becomes the config's ignore index, in the model's loss
# (for any labels it is given) and in the metrics here alike
from modeling_cxrgm.modeling_gmvit import segmentation_targets

from .augment import augment, content_views, normalize
from .optim import apply_schedules, clip_per_parameter


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stops and the last saved checkpoint stays the good one."""


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + batch) * 64 + rank


def step_generator(seed: int, device) -> torch.Generator:
    """Seed torch's global RNG (the model's dropout and stochastic depth) and return a generator on `device` (the
    augmentation and the corruption), each from its own seed: with one seed the two streams are one, and each block's
    stochastic-depth draw equalled an augmentation draw."""
    torch.manual_seed(seed ^ 0x5DEECE66D)
    return torch.Generator(device=device).manual_seed(seed)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (as transferred from the loader) -> float32 in [0, 1]; float images pass through."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def forward(model, batch: dict, ctx, generator: torch.Generator | None, train: bool):
    """Run one batch for `ctx.task`. Returns (loss, model outputs, normalised inputs, mask fraction or None).

    The inputs (`model_inputs`) are made in float32 whatever the mixed precision: autocast applies to the model only.
    """
    device_type = batch["pixel_values"].device.type
    has_autocast = torch.amp.is_autocast_available(device_type)  # (the meta device has none)
    with torch.autocast(device_type, enabled=False) if has_autocast else contextlib.nullcontext():
        inputs = model_inputs(batch, ctx, generator, train)
    outputs = model(**inputs)
    mask = inputs.get("mask")
    return outputs.loss, outputs, inputs["pixel_values"], None if mask is None else mask.float().mean()


def model_inputs(batch: dict, ctx, generator: torch.Generator | None, train: bool) -> dict:
    """The model's keyword arguments for one batch of `ctx.task`.

    Pretraining: two augmented views per image (2B, C, S, S), cropped from the image without the padding that made it
    square (`batch["content"]`; evaluation: the whole image, resized to the square), corrupted on the device (replaced
    pixels come from another image, never from the other view of the same one): pixel_values, corrupted, mask.
    Classification / segmentation: one augmented view (training) or the plain image (evaluation), and the labels.
    """
    images, labels = to_unit_range(batch["pixel_values"]), batch.get("labels")
    if ctx.task == "pretraining":  # views of the image alone: the padding of a non-square image is not reconstructed
        content = batch.get("content")
        if train:  # both views in one call: each image of the doubled batch draws its own (~120 ops, not twice that)
            images = augment(images.repeat(2, 1, 1, 1), ctx.augment, generator,
                             content=None if content is None else content.repeat(2, 1),
                             compiled=ctx.compiled_augmentation)
        elif content is not None:
            images = content_views(images, content)
        pixel_values = normalize(images, ctx.mean, ctx.std)
        corrupted, mask = gmml_corrupt(pixel_values, ctx.model_config, generator, views=2 if train else 1,
                                       compiled=ctx.compiled_corruption)
        return {"pixel_values": pixel_values, "corrupted": corrupted, "mask": mask}
    if train and ctx.task == "segmentation":
        images, labels = augment(images, ctx.augment, generator, masks=labels, compiled=ctx.compiled_augmentation)
    elif train:
        images = augment(images, ctx.augment, generator, compiled=ctx.compiled_augmentation)
    # (segmentation masks: the model's loss leaves out their padding)
    return {"pixel_values": normalize(images, ctx.mean, ctx.std), "labels": labels}


def train_one_epoch(model, loader, optimizer, accelerator, state, ctx, args, ema=None) -> dict:
    """Train until the loader ends or `args.max_steps` is reached; saves checkpoints every `args.save_every_steps`
    (but at the epoch's or the run's last step, which the caller saves once it has evaluated it).

    `state` (checkpoint.TrainState) counts optimiser steps and micro-batches of this epoch and sums their losses;
    `loader` already skips the micro-batches done before a resume. Returns the epoch's mean loss (and mask fraction
    for pretraining) over all its micro-batches, those before a resume included.
    """
    model.train()
    total = ctx.steps_per_epoch * args.epochs
    images_per_batch = args.batch_size * accelerator.num_processes
    progress = tqdm(total=ctx.batches_per_epoch, initial=state.batch_in_epoch, desc=f"epoch {state.epoch}",
                    disable=not accelerator.is_local_main_process, unit="batch", dynamic_ncols=True)
    if state.batch_in_epoch == 0:
        state.epoch_sums = {"loss": 0.0, "mask_fraction": 0.0, "count": 0}
    sums = state.epoch_sums
    pending = []  # (where, loss, mask fraction) of the micro-batches not yet read from the device
    started, first_batch = time.perf_counter(), state.batch_in_epoch
    for batch in loader:
        data.raise_unreadable(batch)
        if args.max_steps and state.step >= args.max_steps:  # also when resumed where max_steps stopped the run
            break
        seed = step_seed(args.seed, state.epoch, state.batch_in_epoch, accelerator.process_index)
        generator = step_generator(seed, accelerator.device)
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss, _, _, mask_fraction = forward(model, batch, ctx, generator, train=True)
            where = f"optimiser step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})"
            # copies: under CUDA graphs (--torch_compile_mode reduce-overhead) the next step overwrites model outputs
            pending.append((where, loss.detach().float().clone(), mask_fraction))
            scale = accumulation_scale(state.batch_in_epoch, ctx.batches_per_epoch, args.grad_accum_steps)
            accelerator.backward(loss if scale == 1 else loss * scale)
            if accelerator.sync_gradients:
                lr, wd = apply_schedules(optimizer, state.step, total=total, warmup=ctx.warmup_steps, lr=ctx.lr,
                                         min_lr=args.min_lr, weight_decay=args.weight_decay,
                                         weight_decay_end=args.weight_decay_end)
                if args.clip_grad and args.clip_mode == "global":
                    accelerator.clip_grad_norm_(model.parameters(), args.clip_grad)
                elif args.clip_grad:
                    accelerator.unscale_gradients()
                    clip_per_parameter(model.parameters(), args.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        state.batch_in_epoch += 1
        progress.update(1)
        if not accelerator.sync_gradients:
            continue
        state.step += 1
        if ema is not None:
            ema.update(accelerator.unwrap_model(model, keep_torch_compile=False))
        saving = bool(args.save_every_steps) and state.step % args.save_every_steps == 0
        if saving or state.step % args.log_every_steps == 0:
            recent = read_losses(pending, sums, accelerator, args.output_dir)
            elapsed = time.perf_counter() - started
            img_per_s = (state.batch_in_epoch - first_batch) * images_per_batch / elapsed
            progress.set_postfix(loss=f"{recent['loss']:.4f}", img_s=f"{img_per_s:.1f}")
            if state.step % args.log_every_steps == 0:
                logs = {"train/loss": recent["loss"], "train/lr": lr, "train/weight_decay": wd,
                        "train/img_per_s": img_per_s, "train/epoch": state.epoch}
                if "mask_fraction" in recent:
                    logs["train/mask_fraction"] = recent["mask_fraction"]
                accelerator.log(logs, step=state.step)
        # a step that ends the epoch or the run is saved by run_training after its evaluation, so that the checkpoint
        # records that evaluation and a run resumed from it does not evaluate that step again
        ends = state.batch_in_epoch >= ctx.batches_per_epoch or bool(args.max_steps and state.step >= args.max_steps)
        if saving and not ends:
            checkpoint.save(accelerator, args.output_dir, state.step, args.save_total_limit, ctx.processor,
                            ctx.model_config)
    read_losses(pending, sums, accelerator, args.output_dir)
    progress.close()
    count = sums["count"] or math.nan  # no batch trained (resumed at the end of an epoch or at max_steps): NaN
    out = {"loss": sums["loss"] / count}
    if ctx.task == "pretraining":
        out["mask_fraction"] = sums["mask_fraction"] / count
    return out


def accumulation_scale(batch: int, batches_per_epoch: int, accumulation: int) -> float:
    """Factor for micro-batch `batch`'s loss: Accelerate divides every loss by `accumulation`, but an epoch's last
    window may hold fewer micro-batches; scaled up, its gradient is their mean, as in every other step."""
    window = min(accumulation, batches_per_epoch - batch // accumulation * accumulation)
    return accumulation / window


def read_losses(pending: list, sums: dict, accelerator, output_dir) -> dict:
    """Read the pending micro-batch losses (one device sync), add them to `sums` and empty `pending`.

    Raises NonFiniteLossError naming the first micro-batch whose loss (mean over processes) is NaN or infinite.
    Returns the mean loss and mask fraction of the micro-batches read (those since the last read: the logging
    interval, as transformers' Trainer logs it), not one micro-batch's noisy value.
    """
    if not pending:
        return {}
    losses = accelerator.reduce(torch.stack([entry[1] for entry in pending]), "mean").tolist()
    fractions = [entry[2] for entry in pending if entry[2] is not None]
    if fractions:
        fractions = accelerator.reduce(torch.stack(fractions).float(), "mean").tolist()
    for (where, _, _), value in zip(pending, losses):
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"Loss is {value} at {where}; stopping. The last good checkpoint is under {output_dir}/checkpoints."
            )
    pending.clear()
    sums["loss"] += sum(losses)
    sums["mask_fraction"] += sum(fractions)
    sums["count"] += len(losses)
    recent = {"loss": sum(losses) / len(losses)}
    if fractions:
        recent["mask_fraction"] = sum(fractions) / len(fractions)
    return recent


@torch.no_grad()
def evaluate(model, loader, accelerator, ctx, seed: int = 0) -> dict:
    """Run a (prepared) evaluation loader; every sample is counted exactly once across processes.

    Returns numpy arrays gathered on every process: `index` (N,) rows of the split, `loss`, and per task
    `probabilities` (N, K) + `labels` (N,) or (N, K) (classification), `intersection` / `predicted` / `target` (N, K)
    pixel counts (segmentation), `l1_error` / `l1_count` (N,) (pretraining: each image's summed L1 error on its
    corrupted pixels and how many values it sums), plus `example` (the first batch's clean, corrupted,
    reconstruction and mask tensors) for pretraining grids. `loss` is, for pretraining, the L1 error over the
    corrupted pixels of every image once; otherwise the mean over batches. Batches are corrupted with a seed of their
    number in the whole split, so any number of processes corrupts a batch of the same images alike; the images
    that complete a last batch the split does not fill (see `own_images`) take no part in its corruption.
    """
    model.eval()
    gathered: dict[str, list] = {}
    losses = []
    example = None
    for number, batch in enumerate(tqdm(loader, desc="eval", disable=not accelerator.is_local_main_process,
                                        leave=False)):
        data.raise_unreadable(batch)
        split_batch = number * accelerator.num_processes + accelerator.process_index  # the order prepare() deals them
        generator = step_generator(step_seed(seed, 0, split_batch, 0), accelerator.device)
        index, size = batch["index"], len(batch["index"])
        own = own_images(loader, accelerator.num_processes, split_batch, size) if ctx.task == "pretraining" else size
        if 0 < own < size:  # GMML corrupts images with others of their batch: as one process, without the padding
            batch = {key: value[:own] for key, value in batch.items()}
        with accelerator.autocast():
            loss, outputs, pixel_values, _ = forward(model, batch, ctx, generator, train=False)
        if loss is not None:
            losses.append(loss.detach().float().clone())  # kept past the next batch: a copy, as in training
        values = {"index": index}
        if ctx.task == "classification":
            logits = outputs.logits.float()
            values["probabilities"] = logits.softmax(-1) if ctx.single_label else logits.sigmoid()
            values["labels"] = batch["labels"]
        elif ctx.task == "segmentation":
            values.update(mask_counts(outputs.logits.float(), segmentation_targets(batch["labels"], ctx.model_config),
                                      ctx.model_config.semantic_loss_ignore_index, ctx.threshold))
        else:  # the padding's rows (zeros) keep every process's rows alike in number; gather_for_metrics drops them
            values.update({key: torch.cat([value, value.new_zeros(size - len(value))]) for key, value in
                           reconstruction_errors(outputs.reconstruction, pixel_values, outputs.mask).items()})
        if ctx.task == "pretraining" and example is None:
            example = {"clean": pixel_values, "corrupted": outputs.corrupted, "reconstruction": outputs.reconstruction,
                       "mask": outputs.mask}
            example = {key: value.detach().clone() for key, value in example.items()}
        for key, value in accelerator.gather_for_metrics(values).items():
            gathered.setdefault(key, []).append(value.cpu())
    out = {key: torch.cat(values).numpy() for key, values in gathered.items()}
    losses = accelerator.reduce(torch.stack(losses), "mean").tolist() if losses else []
    out["loss"] = sum(losses) / max(len(losses), 1)
    if ctx.task == "pretraining":  # not the batches' mean: padded duplicates left out, images weighted as in a batch
        out["loss"] = float(out["l1_error"].sum() / max(out["l1_count"].sum(), 1.0))
    if example is not None:
        out["example"] = {k: v.float().cpu() for k, v in example.items()}
    return out


def own_images(loader, num_processes: int, split_batch: int, size: int) -> int:
    """How many of the `size` images of batch `split_batch` (its number in the whole split) are the split's own.

    Under several processes Accelerate deals whole batches of the (unshuffled) evaluation split in turn and completes
    the last one the split does not fill with images from the split's start (even batches), so every process gets
    a full batch; `gather_for_metrics` drops those copies. One process gets that batch short instead. Returns `size`
    for a loader that is not a prepared one (no padding), 0 for a batch of copies only."""
    total_batch = getattr(loader, "total_batch_size", None)
    if total_batch is None:
        return size
    per_process = max(total_batch // num_processes, 1)
    return max(0, min(size, len(loader.dataset) - split_batch * per_process))


def reconstruction_errors(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict:
    """Per image (B,): the L1 error summed over corrupted pixels and channels, and the number of values summed
    (a batch's `masked_l1_loss` is the ratio of their totals)."""
    weight = mask[:, None].float()
    error = (reconstruction.float() - target.float()).abs() * weight
    return {"l1_error": error.flatten(1).sum(1), "l1_count": weight.flatten(1).sum(1) * reconstruction.shape[1]}


def structure_names(config) -> list[str]:
    """The names of the structures `mask_counts` counts (its K' columns): a one-channel model's label ("lungs"), or
    a multi-class model's classes 1 .. K - 1 (class 0 is background)."""
    names = [config.id2label[index] for index in range(config.num_labels)]
    return names if len(names) == 1 else names[1:]


def mask_counts(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, threshold: float = 0.5) -> dict:
    """Per image and foreground structure pixel counts (B, K'): intersection, predicted, target.

    Binary logits (B, 1, H, W) give one structure, the pixels of probability above `threshold`; multi-class
    (B, K, H, W) give K - 1 (class 0 is background). Pixels labelled `ignore_index` count in none, as the loss leaves
    them out.
    """
    if logits.shape[1] == 1:  # sigmoid(x) > t where x > logit(t): 0 at t = 0.5, -inf at 0, inf at 1
        predicted = (logits[:, 0] > torch.tensor(threshold, dtype=torch.float64).logit().item())[:, None]
        target = (labels == 1)[:, None]
    else:
        classes = torch.arange(1, logits.shape[1], device=logits.device)[None, :, None, None]
        predicted = logits.argmax(1)[:, None] == classes
        target = labels[:, None] == classes
    predicted = predicted & (labels != ignore_index)[:, None]
    return {
        "intersection": (predicted & target).flatten(2).sum(-1),
        "predicted": predicted.flatten(2).sum(-1),
        "target": target.flatten(2).sum(-1),
    }
