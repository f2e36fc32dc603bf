"""Run by torchrun (2 CPU processes, gloo) from test_train_distributed.py: FSDP2 shards a GMML model per
transformer block, as train/accelerate_configs/fsdp.yaml asks; two training steps with the run's clipping and EMA;
the EMA's checkpoint state round-trips to the same shards; the gathered full state dict is exported with
train/export.py and reloads into a plain model."""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

import modeling_cxrgm
from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
from train.export import save_model_atomically
from train.optim import EMA, clip_per_parameter

output_dir, layer_class = Path(sys.argv[1]), getattr(modeling_cxrgm.modeling_gmvit, sys.argv[2])
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64)
model = GroupMaskedViTForPreTraining(config)
for module in model.modules():
    if isinstance(module, layer_class):
        fully_shard(module)
fully_shard(model)
assert type(model.vit.embeddings.position_embeddings).__name__ == "DTensor"
ema = EMA(model, 0.9)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
images = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(rank))
for step in range(2):
    loss = model(images, generator=torch.Generator().manual_seed(10 * rank + step)).loss
    loss.backward()
    clip_per_parameter(model.parameters(), 0.5)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ema.update(model)
ema_state = ema.state_dict()  # every process takes part; the main one writes it, as accelerate's save_state does
if rank == 0:
    torch.save(ema_state, output_dir / "ema.pkl")
dist.barrier()
restored = EMA(model, 0.5)
restored.load_state_dict(torch.load(output_dir / "ema.pkl", map_location="cpu", weights_only=False))  # as loaded
for name, shard in ema.shadow.items():
    assert type(restored.shadow[name]) is type(shard) and torch.equal(restored.shadow[name].to_local(), shard.to_local())
full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
if rank == 0:
    expected = dict(full)  # save_pretrained empties the dict it is given
    save_model_atomically(model, GroupMaskedViTImageProcessor(size=32), output_dir / "model", full)
    reloaded = GroupMaskedViTForPreTraining.from_pretrained(output_dir / "model").state_dict()
    assert reloaded.keys() == expected.keys() and len(expected) == 38
    assert all(torch.equal(reloaded[name], expected[name]) for name in expected)
    print(f"fsdp2 ok: {len(expected)} tensors, loss {loss.item():.4f}", flush=True)
dist.barrier()
sys.stdout.flush()
# Everything is checked: leave without the C++ teardown of the gloo group, which under load rarely aborts a rank at
# exit ("terminate called without an active exception") after the work has passed.
os._exit(0)
