"""GroupMaskedViT backbone and heads on tiny configs."""

import math

import pytest
import torch
import torch.nn.functional as F

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
    GroupMaskedViTModel,
)


def tiny_config(**overrides):
    values = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                  intermediate_size=64, drop_path_rate=0.0)
    return GroupMaskedViTConfig(**{**values, **overrides})


@pytest.fixture
def images():
    return torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def test_eager_and_sdpa_agree(images):
    torch.manual_seed(0)
    model = GroupMaskedViTModel(tiny_config()).eval()
    assert model.config._attn_implementation == "sdpa"
    sdpa = model(images, output_hidden_states=True)
    model.set_attn_implementation("eager")
    eager = model(images, output_hidden_states=True, output_attentions=True)
    assert torch.allclose(sdpa.last_hidden_state, eager.last_hidden_state, atol=1e-5)
    assert len(eager.hidden_states) == 5 and len(eager.attentions) == 4
    assert eager.attentions[0].shape == (3, 2, 17, 17)
    assert torch.allclose(eager.attentions[0].sum(-1), torch.ones(3, 2, 17))  # not causal: rows are full


@pytest.mark.parametrize("model_class", [GroupMaskedViTModel, GroupMaskedViTForImageClassification,
                                         GroupMaskedViTForSegmentation, GroupMaskedViTForPreTraining])
def test_every_model_gives_hidden_states_when_its_config_asks(images, model_class):
    """`from_pretrained(folder, output_hidden_states=True)` sets the config: each model then returns the embeddings
    and every block's output (the pretraining and segmentation models returned None), and a call can still decline."""
    model = model_class(tiny_config(output_hidden_states=True)).eval()
    assert len(model(images).hidden_states) == 5
    assert model(images, output_hidden_states=False).hidden_states is None


def test_attention_weights_asked_of_an_sdpa_model_are_given(images):
    """SDPA never forms the weights: a call that asks for them (attention maps of a CXR) attends eagerly, with the
    same output; calls that do not ask keep SDPA."""
    model = GroupMaskedViTModel(tiny_config()).eval()
    assert model.config._attn_implementation == "sdpa"
    plain = model(images)
    asked = model(images, output_attentions=True)
    assert len(asked.attentions) == 4 and all(w is not None and w.shape == (3, 2, 17, 17) for w in asked.attentions)
    assert torch.allclose(asked.last_hidden_state, plain.last_hidden_state, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"


def test_output_shapes(images):
    out = GroupMaskedViTModel(tiny_config())(images)
    assert out.last_hidden_state.shape == (3, 17, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])


@pytest.mark.parametrize("pooling", ["mean", "cls_mean"])
def test_pooler_output_pools_as_the_classifier_does(images, pooling):
    """A classifier trained with mean pooling, loaded as its backbone (AutoModel, the feature-extraction pipeline's
    pool=True), gives the features its head read."""
    torch.manual_seed(0)
    classifier = GroupMaskedViTForImageClassification(tiny_config(pooling=pooling, num_labels=2)).eval()
    with torch.no_grad():
        out = classifier.vit(images)
        torch.testing.assert_close(classifier.classifier(out.pooler_output), classifier(images).logits)
    mean = out.last_hidden_state[:, 1:].mean(1)
    expected = mean if pooling == "mean" else torch.cat([out.last_hidden_state[:, 0], mean], dim=-1)
    assert torch.equal(out.pooler_output, expected)


def test_other_input_sizes_interpolate_positions_in_float32(images):
    model = GroupMaskedViTModel(tiny_config()).eval()
    native = model.embeddings.interpolate_pos_encoding(4, 4)
    assert native is model.embeddings.position_embeddings
    bigger = torch.randn(2, 1, 48, 64)
    assert model(bigger).last_hidden_state.shape == (2, 1 + 6 * 8, 32)
    model.to(torch.bfloat16)
    assert model(bigger).last_hidden_state.dtype == torch.bfloat16


def test_set_image_size_resamples_positions_once_and_keeps_the_function(tmp_path):
    model = GroupMaskedViTModel(tiny_config()).eval()
    larger = torch.randn(2, 1, 64, 64)
    expected = model(larger).last_hidden_state  # positions interpolated from 4 x 4 to 8 x 8 in the forward pass
    model.set_image_size(64)
    assert model.config.image_size == 64 and model.embeddings.position_embeddings.shape == (1, 1 + 8 * 8, 32)
    assert model.embeddings.interpolate_pos_encoding(8, 8) is model.embeddings.position_embeddings  # native now
    torch.testing.assert_close(model(larger).last_hidden_state, expected)
    model.save_pretrained(tmp_path)
    reloaded = GroupMaskedViTModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(reloaded(larger).last_hidden_state, expected)
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        model.set_image_size(60)


def test_set_image_size_refuses_a_size_the_saved_config_could_not_load():
    model = GroupMaskedViTModel(tiny_config(mask_align=8))
    with pytest.raises(ValueError, match="image_size 16 does not suit .*mask_align=8"):
        model.set_image_size(16)  # 8 px block steps in a 16 px image: from_pretrained would refuse the saved config
    assert model.config.image_size == 32 and model.embeddings.grid_size == 4  # unchanged


def test_wrong_channel_count_is_explained(images):
    with pytest.raises(ValueError, match="num_channels"):
        GroupMaskedViTModel(tiny_config())(images.repeat(1, 3, 1, 1))


def test_stochastic_depth_only_in_training(images):
    model = GroupMaskedViTModel(tiny_config(drop_path_rate=0.5))
    rates = [layer.drop_path_rate for layer in model.encoder.layers]
    assert rates[0] == 0.0 and rates[-1] == 0.5 and rates == sorted(rates)
    model.train()
    torch.manual_seed(0)
    first = model(images).last_hidden_state
    second = model(images).last_hidden_state
    assert not torch.allclose(first, second)
    model.eval()
    assert torch.equal(model(images).last_hidden_state, model(images).last_hidden_state)


def test_stochastic_depth_is_drawn_for_every_block_at_once(images):
    """Drawn per branch it cost four operations each (empty, bernoulli, divide, multiply): about a hundred kernel
    launches per ViT-S step, host time that bounds small batches on a GPU. Each block still drops a sample's branch
    with its own rate (linear over depth), keeps the expectation, and computes in the branches' dtype."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.launches = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.__name__.startswith(("detach", "unbind", "select", "view", "alias", "slice", "expand")):
                self.launches += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = GroupMaskedViTModel(tiny_config(drop_path_rate=0.3)).train()
    scales = model.encoder.branch_scales(torch.zeros(40_000, 5, 32))
    assert scales.shape == (4, 2, 40_000, 1, 1) and scales.dtype == torch.float32
    dropped = (scales == 0).float().mean((1, 2, 3, 4))
    assert dropped[0] == 0 and torch.allclose(dropped, torch.tensor([0.0, 0.1, 0.2, 0.3]), atol=0.01)
    assert torch.allclose(scales.mean((1, 2, 3, 4)), torch.ones(4), atol=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder.branch_scales(torch.zeros(3, 5, 32)).dtype == torch.bfloat16

    plain = GroupMaskedViTModel(tiny_config()).train()
    counts = []
    for each in (plain, model):
        with Count() as count:
            each(images)
        counts.append(count.launches)
    # a multiply per branch of the 3 blocks that drop, and the draw: not 4 operations per branch (24)
    assert counts[1] - counts[0] <= 2 * 3 + 6, counts


def test_gradient_checkpointing_gives_the_same_gradients(images):
    torch.manual_seed(0)
    model = GroupMaskedViTForImageClassification(tiny_config(num_labels=2)).train()
    labels = torch.tensor([0, 1, 1])
    model(images, labels=labels).loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert model.vit.encoder.layers[0].gradient_checkpointing
    model(images, labels=labels).loss.backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_pretraining_reconstructs_from_the_mean_of_the_configured_blocks(images):
    config = tiny_config(reconstruction_layers=[2, 4])
    model = GroupMaskedViTForPreTraining(config).eval()
    out = model(images, generator=torch.Generator().manual_seed(0), output_hidden_states=True)
    assert out.reconstruction.shape == images.shape and out.mask.shape == (3, 32, 32)
    features = model.vit.layernorm((out.hidden_states[2] + out.hidden_states[4]) / 2)[:, 1:]
    assert torch.allclose(model.decoder(features, 4, 4), out.reconstruction, atol=1e-6)
    weight = out.mask[:, None].float()
    expected = ((out.reconstruction - images).abs() * weight).sum() / weight.sum()
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    assert model.vit.embeddings.patch_embeddings.projection.weight.grad is not None



def test_low_precision_residual_keeps_the_token_stream_in_autocasts_dtype(images, tmp_path):
    """`low_precision_residual`: under bf16 autocast every block's output (the residual stream) is bfloat16 instead
    of float32, the loss stays close and every parameter still gets a gradient; without autocast, and under float16
    autocast (whose range a residual stream could leave), the model computes exactly what it computes without the
    option; the setting survives save_pretrained."""
    torch.manual_seed(0)
    plain = GroupMaskedViTForPreTraining(tiny_config())
    low = GroupMaskedViTForPreTraining(tiny_config(low_precision_residual=True))
    low.load_state_dict(plain.state_dict())
    losses = {}
    for name, model in (("plain", plain), ("low", low)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(images, generator=torch.Generator().manual_seed(0), output_hidden_states=True)
        assert {h.dtype for h in out.hidden_states} == {torch.bfloat16 if name == "low" else torch.float32}
        out.loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        losses[name] = out.loss.item()
    assert math.isclose(losses["low"], losses["plain"], rel_tol=0.02)
    outside = [model(images, generator=torch.Generator().manual_seed(0), output_hidden_states=True)
               for model in (plain, low)]
    assert {h.dtype for h in outside[1].hidden_states} == {torch.float32}
    torch.testing.assert_close(outside[1].loss, outside[0].loss, rtol=0, atol=0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        half = [model(images, generator=torch.Generator().manual_seed(0), output_hidden_states=True)
                for model in (plain, low)]
    assert {h.dtype for h in half[1].hidden_states} == {torch.float32}
    torch.testing.assert_close(half[1].loss, half[0].loss, rtol=0, atol=0)
    low.save_pretrained(tmp_path)
    assert GroupMaskedViTConfig.from_pretrained(tmp_path).low_precision_residual is True


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pretraining_loss_of_a_half_precision_reconstruction_counts_every_corrupted_pixel(dtype):
    """Under bf16 / fp16 autocast the reconstruction is half precision, and the loss counted its corrupted pixels in
    that type too: in bf16 a count of 200,003 became 200,704 (the L1 0.35%, up to 0.4%, too low); in fp16 any count
    above 65,504 became inf, and the loss 0 (nothing learned)."""
    from modeling_cxrgm.modeling_gmvit import masked_l1_loss

    generator = torch.Generator().manual_seed(0)
    reconstruction = torch.randn(4, 1, 256, 256, generator=generator).to(dtype)
    target = torch.randn(4, 1, 256, 256, generator=generator)
    mask = torch.zeros(4 * 256 * 256, dtype=torch.bool)
    mask[:200_003] = True
    mask = mask.view(4, 256, 256)
    errors = (reconstruction.double() - target.double()).abs()[:, 0][mask]
    expected = errors.sum() / 200_003
    assert math.isclose(masked_l1_loss(reconstruction, target, mask).item(), expected.item(), rel_tol=1e-5)

def test_reconstruction_head_is_its_transposed_convolution():
    from modeling_cxrgm.modeling_gmvit import GroupMaskedViTReconstructionHead, tokens_to_grid

    head = GroupMaskedViTReconstructionHead(tiny_config(), out_channels=3)
    torch.nn.init.normal_(head.unpatchify.bias)
    tokens = torch.randn(2, 3 * 5, 32, requires_grad=True)  # a 3 x 5 grid of patches
    expected = head.unpatchify(tokens_to_grid(head.mlp(tokens), 3, 5))
    actual = head(tokens, 3, 5)
    assert actual.shape == (2, 3, 24, 40) and torch.allclose(actual, expected, atol=1e-6)
    grads = torch.autograd.grad(actual.square().sum(), [tokens, head.unpatchify.weight])
    expected_grads = torch.autograd.grad(expected.square().sum(), [tokens, head.unpatchify.weight])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads, expected_grads))


@pytest.mark.parametrize("channels", [1, 3])
def test_patch_embeddings_are_their_convolution(channels):
    from modeling_cxrgm.modeling_gmvit import GroupMaskedViTPatchEmbeddings

    torch.manual_seed(0)
    embeddings = GroupMaskedViTPatchEmbeddings(tiny_config(num_channels=channels))
    torch.nn.init.normal_(embeddings.projection.weight)
    torch.nn.init.normal_(embeddings.projection.bias)
    pixels = torch.randn(2, channels, 24, 40, requires_grad=True)  # a 3 x 5 grid of 8-pixel patches
    expected = embeddings.projection(pixels).flatten(2).transpose(1, 2)
    actual = embeddings(pixels)
    assert actual.shape == (2, 15, 32) and torch.allclose(actual, expected, atol=1e-5)
    parameters = [pixels, embeddings.projection.weight, embeddings.projection.bias]
    grads = torch.autograd.grad(actual.square().sum(), parameters)
    expected_grads = torch.autograd.grad(expected.square().sum(), parameters)
    for actual_grad, expected_grad in zip(grads, expected_grads):  # gradients of ~700: float32 rounding at ~1e-6 of that
        torch.testing.assert_close(actual_grad, expected_grad, rtol=1e-4, atol=1e-5 * expected_grad.abs().max().item())


def test_pretraining_uses_a_given_corruption_and_seeds_its_own(images):
    model = GroupMaskedViTForPreTraining(tiny_config()).eval()
    mask = torch.zeros(3, 32, 32, dtype=torch.bool)
    mask[:, :8] = True
    corrupted = images.clone()
    corrupted[:, :, :8] = 0
    given = model(images, corrupted=corrupted, mask=mask)
    assert torch.equal(given.mask, mask) and torch.equal(given.corrupted, corrupted)
    first = model(images, generator=torch.Generator().manual_seed(1))
    again = model(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.mask, again.mask) and torch.equal(first.loss, again.loss)
    with pytest.raises(ValueError, match="both"):
        model(images, mask=mask)


@pytest.mark.parametrize("pooling, width", [("cls", 32), ("mean", 32), ("cls_mean", 64)])
def test_classification_pooling(images, pooling, width):
    model = GroupMaskedViTForImageClassification(tiny_config(pooling=pooling, num_labels=3))
    assert model.classifier.in_features == width
    assert model(images).logits.shape == (3, 3)


def test_single_label_loss_uses_label_smoothing(images):
    model = GroupMaskedViTForImageClassification(tiny_config(num_labels=3, label_smoothing=0.1)).eval()
    labels = torch.tensor([0, 2, 1])
    out = model(images, labels=labels)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels, label_smoothing=0.1))


def test_multi_label_loss_ignores_unknown_labels(images):
    config = tiny_config(num_labels=3, problem_type="multi_label_classification")
    model = GroupMaskedViTForImageClassification(config).eval()
    labels = torch.tensor([[1.0, float("nan"), 0.0], [float("nan"), 1.0, 1.0], [0.0, 0.0, float("nan")]])
    out = model(images, labels=labels)
    known = ~labels.isnan()
    expected = F.binary_cross_entropy_with_logits(out.logits[known], labels[known])
    assert torch.allclose(out.loss, expected)
    out.loss.backward()


@pytest.mark.parametrize("labels, problem_type", [
    (torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), "multi_label_classification"),
    (torch.tensor([0, 2, 1]), "single_label_classification"),
])
def test_problem_type_inferred_from_the_labels_is_saved(images, labels, problem_type, tmp_path):
    """A model trained without a problem type (e.g. under Trainer) saves the one its labels implied, so its
    image-classification pipeline applies sigmoid to a multi-label model (softmax made its scores sum to 1)."""
    from transformers import pipeline

    model = GroupMaskedViTForImageClassification(tiny_config(num_labels=3))
    assert model.config.problem_type is None
    model(images, labels=labels)
    model.save_pretrained(tmp_path)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path)
    classify = pipeline("image-classification", model=str(tmp_path))
    assert classify.model.config.problem_type == problem_type
    scores = [result["score"] for result in classify(images[0, 0].sigmoid().numpy(), top_k=3)]
    assert math.isclose(sum(scores), 1.0, rel_tol=1e-5) == (problem_type == "single_label_classification")


@pytest.mark.parametrize("model_class, overrides, labels", [
    (GroupMaskedViTForPreTraining, {}, None),
    (GroupMaskedViTForImageClassification, {"pooling": "mean"}, torch.tensor([0, 2, 1])),
    (GroupMaskedViTForImageClassification, {"pooling": "cls_mean"}, torch.tensor([0, 2, 1])),
    (GroupMaskedViTForSegmentation, {"decoder_type": "progressive"}, torch.randint(0, 3, (3, 32, 32))),
    (GroupMaskedViTForSegmentation, {"decoder_type": "simple"}, torch.randint(0, 3, (3, 32, 32))),
])
def test_every_parameter_gets_a_gradient(images, model_class, overrides, labels):
    """DistributedDataParallel stops at the second step when a parameter gets no gradient."""
    model = model_class(tiny_config(num_labels=3, **overrides))
    kwargs = {"labels": labels} if labels is not None else {"generator": torch.Generator().manual_seed(0)}
    model(images, **kwargs).loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("decoder", ["progressive", "simple"])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_segmentation_logits_at_input_resolution(images, decoder, num_labels):
    model = GroupMaskedViTForSegmentation(tiny_config(decoder_type=decoder, num_labels=num_labels))
    labels = torch.randint(0, max(2, num_labels), (3, 32, 32))
    out = model(images, labels=labels)
    assert out.logits.shape == (3, num_labels, 32, 32)
    out.loss.backward()


def test_binary_segmentation_loss_is_bce_plus_dice_and_skips_ignored_pixels(images):
    model = GroupMaskedViTForSegmentation(tiny_config(num_labels=1)).eval()
    labels = torch.zeros(3, 32, 32, dtype=torch.long)
    labels[:, 8:24, 4:14] = 1
    out = model(images, labels=labels)
    logit, target = out.logits[:, 0], labels.float()
    probability = torch.sigmoid(logit)
    dice = (2 * (probability * target).sum((1, 2)) + 1) / (probability.sum((1, 2)) + target.sum((1, 2)) + 1)
    expected = F.binary_cross_entropy_with_logits(logit, target) + (1 - dice).mean()
    assert torch.allclose(out.loss, expected, atol=1e-6)
    ignored = labels.clone()
    ignored[:, :4] = 255
    assert not torch.allclose(model(images, labels=ignored).loss, out.loss)


def test_multiclass_segmentation_ignores_the_ignore_index(images):
    model = GroupMaskedViTForSegmentation(tiny_config(num_labels=3)).eval()
    labels = torch.randint(0, 3, (3, 32, 32))
    labels[:, :10] = 255
    out = model(images, labels=labels)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, labels, ignore_index=255))


@pytest.mark.parametrize("num_labels", [1, 2])
def test_a_segmenter_called_directly_leaves_out_the_processors_padding_whatever_its_ignore_index(tmp_path,
                                                                                             num_labels):
    """The image processor pads segmentation maps with PAD_LABEL (255); training turned that into the config's
    `semantic_loss_ignore_index`, but `model(**processor(images, segmentation_maps=masks))` gave the labels as they
    were: with an ignore index of -100 a one-map segmenter scored the padding as background and a two-class one
    raised "Target 255 is out of bounds". The model's loss applies the one rule training uses: the same loss as
    with the default index, and as with the padding labelled -100 by hand."""
    import sys
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))
    from factory import write_image, write_mask

    from modeling_cxrgm.image_processing_gmvit import PAD_LABEL

    images = [Image.open(write_image(tmp_path / f"{k}.png", seed=k, shape=(40, 24))) for k in range(2)]
    masks = [Image.open(write_mask(tmp_path / f"{k}_mask.png", shape=(40, 24), right=bool(k))) for k in range(2)]
    inputs = GroupMaskedViTImageProcessor(size=32)(images, segmentation_maps=masks)
    padding = inputs["labels"] == PAD_LABEL
    assert padding.any() and set(inputs["labels"][~padding].unique().tolist()) == {0, 1}

    torch.manual_seed(0)
    default = GroupMaskedViTForSegmentation(tiny_config(num_labels=num_labels)).eval()
    other = GroupMaskedViTForSegmentation(tiny_config(num_labels=num_labels, semantic_loss_ignore_index=-100)).eval()
    other.load_state_dict(default.state_dict())
    by_hand = inputs["labels"].masked_fill(padding, -100)
    with torch.no_grad():
        expected = default(**inputs).loss
        assert torch.allclose(other(**inputs).loss, expected)
        assert torch.allclose(other(pixel_values=inputs["pixel_values"], labels=by_hand).loss, expected)
        assert torch.allclose(other(**inputs, return_dict=False)[0], expected)
        background = inputs["labels"].masked_fill(padding, 0)  # the padding scored as background changes it
        assert not torch.allclose(other(pixel_values=inputs["pixel_values"], labels=background).loss, expected)


def test_pretraining_checkpoint_becomes_a_classifier_with_new_head_reported(tmp_path, images):
    """The new head is reported; the GMML reconstruction decoder, which no task model has, is left out without being
    listed as unexpected (every fine-tuning from a GMML export printed it in a LOAD REPORT); other stray weights are
    still listed."""
    from safetensors.torch import load_file, save_file

    pretrained = GroupMaskedViTForPreTraining(tiny_config())
    pretrained.save_pretrained(tmp_path)
    classifier, info = GroupMaskedViTForImageClassification.from_pretrained(
        tmp_path, num_labels=2, output_loading_info=True
    )
    assert info["missing_keys"] == {"classifier.weight", "classifier.bias"}
    assert not info["unexpected_keys"]
    assert not GroupMaskedViTModel.from_pretrained(tmp_path, output_loading_info=True)[1]["unexpected_keys"]
    weights = load_file(tmp_path / "model.safetensors")
    save_file({**weights, "vit.stray.weight": torch.zeros(2)}, tmp_path / "model.safetensors", {"format": "pt"})
    _, stray = GroupMaskedViTForImageClassification.from_pretrained(tmp_path, num_labels=2, output_loading_info=True)
    assert stray["unexpected_keys"] == {"vit.stray.weight"}
    save_file(weights, tmp_path / "model.safetensors", {"format": "pt"})
    for name, weight in pretrained.vit.state_dict().items():
        assert torch.equal(weight, classifier.vit.state_dict()[name]), name
    segmenter, info = GroupMaskedViTForSegmentation.from_pretrained(tmp_path, num_labels=1, output_loading_info=True)
    assert info["missing_keys"] and all(key.startswith("segmentation_head.") for key in info["missing_keys"])
    assert not info["unexpected_keys"]  # no GMML decoder, no final LayerNorm: its own decoder has no use for them
    for name, weight in segmenter.vit.state_dict().items():
        assert torch.equal(weight, pretrained.vit.state_dict()[name]), name


def test_rgb_model_converted_to_grey_gives_the_same_features(images):
    rgb_model = GroupMaskedViTModel(tiny_config(num_channels=3)).eval()
    with torch.no_grad():
        expected = rgb_model(images.repeat(1, 3, 1, 1)).last_hidden_state
        rgb_model.set_num_channels(1)
        assert rgb_model.config.num_channels == 1
        assert torch.allclose(rgb_model(images).last_hidden_state, expected, atol=1e-5)
        rgb_model.set_num_channels(3)
        assert torch.allclose(rgb_model(images.repeat(1, 3, 1, 1)).last_hidden_state, expected, atol=1e-5)


def test_channel_conversion_of_a_pretraining_model_keeps_the_reconstruction(images):
    model = GroupMaskedViTForPreTraining(tiny_config(num_channels=3, mask_fill="zeros")).eval()
    rgb = images.repeat(1, 3, 1, 1)
    with torch.no_grad():
        expected = model(rgb, generator=torch.Generator().manual_seed(0)).reconstruction.mean(1, keepdim=True)
        model.set_num_channels(1)
        out = model(images, generator=torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == images.shape
    assert torch.allclose(out.reconstruction, expected, atol=1e-5)
    with pytest.raises(ValueError, match="1 or 3"):
        model.set_num_channels(2)
