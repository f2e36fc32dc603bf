"""The mask sampler's ways of computing the union of rectangles, timed side by side in interleaved rounds (a busy
machine slows every way alike): median ms and masks/s per call of `masks_for_targets` at one batch and image size;
with `--corruption` also the whole GMML corruption (`gmml_corrupt`, two views per image, the config's defaults).

    python benchmarks/mask_samplers.py --batch-size 64 --image-size 224 --threads 1
    git show REV:modeling_cxrgm/masking.py > /tmp/masking_before.py   # another version, timed beside this one
    python benchmarks/mask_samplers.py --baseline /tmp/masking_before.py --corruption --compile

One JSON line per way: `first_cover`, `matmul`, `difference_array`, with `--corruption` `corruption`, with
`--compile` the first cover and the corruption through torch.compile (`..._compiled`; compiled before the rounds),
and with `--baseline` the same ways of that file (`baseline_<way>`).
"""

import argparse
import functools
import importlib.util
import inspect
import json
import statistics
import time

import torch

from modeling_cxrgm import GroupMaskedViTConfig, masking

UNIONS = ("first_cover", "matmul", "difference_array")


def load_baseline(path: str):
    """The module in `path`: a masking.py of another version, which imports only torch."""
    spec = importlib.util.spec_from_file_location("masking_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-ratio", type=float, default=0.75)
    parser.add_argument("--baseline", default="", help="another masking.py, each of its ways timed too")
    parser.add_argument("--corruption", action="store_true", help="also time the whole corruption, gmml_corrupt")
    parser.add_argument("--compile", action="store_true", help="also time the compiled first cover (and corruption)")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _time_samplers(args)
    finally:  # called as a function (tests), it leaves torch's thread count as it found it
        torch.set_num_threads(threads)


def median_seconds(calls: dict, rounds: int, device: str) -> dict[str, float]:
    """Each of `calls` (name -> function of no arguments) once to warm up (and compile), then `rounds` interleaved
    rounds of all of them (a busy machine slows every call alike): name -> median seconds per call, the device
    synchronised around each on CUDA."""
    seconds = {name: [] for name in calls}
    for call in calls.values():
        call()
    for _ in range(rounds):
        for name, call in calls.items():
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            call()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in seconds.items()}


def _time_samplers(args) -> list[dict]:
    """One JSON line per way of `main`'s arguments: its median ms per call and masks/s."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(0)
    targets = masking.draw_mask_targets(args.batch_size, args.max_ratio, generator=generator, device=device)

    config = GroupMaskedViTConfig(image_size=args.image_size, mask_max_ratio=args.max_ratio)
    views = torch.randn(args.batch_size, 1, args.image_size, args.image_size, device=device)

    def ways_of(module, prefix: str) -> dict:
        ways = {}
        for union in UNIONS:
            ways[prefix + union] = functools.partial(module.masks_for_targets, targets, args.image_size,
                                                     args.image_size, generator=generator, max_target=args.max_ratio,
                                                     union=union)
        if args.compile:
            ways[prefix + "first_cover_compiled"] = functools.partial(ways[prefix + "first_cover"], compiled=True)
        if args.corruption:
            ways[prefix + "corruption"] = functools.partial(module.gmml_corrupt, views, config, generator, views=2)
            if args.compile:  # earlier versions compiled the masks alone, asked as `compiled_masks`
                flag = "compiled" if "compiled" in inspect.signature(module.gmml_corrupt).parameters else "compiled_masks"
                ways[prefix + "corruption_compiled"] = functools.partial(ways[prefix + "corruption"], **{flag: True})
        return ways

    ways = ways_of(masking, "")
    if args.baseline:
        ways.update(ways_of(load_baseline(args.baseline), "baseline_"))
    rows = []
    for name, median in median_seconds(ways, args.rounds, device).items():
        rows.append(dict(name=name, device=device, threads=torch.get_num_threads(), batch=args.batch_size,
                         image_size=args.image_size, ms_per_call=round(1e3 * median, 2),
                         masks_per_s=round(args.batch_size / median, 1)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
