"""train/probe.py: frozen-feature scores and the random-init baseline encoder."""

import numpy as np
import torch

from modeling_cxrgm import GroupMaskedViTConfig, GroupMaskedViTForPreTraining, GroupMaskedViTImageProcessor
from train.probe import load_encoder, probe_scores


def test_probe_scores_separate_clusters_and_not_noise():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    separable = rng.normal(size=(80, 8)) + (2 * y[:, None] - 1) * 6.0  # opposite directions: cosine separates too
    scores = probe_scores(separable[::2], y[::2], separable[1::2], y[1::2], k=5)
    assert scores["linear_accuracy"] == 1.0 and scores["knn_accuracy"] == 1.0 and scores["linear_auroc"] == 1.0
    noise = rng.normal(size=(80, 8))
    assert probe_scores(noise[::2], y[::2], noise[1::2], y[1::2], k=5)["linear_auroc"] < 0.9
    assert scores["num_train"] == 40 and scores["num_test"] == 40


def test_random_init_keeps_the_architecture_but_not_the_weights(tmp_path):
    config = GroupMaskedViTConfig.from_preset("vit_tiny_patch16_224", image_size=32, patch_size=8, hidden_size=32,
                                              num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                              num_channels=1)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path)
    GroupMaskedViTImageProcessor(size=32, num_channels=1).save_pretrained(tmp_path)
    pretrained, _ = load_encoder(tmp_path)
    fresh, processor = load_encoder(tmp_path, random_init=True, seed=1)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a, b = pretrained(pixel_values=x).last_hidden_state, fresh(pixel_values=x).last_hidden_state
    assert a.shape == b.shape and not torch.allclose(a, b) and processor.size == 32


def test_auroc_is_the_macro_over_classes_scorable_on_both_splits():
    """Real sets are uneven: a class may be missing from the test split (AUROC was NaN) or appear only there
    (sklearn raised after every feature had been extracted)."""
    rng = np.random.default_rng(1)
    centres = np.eye(4)[:3] * 8.0
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 4)) + centres[y]
    train, test = np.r_[0:10, 20:30, 40:50], np.r_[10:20, 30:40]  # class 2 only in training
    scores = probe_scores(x[train], y[train], x[test], y[test], k=3)
    assert scores["linear_auroc"] == 1.0 and scores["linear_accuracy"] == 1.0
    train, test = np.r_[0:10, 20:30], np.r_[10:20, 30:40, 40:60]  # class 2 only in the test split
    scores = probe_scores(x[train], y[train], x[test], y[test], k=3)
    assert 0.5 < scores["linear_auroc"] <= 1.0 and scores["linear_accuracy"] == 0.5


def test_a_test_split_of_one_class_is_said_to_be_one():
    """A test split of one class (v7labs' test images are all COVID-19) gave accuracies of 1.0 without a word: they
    are that class's recall, and no AUROC can be computed."""
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 4)) + (2 * y[:, None] - 1) * 5.0
    scores = probe_scores(x[::2], y[::2], x[1::2][y[1::2] == 1], y[1::2][y[1::2] == 1], k=3)
    assert scores["linear_accuracy"] == 1.0 and "linear_auroc" not in scores
    assert "all of one class" in scores["note"]
    assert "note" not in probe_scores(x[::2], y[::2], x[1::2], y[1::2], k=3)


def test_multi_label_data_is_refused_before_any_feature_is_extracted(tmp_path):
    """Class indices are argmax of the label vector: for multi-label rows (none or several findings) that would
    silently make "no finding" the first finding, so such data is refused naming the split."""
    import pytest

    from train.probe import main

    rows = [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    csv = tmp_path / "manifest.csv"
    csv.write_text("image,effusion,cardiomegaly,split\n"
                   + "".join(f"img{i}.png,{a:g},{b:g},{'train' if i < 2 else 'test'}\n" for i, (a, b) in enumerate(rows)))
    from PIL import Image

    for i in range(len(rows)):
        Image.new("L", (32, 32), 40 * i).save(tmp_path / f"img{i}.png")
    config = GroupMaskedViTConfig.from_preset("vit_tiny_patch16_224", image_size=32, patch_size=8, hidden_size=32,
                                              num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / "model")
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path / "model")
    options = '{"manifest": "manifest.csv", "label_names": ["effusion", "cardiomegaly"]}'
    with pytest.raises(ValueError, match="single-label"):
        main(["--model", str(tmp_path / "model"), "--dataset", "manifest", "--data_dir", str(tmp_path),
              "--dataset_options", options])


def test_a_training_split_of_one_class_is_refused_before_any_feature_is_extracted(tmp_path):
    """A few labelled images (or a small train_fraction) can leave one class in the training split: the logistic
    regression then raised sklearn's "needs samples of at least 2 classes" after every feature had been extracted."""
    import datasets
    import pytest

    from hf_datasets import build_dataset
    from train import probe

    splits = build_dataset("sample")
    all_normal = splits["train"].map(lambda row: {"labels": [1.0, 0.0]}, features=splits["train"].features)
    datasets.DatasetDict({"train": all_normal, "test": splits["test"]}).save_to_disk(tmp_path / "prepared")
    config = GroupMaskedViTConfig.from_preset("vit_tiny_patch16_224", image_size=32, patch_size=8, hidden_size=32,
                                              num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / "model")
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match=r"at least two classes in split 'train'.*\{'normal': 12, 'pneumonia': 0\}"):
        probe.main(["--model", str(tmp_path / "model"), "--prepared_dir", str(tmp_path / "prepared"),
                    "--output", str(tmp_path / "probe.json")])


def test_the_scores_state_the_k_of_the_knn_vote():
    """With fewer training images than --k the vote uses them all (every test image then gets the training
    majority): the scores said nothing of it, and read as a k=20 k-NN."""
    rng = np.random.default_rng(2)
    y = np.array([0, 0, 0, 0, 1, 1])
    x = rng.normal(size=(6, 4)) + (2 * y[:, None] - 1) * 5.0
    scores = probe_scores(x, y, x, y, k=20)
    assert scores["knn_k"] == 6 and scores["knn_accuracy"] == 4 / 6  # the majority class for every image
    assert probe_scores(x, y, x, y, k=3)["knn_k"] == 3


def test_the_probe_is_scored_on_images_it_was_not_fitted_to(tmp_path, capsys):
    """--eval_split train beside the default --train_split train scored the probe on its own training images (every
    patient in both, each image its own nearest neighbour: accuracy 1.0) without a word; splits of one's own that
    share patients are said to."""
    import datasets
    import pytest

    from hf_datasets import build_dataset
    from train import probe

    config = GroupMaskedViTConfig.from_preset("vit_tiny_patch16_224", image_size=32, patch_size=8, hidden_size=32,
                                              num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    GroupMaskedViTForPreTraining(config).save_pretrained(tmp_path / "model")
    GroupMaskedViTImageProcessor(size=32).save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="--train_split and --eval_split are both 'train'"):
        probe.main(["--model", str(tmp_path / "model"), "--dataset", "sample", "--eval_split", "train",
                    "--output", str(tmp_path / "same.json")])
    assert not (tmp_path / "same.json").exists()
    splits = build_dataset("sample")
    datasets.DatasetDict({"train": splits["train"], "held_out": splits["train"].select(range(4))}).save_to_disk(
        tmp_path / "prepared")
    probe.main(["--model", str(tmp_path / "model"), "--prepared_dir", str(tmp_path / "prepared"), "--eval_split",
                "held_out", "--k", "3", "--output", str(tmp_path / "shared.json")])
    assert "patients have images in both split 'train' and split 'held_out'" in capsys.readouterr().err
