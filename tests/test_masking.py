"""GMML group masking: coverage statistics, alignment, replacement, fills, seeding."""

import math

import numpy as np
import pytest
import torch

from modeling_cxrgm import GroupMaskedViTConfig, gmml_corrupt, masks_for_targets, sample_group_masks
from modeling_cxrgm import masking
from modeling_cxrgm.masking import draw_mask_targets


def sequential_reference_masks(count, size, *, max_ratio, align, max_block_fraction, seed):
    """The reference algorithm, one image and one rectangle at a time (SPEC §1.4), for comparison."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, size, size), dtype=bool)
    max_side = math.ceil(max_block_fraction * size)
    for mask in masks:
        target = max_ratio if max_ratio <= 0.5 else rng.uniform(0.5, max_ratio)
        while mask.mean() < target:
            top = align * rng.integers(0, size // align)
            left = align * rng.integers(0, size // align)
            height = align * (rng.integers(align, max_side) // align)
            width = align * (rng.integers(align, max_side) // align)
            mask[top:top + height, left:left + width] = True
    return masks


def coverage(masks: torch.Tensor) -> torch.Tensor:
    return masks.float().mean((1, 2))


def test_mean_masked_fraction_at_224_pixel_blocks_matches_spec():
    masks = sample_group_masks(256, 224, 224, max_ratio=0.75, align=1, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (256, 224, 224) and masks.dtype == torch.bool
    fractions = coverage(masks)
    assert 0.60 <= fractions.mean() <= 0.67
    assert fractions.min() >= 0.5  # every image reaches at least its target, which is >= 0.5
    touched = masks.view(256, 14, 16, 14, 16).any(4).any(2).float().mean()
    assert 0.80 <= touched <= 0.92  # SPEC measured 87% of 16-px patches touched


def test_same_distribution_as_the_sequential_loop():
    ours = coverage(sample_group_masks(300, 96, 96, max_ratio=0.75, align=1,
                                       generator=torch.Generator().manual_seed(1))).numpy()
    reference = sequential_reference_masks(300, 96, max_ratio=0.75, align=1, max_block_fraction=0.3, seed=1)
    reference = reference.mean((1, 2))
    assert abs(ours.mean() - reference.mean()) < 0.012
    for q in (0.05, 0.5, 0.95):
        assert abs(np.quantile(ours, q) - np.quantile(reference, q)) < 0.03


def test_align_16_masks_are_unions_of_whole_patches():
    masks = sample_group_masks(64, 224, 224, align=16, generator=torch.Generator().manual_seed(2))
    patches = masks.view(64, 14, 16, 14, 16)
    assert torch.equal(patches.all(4).all(2), patches.any(4).any(2))
    assert 0.58 <= coverage(masks).mean() <= 0.70  # SPEC: 0.642


def test_each_mask_reaches_its_target_and_stops_there():
    targets = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.6, 0.75])
    masks = masks_for_targets(targets, 64, 64, align=1, generator=torch.Generator().manual_seed(3))
    fractions = coverage(masks)
    assert fractions[0] == 0
    assert (fractions[1:] >= targets[1:]).all()
    largest_block = math.ceil(0.3 * 64) ** 2 / 64**2  # one rectangle is all it may overshoot by
    assert (fractions[1:] < targets[1:] + largest_block).all()


UNIONS = ("first_cover", "matmul", "difference_array")


def masks_by_union(targets, height, width, *, align=1, seed=0, **kwargs):
    """Each union method's masks from the same rectangles (the same seed)."""
    return {union: masks_for_targets(targets, height, width, align=align, union=union,
                                     generator=torch.Generator(targets.device).manual_seed(seed), **kwargs)
            for union in UNIONS}


@pytest.mark.parametrize("height,width,align", [(64, 64, 1), (48, 80, 1), (224, 224, 1), (96, 96, 16), (64, 32, 4),
                                                (112, 160, 16), (40, 24, 1)])
def test_all_union_methods_give_the_same_masks(height, width, align):
    """First cover (one pass), matmul and difference array (bisection) must agree bit for bit."""
    for seed in range(3):
        edges = torch.tensor([0.0, 1e-6, 0.3, 0.5, 0.7499, 0.75])
        targets = torch.cat([edges, draw_mask_targets(10, 0.75, generator=torch.Generator().manual_seed(seed))])
        masks = masks_by_union(targets, height, width, align=align, seed=seed, max_target=0.75)
        assert torch.equal(masks["first_cover"], masks["difference_array"])
        assert torch.equal(masks["matmul"], masks["difference_array"])
        fractions = coverage(masks["first_cover"])
        assert fractions[0] == 0 and fractions[1] > 0 and (fractions[1:] >= targets[1:]).all()


@pytest.mark.parametrize("budget", [1, 10, 11, 12, 22, 23, 40])
def test_union_methods_agree_when_the_rectangle_budget_falls_short(budget, monkeypatch):
    """With few rectangles most images stop short of their target and get all of them, in every method (also at a
    budget of whole chunks of 11 rectangles, and one more or less)."""
    monkeypatch.setattr(masking, "_rectangle_budget", lambda max_target, max_block_fraction: budget)
    targets = torch.tensor([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 0.999] * 3)
    masks = masks_by_union(targets, 48, 56, seed=budget, max_target=0.75)
    assert torch.equal(masks["first_cover"], masks["difference_array"])
    assert torch.equal(masks["matmul"], masks["difference_array"])
    short = coverage(masks["first_cover"]) < targets
    assert short.any() and not short.all()
    rectangles = drawn_rectangles(budget, len(targets), 48, 56, math.ceil(0.3 * 48), math.ceil(0.3 * 56),
                                  torch.Generator().manual_seed(budget))
    union_of_all = first_covering_rectangle_by_loop(rectangles, 48, 56) < budget
    assert torch.equal(masks["first_cover"][short], union_of_all[short])


def drawn_rectangles(count, num_images, grid_h, grid_w, max_side_h, max_side_w, generator):
    """`count` rectangles per image, drawn as `masks_for_targets` draws them (align 1)."""
    uniforms = torch.rand(num_images, 4, count, generator=generator)
    return masking._rectangles_from_uniforms(uniforms, grid_h, grid_w, 1, max_side_h, max_side_w)


def first_covering_rectangle_by_loop(rectangles, grid_h, grid_w):
    """Index of the first rectangle over each cell (K where none is), painting the rectangles last to first."""
    top, bottom, left, right = (side.tolist() for side in rectangles)
    first = torch.full((len(top), grid_h, grid_w), len(top[0]), dtype=torch.int64)
    for image in range(len(top)):
        for k in reversed(range(len(top[0]))):
            first[image, top[image][k]:bottom[image][k], left[image][k]:right[image][k]] = k
    return first


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("count", [1, 84, 85, 86, 255])
def test_first_covering_rectangle_is_the_first_in_draw_order(count, dtype):
    """Exact across the chunks of 85 rectangles, in float32 and bfloat16 sums."""
    rectangles = drawn_rectangles(count, 6, 40, 50, 6, 8, torch.Generator().manual_seed(count))
    first = masking._first_covering_rectangle(rectangles, 40, 50, dtype)
    assert first.dtype == torch.int16 and first.shape == (6, 40, 50)
    reference = first_covering_rectangle_by_loop(rectangles, 40, 50)
    assert (reference == count).any() and (reference == 0).any() and (reference >= count - 2).any()
    assert torch.equal(first.long(), reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_first_covering_rectangle_under_every_later_rectangle(dtype):
    """A cell under all rectangles from the first one over it on: the largest sums the weights can make."""
    for first_over in (0, 1, 84, 85, 86, 170, 254):
        top, left = torch.zeros(1, 255, dtype=torch.int64), torch.zeros(1, 255, dtype=torch.int64)
        bottom, right = torch.full_like(top, 3), torch.full_like(top, 4)  # each over the whole 3 x 4 grid
        bottom[0, :first_over] = 0  # the earlier ones empty
        first = masking._first_covering_rectangle((top, bottom, left, right), 3, 4, dtype)
        assert torch.equal(first, torch.full((1, 3, 4), first_over, dtype=torch.int16)), first_over


@pytest.mark.parametrize("count, dtype", [(2**15 - 2, torch.int16), (2**15 - 1, torch.int32)])
def test_first_covering_rectangle_indices_widen_past_int16(count, dtype):
    """Indices up to K and the counts K + 1 fit int16 below K = 2**15 - 1; from there on int32 is used."""
    top, bottom, left, right = (torch.zeros(1, count, dtype=torch.int64) for _ in range(4))  # all empty
    bottom[0, -1] = right[0, -1] = 1  # but the last, over cell (0, 0)
    first = masking._first_covering_rectangle((top, bottom, left, right), 3, 4, torch.float32)
    expected = torch.full((1, 3, 4), count, dtype=dtype)
    expected[0, 0, 0] = count - 1
    assert first.dtype == dtype and torch.equal(first, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_all_union_methods_give_the_same_masks():
    """On CUDA first cover and matmul run bfloat16 matrix products: both exact."""
    edges = torch.tensor([0.0, 1e-6, 0.5, 0.7499, 0.75], device="cuda")
    for seed, (height, width, align) in enumerate([(224, 224, 1), (224, 224, 1), (112, 160, 16), (96, 64, 1)]):
        generator = torch.Generator("cuda").manual_seed(seed)
        targets = torch.cat([edges, draw_mask_targets(507, 0.75, generator=generator, device="cuda")])
        masks = masks_by_union(targets, height, width, align=align, seed=seed, max_target=0.75)
        default = masks_for_targets(targets, height, width, align=align, max_target=0.75,
                                    generator=torch.Generator("cuda").manual_seed(seed))
        assert torch.equal(default, masks["first_cover"])  # the device's default
        assert torch.equal(masks["first_cover"], masks["difference_array"])
        assert torch.equal(masks["matmul"], masks["difference_array"])
        assert (coverage(masks["first_cover"]) >= targets).all()


def test_unknown_union_method_is_refused():
    with pytest.raises(ValueError, match="union must be"):
        masks_for_targets(torch.rand(2), 32, 32, max_target=0.75, union="painter")


@pytest.mark.parametrize("union", UNIONS)
def test_mask_sampler_never_reads_a_value_back_from_the_device(union):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        masks = masks_for_targets(torch.rand(4), 32, 32, max_target=0.75, union=union)
        assert masks.shape == (4, 32, 32) and masks.dtype == torch.bool


def test_corruption_never_reads_a_value_back_from_the_device():
    """No host sync in a training step: under FakeTensorMode any read of a tensor's value raises."""
    from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

    config = GroupMaskedViTConfig.from_preset("vit_tiny_patch16_224", image_size=32, patch_size=8, num_channels=1)
    with FakeTensorMode():
        corrupted, mask = gmml_corrupt(torch.randn(4, 1, 32, 32), config)
        assert corrupted.shape == (4, 1, 32, 32) and mask.shape == (4, 32, 32)
        with pytest.raises(DataDependentOutputException):  # the check can fail: without a bound given on the
            masks_for_targets(torch.rand(4), 32, 32)  # host, the sampler reads targets.max() from the device


def test_seeding():
    def draw(seed):
        return sample_group_masks(8, 64, 64, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_invalid_alignment_is_refused():
    with pytest.raises(ValueError, match="align"):
        sample_group_masks(2, 64, 64, align=7)


def tiny_config(**overrides):
    return GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, **overrides)


def distinct_images(batch=8, channels=1, size=32):
    """Images whose pixel values are all different, so a copied pixel identifies its source image."""
    return torch.arange(batch * channels * size * size, dtype=torch.float32).view(batch, channels, size, size)


def test_replacement_takes_pixels_from_another_image_at_the_same_place():
    images = distinct_images()
    config = tiny_config(replace_prob=1.0)
    corrupted, mask = gmml_corrupt(images, config, torch.Generator().manual_seed(0))
    assert (coverage(mask) >= 0.3).all()
    for i in range(images.shape[0]):
        replaced = corrupted[i, 0][mask[i]]
        sources = [j for j in range(images.shape[0]) if torch.equal(images[j, 0][mask[i]], replaced)]
        assert len(sources) == 1 and sources[0] != i
        assert torch.equal(corrupted[i, 0][~mask[i]], images[i, 0][~mask[i]])


@pytest.mark.parametrize("fill", ["noise", "zeros", "self_copy"])
def test_stage_one_fills(fill):
    images = distinct_images(batch=16)
    corrupted, mask = gmml_corrupt(images, tiny_config(replace_prob=0.0, mask_fill=fill),
                                   torch.Generator().manual_seed(1))
    assert (coverage(mask) >= 0.5).all()
    inside = corrupted[:, 0][mask]
    assert torch.equal(corrupted[:, 0][~mask], images[:, 0][~mask])
    if fill == "zeros":
        assert (inside == 0).all()
    elif fill == "noise":
        assert abs(inside.mean()) < 0.1 and abs(inside.std() - 1) < 0.1
    else:
        lows = images[:, 0].flatten(1).min(1).values[:, None, None].expand_as(mask)[mask]
        highs = images[:, 0].flatten(1).max(1).values[:, None, None].expand_as(mask)[mask]
        assert ((inside >= lows) & (inside <= highs)).all()  # copied from the same image
        assert (inside != images[:, 0][mask]).all()  # but from elsewhere


def test_stages_mix_with_probability_one_half():
    images = torch.randn(400, 1, 32, 32)
    _, mask = gmml_corrupt(images, tiny_config(), torch.Generator().manual_seed(2))
    replaced = coverage(mask) < 0.45  # stage 2 targets 0.3, stage 1 at least 0.5
    assert 0.4 < replaced.float().mean() < 0.6


def test_single_image_batches_never_replace():
    _, mask = gmml_corrupt(torch.randn(1, 1, 32, 32), tiny_config(replace_prob=1.0), torch.Generator().manual_seed(0))
    assert coverage(mask)[0] >= 0.5


def test_replacement_with_views_takes_pixels_from_another_source_image():
    """Two views of three images, (a, b, c, a', b', c'): a view's pixels never come from the other view of its image."""
    images = distinct_images(batch=6)
    corrupted, mask = gmml_corrupt(images, tiny_config(replace_prob=1.0), torch.Generator().manual_seed(0), views=2)
    for i in range(6):
        replaced = corrupted[i, 0][mask[i]]
        sources = [j for j in range(6) if torch.equal(images[j, 0][mask[i]], replaced)]
        assert len(sources) == 1 and sources[0] % 3 != i % 3


def test_two_views_of_one_image_never_replace():
    views = torch.randn(1, 1, 32, 32).repeat(2, 1, 1, 1)
    for seed in range(5):
        _, mask = gmml_corrupt(views, tiny_config(replace_prob=1.0), torch.Generator().manual_seed(seed), views=2)
        assert (coverage(mask) >= 0.5).all()


def test_views_must_divide_the_batch():
    with pytest.raises(ValueError, match="views"):
        gmml_corrupt(torch.randn(3, 1, 32, 32), tiny_config(), views=2)


def test_compiled_sampler_gives_the_eager_masks():
    """`compiled=True` (the masks from the drawn rectangles through torch.compile) changes nothing but the speed."""
    targets = torch.cat([torch.tensor([0.0, 0.75]), draw_mask_targets(6, 0.75, generator=torch.Generator().manual_seed(0))])
    for union in ("first_cover", "matmul", "difference_array"):
        eager, compiled = (masks_for_targets(targets, 40, 48, align=4, generator=torch.Generator().manual_seed(1),
                                             max_target=0.75, union=union, compiled=compiled)
                           for compiled in (False, True))
        assert torch.equal(compiled, eager), union
        assert (coverage(compiled)[1:] >= targets[1:]).all()


@pytest.mark.parametrize("fill, views", [("noise", 2), ("self_copy", 1)])
def test_compiled_corruption_is_the_eager_corruption(fill, views):
    """`gmml_corrupt(..., compiled=True)`: the same masks, fill and replaced pixels from one compiled graph."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    images = distinct_images(batch=6)
    eager, compiled = (gmml_corrupt(images, tiny_config(mask_fill=fill), torch.Generator().manual_seed(3), views=views,
                                    compiled=flag)
                       for flag in (False, True))
    assert torch.equal(compiled[1], eager[1]) and torch.equal(compiled[0], eager[0])
    assert (coverage(eager[1]) < 0.45).any() and (coverage(eager[1]) >= 0.5).any()  # both stages in the batch
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_a_call_under_a_flop_counter_leaves_the_compiled_corruption_compiled():
    """Under a TorchDispatchMode (here torch's FLOP counter) the corruption runs eagerly, with the same output; called
    through torch.compile there, it would have run eagerly for the rest of the process."""
    from torch.profiler import profile
    from torch.utils.flop_counter import FlopCounterMode

    images, config = distinct_images(batch=4), tiny_config()

    def corrupt():
        return gmml_corrupt(images, config, torch.Generator().manual_seed(5), views=2, compiled=True)

    def runs_compiled() -> bool:
        with profile() as profiler:
            corrupt()
        return any(event.key.startswith("Torch-Compiled Region") for event in profiler.key_averages())

    torch._dynamo.reset()
    expected = corrupt()
    assert runs_compiled()
    with FlopCounterMode(display=False):
        assert not masking.compiled_code_allowed()
        counted = corrupt()
    assert masking.compiled_code_allowed()
    assert torch.equal(counted[0], expected[0]) and torch.equal(counted[1], expected[1])
    assert runs_compiled()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_the_corruption_under_float16_autocast_is_the_corruption_without_it(device):
    """The first cover weighs rectangles by up to 2**126 in one matrix product: under float16 autocast (mixed
    precision fp16, the choice of GPUs without bfloat16) the product became float16, its weights inf, and the masks
    came out of the wrong shape. The product now leaves autocast out."""
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)
    images = torch.randn(4, 1, 32, 32, device=device)
    expected = gmml_corrupt(images, config, torch.Generator(device).manual_seed(0))
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast(device, dtype=dtype):
            corrupted, mask = gmml_corrupt(images, config, torch.Generator(device).manual_seed(0))
        assert torch.equal(mask, expected[1]) and torch.equal(corrupted, expected[0]), dtype
