"""Batched augmentation in torch: every image of a batch gets its own random crop, flip, rotation, jitter and blur.

Runs on the batch's device (GPU or CPU) with one `torch.Generator` on that device, so the same generator state
gives the same views. Inputs are unit-range images (B, C, H, W); `normalize` maps them to the model's space.
Every random number of a call is drawn up front, in one call of the generator; the views are a function of those
draws (`_views`), which `augment(..., compiled=True)` runs through torch.compile.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from modeling_cxrgm.image_processing_gmvit import PAD_LABEL
from modeling_cxrgm.masking import compiled_code_allowed


@dataclass
class AugmentSpec:
    """Random-resized-crop scale/ratio (area and aspect ranges), flip / jitter / blur probabilities, rotation degrees."""

    crop_scale: tuple[float, float] = (0.05, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    rotation: float = 0.0
    jitter: float = 0.1
    jitter_p: float = 0.3
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @classmethod
    def from_args(cls, args) -> "AugmentSpec":
        return cls(tuple(args.crop_scale), tuple(args.crop_ratio), args.hflip_p, args.rotation, args.jitter,
                   args.jitter_p, args.blur_p)


CROP_TRIES = 10  # random-resized-crop draws per image; the first that fits is used
# uniforms per image of one `augment` call, in the order `_views` reads them: crop areas, crop log aspect ratios, crop
# centre offsets (x, y), flip, rotation, jitter, brightness, contrast, blur, blur sigma
DRAWS = (CROP_TRIES, CROP_TRIES, 2, 1, 1, 1, 1, 1, 1, 1)


def _scaled(uniforms: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Uniforms in [0, 1) -> U(low, high), in their shape."""
    return low + (high - low) * uniforms


def crop_boxes(batch_size: int, spec: AugmentSpec, generator, device, tries: int = CROP_TRIES,
               aspect: torch.Tensor | None = None) -> torch.Tensor:
    """Random-resized-crop boxes (B, 4): centre x, y in [-1, 1] and width, height as fractions of the image.

    Like torchvision: area ~ U(scale), log aspect ~ U(log ratio) in pixels of an image `aspect` (B,) times wider
    than high (None: square); the first of `tries` draws that fits is used, else the whole image.
    """
    uniforms = torch.rand(batch_size, 2 * tries + 2, generator=generator, device=device)
    return _boxes_from_uniforms(*uniforms.split([tries, tries, 2], 1), spec, aspect)


def _boxes_from_uniforms(area_draws: torch.Tensor, ratio_draws: torch.Tensor, offset_draws: torch.Tensor,
                         spec: AugmentSpec, aspect: torch.Tensor | None) -> torch.Tensor:
    """`crop_boxes` from its uniforms: (B, tries) for the areas and for the log aspect ratios, (B, 2) for the
    centre's offsets."""
    area = _scaled(area_draws, *spec.crop_scale)
    log_ratio = _scaled(ratio_draws, math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]))
    if aspect is not None:  # a pixel aspect r is a width fraction r / aspect times the height fraction
        log_ratio = log_ratio - aspect.float().log()[:, None]
    width, height = (area * log_ratio.exp()).sqrt(), (area / log_ratio.exp()).sqrt()
    fits = (width <= 1) & (height <= 1)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full_like(fits[:, 0], -1, dtype=torch.long))
    pick = first.clamp(min=0)[:, None]
    width = torch.where(first >= 0, width.gather(1, pick)[:, 0], torch.ones_like(width[:, 0]))
    height = torch.where(first >= 0, height.gather(1, pick)[:, 0], torch.ones_like(height[:, 0]))
    offsets = _scaled(offset_draws, -1.0, 1.0)
    centre_x, centre_y = offsets[:, 0] * (1 - width), offsets[:, 1] * (1 - height)
    return torch.stack([centre_x, centre_y, width, height], 1)


def content_boxes(content: torch.Tensor, size: int) -> torch.Tensor:
    """Where each image lies in its padded (size, size) input: `content` (B, 4) top, left, height, width in pixels ->
    (B, 4) centre x, y in [-1, 1] and width, height as fractions of the input (the layout of `crop_boxes`)."""
    top, left, height, width = content.float().unbind(1)
    return torch.stack([(2 * left + width) / size - 1, (2 * top + height) / size - 1, width / size, height / size], 1)


def _within(boxes: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """Boxes given relative to `frame` (both (B, 4), `crop_boxes` layout) -> the same boxes relative to the input."""
    return torch.cat([frame[:, :2] + boxes[:, :2] * frame[:, 2:], boxes[:, 2:] * frame[:, 2:]], 1)


def content_views(images: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Each image's content (no padding), resized to the whole (B, C, S, S) square: the crop of scale 1 that
    pretraining views are drawn from, for evaluation."""
    frame = content_boxes(content, images.shape[-1])
    zero = torch.zeros_like(frame[:, 0])
    theta = torch.stack([torch.stack([frame[:, 2], zero, frame[:, 0]], 1),
                         torch.stack([zero, frame[:, 3], frame[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bicubic", padding_mode="border", align_corners=False).clamp(0, 1)


def _affine(draws: tuple[torch.Tensor, ...], spec: AugmentSpec, content=None, size: int = 1) -> torch.Tensor:
    """Sampling grids' affine matrices (B, 2, 3): output coordinates -> input coordinates, from the crop, flip and
    rotation uniforms of `draws` (`DRAWS`). With `content` (B, 4), crops are drawn from each image's content instead
    of its whole padded input."""
    area_draws, ratio_draws, offset_draws, flip_draws, angle_draws = draws[:5]
    frame = None if content is None else content_boxes(content, size)
    aspect = None if frame is None else frame[:, 2] / frame[:, 3]
    boxes = _boxes_from_uniforms(area_draws, ratio_draws, offset_draws, spec, aspect)
    if frame is not None:
        boxes = _within(boxes, frame)
    flip = torch.where(flip_draws[:, 0] < spec.hflip_p, -1.0, 1.0)
    angle = _scaled(angle_draws[:, 0], -spec.rotation, spec.rotation) * math.pi / 180
    cos, sin = angle.cos(), angle.sin()
    sx, sy = boxes[:, 2] * flip, boxes[:, 3]
    row0 = torch.stack([cos * sx, -sin * sy, boxes[:, 0]], 1)
    row1 = torch.stack([sin * sx, cos * sy, boxes[:, 1]], 1)
    return torch.stack([row0, row1], 1)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (B,): (B, C, H, W) -> (B, C, H, W)."""
    batch_size, channels, height, width = images.shape
    radius = min(math.ceil(3 * max_sigma), (min(height, width) - 1) // 2)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(channels, 0)  # (B * C, k)
    flat = images.reshape(1, batch_size * channels, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :],
                    groups=batch_size * channels)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None],
                    groups=batch_size * channels)
    return flat.reshape(batch_size, channels, height, width)


def augment(images: torch.Tensor, spec: AugmentSpec, generator: torch.Generator, masks: torch.Tensor | None = None,
            content: torch.Tensor | None = None, compiled: bool = False):
    """Random views of unit-range images (B, C, H, W) -> (B, C, H, W) in [0, 1]; `masks` (B, H, W) move with them.

    Geometry (crop, flip, rotation) is one bicubic `grid_sample` per batch; outside the image is black and, in masks,
    `PAD_LABEL` (ignored by the loss and the metrics, as the image processor's padding is). `content` (B, 4): top,
    left, height, width of each image inside its padded input; crops are then drawn from the image alone, as from
    the original file (pretraining views, which have no padding to reconstruct). `compiled`: everything after the
    one draw of uniforms through torch.compile but the bicubic sampling (the same views up to rounding, in a few
    fused kernels instead of some 100 small ones; the first call per shape compiles; eager under a TorchDispatchMode,
    see `compiled_code_allowed`).
    Returns the images, or (images, masks) when masks are given.
    """
    uniforms = torch.rand(images.shape[0], sum(DRAWS), generator=generator, device=images.device)
    views_from_uniforms = _compiled_views() if compiled and compiled_code_allowed() else _views
    return views_from_uniforms(images, uniforms, spec, masks, content)


@torch.compiler.disable  # torch.compile's bicubic sampling was 2.8x slower than this kernel (CPU, batch 32, 224 px)
def _bicubic_sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """`F.grid_sample` of (B, C, H, W) `images` at `grid` (B, H, W, 2), bicubic, zero outside: (B, C, H, W)."""
    return F.grid_sample(images, grid, mode="bicubic", padding_mode="zeros", align_corners=False)


@functools.cache
def _compiled_views():
    """`_views` through `torch.compile` (one graph per batch shape, spec and masks/content presence)."""
    return torch.compile(_views, dynamic=False)


def _views(images: torch.Tensor, uniforms: torch.Tensor, spec: AugmentSpec, masks: torch.Tensor | None,
           content: torch.Tensor | None):
    """`augment` from its uniforms (B, sum(DRAWS)): no randomness, so it compiles."""
    draws = uniforms.split(DRAWS, 1)
    jitter_draws, brightness_draws, contrast_draws, blur_draws, sigma_draws = (draw[:, 0] for draw in draws[5:])
    width = images.shape[-1]
    theta = _affine(draws, spec, content, width)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = _bicubic_sample(images.float(), grid).clamp(0, 1)

    jitter = jitter_draws < spec.jitter_p
    brightness = _scaled(brightness_draws, 1 - spec.jitter, 1 + spec.jitter)
    contrast = _scaled(contrast_draws, 1 - spec.jitter, 1 + spec.jitter)
    brightness = torch.where(jitter, brightness, torch.ones_like(brightness))[:, None, None, None]
    contrast = torch.where(jitter, contrast, torch.ones_like(contrast))[:, None, None, None]
    views = (views * brightness).clamp(0, 1)
    mean = views.mean((1, 2, 3), keepdim=True)
    views = ((views - mean) * contrast + mean).clamp(0, 1)

    blur = blur_draws < spec.blur_p
    sigma = _scaled(sigma_draws, *spec.blur_sigma)
    if spec.blur_p > 0:  # blur all, keep the chosen: asking whether any was chosen would wait for the device
        views = torch.where(blur[:, None, None, None], _gaussian_blur(views, sigma, spec.blur_sigma[1]), views)

    if masks is None:
        return views
    moved = F.grid_sample(masks[:, None].float() + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    moved = moved[:, 0].round().long() - 1  # -1: brought in from outside the image
    return views, moved.masked_fill(moved < 0, PAD_LABEL)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, C, H, W) unit range -> model space with per-channel mean/std (sequences of length C)."""
    return (images - _channel_values(mean, images)) / _channel_values(std, images)


def _channel_values(values, like: torch.Tensor) -> torch.Tensor:
    """C host numbers -> (1, C, 1, 1), filled on `like`'s device and dtype. Not copied from the host: on a GPU that is a
    blocking copy, which made the host wait at every step for the device to finish its queue, and the device then wait
    for the host to queue the next step."""
    return torch.stack([like.new_full((), float(value)) for value in values]).view(1, -1, 1, 1)
