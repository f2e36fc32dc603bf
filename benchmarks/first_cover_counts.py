"""Ways of counting the rectangles each image needs from its first-cover map, timed side by side and checked equal.

The first-cover union (`masking._masks_from_uniforms`) finds, for every pixel, the first of the image's K rectangles
over it; the image then needs the smallest n whose first n rectangles cover its target number of pixels. masking.py
counts that with a histogram (`_rectangles_needed`: one scatter_add of every pixel into K + 1 bins per image, atomic
adds on a GPU, many of them to the same few bins). The other ways here read the same map without a scatter; each
must give exactly the histogram's counts (checked before timing, on the map and on edge cases):

- `bisection`: 8 rounds of #(first < n) per image (a binary search on n, as the matmul union does);
- `radix16`: two passes, each counting 16 candidate n at once (coarse, then fine; K < 256);
- `sort`: each image's pixels sorted; n is the needed-th smallest index plus one.

    python benchmarks/first_cover_counts.py --batch-size 256 --image-size 224 [--compile] [--corruption]

One JSON line per way: its median ms per call of the count alone (`<way>`; with `--compile` also through
torch.compile, `<way>_compiled`) and masks/s; with `--corruption` also the whole compiled GMML corruption
(`gmml_corrupt(..., compiled=True)`, two views, the config's defaults) with that way in place of the histogram
(`corruption_<way>`), in interleaved rounds.
"""

import argparse
import functools
import json
import math
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

import torch  # noqa: E402

from benchmarks.mask_samplers import median_seconds  # noqa: E402
from modeling_cxrgm import GroupMaskedViTConfig, masking  # noqa: E402


def bisection(first: torch.Tensor, needed: torch.Tensor, num_rectangles: int) -> torch.Tensor:
    """Binary search on n in [1, K]: `low` rectangles cover fewer than `needed` pixels, `high` reach it (or are K)."""
    flat = first.flatten(1)
    low = torch.zeros_like(needed)
    high = torch.full_like(needed, num_rectangles)
    for _ in range(math.ceil(math.log2(num_rectangles))):
        middle = (low + high) // 2
        reached = (flat < middle[:, None]).sum(1) >= needed
        high = torch.where(reached, middle, high)
        low = torch.where(reached, low, middle)
    return torch.where(needed > 0, high, 0)


RADIX = 16


def radix16(first: torch.Tensor, needed: torch.Tensor, num_rectangles: int) -> torch.Tensor:
    """n in (16 b, 16 (b + 1)]: b from the counts below 16, 32, ..., 256, then n from those below 16 b + 1 ... 16 b + 16."""
    if num_rectangles >= RADIX * RADIX:
        raise ValueError(f"radix16 counts up to {RADIX * RADIX - 1} rectangles, got K = {num_rectangles}")
    flat = first.flatten(1)[:, None, :]  # (N, 1, cells)
    steps = torch.arange(1, RADIX + 1, device=first.device)
    coarse = ((flat < (RADIX * steps)[None, :, None]).sum(2) < needed[:, None]).sum(1)  # (N,) bucket b
    fine = ((flat < (RADIX * coarse[:, None] + steps)[:, :, None]).sum(2) < needed[:, None]).sum(1)
    counts = (RADIX * coarse + fine + 1).clamp(max=num_rectangles)
    return torch.where(needed > 0, counts, 0)


def sort(first: torch.Tensor, needed: torch.Tensor, num_rectangles: int) -> torch.Tensor:
    """The needed-th smallest first index v: the first v + 1 rectangles reach `needed`, the first v do not."""
    ordered = first.flatten(1).sort(1).values
    kth = ordered.gather(1, (needed - 1).clamp(min=0)[:, None])[:, 0].long()
    return torch.where(needed > 0, (kth + 1).clamp(max=num_rectangles), 0)


histogram = masking._rectangles_needed  # masking.py's own way (kept here: `corrupt_with` replaces masking's name)
WAYS = {"histogram": histogram, "bisection": bisection, "radix16": radix16, "sort": sort}


def first_cover_inputs(batch_size: int, image_size: int, generator: torch.Generator, max_ratio: float = 0.75,
                       max_block_fraction: float = 0.3):
    """A first-cover map (N, S, S) of real draws (the corruption's rectangles and targets), its images' needed pixel
    counts (N,) and K."""
    device = generator.device
    budget = masking._rectangle_budget(max_ratio, max_block_fraction)
    max_side_h, max_side_w = masking._block_sides(image_size, image_size, 1, max_block_fraction)
    uniforms = torch.rand(batch_size, masking._RECTANGLE_DRAWS, budget, generator=generator, device=device)
    rectangles = masking._rectangles_from_uniforms(uniforms, image_size, image_size, 1, max_side_h, max_side_w)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    first = masking._first_covering_rectangle(rectangles, image_size, image_size, dtype)
    targets = masking.draw_mask_targets(batch_size, max_ratio, generator=generator, device=device)
    needed = torch.ceil(targets * image_size * image_size - 1e-6).to(torch.int64)
    return first, needed, budget


def check_equal(first: torch.Tensor, needed: torch.Tensor, num_rectangles: int) -> None:
    """Every way gives the histogram's counts on `needed` and on the edge cases: nothing needed, every pixel needed
    (more than the K rectangles may cover), exactly what the first rectangle covers. Raises AssertionError if not."""
    cells = first[0].numel()
    first_alone = (first == first.flatten(1).min(1).values[:, None, None]).flatten(1).sum(1)
    cases = [needed, torch.zeros_like(needed), torch.full_like(needed, cells), first_alone, first_alone + 1]
    for case in cases:
        expected = histogram(first, case, num_rectangles)
        for name, way in WAYS.items():
            got = way(first, case, num_rectangles)
            if not torch.equal(got, expected):
                raise AssertionError(f"{name} counts differ from the histogram's in {int((got != expected).sum())} "
                                     f"of {got.numel()} images")


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=64, help="masks per call (views)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time each count through torch.compile")
    parser.add_argument("--corruption", action="store_true",
                        help="also time the compiled corruption with each way in it (compiles once per way)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator(device=device).manual_seed(0)
    first, needed, budget = first_cover_inputs(args.batch_size, args.image_size, generator)
    check_equal(first, needed, budget)

    calls = {}
    for name, way in WAYS.items():
        calls[name] = functools.partial(way, first, needed, budget)
        if args.compile:
            calls[f"{name}_compiled"] = functools.partial(torch.compile(way, dynamic=False), first, needed, budget)
    if args.corruption:
        config = GroupMaskedViTConfig(image_size=args.image_size)
        views = torch.randn(args.batch_size, 1, args.image_size, args.image_size, device=device)
        for name, way in WAYS.items():
            calls[f"corruption_{name}"] = functools.partial(corrupt_with, way, views, config, generator)
    rows = []
    for name, median in median_seconds(calls, args.rounds, device).items():
        rows.append(dict(name=name, device=device, threads=torch.get_num_threads(), batch=args.batch_size,
                         image_size=args.image_size, rectangles=budget, ms_per_call=round(1e3 * median, 3),
                         masks_per_s=round(args.batch_size / median, 1)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def corrupt_with(way, views: torch.Tensor, config, generator: torch.Generator):
    """The compiled two-view corruption with `way` counting the rectangles. torch.compile guards on the function it
    finds under masking's name, so each way keeps its own compiled graph (one compile per way, on its first call)."""
    with mock.patch.object(masking, "_rectangles_needed", way):
        return masking.gmml_corrupt(views, config, generator, views=2, compiled=True)


if __name__ == "__main__":
    main()
