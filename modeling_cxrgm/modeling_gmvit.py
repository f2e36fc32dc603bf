"""Group-masked vision transformer (GMML) for chest X-rays: backbone, pretraining, classification and segmentation.

Shapes: B = batch, C = image channels, H x W = image pixels, p = patch size, h x w = H/p x W/p patch grid,
N = h * w patch tokens, D = hidden size. Token sequences are (B, 1 + N, D) with the CLS token first.

This file is copied next to the weights by `save_pretrained`, so it imports only torch, transformers and its
sibling files.
"""

import copy
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ImageClassifierOutput,
    SemanticSegmenterOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES
from transformers.utils import ModelOutput

from .configuration_gmvit import AUTO_MAP, GroupMaskedViTConfig
from .image_processing_gmvit import PAD_LABEL, GroupMaskedViTImageProcessor  # noqa: F401  (see HUB_FILES)
from .masking import AUTOCAST_DEVICE_TYPES, gmml_corrupt

# The files a saved folder needs for `trust_remote_code=True` (they import nothing else from this package). This file
# imports each of them, so that loading a model with remote code fetches all of them and the loaded model, saved
# again, still has the processor file that its auto_map names.
HUB_FILES = ("configuration_gmvit.py", "modeling_gmvit.py", "masking.py", "image_processing_gmvit.py")


@dataclass
class GroupMaskedViTForPreTrainingOutput(ModelOutput):
    """
    Args:
        loss: scalar, mean absolute error over the corrupted pixels (all channels).
        reconstruction: (B, C, H, W), the predicted clean image in normalised space.
        mask: bool (B, H, W), True where the input was corrupted.
        corrupted: (B, C, H, W), what the encoder saw.
        hidden_states: per block (B, 1 + N, D), when requested.
        attentions: per block (B, heads, 1 + N, 1 + N), when requested (those calls attend eagerly: SDPA and flash
            kernels never form the weights).
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    mask: torch.BoolTensor | None = None
    corrupted: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class GroupMaskedViTPatchEmbeddings(nn.Module):
    """(B, C, H, W) -> (B, N, D) by a stride-p convolution, run as a matrix product.

    With stride = kernel = p each token sees only its own p x p patch, so the convolution is the patches flattened
    (C, p, p) and multiplied by the `projection` weights (D, C * p * p). On an H200 the convolution kernels of this
    one-channel, stride-16 shape (slow implicit-GEMM forward and weight gradient, NCHW/NHWC copies) took ~2 ms of a
    ~30 ms ViT-S step at batch 256; the product takes tens of microseconds. The weights keep the convolution's
    layout, so checkpoints and conversions are unchanged.
    """

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__()
        self.num_channels = config.num_channels
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, config.patch_size, config.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch_size, channels, height, width = pixel_values.shape
        if channels != self.num_channels:
            raise ValueError(
                f"pixel_values have {channels} channels but the model expects {self.num_channels} "
                "(config.num_channels); use the model's image processor to convert grey/RGB inputs."
            )
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"Input size {height}x{width} is not a multiple of the patch size {self.patch_size}.")
        patch = self.patch_size
        patches = pixel_values.reshape(batch_size, channels, height // patch, patch, width // patch, patch)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch_size, -1, channels * patch * patch)  # (B, N, C*p*p)
        weight = self.projection.weight.reshape(self.projection.out_channels, -1)
        return F.linear(patches, weight, self.projection.bias)


class GroupMaskedViTEmbeddings(nn.Module):
    """Patch embeddings + CLS token + learned absolute positions (bicubically interpolated for other sizes)."""

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__()
        self.grid_size = config.grid_size
        self.patch_size = config.patch_size
        self.patch_embeddings = GroupMaskedViTPatchEmbeddings(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + config.grid_size**2, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings for a grid_h x grid_w patch grid: (1, 1 + grid_h * grid_w, D), computed in float32."""
        if grid_h == self.grid_size and grid_w == self.grid_size:
            return self.position_embeddings
        cls_position, patch_positions = self.position_embeddings[:, :1], self.position_embeddings[:, 1:]
        dim = patch_positions.shape[-1]
        grid = patch_positions.reshape(1, self.grid_size, self.grid_size, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_positions = grid.to(patch_positions.dtype).permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat([cls_position, patch_positions], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        batch_size, _, height, width = pixel_values.shape
        patches = self.patch_embeddings(pixel_values)
        tokens = torch.cat([self.cls_token.expand(batch_size, -1, -1), patches], dim=1)
        positions = self.interpolate_pos_encoding(height // self.patch_size, width // self.patch_size)
        return self.dropout(tokens + positions)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain attention. query/key/value: (B, heads, L, d). Returns (B, L, heads, d) and weights (B, heads, L, L)."""
    scores = torch.matmul(query, key.transpose(-2, -1)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


class GroupMaskedViTAttention(nn.Module):
    """Multi-head self-attention over all tokens (no mask, not causal), dispatched by `config._attn_implementation`,
    or eager when the weights are asked for."""

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout = config.attention_probs_dropout_prob
        self.is_causal = False
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def project(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, D) -> query, key, value, each (B, heads, L, d): one product with the packed `qkv` weights."""
        batch_size, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, length, 3, self.num_heads, self.head_dim)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, length, _ = hidden_states.shape
        query, key, value = self.project(hidden_states)
        attention: Callable = eager_attention_forward if output_attentions else ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention(
            self,
            query,
            key,
            value,
            None,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=False,
            **kwargs,
        )
        return self.proj(output.reshape(batch_size, length, -1)), weights


class GroupMaskedViTMLP(nn.Module):
    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.act(self.fc1(hidden_states))))


class GroupMaskedViTLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))).

    Stochastic depth (`drop_path_rate`, this block's) drops a residual branch for whole samples; the encoder draws
    the factors of all blocks at once (`branch_scales`).
    """

    def __init__(self, config: GroupMaskedViTConfig, drop_path_rate: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = GroupMaskedViTAttention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = GroupMaskedViTMLP(config)
        self.drop_path_rate = drop_path_rate
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, output_attentions: bool = False, branch_scales: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """branch_scales: (2, B, 1, 1), each sample's factor for the attention and the MLP branch (0 = dropped, else
        1 / keep probability), or None (no stochastic depth)."""
        attended, weights = self.attention(self.norm1(hidden_states), output_attentions=output_attentions, **kwargs)
        attended = self.dropout(attended)
        hidden_states = hidden_states + (attended if branch_scales is None else attended * branch_scales[0])
        transformed = self.mlp(self.norm2(hidden_states))
        hidden_states = hidden_states + (transformed if branch_scales is None else transformed * branch_scales[1])
        return hidden_states, weights


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes in on `device`, or None where it is off."""
    if device.type in AUTOCAST_DEVICE_TYPES and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


class GroupMaskedViTEncoder(nn.Module):
    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__()
        self.drop_path_rate = config.drop_path_rate
        self.low_precision_residual = config.low_precision_residual
        depth = config.num_hidden_layers
        rates = [config.drop_path_rate * i / max(1, depth - 1) for i in range(depth)]  # linear over depth
        self.layers = nn.ModuleList([GroupMaskedViTLayer(config, rate) for rate in rates])

    def branch_scales(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        """Stochastic depth for every block at once, (depth, 2, B, 1, 1) in the blocks' compute dtype: each block's
        branches keep a sample with probability 1 - its rate (0 at the first block, linear to `drop_path_rate` at the
        last) and are then scaled by 1 / that probability; None when not training or without stochastic depth.
        A few operations per step, not four per branch (about a hundred kernel launches per ViT-S step)."""
        if not self.training or self.drop_path_rate == 0:
            return None
        depth, batch_size, device = len(self.layers), hidden_states.shape[0], hidden_states.device
        dtype = autocast_dtype(device) or hidden_states.dtype  # the branches' dtype
        keep = 1 - torch.linspace(0, self.drop_path_rate, depth, device=device)[:, None, None]  # (depth, 1, 1)
        scales = torch.bernoulli(keep.expand(depth, 2, batch_size)).div_(keep)
        return scales.to(dtype).view(depth, 2, batch_size, 1, 1)

    def forward(
        self, hidden_states: torch.Tensor, output_hidden_states: bool = False, output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, tuple | None, tuple | None]:
        """Returns the last block's output, all block outputs (embeddings first) and attention weights; bfloat16 with
        `low_precision_residual` under bfloat16 autocast."""
        if self.low_precision_residual and autocast_dtype(hidden_states.device) == torch.bfloat16:
            hidden_states = hidden_states.to(torch.bfloat16)
        all_hidden = (hidden_states,) if output_hidden_states else None
        all_weights = () if output_attentions else None
        scales = self.branch_scales(hidden_states)
        for index, layer in enumerate(self.layers):
            dropping = scales is not None and layer.drop_path_rate > 0  # the first block never drops
            hidden_states, weights = layer(hidden_states, output_attentions=output_attentions,
                                           branch_scales=scales[index] if dropping else None, **kwargs)
            if output_hidden_states:
                all_hidden += (hidden_states,)
            if output_attentions:
                all_weights += (weights,)
        return hidden_states, all_hidden, all_weights


class GroupMaskedViTPreTrainedModel(PreTrainedModel):
    config_class = GroupMaskedViTConfig
    config: GroupMaskedViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["GroupMaskedViTEmbeddings", "GroupMaskedViTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # A GMML pretraining checkpoint's reconstruction decoder is not part of the encoder or of the task models: loading
    # one into them (the usual start of fine-tuning) leaves it out without listing it as unexpected weights.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]
    # Every loss here is a mean over its own batch, so transformers' Trainer must average over accumulated batches
    # itself (with a `**kwargs` forward it would otherwise pass `num_items_in_batch` and skip that average).
    accepts_loss_kwargs = False

    def _init_weights(self, module: nn.Module):
        """Truncated-normal linear/conv weights, zero biases, unit norms; positions and CLS trunc-normal."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, GroupMaskedViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, std=std)
            init.trunc_normal_(module.cls_token, std=std)

    def set_num_channels(self, num_channels: int) -> None:
        """Switch the input between grey (1) and RGB (3) channels, keeping what the model computes.

        3 -> 1 sums the patch embedding's channel weights (a grey image replicated three times gives the same
        tokens), 1 -> 3 spreads them equally; a pretraining head's output channels are averaged / replicated.
        Use the image processor with the same `num_channels`.
        """
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels}")
        if num_channels == self.config.num_channels:
            return
        patch_embeddings = self.base_model.embeddings.patch_embeddings
        old = patch_embeddings.projection
        new = nn.Conv2d(num_channels, old.out_channels, old.kernel_size, old.stride).to(old.weight.device, old.weight.dtype)
        with torch.no_grad():
            if num_channels == 1:
                new.weight.copy_(old.weight.sum(1, keepdim=True))
            else:
                new.weight.copy_(old.weight.expand(-1, 3, -1, -1) / 3)
            new.bias.copy_(old.bias)
        patch_embeddings.projection = new
        patch_embeddings.num_channels = num_channels
        head = getattr(getattr(self, "decoder", None), "unpatchify", None)
        if isinstance(self, GroupMaskedViTForPreTraining) and head is not None:
            out = nn.ConvTranspose2d(head.in_channels, num_channels, head.kernel_size, head.stride)
            out = out.to(head.weight.device, head.weight.dtype)
            with torch.no_grad():
                if num_channels == 1:
                    out.weight.copy_(head.weight.mean(1, keepdim=True))
                    out.bias.copy_(head.bias.mean(0, keepdim=True))
                else:
                    out.weight.copy_(head.weight.expand(-1, 3, -1, -1))
                    out.bias.copy_(head.bias.expand(3))
            self.decoder.unpatchify = out
        self.config.num_channels = num_channels

    def set_image_size(self, image_size: int) -> None:
        """Make `image_size` (px) the native input size: the learned positions are resampled once to its patch grid
        (bicubic, as `interpolate_pos_encoding` does in every forward pass at other sizes), so the model computes the
        same function at that size, and `config.image_size` says so. Use the image processor with the same `size`.
        """
        patch_size = self.config.patch_size
        if image_size <= 0 or image_size % patch_size:
            raise ValueError(f"image_size must be a positive multiple of the patch size {patch_size}, got {image_size}")
        resized = copy.deepcopy(self.config)
        resized.image_size = image_size
        try:
            resized._check_values()  # e.g. mask_align must still divide the size and leave room for blocks
        except ValueError as error:
            raise ValueError(f"image_size {image_size} does not suit this model's config: {error}") from None
        embeddings = self.base_model.embeddings
        grid = image_size // patch_size
        if grid != embeddings.grid_size:
            with torch.no_grad():
                positions = embeddings.interpolate_pos_encoding(grid, grid).clone()
            embeddings.position_embeddings = nn.Parameter(positions)
            embeddings.grid_size = grid
        self.config.image_size = image_size

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the full `auto_map` and every Hub code file in the folder."""
        self.config.auto_map = {**dict(getattr(self.config, "auto_map", None) or {}), **AUTO_MAP}
        result = super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            source = Path(__file__).parent
            for name in HUB_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, Path(save_directory) / name)
        return result


class GroupMaskedViTModel(GroupMaskedViTPreTrainedModel):
    """The ViT backbone. Output: last_hidden_state (B, 1 + N, D) after the final LayerNorm; pooler_output its tokens
    pooled as `config.pooling` says, as the classifier pools them: (B, D) CLS (the default) or patch mean, (B, 2D)
    for "cls_mean".

    `add_final_layernorm=False` leaves the final LayerNorm out (last_hidden_state is then the last block's output),
    for heads that read only intermediate hidden states: every parameter then gets a gradient, as DDP requires.
    """

    def __init__(self, config: GroupMaskedViTConfig, add_final_layernorm: bool = True):
        super().__init__(config)
        self.embeddings = GroupMaskedViTEmbeddings(config)
        self.encoder = GroupMaskedViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if add_final_layernorm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.patch_embeddings

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        """pixel_values: (B, C, H, W) normalised; H, W multiples of the patch size (positions are interpolated)."""
        if pixel_values is None:
            raise ValueError("pixel_values is required")
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        expected_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        tokens = self.embeddings(pixel_values.to(expected_dtype))
        last, hidden_states, attentions = self.encoder(
            tokens, output_hidden_states=output_hidden_states, output_attentions=output_attentions, **kwargs
        )
        if self.layernorm is not None:
            last = self.layernorm(last)
        pooled = pool_tokens(last, self.config.pooling)
        if not return_dict:
            return tuple(v for v in (last, pooled, hidden_states, attentions) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=last, pooler_output=pooled, hidden_states=hidden_states, attentions=attentions
        )


def tokens_to_grid(tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Patch tokens (B, N, D) -> contiguous feature map (B, D, grid_h, grid_w)."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid_h, grid_w).contiguous()


class GroupMaskedViTReconstructionHead(nn.Module):
    """Per token 3 x (Linear(D, D) + GELU), then ConvTranspose2d(D, out, p, stride p): (B, N, D) -> (B, out, H, W).

    With stride = kernel = p the transposed convolution maps each token to its own p x p block, so it runs as one
    matrix product with the `unpatchify` weights followed by a reshape: the same function, several times faster than
    the convolution kernels (and with no strided grid for torch.compile to trip on).
    """

    def __init__(self, config: GroupMaskedViTConfig, out_channels: int):
        super().__init__()
        layers = []
        for _ in range(3):
            layers += [nn.Linear(config.hidden_size, config.hidden_size), nn.GELU()]
        self.mlp = nn.Sequential(*layers)
        self.unpatchify = nn.ConvTranspose2d(config.hidden_size, out_channels, config.patch_size, config.patch_size)

    def forward(self, patch_tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
        batch_size, _, hidden = patch_tokens.shape
        channels, patch = self.unpatchify.out_channels, self.unpatchify.kernel_size[0]
        weight = self.unpatchify.weight.reshape(hidden, channels * patch * patch)
        bias = self.unpatchify.bias.repeat_interleave(patch * patch)
        blocks = F.linear(self.mlp(patch_tokens), weight.t(), bias)  # (B, N, C * p * p)
        blocks = blocks.view(batch_size, grid_h, grid_w, channels, patch, patch)
        return blocks.permute(0, 3, 1, 4, 2, 5).reshape(batch_size, channels, grid_h * patch, grid_w * patch)


def masked_l1_loss(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |reconstruction - target| over masked pixels and all channels. Shapes (B, C, H, W), mask (B, H, W)."""
    weight = mask[:, None].float()  # not the reconstruction's dtype: a bf16 sum rounds the count of masked pixels
    error = (reconstruction.float() - target.float()).abs() * weight
    return error.sum() / (weight.sum() * reconstruction.shape[1]).clamp(min=1.0)


class GroupMaskedViTForPreTraining(GroupMaskedViTPreTrainedModel):
    """GMML: corrupt groups of pixels, encode the whole corrupted image, reconstruct the clean one (L1 on the groups)."""

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__(config)
        self.vit = GroupMaskedViTModel(config)
        self.decoder = GroupMaskedViTReconstructionHead(config, config.num_channels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        corrupted: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> GroupMaskedViTForPreTrainingOutput | tuple:
        """
        Args:
            pixel_values: clean normalised views (B, C, H, W): the reconstruction target.
            corrupted, mask: a precomputed corruption ((B, C, H, W) and bool (B, H, W)); drawn with
                `gmml_corrupt(pixel_values, config, generator)` when not given.
            generator: `torch.Generator` on the input's device for reproducible masks.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        if (corrupted is None) != (mask is None):
            raise ValueError("Pass both `corrupted` and `mask`, or neither (then they are drawn here).")
        if corrupted is None:
            with torch.no_grad():
                corrupted, mask = gmml_corrupt(pixel_values, self.config, generator)
        outputs = self.vit(
            corrupted, output_hidden_states=True, output_attentions=output_attentions, return_dict=True, **kwargs
        )
        layers = [outputs.hidden_states[i] for i in self.config.reconstruction_layers]
        features = self.vit.layernorm(torch.stack(layers).mean(0))[:, 1:]
        grid_h = pixel_values.shape[2] // self.config.patch_size
        grid_w = pixel_values.shape[3] // self.config.patch_size
        reconstruction = self.decoder(features, grid_h, grid_w)
        loss = masked_l1_loss(reconstruction, pixel_values, mask)
        hidden_states = outputs.hidden_states if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (loss, reconstruction, mask, corrupted, hidden_states, outputs.attentions) if v is not None)
        return GroupMaskedViTForPreTrainingOutput(
            loss=loss, reconstruction=reconstruction, mask=mask, corrupted=corrupted,
            hidden_states=hidden_states, attentions=outputs.attentions,
        )


def pool_tokens(last_hidden_state: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, 1 + N, D) -> (B, D) for "cls" / "mean" (patch tokens), (B, 2D) for "cls_mean"."""
    if pooling == "cls":
        return last_hidden_state[:, 0]
    patch_mean = last_hidden_state[:, 1:].mean(1)
    if pooling == "mean":
        return patch_mean
    return torch.cat([last_hidden_state[:, 0], patch_mean], dim=-1)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: GroupMaskedViTConfig) -> torch.Tensor:
    """Cross-entropy (single label, smoothed), BCE over known entries (multi-label, NaN = unknown) or MSE.

    Without `config.problem_type` the labels decide it, and it is kept in the config (as transformers' classifiers
    do), so that a saved model's pipeline, evaluation and prediction apply sigmoid or softmax as it was trained.
    """
    problem_type = config.problem_type
    if problem_type is None:
        if config.num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
        config.problem_type = problem_type
    if problem_type == "single_label_classification":
        if labels.ndim != 1:
            raise ValueError(f"Single-label classification needs class indices of shape (B,), got {tuple(labels.shape)}")
        return F.cross_entropy(logits.float(), labels.long(), label_smoothing=config.label_smoothing)
    if problem_type == "multi_label_classification":
        if labels.shape != logits.shape:
            raise ValueError(f"Multi-label targets must have shape {tuple(logits.shape)}, got {tuple(labels.shape)}")
        known = ~torch.isnan(labels)
        losses = F.binary_cross_entropy_with_logits(
            logits.float(), torch.nan_to_num(labels.float()), reduction="none"
        )
        return (losses * known).sum() / known.sum().clamp(min=1)
    return F.mse_loss(logits.float().view(labels.shape), labels.float())


class GroupMaskedViTForImageClassification(GroupMaskedViTPreTrainedModel):
    """Backbone + pooling (`config.pooling`) + dropout + linear classifier over `config.num_labels`."""

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = GroupMaskedViTModel(config)
        pooled_size = config.hidden_size * (2 if config.pooling == "cls_mean" else 1)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(pooled_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ImageClassifierOutput | tuple:
        """labels: class indices (B,) long for single-label; float (B, num_labels) with NaN = unknown for multi-label."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.vit(
            pixel_values, output_hidden_states=output_hidden_states, output_attentions=output_attentions,
            return_dict=True, **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        if not return_dict:
            return tuple(v for v in (loss, logits, outputs.hidden_states, outputs.attentions) if v is not None)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class GroupMaskedViTProgressiveDecoder(nn.Module):
    """Multi-level progressive upsampling: tokens of several blocks -> fused map -> x2 stages -> (B, out, H, W).

    Each selected block's patch tokens are normalised and projected to `decoder_hidden_size` channels; the maps are
    concatenated and fused back to `decoder_hidden_size` by a 3x3 conv; then log2(p) stages of (x2 bilinear
    upsampling, 3x3 conv, GroupNorm, GELU) halve the channels (`config.decoder_widths`).
    """

    def __init__(self, config: GroupMaskedViTConfig, out_channels: int):
        super().__init__()
        levels = len(config.segmentation_layers)
        widths = config.decoder_widths
        width = widths[0]
        self.norms = nn.ModuleList([nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) for _ in range(levels)])
        self.projections = nn.ModuleList([nn.Conv2d(config.hidden_size, width, 1) for _ in range(levels)])
        self.fuse = nn.Sequential(nn.Conv2d(width * levels, width, 3, padding=1), nn.GroupNorm(8, width), nn.GELU())
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(wider, narrower, 3, padding=1), nn.GroupNorm(8, narrower), nn.GELU())
            for wider, narrower in zip(widths, widths[1:])
        ])
        self.classifier = nn.Conv2d(widths[-1], out_channels, 1)

    def forward(self, features: list[torch.Tensor], grid_h: int, grid_w: int, output_size: tuple[int, int]) -> torch.Tensor:
        maps = [
            projection(tokens_to_grid(norm(tokens), grid_h, grid_w))
            for norm, projection, tokens in zip(self.norms, self.projections, features)
        ]
        hidden = self.fuse(torch.cat(maps, dim=1))
        for stage in self.stages:
            hidden = stage(F.interpolate(hidden, scale_factor=2, mode="bilinear", align_corners=False))
        logits = self.classifier(hidden)
        if logits.shape[-2:] != output_size:
            logits = F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)
        return logits


def segmentation_targets(labels: torch.Tensor, config: GroupMaskedViTConfig) -> torch.Tensor:
    """Masks as the image processor gives them (class indices, `PAD_LABEL` where it padded them) -> int64 labels in
    which the pixels to leave out hold `config.semantic_loss_ignore_index`, whatever value the config sets.

    The processor does not know the model it feeds, so it pads with the fixed `PAD_LABEL` (255, the default ignore
    index; uint8 masks cannot hold e.g. -100): those pixels become the config's ignore index, so that the loss leaves
    them out for a direct `model(**processor(images, segmentation_maps=masks))` as in training, which goes through
    this function too. A model with more than 255 classes, for which 255 is a class, keeps its labels as they are.
    """
    labels = labels.long()
    ignore = config.semantic_loss_ignore_index
    if ignore == PAD_LABEL or PAD_LABEL < max(config.num_labels, 2):
        return labels
    return labels.masked_fill(labels == PAD_LABEL, ignore)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, config: GroupMaskedViTConfig) -> torch.Tensor:
    """Binary (1 channel): BCE + dice_weight * soft Dice; multi-class: CE. Pixels equal to the ignore index don't count,
    and neither do those the image processor padded (`PAD_LABEL`, see `segmentation_targets`).

    logits: (B, K, H, W); labels: (B, H, W) integer (0/1 for binary, class index otherwise).
    """
    if labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"Segmentation labels must have shape {(logits.shape[0], *logits.shape[2:])}, got {tuple(labels.shape)}")
    labels = segmentation_targets(labels, config)
    ignore = config.semantic_loss_ignore_index
    if logits.shape[1] > 1:
        return F.cross_entropy(logits.float(), labels.long(), ignore_index=ignore)
    valid = (labels != ignore).float()
    target = (labels == 1).float() * valid
    logit = logits[:, 0].float()
    bce = (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * valid).sum() / valid.sum().clamp(min=1)
    probability = torch.sigmoid(logit) * valid
    intersection = (probability * target).sum((1, 2))
    dice = (2 * intersection + 1.0) / (probability.sum((1, 2)) + target.sum((1, 2)) + 1.0)
    return bce + config.dice_weight * (1 - dice).mean()


class GroupMaskedViTForSegmentation(GroupMaskedViTPreTrainedModel):
    """Backbone + decoder (`config.decoder_type`): logits (B, num_labels, H, W) at input resolution.

    num_labels == 1 is binary segmentation (e.g. lungs vs background, sigmoid); num_labels > 1 is multi-class (softmax).
    The progressive decoder reads intermediate hidden states only, so its backbone has no final LayerNorm (a
    checkpoint's `vit.layernorm.*`, e.g. from a GMML encoder, is ignored).
    """

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^(vit\.)?layernorm\."]

    def __init__(self, config: GroupMaskedViTConfig):
        super().__init__(config)
        self.vit = GroupMaskedViTModel(config, add_final_layernorm=config.decoder_type == "simple")
        if config.decoder_type == "simple":
            self.segmentation_head = GroupMaskedViTReconstructionHead(config, config.num_labels)
        else:
            self.segmentation_head = GroupMaskedViTProgressiveDecoder(config, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        """labels: (B, H, W) integer masks; `config.semantic_loss_ignore_index` marks pixels to ignore, and so does the
        image processor's padding label (`PAD_LABEL`), whatever that index is."""
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        outputs = self.vit(
            pixel_values, output_hidden_states=True, output_attentions=output_attentions, return_dict=True, **kwargs
        )
        height, width = pixel_values.shape[2:]
        grid_h, grid_w = height // self.config.patch_size, width // self.config.patch_size
        if self.config.decoder_type == "simple":
            logits = self.segmentation_head(outputs.last_hidden_state[:, 1:], grid_h, grid_w)
        else:
            features = [outputs.hidden_states[i][:, 1:] for i in self.config.segmentation_layers]
            logits = self.segmentation_head(features, grid_h, grid_w, (height, width))
        loss = segmentation_loss(logits, labels, self.config) if labels is not None else None
        hidden_states = outputs.hidden_states if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (loss, logits, hidden_states, outputs.attentions) if v is not None)
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states, attentions=outputs.attentions)


# transformers' image-segmentation pipeline knows segmenters by their class names in its own tables of models: it
# merges copies of them, which leave out the models registered with the Auto classes (remote code included), and logs
# an error naming every other model as unsupported. The segmenter is listed in the semantic-segmentation table for it;
# the Auto classes read that table only for model types transformers itself defines, so nothing else changes.
MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault(GroupMaskedViTConfig.model_type,
                                                         GroupMaskedViTForSegmentation.__name__)


__all__ = [
    "GroupMaskedViTPreTrainedModel",
    "GroupMaskedViTModel",
    "GroupMaskedViTForPreTraining",
    "GroupMaskedViTForPreTrainingOutput",
    "GroupMaskedViTForImageClassification",
    "GroupMaskedViTForSegmentation",
]
