"""torch.compile: every model traces as one graph, the corruption runs eagerly inside a compiled model with the same
masks, and a checkpoint written by a compiled run resumes in an eager one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTModel,
    gmml_corrupt,
)

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    values = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, drop_path_rate=0.0, num_labels=3)
    return GroupMaskedViTConfig(**{**values, **overrides})


def first_tensor(output):
    return output.loss if getattr(output, "loss", None) is not None else output[0]


@pytest.mark.parametrize("model_class", [GroupMaskedViTModel, GroupMaskedViTForImageClassification,
                                         GroupMaskedViTForSegmentation, GroupMaskedViTForPreTraining])
def test_models_compile_to_one_graph_with_eager_results(model_class):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = model_class(tiny_config()).train()
    images = torch.randn(4, 1, 32, 32)
    kwargs = {}
    if model_class is GroupMaskedViTForPreTraining:  # the corruption given, so only the model is traced
        kwargs = dict(zip(("corrupted", "mask"), gmml_corrupt(images, model.config, torch.Generator().manual_seed(1))))
    elif model_class is GroupMaskedViTForImageClassification:
        kwargs = {"labels": torch.tensor([0, 2, 1, 0])}
    elif model_class is GroupMaskedViTForSegmentation:
        kwargs = {"labels": (torch.rand(4, 32, 32) > 0.5).long()}

    def loss_and_gradients(module):
        model.zero_grad(set_to_none=True)
        output = first_tensor(module(images, **kwargs))
        output.float().sum().backward()
        return output.detach(), {name: p.grad for name, p in model.named_parameters() if p.grad is not None}

    expected, expected_gradients = loss_and_gradients(model)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # fullgraph: any graph break raises
    actual, gradients = loss_and_gradients(compiled)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert gradients.keys() == expected_gradients.keys() and gradients
    for name, gradient in gradients.items():
        torch.testing.assert_close(gradient, expected_gradients[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("low_precision_residual", [False, True])
@pytest.mark.parametrize("model_class", [GroupMaskedViTForImageClassification, GroupMaskedViTForSegmentation,
                                         GroupMaskedViTForPreTraining])
def test_stochastic_depth_under_autocast_compiles_to_one_graph(monkeypatch, model_class, low_precision_residual):
    """torch 2.11's compiler cannot trace `torch.amp.is_autocast_available`: called in the encoder's forward, it split
    each training step's graph, which kept CUDA graphs off the pretraining step (on an H200 with reduce-overhead:
    1,176 img/s, 8,850 without the call). Made untraceable here as it is there. The residual stream in autocast's
    dtype asks autocast for its dtype in the forward too."""
    monkeypatch.setattr(torch.amp, "is_autocast_available", torch.compiler.disable(torch.amp.is_autocast_available))
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = model_class(tiny_config(drop_path_rate=0.5, low_precision_residual=low_precision_residual)).train()
    images = torch.randn(4, 1, 32, 32)
    kwargs = {"labels": torch.tensor([0, 2, 1, 0])}
    if model_class is GroupMaskedViTForPreTraining:
        kwargs = dict(zip(("corrupted", "mask"), gmml_corrupt(images, model.config, torch.Generator().manual_seed(1))))
    elif model_class is GroupMaskedViTForSegmentation:
        kwargs = {"labels": (torch.rand(4, 32, 32) > 0.5).long()}
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: any graph break raises
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = compiled(images, **kwargs)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is not None for p in model.vit.encoder.parameters())


def test_corruption_runs_eagerly_inside_a_compiled_pretraining_model():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GroupMaskedViTForPreTraining(tiny_config()).eval()
    images = torch.randn(4, 1, 32, 32)
    expected = model(images, generator=torch.Generator().manual_seed(3))
    explanation = torch._dynamo.explain(model)(images, generator=torch.Generator().manual_seed(3))
    assert explanation.graph_count == 1, explanation.break_reasons  # the corruption is not split into fragments
    compiled = torch.compile(model, backend="aot_eager")
    actual = compiled(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(actual.mask, expected.mask)  # the same draws from the generator
    torch.testing.assert_close(actual.loss, expected.loss, rtol=1e-5, atol=1e-6)


def test_the_training_step_compiles_corruption_and_augmentation_when_the_context_says_so():
    """A run with CUDA graphs (--torch_compile_mode reduce-overhead) runs the GMML corruption
    (`Context.compiled_corruption`) and the augmentation (`Context.compiled_augmentation`) through torch.compile: the
    same corruption and loss as the eager corruption; with the augmentation too, the same masks (they depend on the
    draws alone) and views, corruption and loss up to rounding."""
    from modeling_cxrgm import masking
    from train import augment
    from train.engine import forward
    from train.run import Context

    torch.manual_seed(0)
    model = GroupMaskedViTForPreTraining(tiny_config()).train()
    batch = {"pixel_values": torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)}
    results = []
    for corruption, augmentation in ((False, False), (True, False), (True, True)):
        masking._compiled_corruption.cache_clear()
        augment._compiled_views.cache_clear()
        ctx = Context(task="pretraining", mean=[0.5], std=[0.25], model_config=model.config,
                      augment=augment.AugmentSpec(crop_scale=(0.5, 1.0), hflip_p=0.5, blur_p=0.5),
                      compiled_corruption=corruption, compiled_augmentation=augmentation)
        loss, outputs, views, _ = forward(model, batch, ctx, torch.Generator().manual_seed(4), train=True)
        assert masking._compiled_corruption.cache_info().currsize == int(corruption)
        assert augment._compiled_views.cache_info().currsize == int(augmentation)
        results.append((loss, outputs.mask, outputs.corrupted, views))
    (eager_loss, eager_mask, eager_corrupted, eager_views), (loss, mask, corrupted, views) = results[:2]
    assert torch.equal(mask, eager_mask) and torch.equal(corrupted, eager_corrupted) and torch.equal(views, eager_views)
    torch.testing.assert_close(loss, eager_loss)
    loss, mask, corrupted, views = results[2]
    assert torch.equal(mask, eager_mask)
    for actual, expected in ((views, eager_views), (corrupted, eager_corrupted), (loss, eager_loss)):
        torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_checkpoint_of_a_compiled_run_resumes_without_compiling(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train",
               "--output_dir", str(tmp_path), "--image_size", "32",
               "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
                                 '"num_attention_heads": 2, "intermediate_size": 64}',
               "--batch_size", "4", "--lr", "1e-3", "--warmup_epochs", "0", "--save_every_steps", "2",
               "--report_to", "none", "--no-card"]
    compiled = subprocess.run([*command, "--epochs", "1", "--torch_compile"], cwd=ROOT, env=env,
                              capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    resumed = subprocess.run([*command, "--epochs", "2", "--resume_from_checkpoint", "latest"], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout


@pytest.mark.slow
def test_a_run_compiled_by_the_launchers_dynamo_backend_exports_plain_weights_and_ema(tmp_path):
    """`accelerate launch --dynamo_backend ...` wraps the prepared model in a compiled module: the export and the
    EMA in the checkpoints still name the parameters as the model does (a `_orig_mod.` prefix would reload nothing)."""
    from safetensors.torch import load_file

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "ACCELERATE_DYNAMO_BACKEND": "eager"}
    command = [sys.executable, "-m", "train.pretrain", "--dataset", "sample", "--train_splits", "train",
               "--output_dir", str(tmp_path), "--image_size", "32",
               "--model_config", '{"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, '
                                 '"num_attention_heads": 2, "intermediate_size": 64}',
               "--epochs", "1", "--batch_size", "4", "--lr", "1e-3", "--warmup_epochs", "0", "--ema_decay", "0.9",
               "--report_to", "none", "--no-card"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = set(GroupMaskedViTForPreTraining(tiny_config()).state_dict())
    assert set(load_file(tmp_path / "model" / "model.safetensors")) == expected
    (last,) = (tmp_path / "checkpoints").iterdir()
    assert set(torch.load(last / "custom_checkpoint_1.pkl", weights_only=False)["shadow"]) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_compiled_augmentation_and_corruption_give_the_eager_ones():
    """What training runs with CUDA graphs, compiled for the GPU (Triton kernels, the bfloat16 first cover): the same
    views (up to rounding), moved masks, GMML masks and corrupted pixels as the eager code, at the GPU batch shape."""
    from train.augment import AugmentSpec, augment

    torch._dynamo.reset()
    images = torch.rand(64, 1, 224, 224, device="cuda")
    masks = (torch.rand(64, 224, 224, device="cuda") < 0.5).long()
    spec = AugmentSpec(crop_scale=(0.3, 1.0), hflip_p=0.5, rotation=10.0, jitter_p=0.5, blur_p=0.5)
    (views, moved), (compiled_views, compiled_moved) = (
        augment(images, spec, torch.Generator("cuda").manual_seed(0), masks=masks, compiled=flag) for flag in (False, True))
    torch.testing.assert_close(compiled_views, views, rtol=0, atol=1e-4)
    assert (compiled_moved != moved).float().mean() < 1e-3  # nearest sampling at exact ties aside
    config = tiny_config(image_size=224, patch_size=16)
    for fill in ("noise", "self_copy"):
        config.mask_fill = fill
        eager, compiled = (gmml_corrupt(views, config, torch.Generator("cuda").manual_seed(1), views=2, compiled=flag)
                           for flag in (False, True))
        assert torch.equal(compiled[1], eager[1]) and torch.equal(compiled[0], eager[0]), fill
