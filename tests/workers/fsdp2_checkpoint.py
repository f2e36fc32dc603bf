"""Run by torchrun (2 CPU processes, gloo) from test_train_distributed.py: the model of a checkpoint folder (a copy of
a real run's) is sharded by FSDP2 per transformer block, as train/accelerate_configs/fsdp.yaml asks, and its weights
are saved as accelerate's `save_state` saves them under that config (`save_fsdp_model`, SHARDED_STATE_DICT: shards
in pytorch_model_fsdp_0/, no model.safetensors; its optimizer state stays as the run saved it); the manifest is
written again over the folder's files, as a checkpoint save does last."""

import os
import sys
from pathlib import Path

import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import save_fsdp_model
from torch.distributed.fsdp import fully_shard

import modeling_cxrgm
from train import checkpoint

folder, layer_class = Path(sys.argv[1]), getattr(modeling_cxrgm.modeling_gmvit, sys.argv[2])
state_dict_type = sys.argv[3]
state = PartialState(cpu=True)  # gloo, as `accelerate launch` starts these processes on CPUs
rank = state.process_index
model = checkpoint._model_class(folder).from_pretrained(folder)
for module in model.modules():
    if isinstance(module, layer_class):
        fully_shard(module)
fully_shard(model)
plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type=state_dict_type)
dist.barrier()  # every process has read the weights before they are removed
save_fsdp_model(plugin, state, model, str(folder))
dist.barrier()
if rank == 0:
    (folder / "model.safetensors").unlink()
    checkpoint._write_manifest(folder)
    print(f"sharded: {sorted(path.name for path in (folder / 'pytorch_model_fsdp_0').iterdir())}", flush=True)
dist.barrier()
sys.stdout.flush()
os._exit(0)  # as fsdp2_step.py: no C++ teardown of the gloo group
