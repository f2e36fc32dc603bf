"""Configuration of the group-masked vision transformer (GMML) for chest X-rays.

This file is copied next to the weights by `save_pretrained`, so it imports only transformers.
"""

import math

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

# Every Auto class a saved folder must answer to, so that `trust_remote_code=True` works for all of them.
AUTO_MAP = {
    "AutoConfig": "configuration_gmvit.GroupMaskedViTConfig",
    "AutoModel": "modeling_gmvit.GroupMaskedViTModel",
    "AutoModelForPreTraining": "modeling_gmvit.GroupMaskedViTForPreTraining",
    "AutoModelForImageClassification": "modeling_gmvit.GroupMaskedViTForImageClassification",
    "AutoModelForSemanticSegmentation": "modeling_gmvit.GroupMaskedViTForSegmentation",
    "AutoModelForImageSegmentation": "modeling_gmvit.GroupMaskedViTForSegmentation",
    "AutoImageProcessor": "image_processing_gmvit.GroupMaskedViTImageProcessor",
}

# Backbone presets by name (timm naming). All use 16-px patches at 224 px.
PRESETS = {
    "vit_tiny_patch16_224": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
    "vit_small_patch16_224": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "vit_base_patch16_224": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "vit_large_patch16_224": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
}

MASK_FILLS = ("noise", "zeros", "self_copy")
POOLINGS = ("cls", "mean", "cls_mean")
DECODERS = ("simple", "progressive")
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification", "regression")


def _default_layers(depth: int, count: int = 4, stride: int = 2) -> list[int]:
    """Up to `count` block indices (1-based) ending at `depth`, `stride` apart: depth 12 -> [6, 8, 10, 12]."""
    return sorted(depth - stride * i for i in range(count) if depth - stride * i >= 1)


class GroupMaskedViTConfig(PreTrainedConfig):
    r"""
    Configuration of [`GroupMaskedViTModel`] and its heads. Defaults are ViT-S/16 at 224 px with the GMML settings of
    SS-CXR; `GroupMaskedViTConfig.from_preset("vit_base_patch16_224", num_channels=1)` gives the other sizes.

    Geometry:
        image_size (`int`): input height and width in pixels; a multiple of `patch_size`.
        patch_size (`int`): side of a square patch in pixels.
        num_channels (`int`): 1 (grey, CXR-native) or 3 (grey replicated, ImageNet-style).
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size (`int`): transformer size.
        qkv_bias (`bool`), layer_norm_eps (`float`), hidden_act (`str`; "gelu_pytorch_tanh", GELU's tanh
            approximation, made the ViT-S GMML step 1.024x faster on an H200).
        low_precision_residual (`bool`): under bfloat16 autocast, the encoder's residual stream (the tokens between
            blocks, and their gradient) in bfloat16 instead of float32: less memory traffic and 14% less peak memory
            (ViT-S GMML step 1.056x faster on an H200), each block's sum rounded to bfloat16. No effect without
            autocast or under float16 autocast (whose range the residual stream could leave).
        hidden_dropout_prob, attention_probs_dropout_prob (`float`): dropout on residual branches / attention.
        drop_path_rate (`float`): stochastic depth at the last block, linear from 0 over depth.
        initializer_range (`float`): std of the truncated-normal init.

    GMML corruption (see `masking.py`):
        mask_max_ratio (`float`): per image a target fraction t ~ U(0.5, r) of pixels is corrupted (t = r if r <= 0.5).
        mask_align (`int`): block corners and sides snap to multiples of this many pixels (1 = pixel blocks).
        mask_max_block_fraction (`float`): block sides are drawn below this fraction of the image side.
        mask_fill (`str`): "noise" (N(0,1) in normalised space), "zeros" or "self_copy" (same image, shifted).
        replace_ratio (`float`): fraction replaced by another image of the batch in the second stage.
        replace_prob (`float`): per-image probability of the second stage instead of the first.
        reconstruction_layers (`list[int]`): 1-based blocks averaged as the reconstruction input.

    Classification:
        pooling (`str`): "cls", "mean" (patch tokens) or "cls_mean" (both, concatenated).
        label_smoothing (`float`): for single-label cross-entropy.
        classifier_dropout (`float`): dropout before the linear classifier.

    Segmentation:
        decoder_type (`str`): "progressive" (multi-level, upsampling x2 per stage) or "simple" (MLP + transposed conv).
        decoder_hidden_size (`int`): channels of the progressive decoder's first stage.
        segmentation_layers (`list[int]`): 1-based blocks whose tokens feed the progressive decoder.
        semantic_loss_ignore_index (`int`): label value ignored by the segmentation loss (and by training's Dice /
            IoU); the loss gives it to the pixels the image processor pads with `PAD_LABEL` (255, the default), in
            training and in a direct `model(**processor(images, segmentation_maps=masks))` alike.
        dice_weight (`float`): weight of the soft Dice term added to BCE for binary masks (num_labels == 1).
    """

    model_type = "cxrgm_vit"

    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 1
    hidden_size: int = 384
    num_hidden_layers: int = 12
    num_attention_heads: int = 6
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    low_precision_residual: bool = False
    qkv_bias: bool = True
    layer_norm_eps: float | int = 1e-6
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    drop_path_rate: float | int = 0.1
    initializer_range: float | int = 0.02

    mask_max_ratio: float | int = 0.75
    mask_align: int = 1
    mask_max_block_fraction: float | int = 0.3
    mask_fill: str = "noise"
    replace_ratio: float | int = 0.3
    replace_prob: float | int = 0.5
    reconstruction_layers: list[int] | tuple[int, ...] | None = None

    pooling: str = "cls"
    label_smoothing: float | int = 0.0
    classifier_dropout: float | int = 0.0

    decoder_type: str = "progressive"
    decoder_hidden_size: int = 256
    segmentation_layers: list[int] | tuple[int, ...] | None = None
    semantic_loss_ignore_index: int = 255
    dice_weight: float | int = 1.0

    def __post_init__(self, **kwargs):
        if self.reconstruction_layers is None:
            self.reconstruction_layers = _default_layers(self.num_hidden_layers, stride=2)
        if self.segmentation_layers is None:
            self.segmentation_layers = _default_layers(self.num_hidden_layers, stride=max(1, self.num_hidden_layers // 4))
        self.reconstruction_layers = [int(i) for i in self.reconstruction_layers]
        self.segmentation_layers = [int(i) for i in self.segmentation_layers]
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)
        super().__post_init__(**kwargs)
        self._check_values()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "GroupMaskedViTConfig":
        """A config for a named backbone (`vit_{tiny,small,base,large}_patch16_224`), any field overridable."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def grid_size(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def decoder_widths(self) -> list[int]:
        """Channels of the progressive decoder: its fused map, then each x2 upsampling stage (halved, at least 16)."""
        widths = [self.decoder_hidden_size]
        for _ in range(max(0, round(math.log2(self.patch_size)))):
            widths.append(max(16, widths[-1] // 2))
        return widths

    def _check_values(self):
        def fail(field, message):
            raise ValueError(f"GroupMaskedViTConfig.{field}={getattr(self, field)!r}: {message}")

        for field in ("image_size", "patch_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "mask_align", "decoder_hidden_size"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                fail(field, "must be a positive integer")
        if self.image_size % self.patch_size:
            fail("image_size", f"must be divisible by patch_size={self.patch_size}")
        if not isinstance(self.low_precision_residual, bool):
            fail("low_precision_residual", "must be true or false")
        if self.hidden_act not in ACT2FN:
            fail("hidden_act", "must be a name in transformers.activations.ACT2FN, e.g. 'gelu'")
        if self.num_channels not in (1, 3):
            fail("num_channels", "must be 1 (grey) or 3 (RGB)")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size", f"must be divisible by num_attention_heads={self.num_attention_heads}")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate", "classifier_dropout",
                      "label_smoothing", "replace_prob"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                fail(field, "must lie in [0, 1]")
        for field in ("mask_max_ratio", "replace_ratio", "mask_max_block_fraction"):
            if not 0.0 < getattr(self, field) < 1.0:
                fail(field, "must lie strictly between 0 and 1")
        if self.image_size % self.mask_align:
            fail("mask_align", f"must divide image_size={self.image_size}")
        if self.mask_align >= self.mask_max_block_fraction * self.image_size:
            fail("mask_align", "leaves no room for blocks: it must be below mask_max_block_fraction * image_size")
        if self.mask_fill not in MASK_FILLS:
            fail("mask_fill", f"must be one of {MASK_FILLS}")
        if self.pooling not in POOLINGS:
            fail("pooling", f"must be one of {POOLINGS}")
        if self.decoder_type not in DECODERS:
            fail("decoder_type", f"must be one of {DECODERS}")
        if self.decoder_type == "progressive" and any(width % 8 for width in self.decoder_widths):
            fail("decoder_hidden_size", f"gives progressive-decoder widths {self.decoder_widths}, each normalised in "
                                        "8 groups: use a multiple of 8 that stays one when halved (e.g. 64, 128, 256)")
        if self.problem_type not in PROBLEM_TYPES:
            fail("problem_type", f"must be one of {PROBLEM_TYPES}")
        for field in ("reconstruction_layers", "segmentation_layers"):
            layers = getattr(self, field)
            if not layers or any(not 1 <= i <= self.num_hidden_layers for i in layers):
                fail(field, f"must be a non-empty list of block indices in 1..{self.num_hidden_layers}")


__all__ = ["GroupMaskedViTConfig"]
