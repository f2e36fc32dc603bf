"""GMML pretraining (or, with `--task classification`, fine-tuning) end to end from prepared shards, beside the
step-only rate of the same training step.

Every row runs `train.engine.train_one_epoch`, the loop of `train/pretrain.py` (and of the fine-tuning scripts), with
the model (its recipe's `model_config` over `--preset`), optimiser (fused AdamW on a GPU), Accelerator and data set it
uses:

- `cxrgm_pretrain_step_only`: one batch, already on the device, fed again and again (no input pipeline);
- `cxrgm_pretrain_end_to_end`: prepared shards through the training DataLoader (workers, pinned memory, uint8
  copies to the device, conversion, augmentation and corruption on the device);
  (`cxrgm_finetune_*` with `--task classification`: the labelled rows, one augmented view, cross-entropy, the
  fine-tuning recipe's layer-wise lr decay 0.75; at small batches its step-only row against
  `throughput.py --only cls` at the same batch shows what the loop adds on the host);
- `cxrgm_loader_only`: the same DataLoader without a model: what the input pipeline can deliver.

The final line gives end_to_end / step_only (target >= 0.9: no input stall). Without `--prepared-dir` the embedded
sample set is prepared at `--prepare-size` into a temporary folder and repeated to fill the timed steps.
The workers keep num_workers x 4 batches in flight: make `--warmup` at least that and `--steps` larger, or the timed
steps are served from batches loaded before the clock started, which hides a slow pipeline.

    python benchmarks/pretrain_e2e.py --preset vit_tiny_patch16_224 --image-size 112 --batch-size 16 --steps 5
    python benchmarks/pretrain_e2e.py --preset vit_small_patch16_224 --batch-size 256 --warmup 60 --steps 120 \\
        --mixed-precision bf16 --num-workers 14                                            # one GPU
    python benchmarks/pretrain_e2e.py --task classification --batch-size 64 --warmup 40 --steps 60 --num-workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import DataLoaderConfiguration  # noqa: E402

from benchmarks.throughput import profile_steps  # noqa: E402
from modeling_cxrgm import GroupMaskedViTImageProcessor  # noqa: E402
from train import data, engine, run  # noqa: E402
from train.starting_point import build_model  # noqa: E402
from train.augment import AugmentSpec  # noqa: E402
from train.checkpoint import TrainState  # noqa: E402
from train.config import TrainArgs, recipe_model_config  # noqa: E402
from train.optim import param_groups, peak_learning_rate  # noqa: E402


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class TimedLoader:
    """Yields a loader's batches, raising the error of one that could not be read; starts the clock (after waiting
    for the device) at batch number `warmup`."""

    def __init__(self, loader, warmup: int, device):
        self.loader, self.warmup, self.device, self.start = loader, warmup, device, None

    def __iter__(self):
        for number, batch in enumerate(self.loader):
            data.raise_unreadable(batch)
            if number == self.warmup:
                synchronize(self.device)
                self.start = time.perf_counter()
            yield batch


def training_rows(prepared_dir: str, rows: int, task: str) -> datasets.Dataset:
    """Every split of the prepared shards (its labelled rows for classification), repeated (an index mapping, no
    copy) to at least `rows` rows."""
    splits = data.load_splits(None, None, prepared_dir)
    everything = datasets.concatenate_datasets([splits[name] for name in sorted(splits)])
    if task == "classification":
        everything = everything.select(data.known_rows(everything))
    return everything.select([i % len(everything) for i in range(max(rows, len(everything)))])


def measure(name: str, loader, model, optimizer, accelerator, ctx, train_args, steps: int, warmup: int) -> dict:
    """images/s of `steps` optimiser steps of `train_one_epoch` over `loader`, after `warmup` steps, and the peak
    memory since the process's first row (not reset per row: a later row replays the CUDA graphs an earlier one
    recorded, whose memory pool it would not count, and showed a twentieth of the training's peak)."""
    timed = TimedLoader(loader, warmup, accelerator.device)
    train_args.max_steps = warmup + steps
    engine.train_one_epoch(model, timed, optimizer, accelerator, TrainState(), ctx, train_args)
    synchronize(accelerator.device)
    seconds = time.perf_counter() - timed.start
    cuda = accelerator.device.type == "cuda"
    row = dict(name=name, batch=train_args.batch_size, img_per_s=round(train_args.batch_size * steps / seconds, 1),
               peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None)
    print(json.dumps(row), flush=True)
    return row


def measure_loader(loader, device, batch_size: int, steps: int, warmup: int, num_workers: int) -> dict:
    """images/s the DataLoader delivers to the device with no model behind it."""
    timed = TimedLoader(loader, warmup, device)
    for number, _ in enumerate(timed):
        if number == warmup + steps:
            break
    synchronize(device)
    images_per_s = batch_size * steps / (time.perf_counter() - timed.start)
    row = dict(name="cxrgm_loader_only", batch=batch_size, num_workers=num_workers, img_per_s=round(images_per_s, 1),
               img_per_s_per_worker=round(images_per_s / max(num_workers, 1), 1))
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepared-dir", help="prepared shards (python -m hf_datasets.prepare); default: sample set")
    parser.add_argument("--prepare-size", type=int, default=None, help="size of the sample shards (default image_size)")
    parser.add_argument("--task", default="pretraining", choices=["pretraining", "classification"])
    parser.add_argument("--preset", default="vit_small_patch16_224")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=max(0, min(14, (os.cpu_count() or 1) - 2)))
    parser.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    parser.add_argument("--log-every-steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model, as --torch_compile does")
    parser.add_argument("--compile-mode", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile mode, as --torch_compile_mode (implies --compile); reduce-overhead adds "
                             "CUDA graphs")
    parser.add_argument("--profile-file", default="",
                        help="also profile 3 more steps of the loop on the step-only batch: their top operators / "
                             "kernels are appended to this file (what the loop adds to the model's step)")
    args = parser.parse_args(argv)
    args.compile = args.compile or args.compile_mode is not None
    datasets.disable_progress_bars()

    with tempfile.TemporaryDirectory() as tmp:
        prepared_dir = args.prepared_dir
        if prepared_dir is None:
            from hf_datasets.prepare import prepare

            prepared_dir = str(Path(tmp) / "sample")
            prepare("sample", None, prepared_dir, size=args.prepare_size or args.image_size, progress=False)
        rows = training_rows(prepared_dir, (args.warmup + args.steps + 1) * args.batch_size, args.task)
        return benchmark(args, rows, tmp, data_name=args.prepared_dir or "sample")


def benchmark(args, rows: datasets.Dataset, output_dir: str, data_name: str) -> list[dict]:
    task = args.task
    recipe = "gmml_pretrain" if task == "pretraining" else "finetune_classification"
    model_config = recipe_model_config(recipe)  # as the recipe trains
    train_args = TrainArgs(task=task, output_dir=output_dir, preset=args.preset, image_size=args.image_size,
                           model_config=model_config,
                           batch_size=args.batch_size, epochs=1, save_every_steps=0, report_to="none",
                           log_every_steps=args.log_every_steps, mixed_precision=args.mixed_precision,
                           num_workers=args.num_workers, torch_compile=args.compile,
                           torch_compile_mode=args.compile_mode)
    accelerator = Accelerator(mixed_precision=args.mixed_precision,
                              dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()))
    device = accelerator.device
    processor = GroupMaskedViTImageProcessor(size=args.image_size, num_channels=train_args.num_channels)
    names = data.label_names(rows) if task == "classification" else []
    dataset = data.CXRDataset(rows, processor, task, data.SINGLE)
    model = build_model(train_args, names, True)
    layer_decay = 0.75 if task == "classification" else 1.0  # the recipes' (finetune_classification, gmml_pretrain)
    optimizer = torch.optim.AdamW(param_groups(model, model.config.num_hidden_layers, layer_decay), lr=0.0,
                                  fused=device.type == "cuda" or None)
    loader = data.make_loader(dataset, args.batch_size, train_args.seed, True, args.num_workers)
    if args.compile:  # as train/run.py does
        model.compile(dynamic=False, mode=args.compile_mode)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    batches = len(loader)
    ctx = run.Context(task=task, augment=AugmentSpec.from_args(train_args), mean=processor.image_mean,
                      std=processor.image_std, model_config=accelerator.unwrap_model(model).config,
                      lr=peak_learning_rate(train_args, 1), batches_per_epoch=batches, steps_per_epoch=batches,
                      warmup_steps=batches, compiled_corruption=args.compile_mode == "reduce-overhead",
                      compiled_augmentation=args.compile_mode == "reduce-overhead")
    print(json.dumps(dict(torch=torch.__version__, python=sys.version.split()[0], task=task, preset=args.preset,
                          device=torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
                          image_size=args.image_size, batch=args.batch_size, data=data_name, rows=len(rows),
                          pixel_dtype=str(dataset[0]["pixel_values"].dtype), num_workers=args.num_workers,
                          mixed_precision=args.mixed_precision, compiled=args.compile,
                          compile_mode=args.compile_mode, model_config=model_config)), flush=True)

    steps, warmup = args.steps, args.warmup
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loader_row = measure_loader(loader, device, args.batch_size, steps, warmup, args.num_workers)
    # end to end first: a process's first timed model tends to be the slower one, so the ratio errs low
    name = "cxrgm_pretrain" if task == "pretraining" else "cxrgm_finetune"
    e2e_row = measure(f"{name}_end_to_end", loader, model, optimizer, accelerator, ctx, train_args, steps,
                      warmup)
    same_batch = [next(iter(loader))] * (warmup + steps + 1)
    step_row = measure(f"{name}_step_only", same_batch, model, optimizer, accelerator, ctx, train_args, steps,
                       warmup)
    print(json.dumps({"ratios": {"end_to_end_over_step_only": round(e2e_row["img_per_s"] / step_row["img_per_s"], 3)}}),
          flush=True)
    if args.profile_file:
        train_args.max_steps = 0  # one call: three steps of the loop on that batch, reading the losses once at the end
        profile_steps(lambda: engine.train_one_epoch(model, same_batch[:3], optimizer, accelerator, TrainState(), ctx,
                                                     train_args),
                      device.type, Path(args.profile_file), f"{name} loop step (batch {args.batch_size})", steps=1,
                      timed_ms=1e3 * args.batch_size / step_row["img_per_s"], steps_per_call=3)
    return [loader_row, e2e_row, step_row]


if __name__ == "__main__":
    main()
