"""benchmarks/drift_cues.py finds cues that separate the classes, and which way they point, in each set."""

import numpy as np
import pytest
from PIL import Image

from benchmarks import drift_cues
from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForImageClassification, GroupMaskedViTImageProcessor


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def write_set(folder, classes, image_of, patients=20):
    """Square-free toy set: `image_of(label, i)` -> uint8 array; one image per patient, classes alternating."""
    (folder / "images").mkdir(parents=True)
    rows = ["file,label,patient_id,source"]
    for i in range(patients):
        label = classes[i % 2]
        Image.fromarray(image_of(label, i)).save(folder / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{label},{folder.name}_{i},{folder.name}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def noisy(value, shape, seed):
    return np.clip(value + np.random.default_rng(seed).normal(0, 10, shape), 0, 255).astype(np.uint8)


def test_cues_and_their_direction_per_set(tmp_path):
    # NIH-like: square images, pneumonia darker. Kermany-like: same grey levels, pneumonia images wider (more padding).
    write_set(tmp_path / "nih_cxr14", ("no_finding", "pneumonia"),
              lambda label, i: noisy(90 if label == "pneumonia" else 170, (40, 40), i))
    write_set(tmp_path / "kermany_pediatric", ("normal", "pneumonia"),
              lambda label, i: noisy(130, (32, 48) if label == "pneumonia" else (40, 32), i))
    model_dir = tmp_path / "classifier"
    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_channels=1,
                                  id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1})
    GroupMaskedViTForImageClassification(config).save_pretrained(model_dir)
    GroupMaskedViTImageProcessor(size=32).save_pretrained(model_dir)

    report = drift_cues.main(["--data_dir", str(tmp_path), "--image_size", "32", "--models", str(model_dir),
                              "--output", str(tmp_path / "cues.json")])
    nih, kermany = report["cue_auroc"]["nih_cxr14"], report["cue_auroc"]["kermany_pediatric"]
    assert nih["mean"] == 0.0 and nih["padding_fraction"] == 0.5  # darker pneumonia; no padding at all
    assert kermany["padding_fraction"] == 1.0 and kermany["mean"] == 0.0  # wider pneumonia images: more black border
    assert report["logistic_regression"]["nih_cxr14"]["auroc_on_nih_cxr14"] == 1.0
    scores = report["models"][str(model_dir)]
    assert 0.0 <= scores["kermany_pediatric"]["auroc"] <= 1.0
    assert scores["nih_cxr14"]["spearman_padding_fraction"] is None
    assert -1.0 <= scores["kermany_pediatric"]["spearman_padding_fraction"] <= 1.0
    assert (tmp_path / "cues.json").is_file()


def test_cropping_to_an_aspect_removes_the_shape_cue(tmp_path):
    write_set(tmp_path / "nih_cxr14", ("no_finding", "pneumonia"), lambda label, i: noisy(130, (40, 40), i))
    write_set(tmp_path / "kermany_pediatric", ("normal", "pneumonia"),
              lambda label, i: noisy(130, (32, 48) if label == "pneumonia" else (40, 32), i))
    argv = ["--data_dir", str(tmp_path), "--image_size", "32", "--output", str(tmp_path / "cues.json")]
    assert drift_cues.main(argv)["cue_auroc"]["kermany_pediatric"]["padding_fraction"] == 1.0
    cropped = drift_cues.main(argv + ["--max_aspect", "0.8"])  # the normals' width / height
    assert cropped["max_aspect"] == 0.8 and cropped["cue_auroc"]["kermany_pediatric"]["padding_fraction"] == 0.5
    assert drift_cues.crop_to_aspect(Image.new("L", (48, 32)), 0.8).size == (26, 32)


def test_help_gives_the_whole_first_sentence(capsys):
    with pytest.raises(SystemExit):
        drift_cues.main(["--help"])
    assert "opposite directions in nih_cxr14 and kermany_pediatric." in " ".join(capsys.readouterr().out.split())


def test_a_half_precision_classifier_is_scored_in_float32(tmp_path):
    """A classifier saved in bf16 was run in bf16 (transformers keeps a file's dtype), so its cue correlations came
    from other probabilities than train.evaluate's."""
    import torch

    config = GroupMaskedViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, num_channels=1,
                                  id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1})
    torch.manual_seed(0)
    model = GroupMaskedViTForImageClassification(config).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "model")
    processor = GroupMaskedViTImageProcessor(size=32)
    processor.save_pretrained(tmp_path / "model")
    import datasets

    images = [Image.fromarray(noisy(60 * i, (40, 40), i)) for i in range(4)]
    probabilities = drift_cues.pneumonia_probability(tmp_path / "model", datasets.Dataset.from_dict({"image": images}))
    with torch.no_grad():
        expected = model.float().eval()(pixel_values=processor.preprocess(images)["pixel_values"]).logits.softmax(-1)
    np.testing.assert_allclose(probabilities, expected[:, 1].numpy(), rtol=0, atol=1e-6)
