"""Nothing in the training step creates a tensor on the default device: run on the meta device, any such tensor meets
one on another device and raises, as it would on a GPU. The corruption (each fill, each union), augmentation (with
masks) and the engine's forward + backward for each task, in training and evaluation."""

import pytest
import torch

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
