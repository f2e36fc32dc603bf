"""Nothing in the training step creates a tensor on the default device: run on the meta device, any such tensor meets
one on another device and raises, as it would on a GPU. The corruption (each fill, each union), augmentation (with
masks) and the engine's forward + backward for each task, in training and evaluation. Nor does a step copy a tensor
from the host: on a GPU that is a blocking copy, which waits for the device to finish everything queued before it."""

import pytest
import torch
from torch.overrides import TorchFunctionMode

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    gmml_corrupt,
)
from modeling_cxrgm.masking import masks_for_targets
from train.augment import AugmentSpec
from train.engine import forward, mask_counts
from train.run import Context

DEVICE = "meta"
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=64)
SPEC = AugmentSpec(crop_scale=(0.3, 1.0), hflip_p=0.5, rotation=10.0, jitter_p=0.5, blur_p=0.5)


@pytest.mark.parametrize("union", ["first_cover", "matmul", "difference_array"])
def test_mask_sampler_stays_on_the_device(union):
    targets = torch.full((4,), 0.6, device=DEVICE)
    assert masks_for_targets(targets, 32, 32, union=union, max_target=0.75).device.type == DEVICE


@pytest.mark.parametrize("fill", ["noise", "zeros", "self_copy"])
def test_corruption_stays_on_the_device(fill):
    config = GroupMaskedViTConfig(**TINY, mask_fill=fill)
    corrupted, mask = gmml_corrupt(torch.randn(4, 1, 32, 32, device=DEVICE), config)
    assert corrupted.device.type == mask.device.type == DEVICE


@pytest.mark.parametrize("task, model_class, overrides, labels", [
    ("pretraining", GroupMaskedViTForPreTraining, {}, None),
    ("classification", GroupMaskedViTForImageClassification, {"num_labels": 2}, torch.zeros(4, dtype=torch.long)),
    ("segmentation", GroupMaskedViTForSegmentation, {"num_labels": 1}, torch.zeros(4, 32, 32, dtype=torch.uint8)),
])
def test_training_and_evaluation_steps_stay_on_the_device(task, model_class, overrides, labels):
    config = GroupMaskedViTConfig(**TINY, **overrides)
    model = model_class(config).to(DEVICE)
    batch = {"pixel_values": torch.zeros(4, 1, 32, 32, dtype=torch.uint8, device=DEVICE)}  # as the loader sends it
    if labels is not None:
        batch["labels"] = labels.to(DEVICE)
    ctx = Context(task=task, mean=[0.5], std=[0.25], model_config=config, augment=SPEC)
    loss, outputs, pixel_values, _ = forward(model, batch, ctx, None, train=True)
    loss.backward()
    assert pixel_values.device.type == DEVICE and all(p.grad.device.type == DEVICE for p in model.parameters())
    loss, outputs, _, _ = forward(model, batch, ctx, None, train=False)
    if task == "segmentation":
        assert mask_counts(outputs.logits.float(), batch["labels"])["intersection"].device.type == DEVICE


class HostCopies(TorchFunctionMode):
    """Records each tensor made on another device from host data while it is active: `torch.tensor` / `as_tensor` of
    host values, and `.to` / `.copy_` of a CPU tensor to another device."""

    def __init__(self):
        super().__init__()
        self.copies = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = kwargs.get("device")
        if func in (torch.tensor, torch.as_tensor):
            host = not isinstance(args[0], torch.Tensor) or args[0].device.type == "cpu"
        elif func is torch.Tensor.to:
            host = args[0].device.type == "cpu"
            target = target or next((a.device if isinstance(a, torch.Tensor) else a for a in args[1:]
                                     if isinstance(a, (str, torch.device, torch.Tensor))), None)
        elif func is torch.Tensor.copy_:
            host, target = args[1].device.type == "cpu", args[0].device
        else:
            host = False
        if host and target is not None and torch.device(target).type != "cpu":
            self.copies.append(getattr(func, "__name__", str(func)))
        return func(*args, **kwargs)


TASKS = [
    ("pretraining", GroupMaskedViTForPreTraining, {}, None),
    ("classification", GroupMaskedViTForImageClassification, {"num_labels": 2}, torch.zeros(4, dtype=torch.long)),
    ("segmentation", GroupMaskedViTForSegmentation, {"num_labels": 1}, torch.zeros(4, 32, 32, dtype=torch.uint8)),
]


def task_step(task, model_class, overrides, labels, device):
    """(model, batch, ctx) of a tiny step of `task` on `device`, the batch as the loader sends it."""
    config = GroupMaskedViTConfig(**TINY, **overrides)
    batch = {"pixel_values": torch.zeros(4, 1, 32, 32, dtype=torch.uint8, device=device)}
    if labels is not None:
        batch["labels"] = labels.to(device)
    ctx = Context(task=task, mean=[0.5], std=[0.25], model_config=config, augment=SPEC)
    return model_class(config).to(device), batch, ctx


@pytest.mark.parametrize("task, model_class, overrides, labels", TASKS)
def test_a_step_copies_nothing_from_the_host(task, model_class, overrides, labels):
    """Training and evaluation steps copy no tensor from the host: the normalisation's mean and std were copied at
    every step, so on a GPU the host waited for the device at every step and then left it idle while it queued the
    next one (a batch-64 ViT-S fine-tuning step took about twice its model's time in the training loop on an H200).
    The difference-array mask union copied its corner signs."""
    model, batch, ctx = task_step(task, model_class, overrides, labels, DEVICE)
    with HostCopies() as host:
        forward(model, batch, ctx, None, train=True)[0].backward()
        forward(model, batch, ctx, None, train=False)
    assert host.copies == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("task, model_class, overrides, labels", TASKS)
def test_a_cuda_step_never_waits_for_the_device(task, model_class, overrides, labels):
    """On a GPU, after a first step: a training step (augmentation, corruption, forward, backward, fused AdamW) and an
    evaluation step make no synchronising call (torch.cuda.set_sync_debug_mode("error") raises at one)."""
    model, batch, ctx = task_step(task, model_class, overrides, labels, "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    generator = torch.Generator(device="cuda").manual_seed(0)

    def step():
        forward(model, batch, ctx, generator, train=True)[0].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        forward(model, batch, ctx, generator, train=False)

    step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
