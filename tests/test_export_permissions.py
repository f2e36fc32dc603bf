"""Exported models and checkpoints get the permissions the umask gives a new file, the weights included
(safetensors writes them 0600 whatever the umask), and never wider ones."""

import os
import stat
from pathlib import Path

import pytest
import torch

from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor


def tiny_model():
    return GroupMaskedViTForPreTraining(GroupMaskedViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64))


def modes(folder: Path) -> dict:
    return {path.relative_to(folder).as_posix(): stat.S_IMODE(path.stat().st_mode)
            for path in sorted(folder.rglob("*"))}


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_an_exported_model_has_the_modes_the_umask_gives_new_files(tmp_path, umask):
    from train.export import export, save_model_atomically

    best = save_model_atomically(tiny_model(), GroupMaskedViTImageProcessor(size=32), tmp_path / "best")
    model_dir = export(best, tmp_path / "out", {"loss": 0.5}, {"task": "pretraining"}, card=False)
    for folder in (best, model_dir):
        found = modes(folder)
        assert "model.safetensors" in found and "config.json" in found
        expected = {name: (0o777 if (folder / name).is_dir() else 0o666) & ~umask for name in found}
        assert found == expected, folder
    assert stat.S_IMODE((tmp_path / "out" / "metrics.json").stat().st_mode) == 0o666 & ~umask


def test_a_checkpoint_has_the_modes_the_umask_gives_new_files(tmp_path, umask):
    from accelerate import Accelerator

    from train import checkpoint

    accelerator = Accelerator(cpu=True)
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    folder = checkpoint.save(accelerator, tmp_path, 1, 2, GroupMaskedViTImageProcessor(size=32))
    found = modes(folder)
    assert "model.safetensors" in found and checkpoint.MANIFEST in found
    assert found == {name: (0o777 if (folder / name).is_dir() else 0o666) & ~umask for name in found}
    assert checkpoint.problem(folder) is None
