"""GroupMaskedViTConfig: presets, validation naming the field, round trip."""

import json

import pytest
import torch

from modeling_cxrgm import PRESETS, GroupMaskedViTConfig, GroupMaskedViTModel


def test_vit_small_rgb_has_21_7m_encoder_parameters():
    config = GroupMaskedViTConfig.from_preset("vit_small_patch16_224", num_channels=3)
    with torch.device("meta"):
        model = GroupMaskedViTModel(config)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - 21.7e6) <= 0.1e6, count


@pytest.mark.parametrize("name, width, depth", [
    ("vit_tiny_patch16_224", 192, 12), ("vit_small_patch16_224", 384, 12),
    ("vit_base_patch16_224", 768, 12), ("vit_large_patch16_224", 1024, 24),
])
def test_presets(name, width, depth):
    config = GroupMaskedViTConfig.from_preset(name, num_channels=1, drop_path_rate=0.2)
    assert (config.hidden_size, config.num_hidden_layers, config.num_channels) == (width, depth, 1)
    assert config.drop_path_rate == 0.2
    assert config.reconstruction_layers == [depth - 6, depth - 4, depth - 2, depth]
    assert set(PRESETS) >= {name}


def test_spec_defaults():
    config = GroupMaskedViTConfig()
    assert (config.image_size, config.patch_size, config.hidden_size, config.layer_norm_eps) == (224, 16, 384, 1e-6)
    assert config.reconstruction_layers == [6, 8, 10, 12]
    assert (config.mask_max_ratio, config.replace_ratio, config.replace_prob) == (0.75, 0.3, 0.5)
    assert (config.mask_max_block_fraction, config.mask_align, config.mask_fill) == (0.3, 1, "noise")


def test_unknown_preset():
    with pytest.raises(ValueError, match="vit_small_patch16_224"):
        GroupMaskedViTConfig.from_preset("vit_huge")


@pytest.mark.parametrize("overrides, field", [
    ({"image_size": 225}, "image_size"),
    ({"num_channels": 2}, "num_channels"),
    ({"hidden_size": 100, "num_attention_heads": 6}, "hidden_size"),
    ({"mask_max_ratio": 1.2}, "mask_max_ratio"),
    ({"mask_fill": "blur"}, "mask_fill"),
    ({"pooling": "max"}, "pooling"),
    ({"decoder_type": "unet"}, "decoder_type"),
    ({"reconstruction_layers": [6, 13]}, "reconstruction_layers"),
    ({"segmentation_layers": [0]}, "segmentation_layers"),
    ({"mask_align": 5}, "mask_align"),
    ({"drop_path_rate": -0.1}, "drop_path_rate"),
    ({"problem_type": "ranking"}, "problem_type"),
    ({"hidden_act": "swishh"}, "hidden_act"),
    ({"low_precision_residual": "yes"}, "low_precision_residual"),
    ({"decoder_hidden_size": 100}, "decoder_hidden_size"),  # GroupNorm's 8 groups
    ({"decoder_hidden_size": 40}, "decoder_hidden_size"),  # 20 after the first halving
])
def test_invalid_values_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"GroupMaskedViTConfig.{field}="):
        GroupMaskedViTConfig(**overrides)


def test_round_trip_keeps_everything_and_writes_the_auto_map(tmp_path):
    config = GroupMaskedViTConfig(image_size=64, patch_size=8, num_hidden_layers=4, pooling="cls_mean",
                                  mask_align=8, num_labels=3)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "cxrgm_vit"
    assert set(saved["auto_map"]) >= {
        "AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForImageClassification",
        "AutoModelForSemanticSegmentation", "AutoImageProcessor",
    }
    loaded = GroupMaskedViTConfig.from_pretrained(tmp_path)
    for field in ("image_size", "patch_size", "pooling", "mask_align", "num_labels", "reconstruction_layers"):
        assert getattr(loaded, field) == getattr(config, field)


@pytest.mark.parametrize("decoder_hidden_size", [16, 64, 256])
def test_progressive_decoder_widths_that_validate_build(decoder_hidden_size):
    from modeling_cxrgm import GroupMaskedViTForSegmentation

    config = GroupMaskedViTConfig(image_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, decoder_hidden_size=decoder_hidden_size, num_labels=1)
    logits = GroupMaskedViTForSegmentation(config)(torch.zeros(1, 1, 32, 32)).logits
    assert logits.shape == (1, 1, 32, 32)
    assert GroupMaskedViTConfig(decoder_type="simple", decoder_hidden_size=100).decoder_hidden_size == 100
