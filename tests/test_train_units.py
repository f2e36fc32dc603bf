"""Unit tests of the training pieces: arguments, schedules, parameter groups, clipping, augmentation, metrics,
checkpoint retention."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from sklearn.metrics import roc_auc_score

from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification
from train import checkpoint, metrics
from train.augment import AugmentSpec, augment
from train.config import EvalArgs, TrainArgs, load_yaml, parse_args, save_args
from train.optim import EMA, apply_schedules, clip_per_parameter, learning_rate, param_groups
from train.run import Context

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=2)


def test_cli_overrides_yaml_and_args_round_trip(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 7\nbatch_size: 3\ncrop_scale: [0.2, 0.9]\nmodel_config: {patch_size: 8}\n")
    args = parse_args(TrainArgs, ["--config", str(recipe), "--batch_size", "5", "--train_splits", "a", "b",
                                  "--no-card", "--eval_split", "none"])
    assert (args.epochs, args.batch_size, args.crop_scale) == (7, 5, [0.2, 0.9])
    assert args.train_splits == ["a", "b"] and args.card is False and args.eval_split is None
    assert args.model_config == {"patch_size": 8}
    saved = save_args(args, tmp_path / "run")
    assert TrainArgs(**load_yaml(saved, TrainArgs)) == args


def test_command_line_mappings_override_only_the_keys_they_name(tmp_path):
    args = parse_args(TrainArgs, ["--config", "gmml_pretrain", "--model_config", '{"hidden_size": 192}'])
    recipe = load_yaml("gmml_pretrain", TrainArgs)["model_config"]
    assert args.model_config == {**recipe, "hidden_size": 192} and args.model_config["mask_fill"] == "noise"
    run = tmp_path / "r.yaml"
    run.write_text("dataset: nih\ndataset_options: {train_fraction: 0.1, on_error: skip}\n"
                   "model_config: {patch_size: 8, drop_path_rate: 0.2}\n")
    args = parse_args(TrainArgs, ["--config", str(run), "--dataset_options", '{"train_fraction": 0.5}',
                                  "--model_config", '{"drop_path_rate": 0.0}'])
    assert args.dataset_options == {"train_fraction": 0.5, "on_error": "skip"}
    assert args.model_config == {"patch_size": 8, "drop_path_rate": 0.0}
    saved = save_args(args, tmp_path / "run")  # the merged values are the run's: resume compares them
    assert load_yaml(saved, TrainArgs)["model_config"] == {"patch_size": 8, "drop_path_rate": 0.0}
    # another builder than the YAML's: its options were the YAML builder's, the command line's replace them
    args = parse_args(TrainArgs, ["--config", str(run), "--dataset", "kermany", "--dataset_options", '{"x": 1}'])
    assert args.dataset_options == {"x": 1}


def test_a_resumed_run_starts_from_the_arguments_it_recorded(tmp_path):
    """`--output_dir X --resume_from_checkpoint latest` compared the run's args.yaml with the script's defaults and
    refused to resume ("started with other arguments": every flag had to be typed again, a recipe's too)."""
    defaults = {"task": "pretraining", "output_dir": "outputs/pretrain", "eval_split": None}
    run = tmp_path / "run"
    started = parse_args(TrainArgs, ["--config", "gmml_pretrain", "--output_dir", str(run), "--image_size", "64",
                                     "--model_config", '{"hidden_size": 32}', "--batch_size", "16",
                                     "--max_steps", "3"], defaults)
    save_args(started, run)
    resumed = parse_args(TrainArgs, ["--output_dir", str(run), "--resume_from_checkpoint", "latest"], defaults)
    # where the first invocation was to stop is not the run's: resumed without --max_steps it runs to its end
    assert resumed == dataclasses.replace(started, resume_from_checkpoint="latest", max_steps=None)
    # a flag given on resume overrides the recorded one (run_training then refuses those that make another run)
    more = parse_args(TrainArgs, ["--output_dir", str(run), "--resume_from_checkpoint", "latest", "--max_steps", "9",
                                  "--model_config", '{"mask_fill": "zeros"}'], defaults)
    assert more.max_steps == 9 and more.model_config == {**started.model_config, "mask_fill": "zeros"}
    # a checkpoint named by its folder: its run's arguments, whatever --output_dir defaults to
    by_path = parse_args(TrainArgs, ["--resume_from_checkpoint", str(run / "checkpoints" / "step_00000004")],
                         defaults)
    assert by_path.output_dir == str(run) and by_path.image_size == 64
    # the recipe's aspect range is the default's exactly: a run started without the recipe resumes with it
    assert load_yaml("gmml_pretrain", TrainArgs)["crop_ratio"] == TrainArgs().crop_ratio
    assert parse_args(TrainArgs, ["--output_dir", str(tmp_path / "new")], defaults).image_size == 224  # a new run


def test_unknown_yaml_key_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        parse_args(TrainArgs, ["--config", str(recipe)])


def test_yaml_values_take_the_argument_types(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1e-3\nweight_decay: 0\ncrop_scale: [5e-2, 1]\nmixed_precision: 'no'\n")
    args = parse_args(TrainArgs, ["--config", str(recipe)])
    assert (args.lr, args.weight_decay, args.crop_scale) == (1e-3, 0.0, [0.05, 1.0])
    assert isinstance(args.weight_decay, float) and args.mixed_precision == "no"


def test_none_is_a_value_of_optional_flags_only(capsys, tmp_path):
    """`--epochs none` and `--model_config null` became None, and the run ended on a TypeError traceback. The
    args.yaml of a run of an earlier version, which recorded `--report_to none` as null, still reads."""
    args = parse_args(TrainArgs, ["--eval_split", "none", "--report_to", "none"])
    assert args.eval_split is None and args.report_to == "none"
    (tmp_path / "args.yaml").write_text("report_to: null\neval_split: null\n")
    assert load_yaml(tmp_path / "args.yaml", TrainArgs) == {"report_to": "none", "eval_split": None}
    for flag, value, message in (("--epochs", "none", "invalid int value: 'none'"),
                                 ("--model_config", "null", "'null' is not a JSON object")):
        with pytest.raises(SystemExit) as stopped:
            parse_args(TrainArgs, [flag, value])
        assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ("epochs: two", "epochs must be an integer, got 'two'"),
    ("lr: fast", "lr must be a number, got 'fast'"),
    ("mixed_precision: no", "mixed_precision must be text, got False .*quote"),
    ("model_config: [8]", "model_config must be a mapping"),
    ("train_splits: train", "train_splits must be a list"),
    ("card: 1", "card must be true or false"),
    ("model_config:\n  # patch_size: 8", "model_config has no value .*every line under it commented out"),
    ("epochs:", "epochs has no value"),
])
def test_yaml_value_of_the_wrong_type_is_refused_naming_it(tmp_path, line, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        parse_args(TrainArgs, ["--config", str(recipe)])


@pytest.mark.parametrize("text, message", [
    ("notjson", "'notjson' is not JSON"),
    ("[8]", "'\\[8\\]' is not a JSON object"),
])
def test_command_line_json_that_is_not_an_object_is_refused_saying_so(capsys, text, message):
    with pytest.raises(SystemExit):
        parse_args(TrainArgs, ["--model_config", text])
    assert re.search(f"argument --model_config: {message}", capsys.readouterr().err)


def test_every_recipe_loads():
    for name in ("gmml_pretrain", "finetune_classification", "finetune_segmentation", "demo_pretrain",
                 "demo_finetune"):
        TrainArgs(**load_yaml(name, TrainArgs))


def test_warmup_then_cosine_to_minimum():
    assert learning_rate(0, 100, 10, 1.0, 0.01) == pytest.approx(0.1)
    assert learning_rate(9, 100, 10, 1.0, 0.01) == pytest.approx(1.0)
    assert learning_rate(55, 100, 10, 1.0, 0.01) == pytest.approx(0.505)
    assert learning_rate(100, 100, 10, 1.0, 0.01) == pytest.approx(0.01)


def test_groups_decay_and_layer_scales():
    model = GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY))
    groups = param_groups(model, num_layers=2, layer_decay=0.5)
    by_name = {name: group for group in groups for name in group["names"]}
    for name in ("vit.embeddings.position_embeddings", "vit.embeddings.cls_token", "vit.layernorm.weight",
                 "vit.encoder.layers.0.attention.qkv.bias", "classifier.bias"):
        assert not by_name[name]["decay"], name
    assert by_name["vit.encoder.layers.1.mlp.fc1.weight"]["decay"]
    assert by_name["vit.embeddings.patch_embeddings.projection.weight"]["lr_scale"] == pytest.approx(0.125)
    assert by_name["vit.encoder.layers.0.mlp.fc1.weight"]["lr_scale"] == pytest.approx(0.25)
    assert by_name["classifier.weight"]["lr_scale"] == 1.0
    optimizer = torch.optim.AdamW(groups, lr=0.0)
    lr, wd = apply_schedules(optimizer, 0, total=10, warmup=0, lr=1.0, min_lr=0.0, weight_decay=0.04,
                             weight_decay_end=0.4)
    assert (lr, wd) == (1.0, pytest.approx(0.04))
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(group["lr_scale"])
        assert group["weight_decay"] == (pytest.approx(0.04) if group["decay"] else 0.0)
    apply_schedules(optimizer, 10, total=10, warmup=0, lr=1.0, min_lr=0.0, weight_decay=0.04, weight_decay_end=0.4)
    assert max(g["weight_decay"] for g in optimizer.param_groups) == pytest.approx(0.4)


def test_per_parameter_clipping_clips_each_separately():
    a, b = torch.nn.Parameter(torch.zeros(4)), torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((4,), 3.0), torch.full((4,), 0.1)  # norms 6 and 0.2
    largest = clip_per_parameter([a, b], 1.0)
    assert largest.item() == pytest.approx(6.0)
    assert a.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    assert b.grad.norm().item() == pytest.approx(0.2)

    parameters = [torch.nn.Parameter(torch.zeros(3)) for _ in range(40)]
    for parameter in parameters:
        parameter.grad = torch.ones(3)
    with KernelOps() as ops:  # on a GPU each is a kernel launch: not one norm per parameter (150 in a ViT-S)
        clip_per_parameter(parameters, 1.0)
    assert len(ops.names) < 20, ops.names
    assert all(p.grad.norm().item() == pytest.approx(1.0, rel=1e-4) for p in parameters)


class KernelOps(TorchDispatchMode):
    """Records the operations run while active, views (which launch no kernel) left out."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.__name__.startswith(("detach", "unbind", "select", "view", "alias")):
            self.names.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_ema_updates_every_tensor_in_one_call():
    """One lerp kernel per tensor was about 150 launches per ViT-S step."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(3, 3) for _ in range(20)])
    ema = EMA(model, decay=0.5)
    expected = {key: value.float() * 0.5 + (value.float() + 1.0) * 0.5 for key, value in ema.shadow.items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    with KernelOps() as ops:
        ema.update(model)
    assert len(ops.names) < 10, ops.names
    # lerp rounds differently from the formula: about 1e-7 off where a weight lands near 0 (rtol cannot cover it)
    assert all(torch.allclose(ema.shadow[key], value, atol=1e-6) for key, value in expected.items())


def test_ema_moves_towards_weights_and_swaps_back():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(2.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], before + 1.0)
    with ema.swapped(model):
        assert torch.allclose(model.weight, before + 1.0)
    assert torch.allclose(model.weight, before + 2.0)


def test_ema_state_loads_onto_the_models_device():
    """Checkpoints load the EMA state onto the CPU; it must go back where the model is (here the meta device stands
    in for a GPU), or the next update mixes devices."""
    trained = EMA(torch.nn.Linear(2, 1), decay=0.9)
    state = trained.state_dict()
    ema = EMA(torch.nn.Linear(2, 1).to("meta"), decay=0.5)
    ema.load_state_dict(state)
    assert ema.decay == 0.9 and ema.shadow.keys() == state["shadow"].keys()
    assert all(tensor.device.type == "meta" for tensor in ema.shadow.values())
    ema.update(torch.nn.Linear(2, 1).to("meta"))


def test_augment_is_seeded_batched_and_moves_masks():
    images = torch.rand(6, 1, 32, 32)
    masks = torch.zeros(6, 32, 32, dtype=torch.long)
    masks[:, :, :16] = 1  # left half
    spec = AugmentSpec(crop_scale=(0.3, 1.0), hflip_p=1.0, jitter_p=1.0, blur_p=1.0)
    one, moved = augment(images, spec, torch.Generator().manual_seed(3), masks=masks)
    two, _ = augment(images, spec, torch.Generator().manual_seed(3), masks=masks)
    other = augment(images, spec, torch.Generator().manual_seed(4))
    assert one.shape == images.shape and torch.equal(one, two) and not torch.equal(one, other)
    assert 0 <= one.min() and one.max() <= 1
    assert set(moved.unique().tolist()) <= {0, 1}
    plain = augment(images, AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=1.0, jitter_p=0,
                                        blur_p=0), torch.Generator().manual_seed(0), masks=masks)[1]
    assert torch.equal(plain, masks.flip(-1))  # a full-image crop with a flip mirrors the mask
    turned = augment(images, AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0, rotation=45,
                                         jitter_p=0, blur_p=0), torch.Generator().manual_seed(0), masks=masks)[1]
    assert (turned[:, 0, 0] == 255).all()  # a corner brought in from outside the image is ignored, like padding
    assert set(turned.unique().tolist()) == {0, 1, 255}


def test_compiled_augmentation_gives_the_eager_views():
    """`augment(..., compiled=True)` (training with CUDA graphs): one draw of uniforms, then the same views and moved
    masks through torch.compile, up to float rounding (the compiled bicubic sampling sums in another order)."""
    torch._dynamo.reset()
    images = torch.rand(4, 1, 32, 32)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    masks[:, :, :16] = 1
    content = torch.tensor([[8, 0, 16, 32], [0, 0, 32, 32]] * 2)
    spec = AugmentSpec(crop_scale=(0.3, 1.0), hflip_p=0.5, rotation=10.0, jitter_p=1.0, blur_p=0.5)
    for extra in ({"masks": masks}, {"content": content}):
        eager, compiled = (augment(images, spec, torch.Generator().manual_seed(5), compiled=flag, **extra)
                           for flag in (False, True))
        if "masks" in extra:
            (eager, eager_masks), (compiled, compiled_masks) = eager, compiled
            assert (compiled_masks != eager_masks).float().mean() < 0.01  # nearest sampling at ties aside
        torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)
        assert not torch.allclose(eager, images, atol=0.05)  # views, not the images


def test_the_models_random_draws_are_not_the_augmentations():
    """One seed for torch's global RNG (dropout, stochastic depth) and the step's generator (augmentation, corruption)
    made them one stream: every stochastic-depth keep decision equalled an augmentation uniform's comparison."""
    from train.engine import step_generator

    generator = step_generator(7, "cpu")
    augmentation = torch.rand(1000, generator=generator)
    model = torch.rand(1000)
    assert not torch.equal(augmentation, model)
    assert abs(float(torch.corrcoef(torch.stack([augmentation, model]))[0, 1])) < 0.1
    again = step_generator(7, "cpu")  # still one replayable pair of streams per step
    assert torch.equal(torch.rand(1000, generator=again), augmentation) and torch.equal(torch.rand(1000), model)


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    probabilities = np.clip(labels * 0.3 + rng.random(40) * 0.7, 0, 1)
    predictions = np.stack([1 - probabilities, probabilities], 1)
    out = metrics.load("cxr_classification").compute(
        predictions=predictions, references=np.eye(2)[labels], label_names=["normal", "pneumonia"], bootstrap=50)
    assert out["auroc/pneumonia"] == pytest.approx(roc_auc_score(labels, probabilities))
    decided = probabilities >= 0.5
    assert out["accuracy"] == pytest.approx((decided == labels).mean())
    assert out["sensitivity/pneumonia"] == pytest.approx(decided[labels == 1].mean())
    assert out["specificity/pneumonia"] == pytest.approx((~decided[labels == 0]).mean())
    assert out["confusion/pneumonia/normal"] == ((labels == 1) & ~decided).sum()
    assert out["auroc_macro_ci_low"] <= out["auroc_macro"] <= out["auroc_macro_ci_high"]


def _best_at(labels, scores, wanted: str, level: float = 0.95) -> float:
    """Brute force over every cut "score >= c" (c at each score, and above all): the best sensitivity with a
    specificity of at least `level` (wanted="sensitivity"), or the reverse."""
    best = 0.0
    for cut in [*np.unique(scores), np.inf]:
        decided = scores >= cut
        sensitivity = decided[labels == 1].sum() / (labels == 1).sum()
        specificity = (~decided[labels == 0]).sum() / (labels == 0).sum()
        kept, other = (sensitivity, specificity) if wanted == "sensitivity" else (specificity, sensitivity)
        if other * 100 >= level * 100 - 1e-6:
            best = max(best, kept)
    return best


@pytest.mark.parametrize("single_label", [True, False])
def test_roc_operating_points_are_the_best_cuts(single_label):
    """Sensitivity at 95% specificity and specificity at 95% sensitivity, per class, equal a brute-force search over
    every cut of the class's probability: tied scores (rounded to a tenth), 20 negatives (19 of 20 is exactly 95%),
    and in the multi-label case unknown labels, which do not count."""
    rng = np.random.default_rng(1)
    labels = np.eye(3)[rng.integers(0, 3, 60)]
    probabilities = np.round(np.clip(labels * 0.35 + rng.random((60, 3)) * 0.65, 0, 1), 1)
    references = labels.copy()
    if not single_label:
        references[rng.random((60, 3)) < 0.2] = np.nan
    names = ["normal", "pneumonia", "covid"]
    out = metrics.load("cxr_classification").compute(predictions=probabilities, references=references,
                                                     single_label=single_label, label_names=names)
    for k, name in enumerate(names):
        known = ~np.isnan(references[:, k])
        y, p = references[known, k], probabilities[known, k]
        assert out[f"sensitivity_at_specificity_95/{name}"] == pytest.approx(_best_at(y, p, "sensitivity"))
        assert out[f"specificity_at_sensitivity_95/{name}"] == pytest.approx(_best_at(y, p, "specificity"))
    # exactly 95%: 19 of 20 negatives below every positive but one negative's score
    y = np.r_[np.zeros(20), np.ones(5)]
    p = np.r_[np.linspace(0.0, 0.4, 19), 0.9, [0.5, 0.6, 0.7, 0.8, 0.95]]
    out = metrics.load("cxr_classification").compute(predictions=np.c_[1 - p, p], references=np.eye(2)[y.astype(int)],
                                                     label_names=["normal", "pneumonia"])
    assert out["sensitivity_at_specificity_95/pneumonia"] == 1.0
    assert out["specificity_at_sensitivity_95/pneumonia"] == 0.95


def _classification_module():
    """The cxr_classification metric's own module (its private functions), loaded from its file."""
    import importlib.util

    from train.metrics import __file__ as metrics_init

    path = Path(metrics_init).parent / "cxr_classification" / "cxr_classification.py"
    spec = importlib.util.spec_from_file_location("cxr_classification_direct", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("single_label", [True, False])
def test_bootstrap_intervals_equal_metrics_of_each_resample(single_label):
    """The vectorised bootstrap gives exactly the percentiles of the metrics recomputed on every resample (same
    draws): with ties, unknown labels and a class that some resamples lack."""
    module = _classification_module()
    rng = np.random.default_rng(0)
    n, k = 400, 4
    if single_label:
        classes = rng.integers(0, k, n)
        labels = np.eye(k)[classes]
        labels[:20] = np.nan
        probabilities = rng.dirichlet(np.ones(k), n)
        probabilities[np.arange(n), classes] += 0.3
    else:
        labels = (rng.random((n, k)) < 0.2).astype(float)
        labels[rng.random((n, k)) < 0.1] = np.nan
        labels[:, 3] = 0
        labels[:3, 3] = 1  # rare: some resamples have no positive
        probabilities = np.clip(np.nan_to_num(labels) * 0.3 + rng.random((n, k)) * 0.7, 0, 1)
    probabilities = np.round(probabilities, 2)  # ties
    names = [f"c{i}" for i in range(k)]
    fast = module._bootstrap(probabilities, labels, names, single_label, 0.5, 100, seed=3)

    draws, expected = np.random.default_rng(3), {"auroc_macro": [], "accuracy": []}
    for _ in range(100):
        rows = draws.integers(0, n, n)
        values = module.classification_metrics(probabilities[rows], labels[rows], names, single_label)
        for key in expected:
            expected[key].append(values[key])
    assert set(fast) == {"auroc_macro_ci_low", "auroc_macro_ci_high", "accuracy_ci_low", "accuracy_ci_high"}
    for key, values in expected.items():
        low, high = np.percentile(values, [2.5, 97.5])
        assert fast[f"{key}_ci_low"] == pytest.approx(low, abs=1e-12)
        assert fast[f"{key}_ci_high"] == pytest.approx(high, abs=1e-12)


def test_bootstrap_memory_does_not_grow_with_the_images():
    """Draws were taken 64 at a time as (64, images) float arrays, several of them at once: 400 MB for 100,000
    predictions. A chunk now holds a bounded number of counts, whatever the number of images."""
    import tracemalloc

    module = _classification_module()
    rng = np.random.default_rng(0)
    n = 200_000
    labels = (rng.random((n, 1)) < 0.3).astype(float)
    probabilities = rng.random((n, 1))
    one_chunk_of_64 = 64 * n * 8
    tracemalloc.start()
    try:
        module._bootstrap(probabilities, labels, ["c0"], False, 0.5, 64, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < one_chunk_of_64


def test_multilabel_metrics_ignore_unknown_and_skip_single_valued_classes():
    references = np.array([[1, 0, np.nan], [0, 0, 1], [1, np.nan, 0], [0, 0, 1]], dtype=float)
    predictions = np.array([[0.9, 0.2, 0.5], [0.1, 0.3, 0.8], [0.8, 0.9, 0.4], [0.4, 0.1, 0.6]])
    out = metrics.load("cxr_classification").compute(predictions=predictions, references=references,
                                                     single_label=False, label_names=["a", "b", "c"])
    assert out["auroc/a"] == 1.0 and out["auroc/c"] == 1.0 and "auroc/b" not in out
    assert out["accuracy"] == 1.0  # row 3 class b (unknown, predicted 0.9) does not count


def test_multilabel_metrics_leave_soft_labels_unscored():
    """An uncertain label under a soft policy (uncertain=0.7, e.g. in MIMIC-CXR's test split) is a training target,
    not ground truth: it is scored as unknown, where AUROC failed on the 'continuous' references."""
    references = np.array([[1, 0], [0, 0.7], [1, 1], [0.7, 0], [0, 1]], dtype=float)
    predictions = np.array([[0.9, 0.2], [0.1, 0.8], [0.6, 0.7], [0.2, 0.4], [0.7, 0.6]])
    unknown = np.where(np.isin(references, (0, 1)), references, np.nan)
    module = metrics.load("cxr_classification")
    soft = module.compute(predictions=predictions, references=references, single_label=False,
                          label_names=["a", "b"], bootstrap=20)
    expected = module.compute(predictions=predictions, references=unknown, single_label=False,
                              label_names=["a", "b"], bootstrap=20)
    assert soft == pytest.approx(expected)
    assert soft["auroc/a"] == pytest.approx(roc_auc_score([1, 0, 1, 0], [0.9, 0.1, 0.6, 0.7]))


def test_bootstrap_leaves_out_a_label_no_image_knows():
    """A model evaluated on another set (an NIH model on CheXpert: Infiltration, Mass, ... unknown everywhere) failed
    in the bootstrap ('index 0 out-of-bounds in add.reduceat'); the intervals are those of the labels the set has."""
    rng = np.random.default_rng(0)
    labels = (rng.random((30, 2)) < 0.4).astype(float)
    probabilities = np.clip(labels * 0.3 + rng.random((30, 2)) * 0.7, 0, 1)
    module = metrics.load("cxr_classification")
    with_unknown = module.compute(predictions=np.c_[probabilities, rng.random(30)],
                                  references=np.c_[labels, np.full(30, np.nan)], single_label=False,
                                  label_names=["a", "b", "c"], bootstrap=50)
    known = module.compute(predictions=probabilities, references=labels, single_label=False, label_names=["a", "b"],
                           bootstrap=50)
    for key in ("auroc_macro", "auroc_macro_ci_low", "auroc_macro_ci_high", "accuracy_ci_low", "accuracy_ci_high"):
        assert with_unknown[key] == pytest.approx(known[key])


def test_dice_and_iou():
    out = metrics.load("cxr_segmentation").compute(intersection=[[3], [0]], predicted=[[4], [0]], target=[[5], [0]],
                                                   label_names=["lungs"])
    assert out["dice"] == pytest.approx((6 / 9 + 1) / 2)
    assert out["iou/lungs"] == pytest.approx((3 / 6 + 1) / 2)


def test_a_one_label_segmenters_mask_is_cut_at_the_threshold():
    """evaluate --threshold is a one-label segmenter's mask cut, as predict's is: the pixels of probability above it."""
    from train.engine import mask_counts

    logits = torch.tensor([[[[-3.0, -0.5, 0.5, 3.0]]]])  # (1, 1, 1, 4): probabilities 0.05, 0.38, 0.62, 0.95
    labels = torch.ones(1, 1, 4, dtype=torch.uint8)
    predicted = {cut: int(mask_counts(logits, labels, threshold=cut)["predicted"]) for cut in (0.0, 0.3, 0.5, 0.7, 1.0)}
    assert predicted == {0.0: 4, 0.3: 3, 0.5: 2, 0.7: 1, 1.0: 0}


@pytest.mark.parametrize("channels", [1, 2])
def test_mask_counts_leave_out_ignored_pixels(channels):
    from train.engine import mask_counts

    labels = torch.tensor([[[1, 1, 0, 255]]], dtype=torch.uint8)  # (1, 1, 4): the last pixel is ignored
    foreground = torch.tensor([[[2.0, 2.0, -2.0, 2.0]]])  # predicted everywhere but the background pixel
    logits = foreground[:, None] if channels == 1 else torch.stack([-foreground, foreground], 1)
    counts = mask_counts(logits, labels)
    assert [int(counts[key]) for key in ("intersection", "predicted", "target")] == [2, 2, 2]


@pytest.mark.parametrize("single_label", [True, False])
def test_metric_names_are_what_the_metric_modules_compute(single_label):
    """The names metric_for_best is checked against before training, on data where every metric is defined."""
    labels = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    predictions = np.eye(3)[[0, 1, 1, 0, 2, 2]] * 0.8 + 0.1
    names = ["normal", "pneumonia", "covid"]
    computed = metrics.load("cxr_classification").compute(predictions=predictions, references=labels,
                                                          label_names=names, single_label=single_label)
    scored = {key for key in computed if key != "num_samples" and not key.startswith("confusion/")}
    assert scored == set(metrics.metric_names("classification", names))
    computed = metrics.load("cxr_segmentation").compute(intersection=[[3]], predicted=[[4]], target=[[5]],
                                                        label_names=["lungs"])
    assert set(computed) - {"num_samples"} == set(metrics.metric_names("segmentation", ["lungs"]))


class _Saver:
    """The two Accelerator methods `checkpoint.save` uses, writing a file like `save_state` does."""

    is_main_process = True

    def wait_for_everyone(self):
        pass

    def save_state(self, folder):
        (__import__("pathlib").Path(folder) / "custom_checkpoint_0.pkl").write_bytes(b"x")


def test_checkpoint_retention_and_half_written_folders_are_ignored(tmp_path):
    for step in (1, 2, 3):
        checkpoint.save(_Saver(), tmp_path, step, limit=2)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    (tmp_path / "checkpoints" / ".tmp-step_00000009").mkdir()  # a save killed half way
    assert checkpoint.resolve("latest", tmp_path).name == "step_00000003"
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        checkpoint.resolve(str(tmp_path / "nothing"), tmp_path)


def test_resuming_from_an_older_checkpoint_warns_of_the_newer_ones(tmp_path, caplog):
    """Resumed by path from step 1 of a run that went on to steps 2 and 3: those are named (`latest` would pick them
    while this run has not yet replaced them); resumed from the newest, nothing is said."""
    for step in (1, 2, 3):
        checkpoint.save(_Saver(), tmp_path, step, limit=3)
    folders = tmp_path / "checkpoints"
    with caplog.at_level("WARNING", logger=checkpoint.logger.name):
        assert checkpoint.resolve(str(folders / "step_00000001"), tmp_path).name == "step_00000001"
    assert "older than step_00000002, step_00000003 of this run" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger=checkpoint.logger.name):
        checkpoint.resolve(str(folders / "step_00000003"), tmp_path)
    assert "older than" not in caplog.text


def test_checkpoint_retention_keeps_complete_checkpoints_and_replaces_damaged_ones(tmp_path):
    """A run resumed from step 1 past damaged checkpoints 2 and 3: the damaged folders do not count towards the limit
    (they pushed out the checkpoint just saved), step 2's is saved again rather than kept, and damaged folders a newer
    complete checkpoint supersedes are removed."""
    for step in (1, 2, 3):
        checkpoint.save(_Saver(), tmp_path, step, limit=3)
    folders = tmp_path / "checkpoints"
    (folders / "step_00000002" / "custom_checkpoint_0.pkl").unlink()
    (folders / "step_00000003" / "manifest.json").unlink()
    checkpoint._SAVED.clear()  # a new process resumes the run
    checkpoint.save(_Saver(), tmp_path, 2, limit=1)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert checkpoint.problem(folders / "step_00000002") is None
    assert checkpoint.problem(folders / "step_00000003").startswith("it has no manifest.json")
    checkpoint.save(_Saver(), tmp_path, 4, limit=1)
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["step_00000004"]


def test_8bit_images_travel_as_uint8_equal_to_the_rounded_processor_output():
    import datasets
    from PIL import Image

    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    rng = np.random.default_rng(0)
    grey = [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in ((32, 32), (20, 32), (48, 40))]
    ds = datasets.Dataset.from_dict({"image": grey}, features=datasets.Features({"image": datasets.Image()}))
    for processor in (GroupMaskedViTImageProcessor(size=32, num_channels=1),
                      GroupMaskedViTImageProcessor(size=32, num_channels=1, equalize=True)):
        dataset = data.CXRDataset(ds, processor, "pretraining")  # square at size, padded, resized
        assert dataset.uint8
        for i, image in enumerate(grey):
            expected = processor.preprocess([image], do_normalize=False)["pixel_values"][0]
            item = dataset[i]["pixel_values"]
            assert item.dtype == torch.uint8 and torch.equal(item, expected.mul(255).round().to(torch.uint8))
            assert (item.float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-7

    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    deep = [Image.fromarray(rng.integers(0, 65536, (32, 32), dtype=np.uint16))]
    ds16 = datasets.Dataset.from_dict({"image": deep}, features=datasets.Features({"image": datasets.Image()}))
    assert data.CXRDataset(ds16, processor, "pretraining")[0]["pixel_values"].dtype == torch.float32


def test_a_dim_windowed_dicom_trains_as_prediction_reads_it(tmp_path):
    """A 16-bit set's decoded DICOM whose window leaves it below mid-grey is read at the scale it was written at,
    not brightened by the bits its largest value uses: training sees what `train.predict` sees in the file."""
    import sys

    import datasets

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_dicom

    from hf_datasets import build_dataset, read_dicom
    from hf_datasets.prepare import prepare
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    pixels = np.tile(np.linspace(0, 2000, 32, dtype=np.uint16), (32, 1))
    path = write_dicom(tmp_path / "scans" / "IM0001", pixels, window=(3000, 4000))
    image = read_dicom(path)[0]
    assert 0.2 < image.max() < 0.5
    processor = GroupMaskedViTImageProcessor(size=32)
    expected = processor.preprocess([image], do_normalize=False)["pixel_values"][0]
    built = build_dataset("dicomdir", tmp_path / "scans", split_fractions={"train": 1.0},
                          cache_dir=str(tmp_path / "cache"))["train"]
    prepare("dicomdir", tmp_path / "scans", tmp_path / "prepared", size=32, bits=16,
            split_fractions={"train": 1.0}, progress=False)
    prepared = datasets.load_from_disk(str(tmp_path / "prepared"))["train"]
    for ds in (built, prepared):
        item = data.CXRDataset(ds, processor, "pretraining")[0]["pixel_values"]
        assert (item - expected).abs().max() < 1e-4


def test_a_dim_sixteen_bit_image_mapped_by_datasets_keeps_its_brightness_in_training_and_the_probe(tmp_path):
    """`Dataset.map` returning a row's image encodes it again without the bit depth it stated (datasets' PNG has no
    text chunk): training, evaluation (CXRDataset) and the probe then scaled a dim windowed DICOM of a 16-bit set by
    the bits its brightest value uses, twice as bright here. They scale it by the set's recorded 16 bits, mapped,
    saved and loaded again (as --prepared_dir reads it) alike; an original 12-bit file of the same set, which keeps
    its path through the map, is still scaled by the 12 bits it uses."""
    import sys

    import datasets
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_dicom

    from hf_datasets import bit_depth, build_dataset
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTImageProcessor, GroupMaskedViTModel
    from train import data
    from train.probe import extract_features

    write_dicom(tmp_path / "scans" / "normal" / "dim.dcm", np.tile(np.linspace(0, 4000, 32).astype(np.uint16),
                                                                    (40, 1)), window=(5000, 6000))
    twelve = np.tile(np.linspace(0, 4095, 32).astype(np.uint16), (40, 1))  # PadChest-like: 12 bits stored in 16
    Image.fromarray(twelve).save(tmp_path / "scans" / "normal" / "twelve.png")
    built = build_dataset("imagefolder", tmp_path / "scans", split_fractions={"train": 1.0}, bits=16,
                          cache_dir=str(tmp_path / "cache"))["train"]
    mapped = built.map(lambda row: {"image": row["image"], "age": 40.0}, cache_file_name=str(tmp_path / "m.arrow"))
    mapped.save_to_disk(str(tmp_path / "saved"))
    saved = datasets.load_from_disk(str(tmp_path / "saved"))
    dim = [row["path"] for row in built].index("normal/dim.dcm")
    assert built[dim]["image"].info.get("bit depth") == "16" and mapped[dim]["image"].info.get("bit depth") is None
    assert bit_depth(mapped) == bit_depth(saved) == 16

    processor = GroupMaskedViTImageProcessor(size=32)
    expected = [item["pixel_values"] for item in data.CXRDataset(built, processor, "classification")]
    assert 0.3 < expected[dim].max() < 0.36  # a third of white, as windowed
    assert expected[1 - dim].max() > 0.98  # the 12-bit file: white at 4095 (resizing softens the edge column)
    for ds in (mapped, saved):
        for task in ("pretraining", "classification"):
            for i, item in enumerate(data.CXRDataset(ds, processor, task)):
                assert torch.equal(item["pixel_values"], expected[i]), (task, i)

    torch.manual_seed(0)
    encoder = GroupMaskedViTModel(GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                                       num_hidden_layers=2, num_attention_heads=2,
                                                       intermediate_size=64)).eval()
    features, _ = extract_features(encoder, processor, built)
    for ds in (mapped, saved):
        assert np.array_equal(extract_features(encoder, processor, ds)[0], features)


def test_segmentation_masks_travel_as_uint8_and_out_of_range_values_are_refused():
    import datasets
    from PIL import Image

    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)) for _ in range(2)]
    masks = [Image.fromarray(np.where(rng.random((32, 32)) < 0.5, 255, 0).astype(np.uint8)),  # 0/255 PNG mask
             Image.fromarray(np.full((32, 32), 300, dtype=np.int32))]  # a 32-bit mask with an impossible class
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    ds = datasets.Dataset.from_dict({"image": images, "mask": masks}, features=features)
    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    dataset = data.CXRDataset(ds, processor, "segmentation")
    labels = dataset[0]["labels"]
    expected = processor.preprocess([images[0]], segmentation_maps=[masks[0]])["labels"][0]
    assert labels.dtype == torch.uint8 and torch.equal(labels.long(), expected) and set(labels.unique().tolist()) == {0, 1}
    from hf_datasets.errors import DataError

    with pytest.raises(DataError, match=r"row 1 \(\?\): mask values must be class indices 0-255"):
        dataset[1]


def test_inverted_lung_masks_are_warned_of_when_the_rows_with_masks_are_taken(tmp_path, monkeypatch, caplog):
    """Masks drawn with black lungs on a white background trained without a word, and the segmenter learnt the
    background. Lungs cover about 0.25-0.45 of a chest X-ray: masks covering more than half of their image on average
    are said to look inverted (not refused), reading a sample of them only."""
    import sys

    import datasets
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    import layouts

    from train import data

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    train = data.load_splits("cxr_folder", str(layouts.cxr_folder(tmp_path / "src")), None)["train"]
    inverted = train.map(lambda row: {"mask": Image.fromarray(255 - np.asarray(row["mask"]))})
    caplog.set_level("WARNING", logger="train.data")
    rows = data.task_rows(train, "segmentation", "The training data")
    assert rows and not caplog.records  # the fixture's lungs cover 0.19 of each image
    assert data.task_rows(inverted, "segmentation", "The training data") == rows
    assert (f"The training data: its masks cover 0.81 of their image on average ({len(rows)} of {len(rows)} masks "
            "read)") in caplog.text and "Lungs must be nonzero (white) in a mask" in caplog.text
    caplog.clear()
    many = datasets.Dataset.from_dict({"mask": [inverted[0]["mask"]] * 100},
                                      features=datasets.Features({"mask": datasets.Image()}))
    data.warn_inverted_masks(many, list(range(100)), "Split 'train'")
    assert f"({data.MASK_SAMPLE} of 100 masks read)" in caplog.text


def test_a_small_set_keeps_its_items_and_gives_the_items_it_would_make():
    """A set whose items fit `cache_bytes` keeps each item once made: a later epoch decodes nothing (each epoch's
    start waited for its first batch to be decoded, which with a few labelled images is most of the epoch). Kept
    items equal freshly made ones, also through loader workers over two epochs; a set over the budget keeps none."""
    import datasets

    from hf_datasets.builders.sample import sample_files
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    files = [str(path) for _, path in sorted(sample_files().items())][:6]
    ds = datasets.Dataset.from_dict({"image": files}, features=datasets.Features({"image": datasets.Image()}))
    processor = GroupMaskedViTImageProcessor(size=64)
    kept = data.CXRDataset(ds, processor, "pretraining")
    fresh = data.CXRDataset(ds, processor, "pretraining", cache_bytes=0)
    assert kept.cache == {} and fresh.cache is None

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)

    for i in range(len(kept)):
        assert same(kept[i], fresh[i])
    decoded = kept._row
    kept._row = None  # decoding now fails: the second pass must not decode
    assert all(same(kept[i], fresh[i]) for i in range(len(kept)))
    kept[0]["pixel_values"] = None  # a caller's change to an item it got does not reach the kept one
    assert same(kept[0], fresh[0])

    kept._row = decoded
    kept.cache.clear()
    loaders = [data.make_loader(dataset, 4, seed=0, shuffle=True, num_workers=1) for dataset in (kept, fresh)]
    for epoch in range(2):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        assert all(same(a, b) for a, b in zip(*loaders, strict=True))

    budget = len(ds) * kept.item_bytes()
    assert data.CXRDataset(ds, processor, "pretraining", cache_bytes=budget).cache == {}
    assert data.CXRDataset(ds, processor, "pretraining", cache_bytes=budget - 1).cache is None


def test_an_image_that_cannot_be_decoded_is_named_in_the_error(tmp_path):
    """Training or evaluating straight from a set's original files: a corrupt file stops with its path, not
    with PIL's bare "Truncated File Read"."""
    import datasets

    from hf_datasets.builders.sample import sample_files
    from hf_datasets.errors import ImageReadError
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    good = next(str(path) for name, path in sample_files().items() if name.endswith(".jpeg"))
    broken = tmp_path / "PNEUMONIA" / "broken.jpeg"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    features = datasets.Features({"image": datasets.Image(), "path": datasets.Value("string")})
    columns = {"image": [good, str(broken)], "path": ["NORMAL/good.jpeg", "PNEUMONIA/broken.jpeg"]}
    ds = datasets.Dataset.from_dict(columns, features=features)
    dataset = data.CXRDataset(ds, GroupMaskedViTImageProcessor(size=32), "pretraining")
    assert dataset[0]["pixel_values"].shape == (1, 32, 32)
    with pytest.raises(ImageReadError, match=r"row 1 \(PNEUMONIA/broken.jpeg\): image cannot be decoded"):
        dataset[1]


def test_labels_align_to_a_models_names_order_and_synonyms():
    import datasets

    from hf_datasets.schema import with_label_names
    from train import data

    features = datasets.Features({"labels": datasets.List(datasets.Value("float32"), length=2)})
    rows = [[1.0, 0.0], [0.0, 1.0], [float("nan"), float("nan")]]
    ds = with_label_names(datasets.Dataset.from_dict({"labels": rows}, features=features), ["No Finding", "COVID-19"])
    single, unmatched = data.align_labels(ds, ["pneumonia", "normal"], single_label=True)
    assert unmatched == {"missing": ["pneumonia"], "extra": ["COVID-19"]}
    assert data.label_names(single) == ["pneumonia", "normal"]
    np.testing.assert_array_equal(np.array(single["labels"]), [[0, 1], [np.nan, np.nan], [np.nan, np.nan]])
    multi, _ = data.align_labels(ds, ["pneumonia", "normal"], single_label=False)
    np.testing.assert_array_equal(np.array(multi["labels"]), [[np.nan, 1], [np.nan, 0], [np.nan, np.nan]])
    with pytest.raises(ValueError, match="none in common"):
        data.align_labels(ds, ["edema"], single_label=False)


def test_a_single_label_model_scores_a_row_on_its_one_positive_class_or_not_at_all():
    """Rows of a set with the model's names: an unknown entry of a positive row is 0; a row with no or several
    positive classes is not scored (the argmax of [0, NaN] named class 1, that of [1, 1] class 0)."""
    import datasets

    from hf_datasets.schema import with_label_names
    from train.evaluate import model_labels

    features = datasets.Features({"labels": datasets.List(datasets.Value("float32"), length=2)})
    rows = [[0.0, float("nan")], [float("nan"), 1.0], [1.0, 1.0], [1.0, 0.0]]
    ds = with_label_names(datasets.Dataset.from_dict({"labels": rows}, features=features), ["normal", "pneumonia"])
    single, unmatched = model_labels(ds, ["normal", "pneumonia"], single_label=True)
    assert unmatched is None
    np.testing.assert_array_equal(np.array(single["labels"]), [[np.nan, np.nan], [0, 1], [np.nan, np.nan], [1, 0]])
    assert model_labels(ds, ["normal", "pneumonia"], single_label=False)[0] is ds


class _Reducer:
    """`accelerator.reduce` of a single process."""

    def reduce(self, tensor, reduction):
        return tensor


def test_losses_are_read_in_one_go_and_a_non_finite_one_is_named():
    from train.engine import NonFiniteLossError, read_losses

    sums = {"loss": 0.0, "mask_fraction": 0.0, "count": 0}
    pending = [("step 0", torch.tensor(2.0), torch.tensor(0.6)), ("step 1", torch.tensor(4.0), torch.tensor(0.7))]
    recent = read_losses(pending, sums, _Reducer(), "out")  # logged: the mean since the last read, not step 1's
    assert not pending and recent == {"loss": 3.0, "mask_fraction": pytest.approx(0.65)}
    assert sums["loss"] == 6.0 and sums["count"] == 2 and sums["mask_fraction"] == pytest.approx(1.3)
    pending = [("step 2", torch.tensor(1.0), None), ("step 3", torch.tensor(float("nan")), None),
               ("step 4", torch.tensor(float("inf")), None)]
    with pytest.raises(NonFiniteLossError, match="Loss is nan at step 3;"):
        read_losses(pending, sums, _Reducer(), "out")


@pytest.mark.parametrize("task", ["pretraining", "classification", "segmentation"])
def test_a_training_step_never_reads_a_value_back_from_the_device(task):
    """Augmentation, corruption, forward, loss, backward and per-parameter clipping of one step, under
    FakeTensorMode, where any read of a tensor's value (a host sync on a GPU) raises."""

    from torch._subclasses.fake_tensor import FakeTensorMode

    from modeling_cxrgm import (
        GroupMaskedViTConfig,
        GroupMaskedViTForImageClassification,
        GroupMaskedViTForPreTraining,
        GroupMaskedViTForSegmentation,
    )
    from train.augment import AugmentSpec
    from train.engine import forward
    from train.optim import clip_per_parameter

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_channels=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2)
    model = {"pretraining": GroupMaskedViTForPreTraining, "classification": GroupMaskedViTForImageClassification,
             "segmentation": GroupMaskedViTForSegmentation}[task](config)
    ctx = Context(task=task, augment=AugmentSpec(blur_p=0.5), mean=[0.5], std=[0.25], model_config=config)
    with FakeTensorMode(allow_non_fake_inputs=True):
        batch = {"pixel_values": torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)}
        if task == "classification":
            batch["labels"] = torch.tensor([0, 1, 0, 1])
        elif task == "segmentation":
            batch["labels"] = torch.randint(0, 2, (4, 32, 32), dtype=torch.uint8)
        loss, _, pixel_values, _ = forward(model, batch, ctx, torch.Generator().manual_seed(0), train=True)
        loss.backward()
        largest = clip_per_parameter(list(model.parameters()), 1.0)
        assert loss.shape == () and largest.shape == ()
        assert pixel_values.shape[0] == (8 if task == "pretraining" else 4)


def test_fine_tuning_at_another_size_makes_it_the_models_native_size(tmp_path):
    from modeling_cxrgm import GroupMaskedViTForPreTraining
    from train.starting_point import build_model

    GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY)).save_pretrained(tmp_path / "pretrained")
    args = TrainArgs(task="classification", init=str(tmp_path / "pretrained"), image_size=64)
    model = build_model(args, ["normal", "pneumonia"], single_label=True)
    assert model.config.image_size == 64  # what the export's config and model card will say
    assert model.vit.embeddings.position_embeddings.shape[1] == 1 + (64 // TINY["patch_size"]) ** 2


@pytest.mark.parametrize("problem_type", ["single_label_classification", "multi_label_classification"])
def test_segmentation_from_a_trained_classifier_export_builds_a_one_label_segmenter(tmp_path, problem_type):
    """A fine-tuned classifier's config (e.g. the demo's export) names its problem type: a segmenter --init from it
    stopped with transformers' "single_label_classification requires num_labels > 1", a setting the user never gave."""
    from train.starting_point import build_model

    classifier = GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, problem_type=problem_type))
    classifier.save_pretrained(tmp_path / "classifier")
    encoder = {key: value for key, value in TINY.items() if key not in ("image_size", "num_labels")}
    args = TrainArgs(task="segmentation", init=str(tmp_path / "classifier"), image_size=32, drop_path=0.0,
                     model_config=encoder)
    model = build_model(args, [], single_label=True)
    assert model.config.num_labels == 1 and model.config.id2label == {0: "lungs"}
    assert model.config.problem_type is None


def test_segmentation_from_a_segmenter_keeps_its_label_count_and_head_unless_num_labels_is_given(
        tmp_path, caplog, capsys):
    """Segmentation --init from a two-class segmenter without num_labels fell back to 1 label and replaced the trained
    head, with a warning. The masks do not fix the count (class indices fit one sigmoid map or a softmax alike), so a
    segmenter --init keeps its own, and its head; --model_config num_labels still decides where given, and an --init
    of another kind (its num_labels counts classes, or nothing) gives 1. Classification's count comes from the data."""
    from safetensors.torch import load_file

    from modeling_cxrgm import GroupMaskedViTForPreTraining, GroupMaskedViTForSegmentation
    from train.starting_point import build_model

    encoder = {key: value for key, value in TINY.items() if key not in ("image_size", "num_labels")}

    def segmentation(init, **model_config):
        args = TrainArgs(task="segmentation", init=str(init), image_size=32, drop_path=0.0,
                         model_config={**encoder, **model_config})
        caplog.clear()
        with caplog.at_level("WARNING", logger="train.run"):
            return build_model(args, [], single_label=True)

    two = tmp_path / "two"
    GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY)).save_pretrained(two)
    saved = load_file(two / "model.safetensors")
    model = segmentation(two)
    assert model.config.num_labels == 2 and model.config.id2label == {0: "background", 1: "lungs"}
    assert "head was replaced" not in caplog.text
    for name, weight in model.state_dict().items():
        if name in saved:
            assert torch.equal(weight, saved[name]), name  # the trained head too
    assert segmentation(two, num_labels=1).config.num_labels == 1 and "head was replaced" in caplog.text

    three = tmp_path / "three"
    names = {0: "background", 1: "left lung", 2: "right lung"}
    GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**{**TINY, "num_labels": 3}, id2label=names)).save_pretrained(
        three)
    model = segmentation(three)
    assert model.config.num_labels == 3 and model.config.id2label == names and "head was replaced" not in caplog.text

    for other in (GroupMaskedViTForPreTraining, GroupMaskedViTForImageClassification):  # num_labels 2 in their config
        other(GroupMaskedViTConfig(**TINY)).save_pretrained(tmp_path / other.__name__)
        assert segmentation(tmp_path / other.__name__).config.num_labels == 1
    random = build_model(TrainArgs(task="segmentation", image_size=32, model_config=dict(encoder)), [], True)
    assert random.config.num_labels == 1 and random.config.id2label == {0: "lungs"}

    assert "num_labels" not in load_yaml("finetune_segmentation", TrainArgs)["model_config"]  # (it set 1)
    with pytest.raises(SystemExit):
        parse_args(TrainArgs, ["--help"])
    assert "else from a segmenter --init (its own count" in " ".join(capsys.readouterr().out.split())


def test_init_with_another_label_count_gives_no_transformers_warning_that_the_labels_do_not_fit(tmp_path):
    """A head replaced for another label count (a segmenter with --model_config num_labels, a classifier on data
    with more classes) also printed transformers' "You passed `num_labels=3` which is incompatible to the `id2label`
    map of length `2`", though the run gives the names of its labels with the count: the new config is whole, and
    only the run's own warning about the replaced head is due."""
    import logging

    from modeling_cxrgm import GroupMaskedViTForSegmentation
    from train.starting_point import build_model

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    encoder = {key: value for key, value in TINY.items() if key not in ("image_size", "num_labels")}
    GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**{**TINY, "num_labels": 1})).save_pretrained(tmp_path / "seg")
    GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY)).save_pretrained(tmp_path / "cls")
    runs = [(TrainArgs(task="segmentation", init=str(tmp_path / "seg"), image_size=32,
                       model_config={**encoder, "num_labels": labels}), []) for labels in (2, 3)]
    runs.append((TrainArgs(task="classification", init=str(tmp_path / "cls"), image_size=32,
                           model_config=dict(encoder)), ["covid", "normal", "pneumonia"]))
    collect = Collect()
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(collect)
    try:
        models = [build_model(args, names, single_label=True) for args, names in runs]
    finally:
        transformers_logger.removeHandler(collect)
    assert not [message for message in collect.messages if "incompatible" in message], collect.messages
    assert [model.config.id2label for model in models] == [
        {0: "background", 1: "lungs"}, {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
        {0: "covid", 1: "normal", 2: "pneumonia"}]
    assert [model.config.num_labels for model in models] == [2, 3, 3]


def test_label_mode_from_the_labels_column():
    import datasets

    from train.data import MULTI, SINGLE, resolve_label_mode

    def labels(*rows):
        return datasets.Dataset.from_dict({"labels": [list(r) for r in rows]})

    nan = float("nan")
    assert resolve_label_mode(labels((1, 0), (0, 1), (nan, nan))) == SINGLE  # unlabelled rows do not count
    assert resolve_label_mode(labels((1, 0), (1, 1))) == MULTI  # two findings at once
    assert resolve_label_mode(labels((1, 0), (nan, 1))) == MULTI  # partly unknown
    assert resolve_label_mode(labels((0, 0), (0, 1))) == MULTI  # "no finding" as all zeros
    assert resolve_label_mode(labels((nan, nan))) == MULTI  # nothing known
    assert resolve_label_mode(labels((1, 0)), "multi") == MULTI
    assert resolve_label_mode(labels((1, 0), (nan, nan)), "single") == SINGLE
    with pytest.raises(ValueError, match="label_mode single, but 1 of 2 labelled rows are not one-hot"):
        resolve_label_mode(labels((1, 0), (1, 1)), "single")  # which of the two findings would be "the" class?
    with pytest.raises(ValueError, match="auto, single or multi"):
        resolve_label_mode(labels((1, 0)), "binary")


def test_blocks_without_a_gradient_are_refused_with_several_processes(caplog):
    from types import SimpleNamespace

    from train.checks import check_every_block_trains

    shallow = GroupMaskedViTConfig(**{**TINY, "num_hidden_layers": 4}, reconstruction_layers=[1, 2],
                                   segmentation_layers=[1, 2, 3])
    with pytest.raises(ValueError, match=r"reconstruction_layers \[1, 2\] leave blocks 3-4 of 4 without a gradient"):
        check_every_block_trains(shallow, "pretraining", SimpleNamespace(num_processes=2))
    with pytest.raises(ValueError, match="segmentation_layers"):
        check_every_block_trains(shallow, "segmentation", SimpleNamespace(num_processes=2))
    check_every_block_trains(shallow, "classification", SimpleNamespace(num_processes=2))  # reads the last block
    with caplog.at_level("WARNING"):
        check_every_block_trains(shallow, "pretraining", SimpleNamespace(num_processes=1))
    assert "use num_hidden_layers 2" in caplog.text
    check_every_block_trains(GroupMaskedViTConfig(**TINY), "pretraining", SimpleNamespace(num_processes=2))


def test_demo_help_describes_the_demo_and_replaces_nothing(tmp_path, monkeypatch, capsys):
    from train import demo

    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "outputs" / "demo" / "model"
    earlier.mkdir(parents=True)
    with pytest.raises(SystemExit) as stopped:
        demo.main(["--help"])
    assert stopped.value.code == 0 and "Replaces outputs/demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "3"])
    assert earlier.is_dir()


def test_card_names_data_of_a_folder_layout_by_their_folder(tmp_path):
    """`--dataset cxr_folder --data_dir .../kermany_pediatric` (the benchmark data's layout): the card states the
    source and its licence, not "not recorded" for a set called cxr_folder."""
    from types import SimpleNamespace

    from model_cards import write_model_card
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor
    from train.config import TrainArgs
    from train.run_card import model_card_run

    args = TrainArgs(dataset="cxr_folder", data_dir="/data/benchmarks/kermany_pediatric", eval_split="test")
    processor = GroupMaskedViTImageProcessor(size=32)
    run = model_card_run(args, SimpleNamespace(num_processes=1), processor, [0] * 12, [0] * 4, 1.0, 2.0)
    assert run["train_datasets"][0]["name"] == run["eval_dataset"]["name"] == "kermany_pediatric"
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2)
    GroupMaskedViTForImageClassification(config).save_pretrained(tmp_path)
    card = write_model_card(tmp_path, run).read_text()
    assert "| kermany_pediatric | Kermany pediatric pneumonia" in card and "CC BY 4.0" in card
    assert "The training data are not recorded" not in card


@pytest.mark.parametrize("prepared", [False, True])
def test_card_of_a_run_on_an_imagefolder_names_the_builder(tmp_path, prepared):
    """The user's own folder data: the card says which builder read them (imagefolder), for --dataset as for shards
    prepared from it."""
    import json
    from types import SimpleNamespace

    from model_cards import write_model_card
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor
    from train.config import TrainArgs
    from train.run_card import model_card_run

    if prepared:
        (tmp_path / "my_clinic_cxrs").mkdir()
        (tmp_path / "my_clinic_cxrs" / "prepare_settings.json").write_text(
            json.dumps({"dataset": "imagefolder", "options": {}}))
        args = TrainArgs(prepared_dir=str(tmp_path / "my_clinic_cxrs"), eval_split="test")
    else:
        args = TrainArgs(dataset="imagefolder", data_dir="/data/my_clinic_cxrs", eval_split="test")
    run = model_card_run(args, SimpleNamespace(num_processes=1), GroupMaskedViTImageProcessor(size=32), [0] * 12,
                         [0] * 4, 1.0, 2.0)
    assert run["train_datasets"][0]["builder"] == "imagefolder"
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2)
    GroupMaskedViTForImageClassification(config).save_pretrained(tmp_path / "export")
    card = write_model_card(tmp_path / "export", run).read_text()
    assert "local data `my_clinic_cxrs` read by the `imagefolder` builder (12 images)" in card


def test_card_of_a_model_pretrained_on_a_pool_lists_the_pooled_folders(tmp_path):
    """cxr_pool's card read "local data `cxr_pool`": it lists each pooled folder with its distinct images, a public
    set's title and licence, and the user's own folder as local data read by the pool."""
    from types import SimpleNamespace

    from huggingface_hub import ModelCard
    from PIL import Image

    from model_cards import write_model_card
    from modeling_cxrgm import GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train import data
    from train.config import TrainArgs
    from train.run_card import model_card_run

    for folder, shades in (("nih_cxr14", (10, 20, 30)), ("my_clinic", (40, 10))):  # shade 10 again: a duplicate
        (tmp_path / "pool" / folder).mkdir(parents=True)
        for shade in shades:
            Image.new("L", (32, 32), shade).save(tmp_path / "pool" / folder / f"{shade}.png")
        (tmp_path / "pool" / folder / "labels.csv").write_text("file\n" + "".join(f"{s}.png\n" for s in shades))
    args = TrainArgs(task="pretraining", dataset="cxr_pool", data_dir=str(tmp_path / "pool"), eval_split=None)
    processor = GroupMaskedViTImageProcessor(size=32)
    train_set = data.CXRDataset(data.load_splits("cxr_pool", args.data_dir, None)["train"], processor, "pretraining")
    run = model_card_run(args, SimpleNamespace(num_processes=1), processor, train_set, train_set, 1.0, 2.0)
    assert [(d["name"], d["num_images"], d["builder"]) for d in run["train_datasets"]] == [
        ("my_clinic", 2, "cxr_pool"), ("nih_cxr14", 2, "cxr_pool")]
    # the evaluated rows' folders too: the card names the evaluated data by them, not by the builder
    assert run["eval_dataset"]["folders"] == {"my_clinic": 2, "nih_cxr14": 2}
    GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**{**TINY, "num_channels": 1})).save_pretrained(tmp_path / "m")
    card = write_model_card(tmp_path / "m", {**run, "metrics": {"loss": 0.3}}).read_text()
    assert "NIH ChestX-ray14" in card and "released by the NIH Clinical Center without use restrictions" in card
    assert "local data `my_clinic` read by the `cxr_pool` builder (2 images)" in card
    assert "local data `cxr_pool`" not in card
    assert ("Evaluated on split `train`, 4 images, of the folders pooled by `cxr_pool`: `my_clinic`: 2 images; NIH "
            "ChestX-ray14 (`nih_cxr14`): 2 images.") in card
    (result,) = ModelCard(card).data.eval_results
    assert (result.dataset_type, result.dataset_name) == ("my_clinic+nih_cxr14", "my_clinic, NIH ChestX-ray14")
    # without the rows (a card written from the arguments alone): the pool's folders, their counts unknown
    run = model_card_run(args, SimpleNamespace(num_processes=1), processor, [0] * 4, [0] * 4, 1.0, 2.0)
    assert [d["name"] for d in run["train_datasets"]] == ["my_clinic", "nih_cxr14"]

    # prepared without `folders`, which prepare_settings.json then records none of: the rows' paths name them
    from hf_datasets.prepare import prepare

    prepare("cxr_pool", tmp_path / "pool", tmp_path / "prepared", size=32, progress=False)
    args = TrainArgs(task="pretraining", prepared_dir=str(tmp_path / "prepared"), eval_split=None)
    train_set = data.CXRDataset(data.load_splits(None, None, args.prepared_dir)["train"], processor, "pretraining")
    run = model_card_run(args, SimpleNamespace(num_processes=1), processor, train_set, train_set, 1.0, 2.0)
    assert [(d["name"], d["num_images"]) for d in run["train_datasets"]] == [("my_clinic", 2), ("nih_cxr14", 2)]
    # where nothing names them (no rows, no `folders`, no pool folder at hand), the card says they are unknown:
    # neither "local data `cxr_pool`" nor the pool's own folder (`pool`) as if they were data sets
    run = model_card_run(args, SimpleNamespace(num_processes=1), processor, [0] * 4, [0] * 4, 1.0, 2.0)
    card = write_model_card(tmp_path / "m", run).read_text()
    assert "| cxr_pool | images (4 images) pooled by the `cxr_pool` builder from folders that were not recorded" in card
    assert "local data `cxr_pool`" not in card and "`pool`" not in card


def test_training_time_adds_up_over_resumes():
    """The card's duration is the whole run's, not only the part after the last resume."""
    saved = checkpoint.TrainState(step=5, seconds=3600.0).state_dict()  # a process resumed after an hour
    assert saved["seconds"] >= 3600.0 and saved["step"] == 5
    resumed = checkpoint.TrainState()
    resumed.load_state_dict(saved)
    assert 3600.0 <= resumed.elapsed() < 3660.0 and resumed.step == 5
    assert checkpoint.TrainState().elapsed() < 60.0


def test_pretraining_views_of_a_single_image_are_not_corrupted_with_each_other():
    """A batch of one image gives two views of it: the other-image branch has no other image to take pixels from."""

    from modeling_cxrgm import GroupMaskedViTForPreTraining
    from train.engine import forward

    config = GroupMaskedViTConfig(**{**TINY, "num_channels": 1, "replace_prob": 1.0})
    ctx = Context(task="pretraining", augment=AugmentSpec(), mean=[0.5], std=[0.25], model_config=config)
    batch = {"pixel_values": torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8)}
    for seed in range(5):
        _, outputs, _, _ = forward(GroupMaskedViTForPreTraining(config), batch, ctx,
                                   torch.Generator().manual_seed(seed), train=True)
        assert (outputs.mask.float().mean((1, 2)) >= 0.5).all()  # stage 1 (>= 0.5), not a 30% replacement


def test_card_does_not_take_a_relative_init_folder_for_a_hub_model(tmp_path, monkeypatch):
    """`--init pre/model` (a folder, named relative to the working directory) is no Hub repo `pre/model`: the card's
    metadata names no base model, so the Hub shows no link to a repo that does not exist."""
    from types import SimpleNamespace

    from huggingface_hub import metadata_load

    from model_cards import write_model_card
    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTForPreTraining
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train.config import TrainArgs
    from train.run_card import model_card_run

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, num_labels=2)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / "pre" / "model")
    GroupMaskedViTForImageClassification(config).save_pretrained(tmp_path / "export")
    monkeypatch.chdir(tmp_path)
    args = TrainArgs(dataset="sample", init="pre/model", eval_split="test")
    run = model_card_run(args, SimpleNamespace(num_processes=1), GroupMaskedViTImageProcessor(size=32), [0] * 12,
                         [0] * 4, 1.0, 2.0)
    card = write_model_card(tmp_path / "export", run)
    assert "base_model" not in metadata_load(card)
    assert "pre/model" not in card.read_text() and "| Base model | a local checkpoint (`model`) |" in card.read_text()
    # an export made for a Hub repo (its run's --hub_model_id) is named by that repo, not by its folder ("model")
    (tmp_path / "pre" / "model" / "run.json").write_text(json.dumps({"repo_id": "alice/gmml-cxr"}))
    run = model_card_run(args, SimpleNamespace(num_processes=1), GroupMaskedViTImageProcessor(size=32), [0] * 12,
                         [0] * 4, 1.0, 2.0)
    card = write_model_card(tmp_path / "export", run)
    assert metadata_load(card)["base_model"] == "alice/gmml-cxr" and "| Base model | alice/gmml-cxr |" in card.read_text()
    assert "earlier_datasets" not in run  # a record without data sets names none


def test_card_run_carries_the_data_sets_of_the_init_export(tmp_path, monkeypatch):
    """The --init export's run.json records what it was trained on (and what its own --init was): the fine-tuning
    run's record keeps those, each with the stage that used it, so the card lists every data set in the weights."""
    from types import SimpleNamespace

    from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train.config import TrainArgs
    from train.run_card import model_card_run

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / "pre" / "model")
    record = {"task": "pretraining", "train_datasets": [{"name": "nih", "num_images": 40}],
              "earlier_datasets": [{"name": "chexpert", "num_images": 90, "stage": "pretraining"}]}
    (tmp_path / "pre" / "model" / "run.json").write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    args = TrainArgs(dataset="sample", init="pre/model", eval_split="test")
    run = model_card_run(args, SimpleNamespace(num_processes=1), GroupMaskedViTImageProcessor(size=32), [0] * 12,
                         [0] * 4, 1.0, 2.0)
    assert run["earlier_datasets"] == [{"name": "chexpert", "num_images": 90, "stage": "pretraining"},
                                       {"name": "nih", "num_images": 40, "stage": "pretraining"}]


def test_card_of_a_pretraining_run_without_eval_split_names_every_split_its_loss_covers():
    """Pretraining with no --eval_split evaluates on all its training splits: the card says train+unlabelled (the
    13 images counted), not train."""
    from types import SimpleNamespace

    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train.config import TrainArgs
    from train.run_card import model_card_run

    args = TrainArgs(task="pretraining", dataset="sample", train_splits=["train", "unlabelled"], eval_split=None)
    images = [0] * 13
    run = model_card_run(args, SimpleNamespace(num_processes=1), GroupMaskedViTImageProcessor(size=32), images, images,
                         1.0, 2.0)
    assert run["eval_dataset"] == {"name": "sample", "split": "train+unlabelled", "num_images": 13}


@pytest.mark.parametrize("field", ["image_size", "num_channels"])
def test_model_config_naming_an_input_setting_is_refused_naming_the_flag(field, tmp_path):
    """The image processor takes the input size and channels from --image_size / --num_channels: a model_config that
    set them too used to fail inside the config with "got multiple values for keyword argument"."""
    from train.run import run_training

    args = TrainArgs(task="classification", output_dir=str(tmp_path / "run"), dataset="sample", report_to="none",
                     model_config={field: 3 if field == "num_channels" else 64})
    with pytest.raises(ValueError, match=f"model_config sets {field}: use --{field} instead"):
        run_training(args)


def test_prepared_shards_take_the_training_fraction_and_refuse_options_they_cannot_apply(tmp_path, monkeypatch):
    """--prepared_dir with --dataset_options '{"train_fraction": ...}' trained on every image (options ignored)."""
    from hf_datasets import build_dataset
    from hf_datasets.prepare import prepare
    from train.data import load_splits

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    prepare("sample", None, tmp_path / "prepared", size=16, progress=False)
    for fraction in (0.25, 0.5):
        options = {"train_fraction": fraction, "subset_seed": 3}
        prepared = load_splits(None, None, str(tmp_path / "prepared"), options)
        built = build_dataset("sample", **options)
        assert sorted(prepared["train"]["path"]) == sorted(built["train"]["path"])
        assert prepared["test"].num_rows == built["test"].num_rows == 4
    smaller = set(load_splits(None, None, str(tmp_path / "prepared"), {"train_fraction": 0.25})["train"]["path"])
    assert 0 < len(smaller) < 12 and smaller <= set(load_splits(None, None, str(tmp_path / "prepared"),
                                                                {"train_fraction": 0.5})["train"]["path"])
    with pytest.raises(ValueError, match=r"\['uncertain'\] do not apply to --prepared_dir"):
        load_splits(None, None, str(tmp_path / "prepared"), {"uncertain": "ones", "train_fraction": 0.5})


def test_prepared_shards_keep_the_patients_build_dataset_keeps_where_files_were_unreadable(tmp_path, monkeypatch):
    """build_dataset draws the training patients among every row, the unreadable ones too; the prepared shards drew
    among the rows written, so another set of patients trained (4 rows where build_dataset kept 3)."""
    import sys
    import warnings

    from hf_datasets import build_dataset
    from hf_datasets.prepare import prepare
    from train.data import load_splits

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_image

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    lines = ["image,label,patient_id,split"]
    for i in range(16):
        write_image(tmp_path / "set" / f"{i}.png", seed=i)
        lines.append(f"{i}.png,{'normal' if i % 2 else 'pneumonia'},P{i // 2},train")
    for i in (3, 8, 13):
        (tmp_path / "set" / f"{i}.png").write_bytes(b"not an image")
    (tmp_path / "set" / "labels.csv").write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare("manifest", tmp_path / "set", tmp_path / "prepared", size=16, progress=False, manifest="labels.csv")
        for seed in range(4):
            options = {"train_fraction": 0.5, "subset_seed": seed}
            built = build_dataset("manifest", tmp_path / "set", manifest="labels.csv", on_error="skip", **options)
            prepared = load_splits(None, None, str(tmp_path / "prepared"), options)
            assert sorted(prepared["train"]["path"]) == sorted(built["train"]["path"]), seed


def test_a_streamed_build_is_refused_with_the_way_to_train_on_it():
    from train.data import load_splits

    with pytest.raises(ValueError, match="hf_datasets.prepare --streaming"):  # was: IterableDataset has no len()
        load_splits("sample", None, None, {"streaming": True})


def test_a_sixteen_bit_set_whose_first_image_is_8_bit_keeps_its_16_bit_images(tmp_path, monkeypatch):
    """The first row decided: an 8-bit first image sent every 16-bit image of the set to training rounded to 8 bits."""
    from PIL import Image

    from hf_datasets import build_dataset
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import data

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    (tmp_path / "set" / "a").mkdir(parents=True)
    (tmp_path / "set" / "b").mkdir()
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(tmp_path / "set" / "a" / "eight.png")
    fine = np.tile(np.arange(30000, 30032, dtype=np.uint16), (32, 1))  # steps far finer than 1/255 of the range
    Image.fromarray(fine).save(tmp_path / "set" / "b" / "sixteen.png")
    ds = build_dataset("imagefolder", tmp_path / "set", bits=16, split_fractions={"train": 1.0})["train"]
    assert [ds[i]["image"].mode for i in range(2)] == ["L", "I;16"]
    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    dataset = data.CXRDataset(ds, processor, "pretraining")
    expected = processor.preprocess([ds[1]["image"]], do_normalize=False)["pixel_values"][0]
    item = dataset[1]["pixel_values"]
    assert item.dtype == torch.float32 and torch.equal(item, expected) and item.unique().numel() > 1


def test_accumulated_steps_equal_the_larger_batch_also_in_the_last_incomplete_window():
    """6 images: batches of 4 (2 steps) vs micro-batches of 2 with grad_accum_steps 2 (windows of 2 and 1
    micro-batches). Plain SGD at a constant lr, without augmentation: the weights after the epoch must agree."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from train.engine import train_one_epoch

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8, generator=generator)
    items = [{"pixel_values": image, "labels": torch.tensor(i % 2), "index": torch.tensor(i)}
             for i, image in enumerate(images)]
    identity = AugmentSpec(crop_scale=(1, 1), crop_ratio=(1, 1), hflip_p=0, jitter_p=0, blur_p=0)

    def train(batch_size, accumulation):
        accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
        torch.manual_seed(0)
        config = GroupMaskedViTConfig(**TINY, drop_path_rate=0.0)
        model = GroupMaskedViTForImageClassification(config)
        optimizer = torch.optim.SGD(param_groups(model, config.num_hidden_layers), lr=0.0)
        loader = torch.utils.data.DataLoader(items, batch_size=batch_size)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        steps = -(-len(loader) // accumulation)
        ctx = Context(task="classification", mean=[0.5], std=[0.25], model_config=config, augment=identity, lr=0.1,
                      batches_per_epoch=len(loader), steps_per_epoch=steps)
        args = SimpleNamespace(epochs=1, max_steps=None, seed=0, batch_size=batch_size, grad_accum_steps=accumulation,
                               min_lr=0.1, weight_decay=0.0, weight_decay_end=None, clip_grad=None,
                               save_every_steps=0, log_every_steps=1, output_dir="unused")
        state = checkpoint.TrainState()
        train_one_epoch(model, loader, optimizer, accelerator, state, ctx, args)
        assert state.step == 2
        return accelerator.unwrap_model(model).state_dict()

    larger, accumulated = train(4, 1), train(2, 2)
    for name, value in larger.items():
        torch.testing.assert_close(accumulated[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_pretraining_drift_report_gives_each_source_the_loss_of_its_own_images():
    import datasets

    from train.evaluate import drift_report

    ds = datasets.Dataset.from_dict({"source": ["nih", "nih", "kermany"]})
    results = {"index": np.array([0, 1, 2]), "l1_error": np.array([10.0, 30.0, 5.0]),
               "l1_count": np.array([10.0, 10.0, 10.0]), "loss": 45.0 / 30.0}
    assert metrics.compute_metrics("pretraining", results, ["mask"], True)["loss"] == pytest.approx(1.5)
    drift = drift_report("pretraining", results, ds, ["mask"], True)
    assert drift["in_domain"] == "nih"
    assert drift["metrics"]["nih"]["loss"] == pytest.approx(2.0)
    assert drift["metrics"]["kermany"]["loss"] == pytest.approx(0.5)
    assert drift["delta_vs_in_domain"]["kermany"]["loss"] == pytest.approx(-1.5)


def test_the_drift_reference_is_a_source_the_model_was_trained_on():
    """The most frequent evaluated source was called in-domain, even for a model that never saw it (a Kermany
    model evaluated on NIH: "in_domain": "nih")."""
    import datasets

    from train.evaluate import drift_report

    ds = datasets.Dataset.from_dict({"source": ["nih", "nih", "kermany"]})
    results = {"index": np.array([0, 1, 2]), "l1_error": np.array([10.0, 30.0, 5.0]),
               "l1_count": np.array([10.0, 10.0, 10.0]), "loss": 45.0 / 30.0}
    drift = drift_report("pretraining", results, ds, ["mask"], True, trained_on=["kermany", "rsna"])
    assert drift["in_domain"] == "kermany" and drift["delta_vs_in_domain"]["nih"]["loss"] == pytest.approx(1.5)
    unseen = drift_report("pretraining", results, ds, ["mask"], True, trained_on=["rsna"])
    assert unseen["in_domain"] is None and unseen["delta_vs_in_domain"] == {} and "none of the evaluated" in unseen["note"]
    assert set(unseen["metrics"]) == {"nih", "kermany"}
    chosen = drift_report("pretraining", results, ds, ["mask"], True, in_domain="nih", trained_on=["rsna"])
    assert chosen["in_domain"] == "nih" and "note" not in chosen


def test_help_states_each_arguments_default(capsys):
    """`--help` of the training scripts gives each flag's default (the script's own where it sets one)."""
    from train.config import TrainArgs, parse_args

    with pytest.raises(SystemExit):
        parse_args(TrainArgs, ["--help"], defaults={"epochs": 7})
    shown = " ".join(capsys.readouterr().out.split())
    assert "--epochs EPOCHS default: 7" in shown and "--hflip_p HFLIP_P default: 0.5" in shown


def test_training_evaluation_scores_single_label_rows_on_their_one_positive_class(tmp_path, monkeypatch):
    """Exclusive classes: an evaluation row [0, unknown] took the argmax of NaN (class 1) as its class and [1, 1]
    its first; such rows are left out, [1, unknown] is class 0, as in train.evaluate."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_image

    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train.run import load_data

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    nan = float("nan")
    rows = [("train", [1, 0]), ("train", [0, 1]), ("train", [1, 0]), ("train", [0, 1]),
            ("test", [1, nan]), ("test", [0, nan]), ("test", [1, 1]), ("test", [0, 1])]
    lines = []
    for i, (split, labels) in enumerate(rows):
        write_image(tmp_path / "set" / f"{i}.png", seed=i)
        lines.append(json.dumps({"image": f"{i}.png", "labels": labels, "split": split, "patient_id": f"p{i}"}))
    (tmp_path / "set" / "manifest.jsonl").write_text("\n".join(lines).replace("NaN", "null") + "\n")
    args = TrainArgs(task="classification", dataset="manifest", data_dir=str(tmp_path / "set"),
                     dataset_options={"label_names": ["normal", "pneumonia"]}, eval_split="test", label_mode="single")
    _, eval_set, names, mode = load_data(args, GroupMaskedViTImageProcessor(size=16))
    assert mode == "single" and names == ["normal", "pneumonia"]
    assert [int(eval_set[i]["labels"]) for i in range(len(eval_set))] == [0, 1]
    assert [int(eval_set[i]["index"]) for i in range(len(eval_set))] == [0, 3]
    # auto: the [1, 1] row makes the classes non-exclusive; unknown entries ([1, unknown]) do not
    assert load_data(dataclasses.replace(args, label_mode="auto"), GroupMaskedViTImageProcessor(size=16))[3] == "multi"


def test_evaluation_table_counts_all_images_for_every_task():
    from train.evaluate import format_table

    drift = {"num_images": {"nih": 30, "kermany": 10}, "metrics": {"nih": {"loss": 0.4}, "kermany": {"loss": 0.6}}}
    lines = format_table("pretraining", {"loss": 0.45}, drift).splitlines()  # its metrics have no num_samples
    assert lines[1].split() == ["all", "40", "0.4500"]


def test_help_names_the_recipes_config_takes(capsys):
    with pytest.raises(SystemExit):
        parse_args(TrainArgs, ["--help"])
    assert "gmml_pretrain" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parse_args(EvalArgs, ["--help"])
    assert "recipe" not in capsys.readouterr().out  # the recipes hold training arguments only


def test_card_label_policy_names_the_label_options_the_data_was_built_with(tmp_path):
    from train.run_card import label_policy

    chexpert = TrainArgs(dataset="chexpert", dataset_options={"uncertain": "ones", "blank": "zeros",
                                                                "frontal_only": True})
    assert label_policy(chexpert) == "blank=zeros, uncertain=ones"
    renamed = TrainArgs(dataset="cxr_folder", dataset_options={"label_map": {"no_finding": "normal"}})
    assert label_policy(renamed) == 'label_map={"no_finding": "normal"}'
    pooled = TrainArgs(dataset="cxr_pool", dataset_options={"classes": ["covid"], "other_class": "non_covid"})
    assert label_policy(pooled) == 'classes=["covid"], other_class=non_covid'  # what the other labels became
    assert label_policy(TrainArgs(dataset="kermany")) == "the set's own labels (no label options)"
    (tmp_path / "prepare_settings.json").write_text('{"dataset": "chexpert", "options": {"uncertain": "mixed"}}')
    prepared = TrainArgs(prepared_dir=str(tmp_path), dataset_options={"train_fraction": 0.1})
    assert label_policy(prepared) == "blank=zeros, uncertain=mixed"  # the options it was prepared with


def test_card_label_policy_states_the_uncertain_and_blank_defaults():
    """A CheXpert / MIMIC run that set one switch (or none) stated only that one ("uncertain=mixed", "default"): the
    card did not say whether blank labels trained as negatives or were ignored."""
    from train.run_card import label_policy

    assert label_policy(TrainArgs(dataset="chexpert")) == "blank=zeros, uncertain=ignore"
    mixed = TrainArgs(dataset="chexpert", dataset_options={"uncertain": "mixed", "tasks": "competition"})
    assert label_policy(mixed) == "blank=zeros, tasks=competition, uncertain=mixed"
    soft = TrainArgs(dataset="mimic_cxr_jpg", dataset_options={"uncertain": 0.7, "blank": "ignore"})
    assert label_policy(soft) == "blank=ignore, uncertain=0.7"
    assert label_policy(TrainArgs(dataset="nih")) == "the set's own labels (no label options)"


def test_card_names_prepared_data_after_the_set_it_was_prepared_from(tmp_path):
    """A run on prepared shards named its data after their folder ("lungs"), so the card gave no source, licence or
    population; the set they were prepared from is named, and a folder layout's data the folder they were prepared from
    ("kermany_pediatric", a public set, not the shards' "kermany_64"), as a run on the folder itself names them."""
    from train.run_card import data_name

    (tmp_path / "lungs").mkdir()
    (tmp_path / "lungs" / "prepare_settings.json").write_text('{"dataset": "montgomery", "options": {}}')
    assert data_name(TrainArgs(prepared_dir=str(tmp_path / "lungs"))) == "montgomery"
    (tmp_path / "kermany_small").mkdir()
    (tmp_path / "kermany_small" / "prepare_settings.json").write_text('{"dataset": "cxr_folder", "options": {}}')
    assert data_name(TrainArgs(prepared_dir=str(tmp_path / "kermany_small"))) == "kermany_small"  # an earlier version
    (tmp_path / "kermany_64").mkdir()  # a folder layout's shards are named after the folder they were prepared from
    (tmp_path / "kermany_64" / "prepare_settings.json").write_text(
        '{"dataset": "cxr_folder", "options": {}, "folder": "kermany_pediatric"}')
    assert data_name(TrainArgs(prepared_dir=str(tmp_path / "kermany_64"))) == "kermany_pediatric"
    assert data_name(TrainArgs(dataset="imagefolder", data_dir=str(tmp_path / "kermany_64" / "."))) == "kermany_64"
    assert data_name(TrainArgs(dataset="cxr_folder", data_dir="/data/kermany_pediatric")) == "kermany_pediatric"
    assert data_name(TrainArgs(dataset="nih", data_dir="/data/ChestX-ray14")) == "nih"


def _evaluate_on_relabelled_sample(tmp_path, names, single_label, set_names, labels, options=(), patients=None):
    """train.evaluate's metrics of a tiny untrained classifier of `names` on the sample set's test split (4 images of
    4 patients) relabelled as `set_names` with `labels` (and with the patient ids `patients`, if given), with
    `options` added to its command line, and its metrics.json and drift.json."""
    import datasets

    from hf_datasets import build_dataset
    from hf_datasets.schema import with_label_names
    from modeling_cxrgm import GroupMaskedViTImageProcessor
    from train import evaluate as evaluate_script

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_labels=len(names),
                                  id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                                  problem_type=None if single_label else "multi_label_classification")
    GroupMaskedViTForImageClassification(config).save_pretrained(tmp_path / "model")
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path / "model")
    test = build_dataset("sample")["test"]
    feature = datasets.List(datasets.Value("float32"), length=len(set_names))
    test = test.remove_columns("labels").add_column("labels", labels[:len(test)], feature=feature)
    if patients is not None:
        test = test.remove_columns("patient_id").add_column("patient_id", patients, feature=datasets.Value("string"))
    datasets.DatasetDict({"test": with_label_names(test, set_names)}).save_to_disk(tmp_path / "data")
    out = evaluate_script.main(["--model", str(tmp_path / "model"), "--prepared_dir", str(tmp_path / "data"),
                                "--bootstrap", "0", "--output_dir", str(tmp_path / "eval"), *options])
    return out, *(json.loads((tmp_path / "eval" / name).read_text()) for name in ("metrics.json", "drift.json"))


def test_evaluation_names_the_labels_left_out_of_the_macro_auroc_and_why(tmp_path, capsys):
    """A label with one value in the split (no positive Hernia in a test set) has no AUROC: the macro average is then
    over the other labels, which the run said nowhere. Labels the set lacks (Mass) were listed with them, as if the
    split had one value of them, after the alignment had named them as not in the data set."""
    names = ["Atelectasis", "Edema", "Hernia", "Mass"]
    labels = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, np.nan, 0.0], [0.0, 1.0, 0.0]]
    out, saved, drift = _evaluate_on_relabelled_sample(tmp_path, names, False, names[:3], labels)
    assert "auroc/Hernia" not in out and "auroc/Mass" not in out and "auroc/Edema" in out
    printed = capsys.readouterr().out
    assert "not in the data set (not scored): ['Mass']" in printed
    assert re.search(r"no AUROC / AUPRC for the labels of split 'test' without both a positive and a negative known "
                     r"label: Hernia \(only negative\); auroc_macro and auprc_macro average the labels with both\n",
                     printed)
    assert saved["labels_without_auroc"] == {"Hernia": "only negative", "Mass": "not in the data set"}
    assert drift["labels_without_auroc"] == {"kermany": saved["labels_without_auroc"]}
    assert saved["labels_without_ppv"]["Mass"] == "not in the data set"


def test_evaluation_says_how_exclusive_classes_the_set_lacks_are_scored(tmp_path, capsys):
    """A class the set has no image of was 'not scored', but an image predicted as it is an error: it has a
    specificity and an F1 of 0 that counts in f1_macro, as scikit-learn's macro F1."""
    labels = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    out, saved, _ = _evaluate_on_relabelled_sample(tmp_path, ["normal", "pneumonia", "covid"], True,
                                                   ["normal", "pneumonia"], labels)
    assert "not in the data set (no image of them: only the images predicted as one count, as errors): ['covid']" \
        in capsys.readouterr().out
    assert "specificity/covid" in out and "auroc/covid" not in out
    assert saved["labels_without_auroc"] == {"covid": "not in the data set"}


def test_evaluation_decides_multi_label_findings_at_the_threshold_given(tmp_path):
    """train.evaluate had no --threshold: a multi-label model's sensitivity, specificity, F1 and accuracy were those of
    decisions at 0.5, whatever the threshold train.predict --threshold used it at. Its metrics.json says which."""
    names = ["Atelectasis", "Edema"]
    labels = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]
    at = {}
    for cut in ("0", "1"):
        torch.manual_seed(0)  # the same model
        at[cut] = _evaluate_on_relabelled_sample(tmp_path / cut, names, False, names, labels, ["--threshold", cut])
    for cut, every in (("0", 1.0), ("1", 0.0)):  # from 0 up, every finding is predicted; from 1 up (no sigmoid), none
        out, saved, drift = at[cut]
        assert out["sensitivity/Atelectasis"] == every and out["specificity/Atelectasis"] == 1 - every
        assert out["accuracy"] == 0.5 and saved["threshold"] == float(cut)
        assert drift["metrics"]["kermany"]["sensitivity/Edema"] == every  # per source too
        # no finding is predicted from 1 up: no PPV, and metrics.json says why rather than just lacking it
        unpredicted = None if every else dict.fromkeys(names, "not predicted for any image")
        assert saved.get("labels_without_ppv") == unpredicted
    assert at["0"][0]["auroc_macro"] == at["1"][0]["auroc_macro"]  # the ranking does not depend on it


def test_evaluation_refuses_a_threshold_that_would_change_nothing(tmp_path):
    from hf_datasets.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match=r"--threshold applies to multi-label classifiers and one-label "
                                                r"segmenters; .*model is a single-label classifier"):
        _evaluate_on_relabelled_sample(tmp_path, ["normal", "pneumonia"], True, ["normal", "pneumonia"],
                                       [[1.0, 0.0], [0.0, 1.0]] * 2, ["--threshold", "0.3"])
    with pytest.raises(InvalidInputError, match=r"--threshold 1.5: a probability, from 0 to 1"):
        _evaluate_on_relabelled_sample(tmp_path, ["Edema"], False, ["Edema"], [[1.0], [0.0]] * 2,
                                       ["--threshold", "1.5"])


def test_evaluation_intervals_resample_patients_where_the_split_names_them(tmp_path, capsys):
    """The intervals resampled images, though one patient's images are no independent samples; they resample the
    patients (each with all its images) where the split has patient ids, else the images, and say which."""
    labels = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    _, saved, drift = _evaluate_on_relabelled_sample(tmp_path / "ids", ["normal", "pneumonia"], True,
                                                     ["normal", "pneumonia"], labels, ["--bootstrap", "20"])
    assert saved["bootstrap_unit"] == "patient" and drift["bootstrap_unit"] == {"kermany": "patient"}
    assert "95% intervals: 20 resamples of the 4 patients, each with all its images" in capsys.readouterr().out
    _, saved, drift = _evaluate_on_relabelled_sample(tmp_path / "none", ["normal", "pneumonia"], True,
                                                     ["normal", "pneumonia"], labels, ["--bootstrap", "20"],
                                                     patients=[None, "", None, ""])
    assert saved["bootstrap_unit"] == "image" and drift["bootstrap_unit"] == {"kermany": "image"}
    assert "95% intervals: 20 resamples of the images (the split names no patients)" in capsys.readouterr().out
    assert "threshold" not in saved  # a single-label model takes the most probable class


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_bootstrap_draws_patients_with_all_their_images(task):
    """One of 20 patients has 100 images, all scored wrong; the 19 others one image each, all right. Drawing images,
    every resample holds about 100 of 119 wrong (accuracy or Dice near 0.16): a narrow interval, as if 119 patients
    had been seen. Drawing patients, about a third of the resamples lack that patient (1.0): the interval reaches 1.
    Without patient ids (none, or all empty) the images are drawn."""
    patients = ["many"] * 100 + [f"single{i}" for i in range(19)]
    right = np.r_[np.zeros(100), np.ones(19)]
    if task == "classification":  # every image is pneumonia
        results = {"labels": np.ones(119, dtype=int), "probabilities": np.stack([1 - right, right], 1) * 0.8 + 0.1}
        names, key = ["normal", "pneumonia"], "accuracy"
    else:  # 5 lung pixels, 5 predicted, overlapping or not
        results = {"intersection": (5 * right[:, None]).astype(int), "predicted": np.full((119, 1), 5),
                   "target": np.full((119, 1), 5)}
        names, key = ["lungs"], "dice"
    by_patient = metrics.compute_metrics(task, results, names, True, bootstrap=200, patient_ids=patients)
    by_image = metrics.compute_metrics(task, results, names, True, bootstrap=200)
    assert by_patient[key] == by_image[key] == pytest.approx(19 / 119)
    assert by_patient[f"{key}_ci_high"] == 1.0 and by_image[f"{key}_ci_high"] < 0.5
    assert by_patient[f"{key}_ci_low"] <= by_image[f"{key}_ci_low"]
    unnamed = metrics.compute_metrics(task, results, names, True, bootstrap=200, patient_ids=[None, ""] * 59 + [""])
    assert unnamed == by_image
    assert metrics.bootstrap_unit(patients) == "patient" and metrics.bootstrap_unit([None, ""]) == "image"


def test_an_image_without_a_patient_id_is_a_patient_of_its_own():
    numbers = metrics.patient_numbers(["p1", None, "p1", "", "p2"])
    assert numbers[0] == numbers[2] and len(set(numbers)) == 4
    assert metrics.patient_numbers([None, ""]) is None


def test_drift_deltas_of_macro_metrics_and_accuracy_compare_the_labels_both_sources_score():
    """A source without a label (CheXpert has no Mass: NaN) has no AUROC of it: its macro AUROC averaged fewer labels
    than the in-domain source's, and the delta compared the two averages (+1/3 below, for a source scored exactly as
    the in-domain one on the labels both have). Macro deltas now average the labels both score, and say which. A
    multi-label accuracy pools the known (image, label) pairs: its delta pooled Mass's at nih alone (+1/3 too); it now
    pools the labels both know. A single-label accuracy scores every image with a class: its delta is as it was."""
    import datasets

    from train.evaluate import drift_report

    truth = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float)  # Atelectasis, Edema, Mass
    right = truth * 0.8 + 0.1
    wrong_on_mass = np.c_[right[:, :2], 1 - right[:, 2]]
    lacking_mass = np.c_[truth[:, :2], np.full(4, np.nan)]
    results = {"index": np.arange(12), "labels": np.r_[truth, lacking_mass, truth],
               "probabilities": np.r_[wrong_on_mass, right, right]}
    ds = datasets.Dataset.from_dict({"source": ["nih"] * 4 + ["chexpert"] * 4 + ["mimic"] * 4})
    names = ["Atelectasis", "Edema", "Mass"]
    drift = drift_report("classification", results, ds, names, False, in_domain="nih")
    nih, chexpert = drift["metrics"]["nih"], drift["metrics"]["chexpert"]
    assert nih["auroc_macro"] == pytest.approx(2 / 3) and chexpert["auroc_macro"] == 1.0  # Mass: 0 at nih, none here
    assert drift["delta_vs_in_domain"]["chexpert"]["auroc_macro"] == pytest.approx(0.0)
    assert drift["delta_vs_in_domain"]["chexpert"]["f1_macro"] == pytest.approx(0.0)
    assert nih["accuracy"] == pytest.approx(2 / 3) and chexpert["accuracy"] == 1.0
    assert drift["delta_vs_in_domain"]["chexpert"]["accuracy"] == pytest.approx(0.0)
    assert drift["delta_labels"]["chexpert"] == {"auroc_macro": ["Atelectasis", "Edema"],
                                                 "accuracy": ["Atelectasis", "Edema"],
                                                 "f1_macro": ["Atelectasis", "Edema"]}
    assert drift["delta_vs_in_domain"]["mimic"]["auroc_macro"] == pytest.approx(1 / 3)  # Mass scored on both sides
    assert drift["delta_vs_in_domain"]["mimic"]["accuracy"] == pytest.approx(1 / 3)
    assert drift["delta_labels"]["mimic"] == {"auroc_macro": "all", "accuracy": "all", "f1_macro": "all"}

    classes = {"index": np.arange(12), "labels": np.r_[[0, 1, 2, 2], [0, 1, 0, 1], [0, 1, 2, 2]],
               "probabilities": np.r_[np.eye(3)[[0, 1, 2, 0]], np.eye(3)[[0, 1, 2, 2]], np.eye(3)[[0, 1, 2, 2]]]}
    drift = drift_report("classification", classes, ds, names, True, in_domain="nih")
    assert drift["delta_vs_in_domain"]["chexpert"]["accuracy"] == pytest.approx(2 / 4 - 3 / 4)  # Mass guesses: wrong
    assert drift["delta_vs_in_domain"]["mimic"]["accuracy"] == pytest.approx(1 - 3 / 4)
    assert all("accuracy" not in labels for labels in drift["delta_labels"].values())


def test_a_warm_up_as_long_as_the_run_is_warned_about(caplog):
    """The fine-tuning recipe's 5 warm-up epochs with --epochs 2 kept the learning rate at 2/5 of --lr at most, and
    it never decayed, without a word."""
    from train.config import TrainArgs
    from train.checks import check_schedule

    with caplog.at_level("WARNING"):
        check_schedule(TrainArgs(task="classification", output_dir="unused", epochs=2, warmup_epochs=5))
    assert "warmup_epochs 5 >= epochs 2: the learning rate climbs for the whole run, to 40% of --lr" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_schedule(TrainArgs(task="classification", output_dir="unused", epochs=10, warmup_epochs=5))
    assert caplog.text == ""


def test_pretraining_views_are_drawn_from_the_image_not_its_padding():
    """A non-square CXR is padded to a square: pretraining views were crops of that square, so up to a third of
    their pixels (and, at evaluation, half of a 2:1 image's) were black padding, corrupted and reconstructed as if
    anatomy. Views now come from the image alone, at the crop aspect ratios of its pixels."""

    import datasets
    from PIL import Image

    from modeling_cxrgm import GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
    from train.augment import content_boxes, crop_boxes
    from train.data import CXRDataset
    from train.engine import forward

    processor = GroupMaskedViTImageProcessor(size=32)
    wide = np.full((20, 40), 200, np.uint8)  # a 2:1 image: rows 8..23 of the 32 px square
    rows = datasets.Dataset.from_dict({"image": [Image.fromarray(wide)] * 4},
                                      features=datasets.Features({"image": datasets.Image()}))
    dataset = CXRDataset(rows, processor, "pretraining", uint8=True)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    assert batch["content"].tolist() == [[8, 0, 16, 32]] * 4 and (batch["pixel_values"] == 0).float().mean() == 0.5

    spec = AugmentSpec(jitter_p=0, blur_p=0)
    views = augment(batch["pixel_values"].float() / 255, spec, torch.Generator().manual_seed(0), content=batch["content"])
    assert views.min() > 0.5  # no padding (bicubic edges aside: 200 / 255 = 0.78 everywhere)
    plain = augment(batch["pixel_values"].float() / 255, spec, torch.Generator().manual_seed(0))
    assert (plain < 0.5).float().mean() > 0.1  # what the square's crops held

    frame = content_boxes(batch["content"][:1].repeat(4096, 1), 32)
    boxes = crop_boxes(4096, spec, torch.Generator().manual_seed(1), "cpu", aspect=frame[:, 2] / frame[:, 3])
    pixel_aspect = boxes[:, 2] * 32 / (boxes[:, 3] * 16)
    whole = (boxes[:, 2:] == 1).all(1)  # no draw fitted: the whole image
    assert pixel_aspect[~whole].min() >= 3 / 4 - 1e-5 and pixel_aspect[~whole].max() <= 4 / 3 + 1e-5

    config = GroupMaskedViTConfig(**{**TINY, "num_channels": 1})
    ctx = Context(task="pretraining", augment=spec, mean=[0.5], std=[0.25], model_config=config)
    _, _, evaluated, _ = forward(GroupMaskedViTForPreTraining(config), batch, ctx, torch.Generator().manual_seed(0),
                                 train=False)
    assert (evaluated * 0.25 + 0.5).min() > 0.5  # the whole image, resized to the square, without its padding


def test_a_pretraining_step_draws_both_views_in_one_augmentation(monkeypatch):
    """One call per view issued the augmentation's ~120 small operations twice (on a GPU: host time, which bounds a
    step at small batches). The doubled batch keeps the layout the corruption relies on: all first views, then all
    second views, image i's at rows i and B + i, each view drawn apart."""

    from modeling_cxrgm import GroupMaskedViTForPreTraining
    from train import engine

    calls, real = [], engine.augment

    def counted(images, *args, **kwargs):
        calls.append(len(images))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(engine, "augment", counted)
    config = GroupMaskedViTConfig(**{**TINY, "num_channels": 1})
    model = GroupMaskedViTForPreTraining(config)
    images = torch.rand(3, 1, 32, 32)
    batch = {"pixel_values": images, "content": torch.tensor([[0, 0, 32, 32]] * 3)}
    identity = AugmentSpec(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip_p=0.0, jitter_p=0.0, blur_p=0.0)
    for spec in (identity, AugmentSpec()):
        ctx = Context(task="pretraining", augment=spec, mean=[0.5], std=[0.25], model_config=config)
        _, _, views, _ = engine.forward(model, batch, ctx, torch.Generator().manual_seed(0), train=True)
        assert views.shape == (6, 1, 32, 32)
        if spec is identity:
            assert torch.allclose(views * 0.25 + 0.5, images.repeat(2, 1, 1, 1), atol=1e-5)
        else:
            assert all(not torch.allclose(views[i], views[3 + i]) for i in range(3))
    assert calls == [6, 6]


def test_the_training_inputs_are_made_in_float32_whatever_the_mixed_precision():
    """The step runs under the run's autocast; the views (crop, blur's convolution) and their corruption are made
    outside it, so mixed precision changes the model's arithmetic only: under float16 or bfloat16 autocast the views,
    corrupted pixels and masks equal those made without autocast, all float32."""
    from modeling_cxrgm import GroupMaskedViTForPreTraining
    from train.engine import forward, model_inputs

    config = GroupMaskedViTConfig(**{**TINY, "num_channels": 1})
    model = GroupMaskedViTForPreTraining(config)
    batch = {"pixel_values": torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8),
             "content": torch.tensor([[0, 0, 32, 32]] * 3)}
    ctx = Context(task="pretraining", augment=AugmentSpec(blur_p=1.0, jitter_p=1.0), mean=[0.5], std=[0.25],
                  model_config=config)
    expected = model_inputs(batch, ctx, torch.Generator().manual_seed(0), train=True)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", dtype=dtype):
            loss, _, views, mask_fraction = forward(model, batch, ctx, torch.Generator().manual_seed(0), train=True)
        assert views.dtype == torch.float32 and torch.equal(views, expected["pixel_values"]), dtype
        assert mask_fraction == expected["mask"].float().mean() and torch.isfinite(loss)


def test_a_training_run_stopped_by_an_unreadable_file_says_how_to_skip_such_files(tmp_path):
    """Training on a folder with a broken image (or a cut-short DICOM) stopped naming the file but not the option
    that leaves such files out; the error, of the same type, now names it too, with the run's other options kept, and
    that option does train on the rest. No DICOM header value is in the message."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_dicom, write_image

    from hf_datasets.errors import ImageReadError, TruncatedDicomError
    from train import data
    from train.run import run_training

    root = tmp_path / "my_cxrs"
    for i in range(8):
        write_image(root / ("normal", "pneumonia")[i % 2] / f"p{i:02d}.png", seed=i)
    (root / "normal" / "broken.png").write_bytes(b"not a png")
    options = {"cache_dir": str(tmp_path / "cache"), "split_fractions": {"train": 1.0}}
    args = TrainArgs(task="classification", output_dir=str(tmp_path / "run"), dataset="imagefolder",
                     data_dir=str(root), dataset_options=options, image_size=32, epochs=1, report_to="none",
                     card=False)
    with pytest.raises(ImageReadError) as stopped:
        run_training(args)
    message = str(stopped.value)
    assert message.startswith(f"{root / 'normal' / 'broken.png'}: ")
    assert stopped.value.path == str(root / "normal" / "broken.png")
    hint = re.search(r"--dataset_options '(.*)'$", message)
    assert hint and json.loads(hint.group(1)) == {**options, "on_error": "skip"}
    with pytest.warns(UserWarning, match="broken.png"):
        assert len(data.load_splits("imagefolder", str(root), None, json.loads(hint.group(1)))["train"]) == 8

    (root / "normal" / "broken.png").unlink()
    dicom = write_dicom(root / "normal" / "cut.dcm", patient_id="PAT-SECRET-7", patient_name="Doe^Jane")
    dicom.write_bytes(dicom.read_bytes()[:-500])
    with pytest.raises(TruncatedDicomError) as stopped:
        data.load_splits("imagefolder", str(root), None, options)
    message = str(stopped.value)
    assert str(dicom) in message and """--dataset_options '{"cache_dir": """ in message
    assert "PAT-SECRET-7" not in message and "Doe" not in message and "Jane" not in message


def test_demo_report_gives_the_test_set_size_and_says_four_images_cannot_measure_accuracy():
    """`make demo` ended on "test AUROC 0.000" for its 4 test images with no word on what 4 images can tell: the
    report now gives the images per class and says that such numbers cannot measure accuracy (worked out from the
    counts, not written in) and what the demo does show."""
    from train import demo

    metrics = {"num_samples": 4.0, "auroc_macro": 0.0, "auroc_macro_ci_low": 0.0, "auroc_macro_ci_high": 0.0,
               "accuracy": 0.5, "confusion/normal/normal": 0.0, "confusion/normal/pneumonia": 2.0,
               "confusion/pneumonia/normal": 0.0, "confusion/pneumonia/pneumonia": 2.0}
    assert demo._class_counts(metrics) == "4 (2 normal, 2 pneumonia)"
    note = demo.reading_note(metrics)
    assert note.startswith("These test numbers come from 4 images and cannot measure accuracy:")
    assert "compares 4 pairs: it can only be a multiple of 1/4" in note
    assert "a model that guesses scores 1 (or 0) 17% of the time, so even those values are consistent with chance" in note
    assert "the whole pipeline runs" in note and "benchmarks/RESULTS.md" in note
    larger = {"num_samples": 40.0, "confusion/normal/normal": 20.0, "confusion/pneumonia/pneumonia": 20.0}
    assert "1/400" in demo.reading_note(larger) and "consistent with chance" not in demo.reading_note(larger)
