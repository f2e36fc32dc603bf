"""Model and dataset cards: metadata that parses back, every required section, no local paths, readable HTML."""

import json
import re

import markdown
import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, metadata_load

from model_cards import SOURCES, write_dataset_card, write_model_card
from model_cards.model_card import LICENCE_FILE_HEADER, describe_metric
from model_cards.privacy import find_local_paths, is_local_path, scrub
from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
)

TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)
RUN = {
    "task": "classification",
    "metrics": {"accuracy": 0.8125, "auroc_macro": 0.9012, "sensitivity/pneumonia": 0.75,
                "specificity_pneumonia": 0.875, "auroc/normal": float("nan"), "confusion/normal/normal": 7.0,
                "confusion/normal/pneumonia": 1.0, "confusion/pneumonia/normal": 2.0,
                "confusion/pneumonia/pneumonia": 6.0, "epoch": 10.0, "num_samples": 16.0, "train_loss": 0.4},
    "eval_dataset": {"name": "kermany_pediatric", "split": "test", "num_images": 16},
    "train_datasets": [
        {"name": "kermany_pediatric", "num_images": 378, "splits": ["train", "validation"],
         "label_policy": "normal vs pneumonia"},
        {"name": "sample", "num_images": 17, "splits": ["train"], "label_policy": "uncertain -> ignore"},
    ],
    "preprocessing": {"size": 32, "num_channels": 1, "resize_mode": "pad", "normalization": "cxr", "bit_depth": 8},
    "training": {"epochs": 3, "batch_size": 8, "learning_rate": 5e-4, "precision": "bf16", "hardware": "1x H100",
                 "duration_s": 5400, "seed": 0, "init": "/home/alice/runs/pretrain/checkpoint-300"},
    "base_model": "/home/alice/runs/pretrain/export",
    "repo_id": "alice/cxrgm-pneumonia",
    "notes": "data under /data/hospital/kermany, copied from C:\\Users\\alice\\cxr",
}
SECTIONS = ("## Evaluation results", "## How to use", "## Training data", "## Preprocessing",
            "## Architecture and GMML settings", "## Training procedure and compute", "## Intended use",
            "## Limitations and bias", "## Licence", "## Citation")


def export(folder, model):
    model.save_pretrained(folder)
    GroupMaskedViTImageProcessor(size=32, num_channels=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    config = GroupMaskedViTConfig(**TINY, num_labels=2, id2label={0: "normal", 1: "pneumonia"},
                                  label2id={"normal": 0, "pneumonia": 1})
    return export(tmp_path_factory.mktemp("classifier"), GroupMaskedViTForImageClassification(config))


@pytest.fixture(scope="module")
def card_text(classifier_dir):
    return write_model_card(classifier_dir, RUN).read_text()


def test_card_metadata_parses_back_with_every_metric(classifier_dir, card_text):
    meta = metadata_load(classifier_dir / "README.md")
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "image-classification"
    assert "base_model" not in meta  # a local path is no Hub id
    # the base model's training data are not listed: its terms may restrict the weights
    assert (meta["license"], meta["license_name"]) == ("other", "training-data-terms-base-model")
    results = ModelCard.load(classifier_dir / "README.md").data.eval_results
    assert {(r.metric_type, r.metric_name, r.metric_value) for r in results} == {
        ("accuracy", "Accuracy", 0.8125), ("roc_auc", "AUROC (macro)", 0.9012),
        ("recall", "Sensitivity (pneumonia)", 0.75), ("specificity", "Specificity (pneumonia)", 0.875)}
    assert {(r.task_type, r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("image-classification", "kermany_pediatric", "Kermany pediatric pneumonia", "test")}


def test_card_documents_data_preprocessing_architecture_and_use(card_text):
    for section in SECTIONS:
        assert section in card_text
    assert "Research use only. Not for clinical use." in card_text
    assert "Evaluated on **Kermany pediatric pneumonia** (`kermany_pediatric`), split `test`, 16 images." in card_text
    assert "| | normal | pneumonia |\n|---|---|---|\n| normal | 7 | 1 |\n| pneumonia | 2 | 6 |" in card_text
    assert "| Epoch |" not in card_text and "Train loss" not in card_text and "Num samples" not in card_text
    assert 'pipeline("image-classification", model="alice/cxrgm-pneumonia", trust_remote_code=True)' in card_text
    assert "probabilities = outputs.logits.softmax(-1)[0]" in card_text
    assert "| kermany_pediatric | Kermany pediatric pneumonia" in card_text and "CC BY 4.0" in card_text
    assert "pediatric, China" in card_text and "| 378 | train, validation | normal vs pneumonia |" in card_text
    assert "| Resize | pad to 32 px (aspect ratio kept, centred on black) |" in card_text
    assert "| Normalisation | (x - mean) / std per channel, mean 0.52, std 0.227 (CXR statistics) |" in card_text
    assert "| Windowing | not recorded |" in card_text
    assert "| Max corrupted fraction r (t ~ U(0.5, r)) | 0.75 |" in card_text and "| Blocks | 2 |" in card_text
    assert "| Duration | 1 h 30 min |" in card_text and "| Hardware | 1x H100 |" in card_text
    assert "Labels: `normal`, `pneumonia`." in card_text
    assert "arXiv:2211.12944" in card_text and "arXiv:2104.03602" in card_text and "2205.14986" in card_text
    assert "17 images" in card_text and "Kermany DS" in card_text


def test_card_never_shows_local_paths(card_text):
    assert "/home/" not in card_text and "alice\\cxr" not in card_text and "/data/" not in card_text
    assert find_local_paths(card_text) == []
    assert "| Initialisation | checkpoint-300 |" in card_text and "| Base model | a local checkpoint (`export`) |" in card_text


def test_missing_facts_render_as_not_recorded(tmp_path):
    folder = export(tmp_path, GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)))
    text = write_model_card(folder, {"task": "segmentation", "train_datasets": [{"name": "my_private_set"}]}).read_text()
    assert "No evaluation results recorded." in text and "model-index" not in text
    assert "| my_private_set | local data `my_private_set`; not one of the public sets" in text
    assert "| Epochs | not recorded |" in text and "`progressive` decoder" in text
    assert 'pipeline("image-segmentation", model="your-username/cxrgm-segmentation", trust_remote_code=True)' in text
    assert metadata_load(folder / "README.md")["pipeline_tag"] == "image-segmentation"


def test_cards_describe_the_users_own_folder_data_instead_of_a_placeholder(tmp_path):
    """A run on a folder layout (cxr_folder, imagefolder, manifest, dicomdir) names its data by the folder, which no
    public source matches: the Source column read "not recorded: not recorded". It says what the data are now."""
    folder = export(tmp_path / "model", GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, num_labels=2)))
    run = {"task": "classification",
           "train_datasets": [{"name": "my_clinic_cxrs", "num_images": 10, "splits": ["train"],
                               "label_policy": "the set's own labels (no label options)"}],
           "eval_dataset": {"name": "my_clinic_cxrs", "split": "test", "num_images": 2}}
    text = write_model_card(folder, run).read_text()
    assert "not recorded: not recorded" not in text
    assert ("| my_clinic_cxrs | local data `my_clinic_cxrs` (10 images); not one of the public sets this package "
            "describes, so its origin, population and licence are not recorded |") in text
    assert "The training data (`my_clinic_cxrs`) are not a public set described here" in text
    run["train_datasets"][0]["builder"] = "imagefolder"  # where the run record names the builder, so does the card
    assert "local data `my_clinic_cxrs` read by the `imagefolder` builder (10 images)" in \
        write_model_card(folder, run).read_text()
    (tmp_path / "prepared").mkdir()
    dataset_card = write_dataset_card(tmp_path / "prepared", ["kermany", "/home/alice/my_clinic_cxrs"]).read_text()
    assert "not recorded: not recorded" not in dataset_card
    assert "| my_clinic_cxrs | local data `my_clinic_cxrs`; not one of the public sets" in dataset_card
    assert "| kermany | Kermany pediatric pneumonia: Anterior-posterior CXRs" in dataset_card


def test_segmentation_card_says_at_which_size_dice_is_computed(tmp_path):
    folder = export(tmp_path, GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)))
    run = {"task": "segmentation", "preprocessing": {"size": 224}, "metrics": {"dice": 0.91, "iou": 0.84}}
    text = write_model_card(folder, run).read_text()
    assert "| Dice | 0.9100 |" in text  # the size is the folder's processor's, not what the run record says
    assert "Dice and IoU are computed on the masks at the model's input size (32 px), padding excluded." in text



def test_segmentation_card_states_the_dice_resolution_once_under_its_results(tmp_path):
    """The note belongs to the evaluation results: it was repeated under the architecture and GMML tables, and
    stood there in a card without any results."""
    folder = export(tmp_path, GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)))
    note = "Dice and IoU are computed on the masks at the model's input size"
    run = {"task": "segmentation", "preprocessing": {"size": 224}, "metrics": {"dice": 0.91, "iou": 0.84}}
    text = write_model_card(folder, run).read_text()
    results = text.split("## Evaluation results")[1].split("## How to use")[0]
    assert text.count(note) == 1 and note in results
    text = write_model_card(folder, {"task": "segmentation", "preprocessing": {"size": 224}}).read_text()
    assert "No evaluation results recorded." in text and note not in text

def test_pretraining_card(tmp_path):
    folder = export(tmp_path, GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY)))
    metrics = {"loss": 0.31, "train_loss": 0.4, "train_mask_fraction": 0.51, "epoch": 3.0, "step": 12.0}  # a run's
    run = {"task": "pretraining", "metrics": metrics,
           "eval_dataset": {"name": "nih", "split": "validation", "num_images": 500},
           "train_datasets": [{"name": "nih", "num_images": 4000}, {"name": "vindr_cxr", "num_images": 1000}],
           "training": {"init": "random"}, "repo_id": "alice/cxrgm-vit-tiny"}
    text = write_model_card(folder, run).read_text()
    (result,) = ModelCard(text).data.eval_results
    assert (result.task_type, result.metric_type, result.metric_value) == ("image-feature-extraction", "l1", 0.31)
    assert result.metric_name == "Reconstruction L1 (corrupted pixels)"  # GMML's loss, not "Loss"
    assert "| Reconstruction L1 (corrupted pixels) | 0.3100 |" in text
    assert "Train mask fraction" not in text  # a training statistic, not an evaluation result
    assert "AutoModel.from_pretrained(\"alice/cxrgm-vit-tiny\", trust_remote_code=True)" in text
    assert "Trained on adult CXRs only" in text and "Vietnam" in text and "PhysioNet" in text
    assert "fixed sample of the training images" not in text  # evaluated on nih's validation split
    run = {**run, "eval_dataset": {"name": "nih", "split": "train+unlabelled", "num_images": 256},
           "train_datasets": [{"name": "nih", "num_images": 4000, "splits": ["train", "unlabelled"]}]}
    text = " ".join(write_model_card(folder, run).read_text().split())
    assert "was measured on a fixed sample of the training images (no evaluation split was given)" in text


def test_multi_label_accuracy_is_named_as_the_share_of_right_label_decisions(tmp_path):
    config = GroupMaskedViTConfig(**TINY, num_labels=2, id2label={0: "effusion", 1: "pneumonia"},
                                  label2id={"effusion": 0, "pneumonia": 1}, problem_type="multi_label_classification")
    folder = export(tmp_path, GroupMaskedViTForImageClassification(config))
    text = write_model_card(folder, {**RUN, "metrics": {"accuracy": 0.9}}).read_text()
    (result,) = ModelCard(text).data.eval_results
    assert (result.metric_type, result.metric_name) == ("accuracy", "Accuracy (per image and label)")
    assert "| Accuracy (per image and label) | 0.9000 |" in text
    # the card's model snippet scores each label on its own, as train.predict does
    assert "probabilities = outputs.logits.sigmoid()[0]" in text and "softmax" not in text


def test_card_states_the_bit_depth_the_processor_scales_by(classifier_dir):
    run = {**RUN, "preprocessing": {**RUN["preprocessing"], "bit_depth": None}}
    text = write_model_card(classifier_dir, run).read_text()
    assert "| Bit depth | native: 8 for 8-bit images, else the bits the largest value needs (8 to 16, e.g. 12) |" in text
    twelve_bits = np.full((8, 8), 4095, dtype=np.uint16)  # 12 bits stored in 16: white, not 1/16 of it
    processor = GroupMaskedViTImageProcessor.from_pretrained(classifier_dir)
    assert processor(twelve_bits, do_normalize=False)["pixel_values"].max().item() == 1.0


def test_card_states_the_input_convention_of_the_folders_processor(tmp_path):
    """The preprocessing table came from the run record first and left out do_normalize: a model fine-tuned from an
    --init with its own mean / std, resize mode, bit depth and equalisation said "cxr", "pad", "no" (the record's)
    beside the processor's mean / std, and one that does not normalise still named a normalisation. The card states
    the processor's settings, each of them, and as constructor arguments that prepare the same inputs."""
    from PIL import Image

    config = GroupMaskedViTConfig(**TINY, num_labels=2)
    folder = tmp_path / "custom"
    GroupMaskedViTForImageClassification(config).save_pretrained(folder)
    saved = GroupMaskedViTImageProcessor(size=32, image_mean=[0.4], image_std=[0.3], resize_mode="squash",
                                         bit_depth=12, equalize=True)
    saved.save_pretrained(folder)
    run = {**RUN, "preprocessing": {"size": 224, "num_channels": 1, "resize_mode": "pad", "normalization": "cxr",
                                    "bit_depth": None, "equalize": False, "windowing": "as stored"}}
    text = write_model_card(folder, run).read_text()
    assert "| Normalisation | (x - mean) / std per channel, mean 0.4, std 0.3 (custom) |" in text
    assert "| Resize | squash to 32 px (stretched) |" in text
    assert "| Bit depth | 12 (wider integer images that do not state their own; 8-bit images: 8) |" in text
    assert "| Histogram equalisation | yes, per image |" in text
    assert "| Windowing | as stored |" in text  # before the processor: the run's record
    (settings,) = re.findall(r"`GroupMaskedViTImageProcessor\((.*)\)`", text)
    rebuilt = eval(f"GroupMaskedViTImageProcessor({settings})")  # noqa: S307 - the card's own text
    image = Image.fromarray((np.arange(40 * 24).reshape(40, 24) * 4).astype(np.uint16))  # 12 bits used
    for do_normalize in (True, False):
        assert torch.equal(rebuilt(image, do_normalize=do_normalize).pixel_values,
                           saved(image, do_normalize=do_normalize).pixel_values)

    GroupMaskedViTImageProcessor(size=32, do_normalize=False, normalization="imagenet").save_pretrained(folder)
    text = write_model_card(folder, run).read_text()
    assert "| Normalisation | none: pixel values in [0, 1] (do_normalize false) |" in text
    assert "do_normalize=False" in text
    GroupMaskedViTImageProcessor(size=32, num_channels=3, normalization="imagenet").save_pretrained(folder)
    assert "mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225 (ImageNet statistics) |" in write_model_card(
        folder, run).read_text()

    (folder / "preprocessor_config.json").unlink()  # no processor: the run's record, said to be one
    text = write_model_card(folder, run).read_text()
    assert "This folder has no `preprocessor_config.json`: the settings below are those its training run" in text
    assert "| Resize | pad to 224 px |" in text and "| Normalisation | cxr |" in text
    assert "GroupMaskedViTImageProcessor(" not in text


def test_html_rendering_shows_metrics_table_and_disclaimer(classifier_dir, card_text, tmp_path):
    body = card_text.split("---", 2)[2]
    html = markdown.markdown(body, extensions=["tables", "fenced_code"])
    (tmp_path / "card.html").write_text(html)
    tables = re.findall(r"<table>.*?</table>", html, flags=re.S)
    metrics_table = next(t for t in tables if "<th>Metric</th>" in t)
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", metrics_table)
    assert rows == [("Accuracy", "0.8125"), ("AUROC (macro)", "0.9012"), ("Sensitivity (pneumonia)", "0.7500"),
                    ("Specificity (pneumonia)", "0.8750"), ("AUROC (normal)", "n/a")]
    assert re.search(r"<blockquote>\s*<p><strong>Research use only\. Not for clinical use\.</strong>", html)
    assert '<code class="language-python">' in html and "trust_remote_code=True" in html
    confusion = next(t for t in tables if "<th>predicted</th>" in t or "<th>pneumonia</th>" in t)
    assert re.findall(r"<td>(\w+)</td>", confusion) == ["normal", "7", "1", "pneumonia", "2", "6"]
    assert len(tables) >= 7 and "<h2>Limitations and bias</h2>" in html
    assert not re.search(r"\{\{ \w|\{%", html)  # no template left-overs


def test_dataset_card_names_each_source_and_licence(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = {"patient_id": ["a", "b", "c"], "label": [0, 1, 0]}
    DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows).select([0])}).save_to_disk(tmp_path)
    text = write_dataset_card(tmp_path, ["kermany", "hannover_covid", "/home/alice/secret_set"]).read_text()
    meta = metadata_load(tmp_path / "README.md")
    assert meta["license"] == "other" and "chest-x-ray" in meta["tags"]
    assert "CC BY 4.0" in text and "CC BY 3.0" in text and "Germany" in text and "secret_set" in text
    assert "/home" not in text and "| train | 3 |" in text and "| test | 1 |" in text
    assert "Not for clinical use" in text
    # the sources' licences differ: `other`, linked to a file listing each source's terms, published with the card
    assert (meta["license_name"], meta["license_link"]) == ("per-source", "LICENSE.md")
    terms = (tmp_path / "LICENSE.md").read_text()
    assert "- kermany: CC BY 4.0\n" in terms and "- hannover_covid: CC BY 3.0\n" in terms
    assert "- secret_set: not recorded\n" in terms and "/home" not in terms
    single = write_dataset_card(tmp_path, ["kermany_pediatric"], splits={"train": 10})
    assert metadata_load(single)["license"] == "cc-by-4.0" and "license_link" not in metadata_load(single)
    assert not (tmp_path / "LICENSE.md").exists()  # ours, no longer linked: removed
    (tmp_path / "LICENSE.md").write_text("The publisher's own terms\n")
    write_dataset_card(tmp_path, ["kermany", "chexpert"])
    assert (tmp_path / "LICENSE.md").read_text() == "The publisher's own terms\n"  # never overwritten
    write_dataset_card(tmp_path, ["kermany"])
    assert (tmp_path / "LICENSE.md").read_text() == "The publisher's own terms\n"  # nor removed


def test_source_table_covers_every_known_name():
    names = {"nih", "chexpert", "mimic_cxr_jpg", "padchest", "vindr_cxr", "rsna_pneumonia", "covidx", "kermany",
             "montgomery", "shenzhen", "jsrt", "sample", "nih_cxr14", "kermany_pediatric", "ieee8023_covid",
             "v7labs_covid_lungseg", "hannover_covid", "actualmed_covid", "figure1_covid"}
    assert names <= set(SOURCES)
    for source in SOURCES.values():
        assert source.licence and source.citation and source.population in {"adult", "pediatric", "mixed"}
        assert isinstance(source.permissive, bool)
    assert not any(SOURCES[name].permissive for name in ("chexpert", "mimic_cxr_jpg", "padchest", "vindr_cxr",
                                                         "rsna_pneumonia", "jsrt", "covidx", "ieee8023_covid"))
    assert all(SOURCES[name].permissive for name in ("nih", "kermany", "hannover_covid", "montgomery", "sample"))


def test_paths_and_metric_names():
    assert is_local_path("/home/a/x.pt") and is_local_path("runs/a/b") and is_local_path("C:\\x\\y")
    assert not is_local_path("alice/model") and not is_local_path("https://huggingface.co/a/b")
    assert scrub({"a": ["/tmp/x/y.json", "see /srv/data/z ok"], "b": 1}) == {"a": ["y.json", "see z ok"], "b": 1}
    assert find_local_paths("normal / pneumonia, AP/PA, doi:10.6084/m9.figshare.1") == []
    assert describe_metric("eval_dice_left_lung") == ("dice", "Dice (left lung)")
    assert describe_metric("iou") == ("iou", "IoU")
    assert describe_metric("specificity_at_sensitivity_95/pleural_effusion") == (
        "specificity_at_sensitivity_95", "Specificity at 95% sensitivity (pleural_effusion)")
    assert json.dumps(scrub(RUN)).count("/home/") == 0


def test_prepared_shards_with_their_card_load_with_load_dataset(tmp_path):
    """A prepared folder as it is published: `load_dataset` on it (as on its Hub repo) gives the prepared splits,
    not the report and state JSON files read as data."""
    from datasets import load_dataset, load_from_disk

    from hf_datasets.prepare import prepare

    folder = tmp_path / "prepared"
    prepare("sample", None, folder, size=32, shard_size=4)
    write_dataset_card(folder, ["sample"])
    loaded = load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    prepared = load_from_disk(str(folder))
    assert {name: split.num_rows for name, split in loaded.items()} == {"train": 12, "test": 4, "unlabelled": 1}
    assert loaded["train"].features == prepared["train"].features
    assert sorted(loaded["test"]["path"]) == sorted(prepared["test"]["path"])
    assert loaded["test"][0]["image"].mode == "L" and max(loaded["test"][0]["image"].size) == 32
    # a split without rows (its one empty shard) is left out of the card: load_dataset refused the whole folder
    import datasets

    from hf_datasets import build_dataset
    from hf_datasets.prepare import prepare_iterable

    built = build_dataset("sample")
    empty = datasets.IterableDataset.from_generator(lambda: iter(()), features=built["train"].features)
    source = datasets.IterableDatasetDict({"train": built["train"].to_iterable_dataset(), "validation": empty})
    prepare_iterable(source, tmp_path / "empty_split", info=built["train"].info, size=32, progress=False)
    assert load_from_disk(str(tmp_path / "empty_split"))["validation"].num_rows == 0
    write_dataset_card(tmp_path / "empty_split", ["sample"])
    loaded = load_dataset(str(tmp_path / "empty_split"), cache_dir=str(tmp_path / "cache"))
    assert list(loaded) == ["train"] and loaded["train"].num_rows == 12


def test_dataset_card_of_prepared_shards_names_the_labels_in_order(tmp_path):
    """The `labels` vector of a published set means nothing without its label names (which `load_dataset` on the
    Hub repo does not carry): the card states them, in order."""
    from hf_datasets.prepare import prepare

    prepare("sample", None, tmp_path, size=32)
    text = write_dataset_card(tmp_path, ["sample"]).read_text()
    assert "in this order: `normal`, `pneumonia` (1 present" in text
    assert "| train | 12 |" in text


def test_cards_list_label_names_with_commas_unambiguously(tmp_path):
    """Label names were joined with ", ": "normal, Pneumonia, viral" read as three labels, not two. Each is
    inline code now, on one line."""
    import datasets

    from hf_datasets.schema import make_info

    names = ["normal", "Pneumonia, viral", "two\nlines `x`"]
    ds = datasets.Dataset.from_dict({"x": [1]}, info=make_info("cxr_folder", names))
    datasets.DatasetDict({"train": ds}).save_to_disk(tmp_path / "data")
    text = write_dataset_card(tmp_path / "data", ["my_cxrs"]).read_text()
    assert "over 3 labels, in this order: `normal`, `Pneumonia, viral`, `two lines 'x'` (1 present" in text
    config = GroupMaskedViTConfig(**TINY, num_labels=3, id2label=dict(enumerate(names)),
                                  label2id={name: i for i, name in enumerate(names)})
    folder = export(tmp_path / "model", GroupMaskedViTForImageClassification(config))
    assert "Labels: `normal`, `Pneumonia, viral`, `two lines 'x'`." in write_model_card(folder, RUN).read_text()


def test_card_of_a_model_trained_from_random_init_claims_no_gmml_pretraining(classifier_dir):
    """A classifier fine-tuned from --init random never saw GMML: its card called it "a group-masked (GMML) vision
    transformer", tagged it self-supervised and listed the config's unused masking defaults as its GMML settings,
    with "Base model: not recorded" where the record says there is none."""
    run = {**RUN, "training": {**RUN["training"], "init": "random"}}
    run.pop("base_model")
    text = write_model_card(classifier_dir, run).read_text()
    meta = metadata_load(classifier_dir / "README.md")
    assert "gmml" not in meta["tags"] and "self-supervised" not in meta["tags"]
    assert "A group-masked (GMML) vision transformer" not in text and "Max corrupted fraction" not in text
    assert "trained from random initialisation, without GMML pretraining" in text
    assert "| Initialisation | random |" in text and "| Base model | none (random initialisation) |" in text
    gmml = write_model_card(classifier_dir, {**RUN, "training": {**RUN["training"], "init": "gmml"}}).read_text()
    assert "A group-masked (GMML) vision transformer" in gmml and "| Max corrupted fraction r" in gmml
    assert "gmml" in metadata_load(classifier_dir / "README.md")["tags"]


def test_card_lists_the_data_its_init_model_was_trained_on(classifier_dir):
    """A classifier fine-tuned on Kermany from a GMML encoder pretrained on CheXpert listed Kermany alone (CC BY 4.0)
    and said it was "trained on pediatric CXRs only": the weights also carry the pretraining data, whose licence
    (non-commercial) and adult population the card left out."""
    earlier = [{"name": "chexpert", "num_images": 5000, "splits": ["train"], "label_policy": "default",
                "stage": "pretraining"}]
    run = {**RUN, "train_datasets": RUN["train_datasets"][:1], "earlier_datasets": earlier,
           "training": {**RUN["training"], "init": "gmml"}}
    text = write_model_card(classifier_dir, run).read_text()
    assert "| Data set | Source | Population | Licence | Images | Splits | Label policy | Stage |" in text
    assert "| normal vs pneumonia | classification (this model) |" in text
    assert "| chexpert | CheXpert" in text and "| pretraining (the --init model) |" in text and "non-commercial" in text
    assert "pediatric CXRs only" not in text and "mix adult and pediatric" in text
    assert "Irvin J" in text and "Sites: China, USA." in text
    on_sample = {**run, "earlier_datasets": [{**earlier[0], "name": "sample"}]}
    assert "an encoder pretrained on it has learnt next to nothing" in write_model_card(classifier_dir,
                                                                                        on_sample).read_text()
    # a base model whose training data were not recorded (a Hub repo): the card points at its card
    alone = {**RUN, "train_datasets": RUN["train_datasets"][:1], "base_model": "alice/gmml-cxr",
             "training": {**RUN["training"], "init": "gmml"}}
    text = write_model_card(classifier_dir, alone).read_text()
    assert "The base model (`alice/gmml-cxr`) was trained on data not listed here: see its card" in text


def test_card_confusion_matrix_keeps_a_class_whose_name_holds_a_slash(tmp_path):
    """`confusion/a/b/normal` was split at every "/": the class "a/b" fell out of the matrix."""
    config = GroupMaskedViTConfig(**TINY, num_labels=2, id2label={0: "normal", 1: "a/b"},
                                  label2id={"normal": 0, "a/b": 1})
    folder = export(tmp_path / "model", GroupMaskedViTForImageClassification(config))
    counts = {"accuracy": 0.8125, "confusion/normal/normal": 7.0, "confusion/normal/a/b": 1.0, "confusion/a/b/normal": 2.0,
              "confusion/a/b/a/b": 6.0}
    text = write_model_card(folder, {**RUN, "metrics": counts}).read_text()
    assert "| | a/b | normal |\n|---|---|---|\n| a/b | 6 | 2 |\n| normal | 1 | 7 |" in text


def test_the_sample_sets_cards_state_the_licence_and_site_of_its_chest_cr(tmp_path):
    """The sample set's own licence record gives the CR's (MIT, pydicom-data), but the cards' licence column said only
    that it is a pydicom-data test file: no licence for one of its images; and they placed the adult CR in China."""
    from model_cards import write_dataset_card

    write_dataset_card(tmp_path, ["sample"])
    row = next(line for line in (tmp_path / "README.md").read_text().splitlines() if line.startswith("| sample |"))
    population, licence = row.strip("| ").split(" | ")[-2:]
    assert "Kermany images CC BY 4.0" in licence and "MIT" in licence
    assert population == "mixed, China (the Kermany images; the CR's site is not stated)"


def test_dataset_card_takes_its_sources_from_the_preparation(tmp_path):
    """A prepared folder records its builder and options, yet its card needed the sources named by hand. Without
    sources the card now names those recorded: the builder, a folder layout's data folder, a cxr_pool's pooled
    folders; a folder recording none is refused."""
    from datasets import Dataset, DatasetDict

    from hf_datasets.builders.sample import KERMANY_SHA256, sample_files
    from hf_datasets.prepare import prepare

    def rows(text):  # the names in the Sources table
        table = text.split("## Sources")[1].split("## Labels")[0]
        return [line.split(" | ")[0].strip("| ") for line in table.splitlines() if line.startswith("| ")][1:]

    prepare("sample", None, tmp_path / "sample", size=32, progress=False)
    text = write_dataset_card(tmp_path / "sample").read_text()
    assert rows(text)[0] == "sample" and "Kermany images CC BY 4.0" in text

    files, names = sample_files(), list(KERMANY_SHA256)
    for folder, chosen in (("kermany_pediatric", names[:4]), ("hannover_covid", names[4:6])):
        for name in chosen:
            (tmp_path / "pool" / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / "pool" / folder / name).write_bytes(files[name].read_bytes())
        labels = ["normal" if "bacteria" not in name else "pneumonia" for name in chosen]
        (tmp_path / "pool" / folder / "labels.csv").write_text(
            "file,label\n" + "".join(f"{name},{label}\n" for name, label in zip(chosen, labels)))
    prepare("cxr_pool", tmp_path / "pool", tmp_path / "pooled", size=32, progress=False,
            folders=["kermany_pediatric", "hannover_covid"])
    text = write_dataset_card(tmp_path / "pooled").read_text()
    assert rows(text) == ["kermany_pediatric", "hannover_covid"] and "CC BY 3.0" in text
    # without `folders` (every folder with a labels.csv) the pool's settings name none: the card lists those its
    # images' paths give, not `cxr_pool` as if it were a data set, nor the pool's own folder
    prepare("cxr_pool", tmp_path / "pool", tmp_path / "every", size=32, progress=False)
    text = write_dataset_card(tmp_path / "every").read_text()
    assert rows(text) == ["hannover_covid", "kermany_pediatric"] and "CC BY 3.0" in text
    assert "`cxr_pool`" not in text and "`pool`" not in text
    # where the paths name no folder either, the card says the pooled folders are unknown
    DatasetDict({"train": Dataset.from_dict({"path": ["a.png"]})}).save_to_disk(tmp_path / "flat")
    (tmp_path / "flat" / "prepare_settings.json").write_text(json.dumps({"dataset": "cxr_pool", "options": {},
                                                                          "folder": "pool"}))
    text = write_dataset_card(tmp_path / "flat").read_text()
    assert rows(text) == ["cxr_pool"] and "local data `cxr_pool`" not in text
    assert "| cxr_pool | images pooled by the `cxr_pool` builder from folders that were not recorded" in text
    prepare("cxr_folder", tmp_path / "pool" / "kermany_pediatric", tmp_path / "folder", size=32, progress=False,
            split_fractions={"train": 1.0})
    assert metadata_load(write_dataset_card(tmp_path / "folder"))["license"] == "cc-by-4.0"

    DatasetDict({"train": Dataset.from_dict({"patient_id": ["a"]})}).save_to_disk(tmp_path / "saved")
    with pytest.raises(ValueError, match=r"'saved' records no builder .*: name its sources"):
        write_dataset_card(tmp_path / "saved")


def test_dataset_card_states_the_image_size_and_bit_depth_of_the_shards(tmp_path):
    """A user of published shards could not tell from their card at which size and bit depth the images were
    stored (what a model's processor must scale by); the card states both where prepare_settings.json records them."""
    from datasets import Dataset, DatasetDict

    from hf_datasets.prepare import prepare

    for size, bits, maximum in ((32, 8, 255), (40, 16, 65535)):
        prepare("sample", None, tmp_path / f"{bits}", size=size, bits=bits, progress=False)
        text = write_dataset_card(tmp_path / f"{bits}").read_text()
        assert (f"Grey images resized so that their longer side is {size} pixels, stored as {bits}-bit PNG (pixel "
                f"values 0 to\n{maximum}).") in text
    DatasetDict({"train": Dataset.from_dict({"patient_id": ["a"]})}).save_to_disk(tmp_path / "saved")
    assert "Image size and bit depth: not recorded." in write_dataset_card(tmp_path / "saved", ["kermany"]).read_text()


def test_the_licence_of_a_cards_weights_follows_the_terms_of_their_training_data(classifier_dir, caplog):
    """Every card said `license: apache-2.0` unless the run record named another: a model trained on CheXpert
    (non-commercial research use) was published under a licence that allows commercial use. The default follows the
    data now: the package's licence where every source's terms are known and permissive, else `other`, naming the
    data whose terms apply; a licence the record states is kept, and the text still names those terms."""
    from huggingface_hub import ModelCardData

    kermany = {"name": "kermany_pediatric", "num_images": 378, "splits": ["train"],
               "label_policy": "the set's own labels (no label options)"}
    permissive = {**RUN, "train_datasets": [kermany, {"name": "hannover_covid", "num_images": 20}],
                  "training": {**RUN["training"], "init": "random"}}
    permissive.pop("base_model")

    def card(run):  # (metadata, Licence section on one line, card)
        text = write_model_card(classifier_dir, run).read_text()
        loaded = ModelCard.load(classifier_dir / "README.md")  # what the Hub reads: it parses, model-index too
        assert loaded.data.eval_results and ModelCardData(**loaded.data.to_dict()).license == loaded.data.license
        licence = " ".join(text.split("## Licence")[1].split("## Citation")[0].split())
        return metadata_load(classifier_dir / "README.md"), licence, text

    meta, licence, text = card(permissive)
    assert meta["license"] == "apache-2.0" and "license_name" not in meta
    assert licence.startswith("Model weights and code: apache-2.0. The terms of every training source")

    restricted = {**permissive, "earlier_datasets": [{"name": "chexpert", "num_images": 500, "stage": "pretraining"}],
                  "train_datasets": [kermany, {"name": "my_clinic_cxrs", "num_images": 30}]}
    meta, licence, text = card(restricted)
    assert (meta["license"], meta["license_name"]) == ("other", "training-data-terms-chexpert-my-clinic-cxrs")
    # the Hub links `license: other` to a file of the repo: the Licence section on its own
    assert meta["license_link"] == "LICENSE.md"
    licence_file = (classifier_dir / "LICENSE.md").read_text()
    assert licence_file.startswith("<!-- Written by cxrgm's model card")
    assert "# Licence (`training-data-terms-chexpert-my-clinic-cxrs`)" in licence_file
    assert " ".join(licence_file.split("\n\n", 2)[2].split()) == licence
    assert ("subject to the terms of the data they were trained on (hence `license: other`), which are not all "
            "permissive: CheXpert (`chexpert`: Stanford University CheXpert Dataset Research Use Agreement "
            "(non-commercial)); local data `my_clinic_cxrs` (terms not recorded).") in licence
    assert "Kermany" not in licence  # CC BY 4.0: no restriction to name
    assert "Model code (the `.py` files): apache-2.0" in licence

    meta, licence, text = card({**restricted, "license": "mit"})  # the publisher's choice wins, the data's terms stay
    assert meta["license"] == "mit" and "license_name" not in meta
    assert "license_link" not in meta and not (classifier_dir / "LICENSE.md").exists()  # ours, removed
    assert licence.startswith("Model weights and code: mit, as stated by the publisher.")
    assert "CheXpert (`chexpert`: Stanford University CheXpert Dataset Research Use Agreement (non-commercial))" \
        in licence and "Those terms apply to the weights as well, whatever licence is stated here." in licence
    meta, licence, text = card({**permissive, "license": "cc-by-4.0"})
    assert meta["license"] == "cc-by-4.0" and "not all permissive" not in licence
    own = "Acme's own licence text.\n"  # a publisher's file of that name is never overwritten or removed
    (classifier_dir / "LICENSE.md").write_text(own)
    with caplog.at_level("WARNING"):
        meta, licence, text = card(restricted)
    assert meta["license_link"] == "LICENSE.md" and (classifier_dir / "LICENSE.md").read_text() == own
    assert "holds a LICENSE.md of its own, which the card's license_link now names" in caplog.text
    card(permissive)
    assert (classifier_dir / "LICENSE.md").read_text() == own
    (classifier_dir / "LICENSE.md").unlink()

    # a Hub base model whose data the record does not list, and a pool whose folders were not recorded
    meta, licence, text = card({**permissive, "base_model": "alice/gmml-cxr", "training": {**RUN["training"]},
                          "train_datasets": [{"name": "cxr_pool", "num_images": 40, "builder": "cxr_pool"}]})
    assert meta["license_name"] == "training-data-terms-cxr-pool-base-model"
    assert "images pooled by `cxr_pool` from folders that were not recorded (terms not known); the base model's " \
           "training data (`alice/gmml-cxr`: see its card)" in licence
    assert "| cxr_pool | images (40 images) pooled by the `cxr_pool` builder from folders that were not recorded" \
        in text and "local data `cxr_pool`" not in text


def test_a_licence_the_publisher_names_on_publishing_is_the_cards_and_the_data_terms_stay(classifier_dir, tmp_path):
    """train.publish had no --license: a card's licence came from its training data, or from a `license` field that
    the publisher had to write into run.json. The card is now written again from run.json with the licence named
    (as it is for train.evaluate results; here there are none), `other` with its name, the data's terms still named;
    a licence that is no lower-case Hub id, `other` without a name, a name of another licence, and an export
    without run.json are refused."""
    import shutil

    from hf_datasets.errors import InvalidInputError, MissingInputError
    from model_cards.publish import check_licence, update_card_from_run

    folder = shutil.copytree(classifier_dir, tmp_path / "model")
    run = {**RUN, "train_datasets": [{"name": "chexpert", "num_images": 500}]}
    (folder / "run.json").write_text(json.dumps(run))
    write_model_card(folder, run)
    before = (folder / "README.md").read_text()
    update_card_from_run(folder)  # no results, no licence: the card stays
    assert (folder / "README.md").read_text() == before
    update_card_from_run(folder, "other", "acme-research-only", "https://acme.example/terms")
    text = (folder / "README.md").read_text()
    meta = metadata_load(folder / "README.md")
    assert (meta["license"], meta["license_name"]) == ("other", "acme-research-only")
    assert meta["license_link"] == "https://acme.example/terms"
    licence = " ".join(text.split("## Licence")[1].split("## Citation")[0].split())
    assert licence.startswith("Model weights and code: other (acme-research-only), as stated by the publisher. Its "
                              "terms: [https://acme.example/terms](https://acme.example/terms).")
    assert "CheXpert (`chexpert`: Stanford University CheXpert Dataset Research Use Agreement (non-commercial))" \
        in licence and "Those terms apply to the weights as well, whatever licence is stated here." in licence
    check_licence("cc-by-nc-4.0")
    check_licence(None)
    check_licence("other", "acme", "https://acme.example/licence.txt")
    for licence, name, link, message in (
            ("CC-BY-NC-4.0", None, None, "--license must be a licence id as the Hub spells them, in lower case"),
            ("other", "Acme Terms", "https://acme.example", "--license_name must be a licence id"),
            ("other", None, "https://acme.example", "--license other needs --license_name"),
            ("other", "acme", None, "--license other needs --license_link, where its text is: an https:// address "
                                    "or LICENSE.md"),
            ("other", "acme", "http://acme.example/terms", "--license_link must be an https:// address or LICENSE.md"),
            ("other", "acme", "terms.txt", "--license_link must be an https:// address or LICENSE.md"),
            ("mit", "acme", None, "--license_name names the licence of --license other, not of mit"),
            ("mit", None, "https://acme.example", "--license_link names the licence of --license other, not of mit"),
            (None, "acme", None, "--license_name goes with --license other: give both"),
            (None, None, "LICENSE.md", "--license_link goes with --license other")):
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            check_licence(licence, name, link)
    # LICENSE.md: the publisher's own text in the model folder, not missing, not the one the card wrote
    with pytest.raises(MissingInputError, match="--license_link LICENSE.md: the model folder has no LICENSE.md"):
        check_licence("other", "acme", "LICENSE.md", folder)
    (folder / "LICENSE.md").write_text(LICENCE_FILE_HEADER + "\n\nthe training data's terms\n")
    with pytest.raises(InvalidInputError, match="LICENSE.md is the one its card wrote, the training data's terms"):
        check_licence("other", "acme", "LICENSE.md", folder)
    (folder / "LICENSE.md").write_text("Acme research-only licence\n")
    check_licence("other", "acme", "LICENSE.md", folder)
    update_card_from_run(folder, "other", "acme", "LICENSE.md")
    assert metadata_load(folder / "README.md")["license_link"] == "LICENSE.md"
    assert (folder / "LICENSE.md").read_text() == "Acme research-only licence\n"  # theirs, kept
    (folder / "LICENSE.md").unlink()
    (folder / "run.json").unlink()
    with pytest.raises(MissingInputError, match="model has no run.json to write its card from, to state the licence "
                                                "mit: export the model again, or publish it without --license"):
        update_card_from_run(folder, "mit")


def evaluate_outputs(folder, split, names, sources, bootstrap, seed=0, text=None):
    """What train.evaluate writes into a model folder for `split` (its functions, on random scores): metrics.json
    and drift.json in `eval-<split>`, for single-label classes `names` and images of `sources`. Returns metrics."""
    import datasets

    from train.evaluate import drift_report
    from train.export import write_metrics
    from train.metrics import compute_metrics

    rng = np.random.default_rng(seed)
    labels = np.arange(len(sources)) % len(names)
    scores = rng.random((len(sources), len(names))) + np.eye(len(names))[labels] * 0.5
    results = {"probabilities": scores / scores.sum(1, keepdims=True), "labels": labels,
               "index": np.arange(len(sources))}
    metrics = compute_metrics("classification", results, names, True, bootstrap)
    write_metrics(metrics, folder / f"eval-{split}" / "metrics.json", text=text)
    drift = drift_report("classification", results, datasets.Dataset.from_dict({"source": sources}), names, True,
                         bootstrap=bootstrap)
    (folder / f"eval-{split}" / "drift.json").write_text(json.dumps(drift))
    return json.loads((folder / f"eval-{split}" / "metrics.json").read_text())


def test_card_shows_train_evaluate_results_with_their_intervals_apart_from_the_runs(classifier_dir, tmp_path,
                                                                                   caplog):
    """The card carried the training run's own evaluation only, never what `train.evaluate` measured on a held-out
    split afterwards. It shows those results now (found in the folder, train.evaluate's default output), with their
    bootstrap intervals, the split and the sources they were computed on, under their own heading; the training
    run's evaluation keeps its own. Fields of metrics.json it does not know are shown as they are."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(classifier_dir, folder)
    sources = ["kermany"] * 8 + ["nih"] * 4
    held_out = evaluate_outputs(folder, "test", ["normal", "pneumonia"], sources, bootstrap=50,
                                text={"label_policy": "labels=default"})
    assert held_out["accuracy_ci_low"] <= held_out["accuracy"] <= held_out["accuracy_ci_high"]
    evaluate_outputs(folder, "validation", ["normal", "pneumonia"], ["kermany"] * 6, bootstrap=0, seed=1)
    (folder / "eval-validation" / "drift.json").unlink()
    validation = json.loads((folder / "eval-validation" / "metrics.json").read_text())
    (folder / "eval-validation" / "metrics.json").write_text(json.dumps(  # fields a later version may add
        {**validation, "threshold": 0.5, "bootstrap_unit": "patient", "calibration_bins": [0.1, 0.9],
         "labels_without_ppv": {"pneumonia": "not predicted for any image"}}))
    (folder / "eval-broken").mkdir()
    (folder / "eval-broken" / "metrics.json").write_text("{")

    text = write_model_card(folder, RUN).read_text()
    assert "eval-broken/metrics.json cannot be read" in caplog.text
    results = text.split("## Evaluation results")[1].split("## How to use")[0]
    test, validation_part, run_part = (" ".join(part.split()) for part in results.split("\n### ")[1:])
    assert test.startswith("Split `test`, scored with `train.evaluate` Scored after training by `python -m "
                           "train.evaluate` (its `eval-test/metrics.json`): 12 images of split `test`; data: Kermany "
                           "pediatric pneumonia (`kermany`): 8 images; NIH ChestX-ray14 (`nih`): 4 images.")
    assert "| Metric | Value | 95% interval (bootstrap) |" in test
    for key, name in (("accuracy", "Accuracy"), ("auroc_macro", "AUROC (macro)")):
        assert (f"| {name} | {held_out[key]:.4f} | {held_out[key + '_ci_low']:.4f} to "
                f"{held_out[key + '_ci_high']:.4f} |") in test
    assert f"| Sensitivity (pneumonia) | {held_out['sensitivity/pneumonia']:.4f} | n/a |" in test
    assert "ci low" not in text.lower() and "Num samples" not in text
    assert "- Labels read with: labels=default" in test
    assert "| | normal | pneumonia |" in test
    # per source, as drift.json has them: an out-of-domain site's numbers were only pooled with the in-domain ones
    drift = json.loads((folder / "eval-test" / "drift.json").read_text())
    nih, delta = drift["metrics"]["nih"], drift["delta_vs_in_domain"]["nih"]
    assert "its change (Δ) against the in-domain source, Kermany pediatric pneumonia (`kermany`)." in test
    assert "| Source | Images | AUROC (macro) | Accuracy | F1 (macro) |" in test
    assert (f"| Kermany pediatric pneumonia (`kermany`), in-domain | 8 | "
            f"{drift['metrics']['kermany']['auroc_macro']:.4f}") in test
    assert (f"| NIH ChestX-ray14 (`nih`) | 4 | {nih['auroc_macro']:.4f}") in test
    for key in ("auroc_macro", "accuracy", "f1_macro"):
        assert f"Δ {delta[key]:+.4f}" in test
    assert validation_part.startswith("Split `validation`, scored with `train.evaluate`")
    assert "Per source" not in validation_part  # its drift.json is gone
    assert "6 images of split `validation`; data: not recorded (no readable drift.json beside its metrics.json)" \
        in validation_part and "No bootstrap intervals in its metrics.json" in validation_part
    assert "- Decision threshold: 0.5 - Bootstrap resampling unit: patient - `calibration_bins`: 0.1, 0.9" \
        in validation_part and "| Decision threshold |" not in text
    assert "- No PPV (TP + FP = 0): `pneumonia` (not predicted for any image)" in validation_part
    assert run_part.startswith("The training run's evaluation Evaluated on **Kermany pediatric pneumonia** "
                               "(`kermany_pediatric`), split `test`, 16 images. | Metric | Value |")
    assert "| Accuracy | 0.8125 |" in run_part and "train.evaluate" not in run_part

    index = {(r.dataset_type, r.dataset_split, r.metric_name): r.metric_value
             for r in ModelCard.load(folder / "README.md").data.eval_results}
    assert index[("kermany+nih", "test", "Accuracy")] == round(held_out["accuracy"], 6)
    assert index[("not-recorded", "validation", "Accuracy")] == round(validation["accuracy"], 6)
    assert index[("kermany_pediatric", "test", "Accuracy")] == 0.8125  # the training run's, as before
    for source in ("kermany", "nih"):  # and each source's own headline numbers, as drift.json has them
        for key, name in (("auroc_macro", "AUROC (macro)"), ("accuracy", "Accuracy"), ("f1_macro", "F1 (macro)")):
            assert index[(source, "test", name)] == round(drift["metrics"][source][key], 6)
    assert not any(key[:2] == ("nih", "validation") for key in index)  # that report has no drift.json
    assert not any(name.endswith("ci low") or name == "Decision threshold" for _, _, name in index)

    # a model evaluated on the split it was trained on, of its own sources, is said to be scored on what it learnt
    trained = {**RUN, "train_sources": {"kermany": 300, "nih": 78},
               "train_datasets": [{**RUN["train_datasets"][0], "splits": ["train", "test"]}]}
    assert "these results are on images it learned from" in write_model_card(folder, trained).read_text()
    assert "these results are on images it learned from" not in text


def test_card_shows_train_evaluate_metrics_per_source_against_the_in_domain_source(classifier_dir, tmp_path):
    """The card gave train.evaluate's images per source only, though its drift.json holds each source's metrics and
    their change against the in-domain source: a model that scores well by telling the sites apart looked as good as
    its overall metrics. One table gives them now, the in-domain source named, a macro average's change with the
    labels it averaged, and a source of one class with the labels it has no AUROC of, as drift.json says."""
    import shutil

    folder = shutil.copytree(classifier_dir, tmp_path / "model")
    # in the sources' alternation, every hannover_covid image is `normal`, every nih image `pneumonia`
    sources = ["kermany"] * 8 + ["hannover_covid", "nih"] * 3
    evaluate_outputs(folder, "test", ["normal", "pneumonia"], sources, bootstrap=20)
    drift = json.loads((folder / "eval-test" / "drift.json").read_text())
    assert drift["in_domain"] == "kermany" and "auroc_macro" not in drift["metrics"]["hannover_covid"]
    text = write_model_card(folder, RUN).read_text()
    assert ModelCard.load(folder / "README.md").data.eval_results  # the metadata still parses
    part = " ".join(text.split("### Split `test`")[1].split("### The training run's evaluation")[0].split())
    assert ("Per source, from its `drift.json`: each metric with its 95% interval (bootstrap) where computed, and its "
            "change (Δ) against the in-domain source, Kermany pediatric pneumonia (`kermany`).") in part
    assert "| Source | Images | AUROC (macro) | Accuracy | F1 (macro) | No AUROC (why) |" in part

    def cell(source, key):
        values = drift["metrics"][source]
        text = f"{values[key]:.4f}"
        if key + "_ci_low" in values:
            text += f" ({values[key + '_ci_low']:.4f} to {values[key + '_ci_high']:.4f})"
        if key in drift["delta_vs_in_domain"].get(source, {}):
            text += f", Δ {drift['delta_vs_in_domain'][source][key]:+.4f}"
            over = drift["delta_labels"][source].get(key, "all")
            text += "" if over == "all" else " over " + ", ".join(f"`{name}`" for name in over)
        return text

    assert (f"| Kermany pediatric pneumonia (`kermany`), in-domain | 8 | {cell('kermany', 'auroc_macro')} | "
            f"{cell('kermany', 'accuracy')} | {cell('kermany', 'f1_macro')} | - |") in part
    assert "(" in cell("kermany", "auroc_macro") and " over `normal`" in cell("hannover_covid", "f1_macro")
    assert (f"| Hannover COVID-19 CXRs (`hannover_covid`) | 3 | n/a | {cell('hannover_covid', 'accuracy')} | "
            f"{cell('hannover_covid', 'f1_macro')} | `normal` (only positive), `pneumonia` (only negative) |") in part
    assert f"| NIH ChestX-ray14 (`nih`) | 3 | n/a | {cell('nih', 'accuracy')} |" in part

    # a model trained on none of the evaluated sources: no in-domain source, no change
    (folder / "eval-test" / "drift.json").write_text(json.dumps(
        {**drift, "in_domain": None, "trained_on": ["chexpert"], "delta_vs_in_domain": {}, "delta_labels": {}}))
    part = " ".join(write_model_card(folder, RUN).read_text().split("### Split `test`")[1].split())
    assert ("The model was trained on `chexpert`. None of these sources is among them: all are out of domain, so no "
            "change against an in-domain source is computed.") in part
    assert "Δ" not in part and "in-domain |" not in part


def test_card_names_the_pooled_folders_a_run_was_evaluated_on(classifier_dir):
    """A classifier trained on a cxr_pool said "Evaluated on **cxr_pool**", and its model-index named the data set
    `cxr_pool`: the builder, not the data. Both name the folders pooled now, as the training data table does, with
    their images where the record counts them (else those the table lists for the pool); other data keep their name."""
    pool = [{"name": name, "num_images": count, "splits": ["train"], "label_policy": "classes=[\"covid\"]",
             "builder": "cxr_pool"} for name, count in (("hannover_covid", 30), ("nih_cxr14", 90))]
    run = {**RUN, "train_datasets": pool,
           "eval_dataset": {"name": "cxr_pool", "split": "test", "num_images": 12,
                            "folders": {"hannover_covid": 4, "nih_cxr14": 8}}}
    text = " ".join(write_model_card(classifier_dir, run).read_text().split())
    assert ("Evaluated on split `test`, 12 images, of the folders pooled by `cxr_pool`: Hannover COVID-19 CXRs "
            "(`hannover_covid`): 4 images; NIH ChestX-ray14 (`nih_cxr14`): 8 images.") in text
    assert "**cxr_pool**" not in text
    results = ModelCard.load(classifier_dir / "README.md").data.eval_results
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in results} == {
        ("hannover_covid+nih_cxr14", "Hannover COVID-19 CXRs, NIH ChestX-ray14", "test")}

    del run["eval_dataset"]["folders"]  # a record that did not count them: the pool's folders, as its table lists
    text = " ".join(write_model_card(classifier_dir, run).read_text().split())
    assert ("of the folders pooled by `cxr_pool`: Hannover COVID-19 CXRs (`hannover_covid`); NIH ChestX-ray14 "
            "(`nih_cxr14`).") in text
    assert {r.dataset_type for r in ModelCard.load(classifier_dir / "README.md").data.eval_results} == {
        "hannover_covid+nih_cxr14"}
    # nor those: the card says the folders are not recorded
    run["train_datasets"] = [{"name": "cxr_pool", "num_images": 120, "builder": "cxr_pool"}]
    assert "of the folders pooled by `cxr_pool`: not recorded." in write_model_card(classifier_dir, run).read_text()


def test_card_states_a_label_policy_only_where_the_task_learns_from_labels(classifier_dir, tmp_path):
    """A model pretrained on a labelled pool showed its classification options (`classes=...`, `other_class=...`) as
    its data's label policy, though pretraining reads no labels; so did a segmenter, which learns from masks. Their
    rows say so now, in the card of a classifier fine-tuned from such a model too, whose own row keeps its policy."""
    policy = 'classes=["covid"], label_map={"COVID-19, ARDS": "covid"}, other_class=non_covid'
    pool = [{"name": "hannover_covid", "num_images": 30, "splits": ["train"], "label_policy": policy,
             "builder": "cxr_pool"}]
    folder = export(tmp_path / "pre", GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY)))
    text = write_model_card(folder, {"task": "pretraining", "train_datasets": pool}).read_text()
    assert "| 30 | train | none: pretraining reads no labels | pretraining (this model) |" in text
    assert "classes=" not in text

    run = {**RUN, "train_datasets": pool, "earlier_datasets": [{**pool[0], "stage": "pretraining"}]}
    text = write_model_card(classifier_dir, run).read_text()
    assert "| none: pretraining reads no labels | pretraining (the --init model) |" in text
    assert f"| {policy} | classification (this model) |" in text

    folder = export(tmp_path / "seg", GroupMaskedViTForSegmentation(GroupMaskedViTConfig(**TINY, num_labels=1)))
    text = write_model_card(folder, {"task": "segmentation", "train_datasets": [
        {"name": "my_lungs", "num_images": 20, "splits": ["train"], "label_policy": 'classes=["normal"]'}]}).read_text()
    assert "| none: segmentation learns from the masks, as the data give them | segmentation (this model) |" in text


def test_the_per_source_table_has_the_headline_metrics_of_train_evaluate_in_its_order():
    """The card's per-source columns (model_cards, which does not import train) are train.evaluate's headline metrics:
    a metric added to one and not the other would be dropped from the table or shown without its results."""
    from model_cards.model_card import SOURCE_METRICS
    from train.evaluate import HEADLINE

    assert SOURCE_METRICS == tuple(dict.fromkeys(key for keys in HEADLINE.values() for key in keys))
