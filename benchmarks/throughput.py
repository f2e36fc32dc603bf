"""Training-step throughput of cxrgm beside its peers, in one process on whatever device exists.

Rows (one JSON line each): our full GMML pretraining step (corruption on the device + forward + backward + AdamW;
with --compile also with the corruption itself through torch.compile, `cxrgm_gmml_compiled_corruption`), our classification fine-tuning step, our mask sampler alone, and the peers measured the same way: HF ViTMAE
(encoder sees 25%), HF SimMIM (ViTForMaskedImageModeling: all tokens, like GMML), HF ViT classification, and timm
ViT classification when timm is installed. A final line gives our/peer ratios.

    python benchmarks/throughput.py --size tiny --batch-size 16 --steps 5 [--reverse]   # CPU
    python benchmarks/throughput.py --size tiny --batch-size 16 --steps 2 --rounds 6 --only gmml,simmim   # busy CPU
    python benchmarks/throughput.py --size small --batch-size 256 --steps 30 --peak 989 [--compile]   # GPU
    bash benchmarks/gpu.sh                                                            # every GPU row
"""

import argparse
import contextlib
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}
NUM_LABELS = 14


def synchronize(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def count_step(step, batch_size: int) -> tuple[float, float]:
    """Model FLOPs (forward + backward) and bytes of the tensors autograd saves for the backward (the activation
    memory, measurable on any device; each storage counted once) of one training step, both per image."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    # torch's counter has formulas for the GPU attention kernels only; the CPU kernel does the same products
    cpu_attention = {
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
            lambda query, key, value, *args, out_shape=None, **kwargs: sdpa_flop_count(query, key, value),
        torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda grad_out, query, key, value, *args, out_shape=None, **kwargs:
                sdpa_backward_flop_count(grad_out, query, key, value),
    }
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        saved[(tensor.device, storage.data_ptr())] = storage.nbytes()
        return tensor

    counter = FlopCounterMode(display=False, custom_mapping=cpu_attention)
    with counter, torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        step(optimize=False)
    return counter.get_total_flops() / batch_size, sum(saved.values()) / batch_size


def device_busy_us(events) -> float:
    """The device time (us) of profiler `events`, each kernel counted once, as the table's "Self CUDA time total":
    the device's own events, not the host operators that launched them (credited with their kernels' time too) nor
    user annotations."""
    from torch.autograd import DeviceType

    return sum(event.self_device_time_total for event in events
               if event.device_type == DeviceType.CUDA and not getattr(event, "is_user_annotation", False))


def profile_steps(step, device: str, path: Path, title: str, steps: int = 3, timed_ms: float | None = None,
                  steps_per_call: int = 1) -> None:
    """Appends to `path`, under `title`, the operators (and on a GPU the kernels) of `steps` more calls of `step`
    (each `steps_per_call` steps: a training loop's several steps, without a sync between them that training does not
    make), by device time, top 40; on a GPU also the kernel launches per step, the device's busy time per step beside
    `timed_ms` (the step's wall time when timed without the profiler: more than the busy time is time the device
    waited) and the top 25 by host time, which tell a host-bound step (the device waiting for launches) from a
    device-bound one."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        synchronize(device)
    events = profiler.key_averages()
    sort_by = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    steps *= steps_per_call
    text = f"== {title}: {steps} steps\n{events.table(sort_by=sort_by, row_limit=40, max_name_column_width=90)}\n"
    if device == "cuda":
        launches = sum(event.count for event in events if "LaunchKernel" in event.key or "GraphLaunch" in event.key)
        busy_ms = device_busy_us(events) / 1e3 / steps
        timed = f", timed without the profiler {timed_ms:.2f} ms" if timed_ms else ""
        text += (f"kernel launches per step: {launches / steps:.0f}\n"
                 f"device busy per step: {busy_ms:.2f} ms{timed}\n-- by host time\n"
                 f"{events.table(sort_by='self_cpu_time_total', row_limit=25, max_name_column_width=90)}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(text + "\n")


SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}  # --sdpa-backend name: torch.nn.attention.SDPBackend member


def attention_backend(args):
    """A context that restricts scaled_dot_product_attention to `--sdpa-backend`, or torch's own choice."""
    if not args.sdpa_backend:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[args.sdpa_backend]))


def row_suffix(args) -> str:
    """"" eager, "_compiled" for torch.compile's default mode, "_compiled_<mode>" for another mode; then
    "_sdpa_<backend>" when the attention backend is forced, and one suffix per experiment on our models:
    "_low_precision_residual" / "_float32_residual" (`--low-precision-residual` / `--no-low-precision-residual`),
    "_<activation>" (`--hidden-act`); on every row of the run, so that the ratios pair ours with the peers of the same
    run (the peers are unchanged). Without these flags our models have the recipes' settings (`our_config`)."""
    residual = {True: "_low_precision_residual", False: "_float32_residual", None: ""}[args.low_precision_residual]
    return (_compile_suffix(args) + (f"_sdpa_{args.sdpa_backend}" if args.sdpa_backend else "") + residual
            + (f"_{args.hidden_act}" if args.hidden_act else ""))


def _compile_suffix(args) -> str:
    if not args.compile:
        return ""
    mode = f"_{args.compile_mode}" if args.compile_mode not in (None, "default") else ""
    return "_compiled" + mode + "".join(f"_{setting.split('=')[0]}" for setting in args.inductor)


def apply_inductor_settings(args) -> None:
    """Sets each NAME=VALUE of `--inductor` (a Python literal; a dotted name reaches a sub-config) on
    torch._inductor.config, before anything compiles; an unknown name fails here rather than being ignored.

    With `--sdpa-backend` the compiler's on-disk caches are off: their keys leave out the forced backend, so a run
    after one with another backend on the same machine was served that run's compiled graph (on the H200, three
    "backends" within 0.3% of each other; on a CPU, a forced flash run executing the math graph of the run before).
    """
    import ast

    import torch._inductor.config as inductor_config

    if args.compile and args.sdpa_backend:
        inductor_config.force_disable_caches = True
    for setting in args.inductor:
        name, _, text = setting.partition("=")
        *parents, leaf = name.split(".")
        target = inductor_config
        for parent in parents:
            target = getattr(target, parent)
        if not hasattr(target, leaf):
            raise SystemExit(f"--inductor {setting}: torch._inductor.config has no {name}")
        setattr(target, leaf, ast.literal_eval(text))


def prepare(name: str, model, loss_fn, args, device: str) -> dict:
    """A row's model on the device (compiled with `--compile`), its AdamW and its `step`, warmed up `args.warmup`
    steps: what `time_steps` and `finish` take."""
    model = model.to(device).train()
    runnable = torch.compile(model, mode=args.compile_mode) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=not args.fp32)

    def step(optimize: bool = True, module=runnable):
        with autocast, attention_backend(args):
            loss = loss_fn(module)
        loss.backward()
        if optimize:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    synchronize(device)
    return dict(name=name + row_suffix(args), model=model, step=step)


def time_steps(entry: dict, args, device: str) -> float:
    """images/s of `args.steps` steps of a prepared row."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        entry["step"]()
    synchronize(device)
    return args.batch_size * args.steps / (time.perf_counter() - start)


def finish(entry: dict, rates: list[float], args, device: str) -> dict:
    """The row of a timed model: the median of its `rates` (img/s, one per round), FLOPs and MFU, peak and saved
    memory; printed as one JSON line, then profiled with `--profile-file`."""
    images_per_s = statistics.median(rates)
    peak_bytes = torch.cuda.max_memory_allocated() if device == "cuda" else None  # before the eager counting step
    flops, saved_bytes = count_step(functools.partial(entry["step"], module=entry["model"]), args.batch_size)
    row = dict(
        name=entry["name"],
        batch=args.batch_size,
        img_per_s=round(images_per_s, 1),
        gflop_per_img=round(flops / 1e9, 2),
        tflops=round(images_per_s * flops / 1e12, 2),
        mfu=round(images_per_s * flops / 1e12 / args.peak, 3) if args.peak else None,
        peak_mem_gib=round(peak_bytes / 2**30, 2) if peak_bytes is not None else None,
        saved_mib_per_img=round(saved_bytes / 2**20, 2),
    )
    if len(rates) > 1:
        row["img_per_s_rounds"] = [round(rate, 2) for rate in rates]
    print(json.dumps(row), flush=True)
    if args.profile_file:
        try:  # after the row is out: a profiler that cannot start on some host costs only its table
            title = f"{row['name']} (size {args.size}, batch {args.batch_size})"
            profile_steps(entry["step"], device, Path(args.profile_file), title,
                          timed_ms=1e3 * args.batch_size / images_per_s)
        except Exception as error:  # noqa: BLE001 - reported, the next model still runs
            print(json.dumps({"note": f"profiling {row['name']} failed: {error!r}"}), flush=True)
    return row


def measure(name: str, model, loss_fn, args, device: str) -> dict:
    """images/s of `loss_fn(model)` + backward + AdamW over `args.steps` steps after `args.warmup` warm-up steps."""
    if device == "cuda":  # from the warm-up on: CUDA graphs take their memory when recorded, none when replayed
        torch.cuda.reset_peak_memory_stats()
    entry = prepare(name, model, loss_fn, args, device)
    row = finish(entry, [time_steps(entry, args, device)], args, device)
    del entry
    if device == "cuda":
        torch.cuda.empty_cache()
    return row


def measure_interleaved(models: dict, args, device: str) -> list[dict]:
    """`measure` for several models at once, in `args.rounds` rounds of `args.steps` steps each, the order
    reversed every other round: on a busy machine each model meets the same load, and each row gives the median
    round (and every round's rate). Peak memory is that of all the models together."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    entries = [prepare(name, build(), loss_fn, args, device) for name, (build, loss_fn) in models.items()]
    rates = {entry["name"]: [] for entry in entries}
    for round_index in range(args.rounds):
        for entry in entries[::-1] if round_index % 2 else entries:
            rates[entry["name"]].append(time_steps(entry, args, device))
    return [finish(entry, rates[entry["name"]], args, device) for entry in entries]


def measure_masks(args, device: str, config) -> list[dict]:
    """Masks/s of the full GMML corruption (stage-1/stage-2 target mix, fill), then of the mask sampler alone with
    each way of computing the union of rectangles (the device's default is the one the corruption used); with
    `--compile` also the corruption and the first cover and matmul samplers with the masks computed through
    torch.compile (`gmml_corrupt(..., compiled=True)`, `masks_for_targets(..., compiled=True)`)."""
    from modeling_cxrgm import gmml_corrupt, masks_for_targets
    from modeling_cxrgm.masking import draw_mask_targets

    generator = torch.Generator(device=device).manual_seed(0)
    views = torch.randn(args.batch_size, config.num_channels, args.image_size, args.image_size, device=device)
    targets = draw_mask_targets(args.batch_size, config.mask_max_ratio, generator=generator, device=device)
    jobs = {"cxrgm_gmml_corruption": lambda: gmml_corrupt(views, config, generator)}
    if args.compile:  # the corruption of the compiled-corruption GMML row
        jobs["cxrgm_gmml_corruption_compiled"] = lambda: gmml_corrupt(views, config, generator, compiled=True)
    for union in ("first_cover", "matmul", "difference_array"):
        jobs[f"cxrgm_mask_sampler_{union}"] = functools.partial(
            masks_for_targets, targets, args.image_size, args.image_size, align=config.mask_align,
            max_block_fraction=config.mask_max_block_fraction, generator=generator,
            max_target=config.mask_max_ratio, union=union)
        if args.compile and union != "difference_array":  # the GPU's two candidates, through torch.compile
            jobs[f"cxrgm_mask_sampler_{union}_compiled"] = functools.partial(jobs[f"cxrgm_mask_sampler_{union}"],
                                                                             compiled=True)
    rows = []
    for name, job in jobs.items():
        for _ in range(2):
            job()
        synchronize(device)
        start = time.perf_counter()
        repeats = max(3, args.steps)
        for _ in range(repeats):
            job()
        synchronize(device)
        rows.append(dict(name=name, batch=args.batch_size,
                         masks_per_s=round(args.batch_size * repeats / (time.perf_counter() - start), 1)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def our_config(args):
    """The GroupMaskedViTConfig of our rows: `--size` at `--image-size`, patch 16, `--channels`, `--drop-path`, and
    the model settings that GMML pretraining trains with (`train/recipes/gmml_pretrain.yaml`'s `model_config`: the
    corruption's, `low_precision_residual`, `hidden_act`; the fine-tuning recipes set the same two), over which
    `--hidden-act` (an unknown name is refused by the config) and `--[no-]low-precision-residual` go."""
    from modeling_cxrgm import GroupMaskedViTConfig
    from train.config import recipe_model_config

    settings = recipe_model_config("gmml_pretrain")
    if args.hidden_act:
        settings = {**settings, "hidden_act": args.hidden_act}
    if args.low_precision_residual is not None:
        settings = {**settings, "low_precision_residual": args.low_precision_residual}
    hidden, depth, heads = SIZES[args.size]
    return GroupMaskedViTConfig(**{
        **settings, "image_size": args.image_size, "patch_size": 16, "hidden_size": hidden,
        "num_hidden_layers": depth, "num_attention_heads": heads, "intermediate_size": 4 * hidden,
        "num_channels": args.channels, "num_labels": NUM_LABELS, "problem_type": "multi_label_classification",
        "drop_path_rate": args.drop_path})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=1, help="input channels of our models (peers use 3)")
    parser.add_argument("--peak", type=float, default=0.0, help="device peak TFLOP/s for MFU (H200 bf16: 989)")
    parser.add_argument("--compile", action="store_true", help="measure torch.compile'd models (rows end in _compiled)")
    parser.add_argument("--compile-mode", default=None, choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile mode; reduce-overhead adds CUDA graphs")
    parser.add_argument("--inductor", action="append", default=[], metavar="NAME=VALUE",
                        help="with --compile: set torch._inductor.config NAME to VALUE (repeatable; rows end in _NAME),"
                             " e.g. coordinate_descent_tuning=True")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    parser.add_argument("--low-precision-residual", action=argparse.BooleanOptionalAction, default=None,
                        help="our models' config low_precision_residual (the encoder's residual stream in bfloat16 "
                             "under bf16 autocast), on or off over the recipes' (on); rows end in "
                             "_low_precision_residual or _float32_residual")
    parser.add_argument("--hidden-act", default="", metavar="NAME",
                        help="our models' MLP activation, a transformers ACT2FN name, over the recipes' "
                             "(gelu_pytorch_tanh), e.g. gelu (exact, the config's default); rows end in _NAME")
    parser.add_argument("--drop-path", type=float, default=0.1,
                        help="our models' stochastic depth at the last block (the recipes' 0.1; the peers run none)")
    parser.add_argument("--sdpa-backend", default="", choices=["", *SDPA_BACKENDS],
                        help="force this scaled_dot_product_attention backend in every row (rows end in _sdpa_<name>);"
                             " default: torch's choice (cuDNN's flash kernels on an H200 with torch 2.11)")
    parser.add_argument("--only", default="", help="comma-separated substrings of row names to run")
    parser.add_argument("--profile-file", default="",
                        help="also profile 3 steps of each row: its top operators / kernels are appended to this file")
    parser.add_argument("--reverse", action="store_true", help="peers first (alternate between repeats on a busy machine)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="above 1: all models set up at once and timed in turn, --steps steps per round, the "
                             "order reversed every other round; each row is the median round, each ratio the median "
                             "of the rounds' ratios (a busy machine)")
    return parser.parse_args(argv)


def speed_ratio(ours: dict, peer: dict) -> float:
    """img/s of row `ours` over row `peer`; with rounds (`--rounds`), the median of the rounds' ratios: each round
    times both under the same load."""
    if "img_per_s_rounds" in ours and "img_per_s_rounds" in peer:
        return round(statistics.median(a / b for a, b in zip(ours["img_per_s_rounds"], peer["img_per_s_rounds"])), 3)
    return round(ours["img_per_s"] / peer["img_per_s"], 3)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.inductor and not args.compile:
        raise SystemExit("--inductor needs --compile")
    if args.low_precision_residual and args.fp32:
        raise SystemExit("--low-precision-residual needs bf16 autocast (not --fp32)")
    apply_inductor_settings(args)

    import transformers
    from transformers import (
        ViTConfig,
        ViTForImageClassification,
        ViTForMaskedImageModeling,
        ViTMAEConfig,
        ViTMAEForPreTraining,
    )

    from modeling_cxrgm import GroupMaskedViTForImageClassification, GroupMaskedViTForPreTraining, gmml_corrupt

    device = "cuda" if torch.cuda.is_available() else "cpu"
    hidden, depth, heads = SIZES[args.size]
    size, batch, patch = args.image_size, args.batch_size, 16
    ours = our_config(args)
    print(json.dumps(dict(torch=torch.__version__, transformers=transformers.__version__, python=sys.version.split()[0],
                          device=torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}",
                          size=args.size, image_size=size, batch=batch, bf16=not args.fp32,
                          drop_path=args.drop_path, hidden_act=ours.hidden_act,
                          low_precision_residual=ours.low_precision_residual)), flush=True)

    def wanted(name: str) -> bool:
        return not args.only or any(part in name for part in args.only.split(","))

    peer = dict(hidden_size=hidden, num_hidden_layers=depth, num_attention_heads=heads, intermediate_size=4 * hidden,
                image_size=size, patch_size=patch, attn_implementation="sdpa")
    grey = torch.randn(batch, args.channels, size, size, device=device)
    rgb = torch.randn(batch, 3, size, size, device=device)
    targets = (torch.rand(batch, NUM_LABELS, device=device) < 0.2).float()
    simmim_mask = torch.rand(batch, (size // patch) ** 2, device=device) < 0.6
    generator = torch.Generator(device=device).manual_seed(0)

    candidates = {
        "cxrgm_gmml_pretrain": (functools.partial(GroupMaskedViTForPreTraining, ours),
                                lambda m: m(pixel_values=grey, generator=generator).loss),
        # the same step with the corruption through torch.compile (its draws stay eager), as training runs it with
        # CUDA graphs
        "cxrgm_gmml_compiled_corruption": (
            functools.partial(GroupMaskedViTForPreTraining, ours),
            lambda m: m(pixel_values=grey, **dict(zip(("corrupted", "mask"),
                                                      gmml_corrupt(grey, ours, generator, compiled=True)))).loss),
        "cxrgm_cls_finetune": (functools.partial(GroupMaskedViTForImageClassification, ours),
                               lambda m: m(pixel_values=grey, labels=targets).loss),
        "hf_vitmae_pretrain": (lambda: ViTMAEForPreTraining(ViTMAEConfig(
            mask_ratio=0.75, decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
            decoder_intermediate_size=2048, **peer)), lambda m: m(pixel_values=rgb).loss),
        "hf_simmim_pretrain": (lambda: ViTForMaskedImageModeling(ViTConfig(encoder_stride=patch, **peer)),
                               lambda m: m(pixel_values=rgb, bool_masked_pos=simmim_mask).loss),
        "hf_vit_cls_finetune": (lambda: ViTForImageClassification(ViTConfig(
            num_labels=NUM_LABELS, problem_type="multi_label_classification", **peer)),
            lambda m: m(pixel_values=rgb, labels=targets).loss),
    }
    if not args.compile:  # the CPU's and eager rows: one GMML row
        del candidates["cxrgm_gmml_compiled_corruption"]
    try:
        import timm

        bce = torch.nn.BCEWithLogitsLoss()
        candidates["timm_vit_cls_finetune"] = (
            lambda: timm.create_model(f"vit_{args.size}_patch16_224", num_classes=NUM_LABELS, img_size=size),
            lambda m: bce(m(rgb).float(), targets),
        )
    except ImportError:
        print(json.dumps({"note": "timm not installed: its row is skipped"}), flush=True)

    rows = []
    order = ["cxrgm_gmml_corruption", *candidates]
    order = [name for name in (reversed(order) if args.reverse else order) if wanted(name)]
    for name in order:
        if name == "cxrgm_gmml_corruption":
            rows += measure_masks(args, device, ours)
        elif args.rounds == 1:
            build, loss_fn = candidates[name]
            rows.append(measure(name, build(), loss_fn, args, device))
    if args.rounds > 1:
        rows += measure_interleaved({name: candidates[name] for name in order if name in candidates}, args, device)

    timed = {row["name"]: row for row in rows if "img_per_s" in row}
    ratios = {}
    suffix = row_suffix(args)
    ours_pretrain, simmim = timed.get("cxrgm_gmml_pretrain" + suffix), timed.get("hf_simmim_pretrain" + suffix)
    if ours_pretrain and simmim:
        ratios["gmml_over_hf_simmim" + suffix] = speed_ratio(ours_pretrain, simmim)
        ratios["gmml_saved_activations_over_hf_simmim"] = round(
            ours_pretrain["saved_mib_per_img"] / simmim["saved_mib_per_img"], 3)
    compiled_corruption = timed.get("cxrgm_gmml_compiled_corruption" + suffix)
    if ours_pretrain and compiled_corruption:
        ratios["gmml_compiled_corruption_over_gmml" + suffix] = speed_ratio(compiled_corruption, ours_pretrain)
    ours_cls = timed.get("cxrgm_cls_finetune" + suffix)
    for peer_name in ("hf_vit_cls_finetune", "timm_vit_cls_finetune"):
        if ours_cls and timed.get(peer_name + suffix):
            ratios[f"cls_over_{peer_name}{suffix}"] = speed_ratio(ours_cls, timed[peer_name + suffix])
    masks = next((row["masks_per_s"] for row in rows if row["name"] == "cxrgm_gmml_corruption"), None)
    if masks and ours_pretrain:  # the corruption runs eager inside a compiled model too
        ratios["corruption_share_of_step" + suffix] = round(ours_pretrain["img_per_s"] / masks, 3)
    corruption_compiled = next((row["masks_per_s"] for row in rows if row["name"] == "cxrgm_gmml_corruption_compiled"),
                               None)
    if corruption_compiled and compiled_corruption:
        ratios["compiled_corruption_share_of_step" + suffix] = round(
            compiled_corruption["img_per_s"] / corruption_compiled, 3)
    print(json.dumps({"ratios": ratios}), flush=True)
    return rows


if __name__ == "__main__":
    main()
