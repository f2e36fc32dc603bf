"""Exported models and checkpoints get the permissions the umask gives a new file, the weights included
(safetensors writes them 0600 whatever the umask), and never wider ones."""

import json
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


def test_a_failed_export_leaves_no_half_written_folder_and_the_earlier_model_intact(tmp_path, monkeypatch):
    """An export that failed (here its card) left its `.tmp-model` folder behind; a failed save its `.tmp-<name>`."""
    import model_cards

    from train.export import export, save_model_atomically

    best = save_model_atomically(tiny_model(), GroupMaskedViTImageProcessor(size=32), tmp_path / "best")
    model_dir = export(best, tmp_path / "out", {"loss": 0.5}, {"task": "pretraining"}, card=False)
    before = {path.relative_to(model_dir): path.read_bytes() for path in model_dir.rglob("*") if path.is_file()}
    run_metrics = (tmp_path / "out" / "metrics.json").read_text()

    def refuse(*args, **kwargs):
        raise RuntimeError("no card")

    monkeypatch.setattr(model_cards, "write_model_card", refuse)
    with pytest.raises(RuntimeError, match="no card"):
        export(best, tmp_path / "out", {"loss": 0.25}, {"task": "pretraining"})
    assert {path.relative_to(model_dir): path.read_bytes() for path in model_dir.rglob("*") if path.is_file()} == before
    assert not list((tmp_path / "out").glob(".tmp-*")) and not list((tmp_path / "out").glob(".old-*"))
    assert (tmp_path / "out" / "metrics.json").read_text() == run_metrics  # the run's metrics still the export's
    export(best, tmp_path / "out", {"loss": 0.25}, {"task": "pretraining"}, card=False)
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {"loss": 0.25}
    assert not list((tmp_path / "out").glob(".old-*"))

    class Unsaveable(GroupMaskedViTImageProcessor):
        def save_pretrained(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_model_atomically(tiny_model(), Unsaveable(size=32), tmp_path / "best")
    assert (tmp_path / "best" / "model.safetensors").is_file() and not list(tmp_path.glob(".tmp-*"))
