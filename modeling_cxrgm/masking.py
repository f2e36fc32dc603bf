"""GMML group masking: the corruption that the pretraining objective learns to undo.

Stage 1 (per view): draw a target fraction t ~ U(0.5, r) of the image (t = r when r <= 0.5) and add random
rectangles until their union covers at least t; the covered pixels are filled with N(0, 1) noise (or zeros, or the
same image shifted). Stage 2 (per view, probability `replace_prob`): instead, exactly the same block sampler with
t = `replace_ratio` picks pixels that are replaced by the pixels at the same place of another image of the batch.

Everything is batched tensor code on the input's device; randomness comes only from the given `torch.Generator`
(which must live on that device), so the same seed gives the same masks.

How the "add rectangles until covered" loop is batched: see `masks_for_targets`.

This file is copied next to the weights by `save_pretrained`, so it imports only torch.
"""

import contextlib
import functools
import math

import torch
import torch.nn.functional as F

try:  # private in torch: the Hub copy of this file may run with a torch that lacks it
    from torch.utils._python_dispatch import is_in_torch_dispatch_mode
except ImportError:
    def is_in_torch_dispatch_mode() -> bool:
        return False

# Device types with autocast, found once here: torch.compile (torch 2.11) cannot trace the availability check, and a
# graph break inside the encoder keeps CUDA graphs from the pretraining step.
AUTOCAST_DEVICE_TYPES = frozenset(
    name for name in ("cpu", "cuda", "xpu", "mps", "hpu", "xla", "mtia", "maia") if torch.amp.is_autocast_available(name)
)


def compiled_code_allowed() -> bool:
    """Whether a function of ours that has a torch.compile'd version may run it now: not under a TorchDispatchMode
    (a FLOP counter, say). There torch.compile (2.11-2.13) runs the function eagerly and then keeps running it eagerly
    for the rest of the process, so the eager function runs instead: the same output, and the compiled version stays
    in use after the mode."""
    return not is_in_torch_dispatch_mode()


def _targets_from_uniforms(uniforms: torch.Tensor, max_ratio: float) -> torch.Tensor:
    """Target masked fractions from uniforms (B,) in [0, 1): U(0.5, max_ratio), or exactly `max_ratio` when <= 0.5."""
    if max_ratio <= 0.5:
        return torch.full_like(uniforms, float(max_ratio))
    return 0.5 + (max_ratio - 0.5) * uniforms


def draw_mask_targets(
    batch_size: int, max_ratio: float, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Target masked fractions, float32 (B,): U(0.5, max_ratio), or exactly `max_ratio` when it is <= 0.5."""
    return _targets_from_uniforms(torch.rand(batch_size, generator=generator, device=device), max_ratio)


def _uniform_integers(uniforms: torch.Tensor, count: int) -> torch.Tensor:
    """Integers uniform in [0, count) from float32 uniforms in [0, 1), int64 in their shape. The uniforms take 2**24
    values, so each integer's probability is off by at most count / 2**24 of it (2e-5 at 300 px)."""
    return (uniforms * count).long().clamp(max=count - 1)


_RECTANGLE_DRAWS = 4  # uniforms per rectangle: top, left, height, width


def _rectangles_from_uniforms(
    uniforms: torch.Tensor, grid_h: int, grid_w: int, align: int, max_side_h: int, max_side_w: int
) -> tuple[torch.Tensor, ...]:
    """Rectangles as (top, bottom, left, right) in cells of `align` px, each (N, K) int64, from uniforms (N, 4, K)
    in [0, 1).

    Corners are uniform on the cell grid; each side is an integer number of pixels uniform in
    [align, max_side) floored to a multiple of `align`; rectangles are clipped to the image.
    """
    top = _uniform_integers(uniforms[:, 0], grid_h)
    left = _uniform_integers(uniforms[:, 1], grid_w)
    height = (align + _uniform_integers(uniforms[:, 2], max_side_h - align)) // align
    width = (align + _uniform_integers(uniforms[:, 3], max_side_w - align)) // align
    return top, (top + height).clamp(max=grid_h), left, (left + width).clamp(max=grid_w)


def _corner_positions(rectangles, grid_w: int) -> torch.Tensor:
    """Flat positions in a (grid_h + 1, grid_w + 1) difference array of each rectangle's 4 corners: (N, 4, K)."""
    top, bottom, left, right = rectangles
    stride = grid_w + 1
    return torch.stack([top * stride + left, top * stride + right, bottom * stride + left, bottom * stride + right], 1)


def _union_by_difference_array(counts: torch.Tensor, corners: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Union of each image's first `counts` (N,) rectangles: bool (N, grid_h, grid_w).

    A 2-D difference array (+1/-1 at the corners, then two cumulative sums) counts the rectangles over each cell.
    """
    num_images, _, num_rectangles = corners.shape
    used = (torch.arange(num_rectangles, device=corners.device) < counts[:, None]).to(torch.int32)  # (N, K)
    weights = torch.stack([used, -used, -used, used], 1)  # (N, 4, K): +1 / -1 at the corners, as `corners` lists them
    difference = torch.zeros(num_images, (grid_h + 1) * (grid_w + 1), dtype=torch.int32, device=corners.device)
    difference.scatter_add_(1, corners.flatten(1), weights.flatten(1))
    layers = difference.view(num_images, grid_h + 1, grid_w + 1).cumsum(1, dtype=torch.int32).cumsum(2, dtype=torch.int32)
    return layers[:, :grid_h, :grid_w] > 0


def _rectangle_spans(rectangles, grid_h: int, grid_w: int, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and columns each rectangle spans: bool (N, K', grid_h) and (N, K', grid_w), True inside.

    K' is K rounded up to a multiple of `multiple`; the padding rectangles span nothing.
    """
    top, bottom, left, right = (F.pad(side, (0, -side.shape[1] % multiple)) for side in rectangles)
    ys = torch.arange(grid_h, device=top.device)
    xs = torch.arange(grid_w, device=top.device)
    rows = (top[:, :, None] <= ys) & (ys < bottom[:, :, None])
    cols = (left[:, :, None] <= xs) & (xs < right[:, :, None])
    return rows, cols


def _union_by_matmul(counts: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Union of each image's first `counts` (N,) rectangles: bool (N, grid_h, grid_w).

    The rectangles over cell (y, x) number sum_k used_k rows[k, y] cols[k, x]: one batched matrix product of
    (N, grid_h, K) by (N, K, grid_w), which runs on tensor cores. Every term is 0 or 1, so "> 0" is exact in any
    floating-point type.
    K is padded to a multiple of 8 (the inner size, aligned for tensor cores) with empty rectangles.
    """
    used = (torch.arange(rows.shape[1], device=rows.device) < counts[:, None]).to(rows.dtype)  # (N, K)
    return torch.bmm((rows * used[:, :, None]).transpose(1, 2), cols) > 0


_WEIGHT_BITS = 3  # rectangle j of a chunk weighs 2**(126 - 3 j) in `_first_covering_rectangle`
_CHUNK = 85  # rectangles per chunk: weights 2**126 ... 2**-126, every one a normal number of float32 and bfloat16


def _exponent_field(values: torch.Tensor) -> torch.Tensor:
    """The 8-bit exponent field of non-negative float32 or bfloat16 `values` (one layout, bias 127), int32 in their
    shape: 0 for 0, e + 127 for a normal number 2**e * m (1 <= m < 2). The sign bit is 0, so a shift gives it."""
    if values.dtype == torch.bfloat16:
        return values.view(torch.int16).int() >> 7
    return values.view(torch.int32) >> 23


def _first_covering_rectangle(rectangles, grid_h: int, grid_w: int, dtype: torch.dtype) -> torch.Tensor:
    """Index of the first rectangle (in draw order) over each cell, K where none is: (N, grid_h, grid_w), int16
    (int32 from K = 2**15 - 1 on).

    The K rectangles, padded with empty ones to C chunks of 85, weigh 2**126, 2**123, ..., 2**-126 (a chunk's first
    to last) on their row spans; one batched matrix product of (N C, grid_h, 85) by (N C, 85, grid_w) gives, over
    each cell, the sum of the weights of the chunk's rectangles there. If the largest is 2**e, the others add less
    than 2**e / 7, so the sum, rounded in any order and to `dtype`, lies in [2**e, 2**(e + 1)): its exponent field,
    127 + e, names the chunk's first rectangle over the cell, exactly. `dtype`: bfloat16 (tensor cores on a GPU) or
    float32, whose 8-bit exponents hold every weight. A table per chunk turns exponent fields into indices; the
    first chunk over a cell has the smallest. Memory: the sums are N C grid_h grid_w elements, 77 MB in bfloat16 at
    batch 256, 224 px, K = 255.
    """
    num_images, num_rectangles = rectangles[0].shape
    rows, cols = _rectangle_spans(rectangles, grid_h, grid_w, _CHUNK)
    num_chunks = rows.shape[1] // _CHUNK
    device = rows.device
    position = torch.arange(_CHUNK, device=device)
    exponents = 126 - _WEIGHT_BITS * position
    weights = torch.exp2(exponents.float()).to(dtype)  # powers of two in the normal range: exact
    rows = rows.view(num_images * num_chunks, _CHUNK, grid_h) * weights[:, None]
    cols = cols.view(num_images * num_chunks, _CHUNK, grid_w).to(dtype)
    has_autocast = device.type in AUTOCAST_DEVICE_TYPES  # float16 autocast would make the product float16: no 2**126
    with torch.autocast(device.type, enabled=False) if has_autocast else contextlib.nullcontext():
        sums = torch.bmm(rows.transpose(1, 2), cols).view(num_images, num_chunks, grid_h, grid_w)
    del rows, cols
    fields = _exponent_field(sums)  # (N, C, grid_h, grid_w)
    del sums
    index_dtype = torch.int16 if num_rectangles < 2**15 - 1 else torch.int32
    indices = _CHUNK * torch.arange(num_chunks, device=device)[:, None] + position  # (C, 85); past K: empty ones
    tables = torch.full((num_chunks, 256), num_rectangles, dtype=index_dtype, device=device)  # field 0: none
    tables[:, 127 + exponents] = indices.clamp(max=num_rectangles).to(index_dtype)
    first = tables[-1][fields[:, -1]]
    for chunk in range(num_chunks - 2, -1, -1):  # an earlier chunk's rectangles come first
        first = torch.minimum(first, tables[chunk][fields[:, chunk]])
    return first


def _rectangles_needed(first: torch.Tensor, needed: torch.Tensor, num_rectangles: int) -> torch.Tensor:
    """How many of its K rectangles each image adds until they cover `needed` (N,) cells: int64 (N,), from the first
    rectangle over each cell, `first` (N, grid_h, grid_w) with K where none is (`_first_covering_rectangle`).

    The first n rectangles cover #(first < n) cells, so the smallest n reaching `needed` is one more than the number
    of v in 0..K whose first v + 1 cover fewer: a histogram of `first` per image, summed up. 0 where nothing is
    needed; K where the K rectangles fall short.
    """
    batch_size, device = first.shape[0], first.device
    bins = first.flatten(1).long() + (num_rectangles + 1) * torch.arange(batch_size, device=device)[:, None]
    histogram = torch.zeros(batch_size * (num_rectangles + 1), dtype=torch.int32, device=device)
    histogram.scatter_add_(0, bins.flatten(), torch.ones(1, dtype=torch.int32, device=device).expand(bins.numel()))
    covered = histogram.view(batch_size, num_rectangles + 1).cumsum(1)  # (N, K + 1): cells under the first n + 1
    counts = ((covered < needed[:, None]).sum(1) + 1).clamp(max=num_rectangles)
    return torch.where(needed > 0, counts, 0)


def _rectangle_budget(max_target: float, max_block_fraction: float) -> int:
    """Rectangles drawn per image: so many that the sequential loop would need more only with negligible probability.

    255 for targets up to 0.75 and blocks up to 0.3 of a side (`mask_max_ratio` 0.75). Measured there, in 32,768
    images at 112 px: the loop needed more than 100 rectangles for 0.64% of them, more than 120 for 0.021%, never
    more than 128, the tail falling about tenfold per 14 rectangles; needing more than 255 is of the order of 1e-13.
    """
    mean_area = (max_block_fraction / 2) ** 2
    return 8 + math.ceil(4.0 * math.log(1.0 / (1.0 - max_target)) / mean_area)


def _block_sides(height: int, width: int, align: int, max_block_fraction: float) -> tuple[int, int]:
    """The exclusive upper bounds of a block's height and width in px, checked against `align`."""
    if height % align or width % align:
        raise ValueError(f"align={align} must divide the image size {height}x{width}")
    max_side_h = math.ceil(max_block_fraction * height)
    max_side_w = math.ceil(max_block_fraction * width)
    if max_side_h <= align or max_side_w <= align:
        raise ValueError(
            f"max_block_fraction={max_block_fraction} of {height}x{width} leaves no block side >= align={align}"
        )
    return max_side_h, max_side_w


def _masks_from_uniforms(
    uniforms: torch.Tensor, targets: torch.Tensor, height: int, width: int, align: int, max_side_h: int,
    max_side_w: int, union: str,
) -> torch.Tensor:
    """The sequential loop's masks, bool (N, height, width), from each image's K rectangles drawn as uniforms
    (N, 4, K) (`_rectangles_from_uniforms`) and its target fraction `targets` (N,). No randomness: a function of
    its inputs only, so it can be compiled (the draws, with their explicit generator, cannot)."""
    device = targets.device
    batch_size = targets.shape[0]
    grid_h, grid_w = height // align, width // align
    needed = torch.ceil(targets.float() * grid_h * grid_w - 1e-6).clamp(min=0).to(torch.int64)  # (N,) cells
    rectangles = _rectangles_from_uniforms(uniforms, grid_h, grid_w, align, max_side_h, max_side_w)
    num_rectangles = uniforms.shape[2]
    if union == "first_cover":
        first = _first_covering_rectangle(
            rectangles, grid_h, grid_w, torch.bfloat16 if device.type == "cuda" else torch.float32
        )
        mask = first < _rectangles_needed(first, needed, num_rectangles)[:, None, None]
    else:
        if union == "matmul":
            span_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32  # 0/1 factors: exact in either
            rows, cols = _rectangle_spans(rectangles, grid_h, grid_w, 8)
            union_of_first = functools.partial(_union_by_matmul, rows=rows.to(span_dtype), cols=cols.to(span_dtype))
        else:
            corners = _corner_positions(rectangles, grid_w)  # (N, 4, K)
            union_of_first = functools.partial(
                _union_by_difference_array, corners=corners, grid_h=grid_h, grid_w=grid_w
            )
        low = torch.zeros(batch_size, dtype=torch.int64, device=device)  # union of `low` rectangles is below target
        high = torch.full((batch_size,), num_rectangles, dtype=torch.int64, device=device)  # `high` reach it (or all)
        for _ in range(math.ceil(math.log2(num_rectangles))):
            middle = (low + high) // 2
            reached = union_of_first(middle).flatten(1).sum(1) >= needed
            high = torch.where(reached, middle, high)
            low = torch.where(reached, low, middle)
        high = torch.where(needed > 0, high, torch.zeros_like(high))
        mask = union_of_first(high)
    if align > 1:
        mask = mask.repeat_interleave(align, dim=1).repeat_interleave(align, dim=2)
    return mask


@functools.cache
def _compiled_masks_from_uniforms():
    """`_masks_from_uniforms` through `torch.compile` (one graph per batch and image size): the eager sampler is
    some 70-180 small kernels per call, bound on a GPU by their launches rather than their arithmetic."""
    return torch.compile(_masks_from_uniforms, dynamic=False)


def masks_for_targets(
    targets: torch.Tensor,
    height: int,
    width: int,
    *,
    align: int = 1,
    max_block_fraction: float = 0.3,
    generator: torch.Generator | None = None,
    max_target: float | None = None,
    union: str | None = None,
    compiled: bool = False,
) -> torch.Tensor:
    """Group masks reaching per-image coverage `targets` (B,) in [0, 1): bool (B, height, width), True = corrupted.

    `max_target`, an upper bound of `targets` known on the host, sets how many rectangles are drawn
    (`_rectangle_budget`); without it the function reads `targets.max()` from the device.
    `union` picks how the masks are computed from each image's K rectangles, drawn up front in one call of the
    generator; all three give exactly the masks of the sequential "add until covered" loop on them, and nothing is
    read back from the device:
    - "first_cover" (the default): one pass. The first rectangle over each cell (`_first_covering_rectangle`, one
      matrix product); the first n rectangles cover #(first < n) cells, so an image's n follows from a histogram of
      its indices. On a GPU the bisection's cost is its many small kernels, not their compute: 78 ops (views aside)
      per call at K = 255, against 149 and 189 for the other two. On a CPU at 224 px it is level with the
      difference array at batch 16-64 and faster at batch 256 (1.7x); slower below 128 px.
    - "matmul" and "difference_array": a batched binary search on n (the union of the first n rectangles grows with
      n), log2(K) + 1 unions, each a bfloat16 (float32 on a CPU) matrix product or a 2-D difference array
      (`_union_by_matmul`, `_union_by_difference_array`).
    The one difference from the loop: an image whose K rectangles do not reach its target (probability of the
    order of 1e-13, see `_rectangle_budget`) gets the union of all K, just short of it.
    `compiled` computes the masks from the drawn rectangles through torch.compile (same masks; the first call per
    shape compiles; eager under a TorchDispatchMode, see `compiled_code_allowed`).
    """
    max_side_h, max_side_w = _block_sides(height, width, align, max_block_fraction)
    union = union or "first_cover"
    if union not in ("first_cover", "matmul", "difference_array"):
        raise ValueError(f"union must be 'first_cover', 'matmul' or 'difference_array', got {union!r}")
    if max_target is None:
        max_target = float(targets.max()) if targets.shape[0] else 0.0
    uniforms = torch.rand(targets.shape[0], _RECTANGLE_DRAWS, _rectangle_budget(max_target, max_block_fraction),
                          generator=generator, device=targets.device)
    masks_from_uniforms = (_compiled_masks_from_uniforms() if compiled and compiled_code_allowed()
                           else _masks_from_uniforms)
    return masks_from_uniforms(uniforms, targets, height, width, align, max_side_h, max_side_w, union)


def sample_group_masks(
    batch_size: int,
    height: int,
    width: int,
    *,
    max_ratio: float = 0.75,
    align: int = 1,
    max_block_fraction: float = 0.3,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """Stage-1 GMML masks: bool (batch_size, height, width), True where the image is corrupted."""
    targets = draw_mask_targets(batch_size, max_ratio, generator=generator, device=device)
    return masks_for_targets(
        targets, height, width, align=align, max_block_fraction=max_block_fraction, generator=generator,
        max_target=max_ratio,
    )


def _shifted_copy(pixel_values: torch.Tensor, vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """Each image rolled by its own offset, between a quarter and three quarters of each side, drawn from uniforms
    `vertical` and `horizontal` (B,) in [0, 1)."""
    batch_size, _, height, width = pixel_values.shape
    device = pixel_values.device
    dy = height // 4 + _uniform_integers(vertical, max(1, 3 * height // 4 - height // 4))
    dx = width // 4 + _uniform_integers(horizontal, max(1, 3 * width // 4 - width // 4))
    rows = (torch.arange(height, device=device) + dy[:, None]) % height  # (B, H)
    cols = (torch.arange(width, device=device) + dx[:, None]) % width  # (B, W)
    batch_index = torch.arange(batch_size, device=device)[:, None, None]
    shifted = pixel_values.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2)


_IMAGE_DRAWS = 5  # uniforms per view besides its rectangles': target, stage, partner image, vertical/horizontal shift


def _corruption(
    pixel_values: torch.Tensor, uniforms: torch.Tensor, noise: torch.Tensor | None, views: int, fill: str,
    max_ratio: float, replace_prob: float, replace_ratio: float, align: int, max_side_h: int, max_side_w: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`gmml_corrupt` from its draws: uniforms (B, 5 + 4 K) in [0, 1) (`_IMAGE_DRAWS` per view, then its K
    rectangles') and, for the noise fill, `noise` in the shape of `pixel_values`. No randomness, so it compiles."""
    batch_size, _, height, width = pixel_values.shape
    images_per_view = batch_size // views
    device = pixel_values.device
    replace = uniforms[:, 1] < replace_prob
    if images_per_view < 2:  # no other image to take pixels from
        replace = torch.zeros_like(replace)
    targets = torch.where(replace, replace_ratio, _targets_from_uniforms(uniforms[:, 0], max_ratio))
    rectangles = uniforms[:, _IMAGE_DRAWS:].unflatten(1, (_RECTANGLE_DRAWS, -1))  # (B, 4, K)
    mask = _masks_from_uniforms(rectangles, targets, height, width, align, max_side_h, max_side_w, "first_cover")

    if fill == "noise":
        filler = noise
    elif fill == "zeros":
        filler = torch.zeros_like(pixel_values)
    else:
        filler = _shifted_copy(pixel_values, uniforms[:, 3], uniforms[:, 4])
    if images_per_view > 1:
        index = torch.arange(batch_size, device=device)
        position = index % images_per_view
        shift = 1 + _uniform_integers(uniforms[:, 2], images_per_view - 1)
        partner = index - position + (position + shift) % images_per_view  # another image of the same view
        filler = torch.where(replace[:, None, None, None], pixel_values[partner], filler)
    corrupted = torch.where(mask[:, None], filler, pixel_values)
    return corrupted, mask


@functools.cache
def _compiled_corruption():
    """`_corruption` through `torch.compile` (one graph per batch and image size): masks, fill and replacement in
    a few fused kernels instead of some 60 small ones, and one pass over the pixels instead of four."""
    return torch.compile(_corruption, dynamic=False)


@torch.compiler.disable  # explicit generators are not traced: in a compiled model this runs as the eager code it is
def gmml_corrupt(
    pixel_values: torch.Tensor, config, generator: torch.Generator | None = None, views: int = 1,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch of normalised views for GMML.

    Every random number is drawn up front, in one or two calls of the generator (uniforms for the targets, stages,
    partner images, shifts and rectangles; the noise); the rest is a function of those draws (`_corruption`).

    Args:
        pixel_values: float (B, C, H, W), normalised.
        config: a `GroupMaskedViTConfig` (uses the `mask_*` and `replace_*` fields).
        generator: a `torch.Generator` on `pixel_values.device`, or None for torch's default generator.
        views: the batch is this many consecutive groups of B / views images, each group one view of the same
            images in the same order (e.g. two augmented views per image); replaced pixels come from another image
            of the view's own group, never from another view of the same image.
        compiled: run everything after the draws through torch.compile: the same output, in a few fused kernels
            (the first call per shape compiles; eager under a TorchDispatchMode, see `compiled_code_allowed`).

    Returns:
        corrupted: (B, C, H, W), same dtype as the input.
        mask: bool (B, H, W), True where pixels were corrupted (the loss is computed there).
    """
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values must be (batch, channels, height, width), got shape {tuple(pixel_values.shape)}")
    batch_size, _, height, width = pixel_values.shape
    if views < 1 or batch_size % views:
        raise ValueError(f"views={views} must divide the batch size {batch_size}")
    if config.mask_fill not in ("noise", "zeros", "self_copy"):
        raise ValueError(f"Unknown mask_fill {config.mask_fill!r}")
    max_side_h, max_side_w = _block_sides(height, width, config.mask_align, config.mask_max_block_fraction)
    budget = _rectangle_budget(max(config.mask_max_ratio, config.replace_ratio), config.mask_max_block_fraction)
    device = pixel_values.device
    uniforms = torch.rand(batch_size, _IMAGE_DRAWS + _RECTANGLE_DRAWS * budget, generator=generator, device=device)
    noise = None
    if config.mask_fill == "noise":
        noise = torch.randn(pixel_values.shape, generator=generator, device=device, dtype=pixel_values.dtype)
    corruption = _compiled_corruption() if compiled and compiled_code_allowed() else _corruption
    return corruption(
        pixel_values, uniforms, noise, views, config.mask_fill, config.mask_max_ratio, config.replace_prob,
        config.replace_ratio, config.mask_align, max_side_h, max_side_w,
    )


__all__ = ["draw_mask_targets", "masks_for_targets", "sample_group_masks", "gmml_corrupt"]
