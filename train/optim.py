"""AdamW parameter groups (no decay on biases, norms, positions, CLS; layer-wise lr decay), per-step schedules,
gradient clipping and an exponential moving average of the weights.

Schedules are pure functions of the optimiser step, so a resumed run only needs the step number.
"""

from __future__ import annotations

import contextlib
import math
import re

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

_LAYER = re.compile(r"(?:^|\.)vit\.encoder\.layers\.(\d+)\.")


def layer_id(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for block i, num_layers + 1 for the final norm and the heads."""
    if ".embeddings." in f".{name}":
        return 0
    match = _LAYER.search(name)
    return int(match.group(1)) + 1 if match else num_layers + 1


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    return param.ndim <= 1 or name.endswith(".bias") or "position_embeddings" in name or "cls_token" in name


def param_groups(model: torch.nn.Module, num_layers: int, layer_decay: float = 1.0) -> list[dict]:
    """AdamW groups by (layer, decay?) with `lr_scale` = layer_decay ** (depth from the top) and a `decay` flag."""
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer, decay = layer_id(name, num_layers), not no_weight_decay(name, param)
        group = groups.setdefault((layer, decay), {
            "params": [], "names": [], "decay": decay, "lr_scale": layer_decay ** (num_layers + 1 - layer),
            "weight_decay": 0.0,
        })
        group["params"].append(param)
        group["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def cosine(step: float, total: float, start: float, end: float) -> float:
    """Half-cosine from `start` (step 0) to `end` (step `total`)."""
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


def learning_rate(step: int, total: int, warmup: int, base: float, minimum: float) -> float:
    """Linear warm-up from 0 over `warmup` steps, then cosine to `minimum` at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    return cosine(step - warmup, total - warmup, base, minimum)


def peak_learning_rate(args, num_processes: int) -> float:
    """A run's peak learning rate (TrainArgs `args`): --lr, else --blr scaled by the effective batch, blr * batch *
    accumulation * processes / lr_batch_divisor."""
    if args.lr is not None:
        return args.lr
    return args.blr * args.batch_size * args.grad_accum_steps * num_processes / args.lr_batch_divisor


def apply_schedules(optimizer, step: int, *, total: int, warmup: int, lr: float, min_lr: float,
                    weight_decay: float, weight_decay_end: float | None) -> tuple[float, float]:
    """Set every group's lr and weight decay for `step`; returns the (lr, weight decay) of the top layer."""
    current_lr = learning_rate(step, total, warmup, lr, min_lr)
    current_wd = weight_decay if weight_decay_end is None else cosine(step, total, weight_decay, weight_decay_end)
    for group in optimizer.param_groups:
        group["lr"] = current_lr * group["lr_scale"]
        group["weight_decay"] = current_wd if group["decay"] else 0.0
    return current_lr, current_wd


@torch.no_grad()
def clip_per_parameter(parameters, max_norm: float) -> torch.Tensor:
    """Scale each parameter's gradient to norm <= max_norm separately; returns the largest norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack(torch._foreach_norm([g.detach().float() for g in grads]))  # a few kernels, not one each
    scales = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [s.to(g.dtype) for s, g in zip(scales.unbind(), grads)])
    return norms.max()


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers (kept in float32)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module):
        pairs = [(self.shadow[key], value.detach().float()) for key, value in model.state_dict().items()
                 if key in self.shadow]
        if pairs:  # one foreach call, a few kernels: not one per tensor (about 150 launches per ViT-S step)
            torch._foreach_lerp_([shadow for shadow, _ in pairs], [value for _, value in pairs], 1 - self.decay)

    @contextlib.contextmanager
    def swapped(self, model: torch.nn.Module):
        """Run the block with the averaged weights loaded into `model`, then restore the live ones."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            model.load_state_dict(live, strict=False)

    def copy_to(self, model: torch.nn.Module):
        """Load the averaged weights into `model` (what a run with an EMA evaluates and exports)."""
        model.load_state_dict(self.shadow, strict=False)

    def state_dict(self) -> dict:
        """Whole tensors: FSDP shards are gathered, so every process must call this (checkpoints do)."""
        return {"decay": self.decay,
                "shadow": {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict):
        """Each tensor goes where the model's is (checkpoints load onto the CPU), sharded like it under FSDP."""
        self.decay = state["decay"]
        self.shadow = {k: _placed_like(v.float(), self.shadow.get(k)) for k, v in state["shadow"].items()}


def _placed_like(tensor: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    if isinstance(reference, DTensor):
        return distribute_tensor(tensor.to(reference.device), reference.device_mesh, reference.placements)
    return tensor if reference is None else tensor.to(reference.device)
