"""Saved folders load through every Auto class with trust_remote_code in a process that never imports the package."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
)

HUB_FILES = {"configuration_gmvit.py", "modeling_gmvit.py", "masking.py", "image_processing_gmvit.py"}


def tiny_config(**overrides):
    values = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                  intermediate_size=64)
    return GroupMaskedViTConfig(**{**values, **overrides})


def real_cxr_jpeg() -> Path:
    """One of the real pediatric CXRs shipped in the pneumonia-model-package wheel (installed by `make test`)."""
    spec = importlib.util.find_spec("pneumonia_model_package")
    assert spec is not None, "install the sample wheel: pip install --no-deps pneumonia-model-package==0.3.0"
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "pneumonia-data" / "val"
    return sorted(folder.glob("person*_bacteria_*.jpeg"))[0]


def run_fresh_process(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter (offline, package not imported, no progress bars), which must succeed."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(cwd / "modules"),
           "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_fresh(code: str, cwd: Path) -> dict:
    """Run `code` as `run_fresh_process` does and return the JSON it prints last."""
    return json.loads(run_fresh_process(code, cwd).stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    pixel_values = torch.randn(2, 1, 32, 32)
    torch.save(pixel_values, root / "pixel_values.pt")
    processor = GroupMaskedViTImageProcessor(size=32)
    models = {
        "pretraining": GroupMaskedViTForPreTraining(tiny_config()),
        "classifier": GroupMaskedViTForImageClassification(
            tiny_config(num_labels=2, id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1})
        ),
        "segmenter": GroupMaskedViTForSegmentation(tiny_config(num_labels=1)),
    }
    expected = {}
    for name, model in models.items():
        model.eval().save_pretrained(root / name)
        processor.save_pretrained(root / name)
        with torch.no_grad():
            if name == "pretraining":
                out = model(pixel_values, generator=torch.Generator().manual_seed(7))
                expected[name] = out.reconstruction
                expected["encoder"] = model.vit(pixel_values).last_hidden_state
            else:
                expected[name] = model(pixel_values).logits
    expected["threads"] = torch.get_num_threads()  # a product's last bits depend on how many threads share it
    torch.save(expected, root / "expected.pt")
    return root


def test_folder_has_full_auto_map_code_files_and_only_safetensors(saved):
    for name in ("pretraining", "classifier", "segmenter"):
        files = {p.name for p in (saved / name).iterdir()}
        assert HUB_FILES <= files and "model.safetensors" in files and "preprocessor_config.json" in files
        assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
        auto_map = json.loads((saved / name / "config.json").read_text())["auto_map"]
        assert {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForImageClassification",
                "AutoModelForSemanticSegmentation", "AutoImageProcessor"} <= set(auto_map)


def test_every_auto_class_loads_and_reproduces_outputs_without_the_package(saved):
    result = run_fresh("""
        import json, sys, torch
        from transformers import (AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification,
                                  AutoModelForPreTraining, AutoModelForSemanticSegmentation)
        x = torch.load("pixel_values.pt")
        expected = torch.load("expected.pt")
        torch.set_num_threads(expected["threads"])  # as the outputs were computed
        report = {}
        config = AutoConfig.from_pretrained("pretraining", trust_remote_code=True)
        report["config"] = [type(config).__name__, config.model_type]
        processor = AutoImageProcessor.from_pretrained("classifier", trust_remote_code=True)
        report["processor"] = [type(processor).__name__, processor.size]
        with torch.no_grad():
            encoder = AutoModel.from_pretrained("pretraining", trust_remote_code=True).eval()
            report["encoder"] = torch.equal(encoder(x).last_hidden_state, expected["encoder"])
            pretraining = AutoModelForPreTraining.from_pretrained("pretraining", trust_remote_code=True).eval()
            out = pretraining(x, generator=torch.Generator().manual_seed(7))
            report["pretraining"] = torch.equal(out.reconstruction, expected["pretraining"])
            classifier = AutoModelForImageClassification.from_pretrained("classifier", trust_remote_code=True).eval()
            report["classifier"] = torch.equal(classifier(x).logits, expected["classifier"])
            report["labels"] = classifier.config.id2label[1]
            segmenter = AutoModelForSemanticSegmentation.from_pretrained("segmenter", trust_remote_code=True).eval()
            report["segmenter"] = torch.equal(segmenter(x).logits, expected["segmenter"])
        report["modules"] = sorted({type(m).__module__.split(".")[0] for m in (encoder, classifier, processor)})
        report["package_imported"] = "modeling_cxrgm" in sys.modules
        print(json.dumps(report))
    """, saved)
    assert result["config"] == ["GroupMaskedViTConfig", "cxrgm_vit"]
    assert result["processor"] == ["GroupMaskedViTImageProcessor", 32]
    assert all(result[k] is True for k in ("encoder", "pretraining", "classifier", "segmenter")), result
    assert result["labels"] == "pneumonia"
    assert result["modules"] == ["transformers_modules"] and result["package_imported"] is False


def test_pretraining_checkpoint_fine_tunes_through_remote_code_and_reports_new_weights(saved):
    result = run_fresh("""
        import json
        from transformers import AutoModelForImageClassification
        model, info = AutoModelForImageClassification.from_pretrained(
            "pretraining", trust_remote_code=True, num_labels=3, output_loading_info=True)
        print(json.dumps({"missing": sorted(info["missing_keys"]), "classes": model.config.num_labels}))
    """, saved)
    assert result == {"missing": ["classifier.bias", "classifier.weight"], "classes": 3}


def test_image_classification_pipeline_on_a_real_cxr(saved, tmp_path):
    png = saved / "cxr.png"
    Image.open(real_cxr_jpeg()).convert("L").save(png)
    result = run_fresh("""
        import json
        from transformers import pipeline
        classify = pipeline("image-classification", model="classifier", trust_remote_code=True)
        print(json.dumps(classify("cxr.png")))
    """, saved)
    assert sorted(r["label"] for r in result) == ["normal", "pneumonia"]
    assert np.isclose(sum(r["score"] for r in result), 1.0, atol=1e-5)


def test_classification_and_segmentation_pipelines_log_nothing(saved):
    """The image-segmentation pipeline logged "The model 'GroupMaskedViTForSegmentation' is not supported for
    image-segmentation" (it knows segmenters by name from transformers' own tables), then worked."""
    Image.open(real_cxr_jpeg()).convert("L").save(saved / "cxr_quiet.png")
    result = run_fresh_process("""
        from transformers import pipeline
        pipeline("image-classification", model="classifier", trust_remote_code=True)("cxr_quiet.png")
        pipeline("image-segmentation", model="segmenter", trust_remote_code=True)("cxr_quiet.png")
    """, saved)
    assert result.stderr == ""


def test_with_the_package_imported_pipelines_need_no_trust_remote_code_and_ask_nothing(saved):
    """With cxrgm imported, a pipeline without trust_remote_code stopped to ask "Do you wish to run the custom
    code? [y/N]" (transformers guessed a video processor from the image processor's auto_map), or waited 15 s for
    an answer in a notebook."""
    Image.open(real_cxr_jpeg()).convert("L").save(saved / "cxr_local.png")
    result = run_fresh("""
        import builtins, json
        import modeling_cxrgm
        from transformers import pipeline
        prompts = []
        builtins.input = lambda *args: prompts.append(args) or "n"
        labels = [r["label"] for r in pipeline("image-classification", model="classifier")("cxr_local.png")]
        pipeline("image-segmentation", model="segmenter")("cxr_local.png")
        pipeline("image-feature-extraction", model="pretraining")("cxr_local.png")
        print(json.dumps(dict(prompts=len(prompts), labels=sorted(labels))))
    """, saved)
    assert result == dict(prompts=0, labels=["normal", "pneumonia"])


def test_the_semantic_subtask_refuses_a_one_label_segmenter_saying_what_to_use(saved):
    """pipeline("image-segmentation", subtask="semantic") failed inside transformers with a bare KeyError for a
    one-label segmenter (it names every value of the map by id2label, which has no background); the default subtask
    gives its mask at the image's size."""
    image = Image.open(real_cxr_jpeg()).convert("L")
    image.save(saved / "cxr_semantic.png")
    result = run_fresh("""
        import json
        from transformers import pipeline
        segment = pipeline("image-segmentation", model="segmenter", trust_remote_code=True)
        try:
            segment("cxr_semantic.png", subtask="semantic")
            error = None
        except Exception as raised:
            error = [type(raised).__name__, str(raised)]
        masks = segment("cxr_semantic.png", mask_threshold=0.0)
        print(json.dumps({"error": error, "masks": [[m["label"], list(m["mask"].size)] for m in masks]}))
    """, saved)
    assert result["error"][0] == "ValueError" and "subtask='instance'" in result["error"][1], result
    assert result["masks"] == [["LABEL_0", list(image.size)]]


def test_feature_extraction_pipeline_gives_the_encoders_embeddings(saved):
    """Embeddings of a real CXR from the GMML export (for retrieval, k-NN or drift monitoring) through the
    `image-feature-extraction` pipeline: the encoder's tokens, or with pool=True its pooled output."""
    png = saved / "cxr_features.png"
    Image.open(real_cxr_jpeg()).convert("L").save(png)
    result = run_fresh("""
        import json, torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModel, pipeline
        extract = pipeline("image-feature-extraction", model="pretraining", trust_remote_code=True)
        tokens, pooled = extract("cxr_features.png"), extract("cxr_features.png", pool=True)
        processor = AutoImageProcessor.from_pretrained("pretraining", trust_remote_code=True)
        encoder = AutoModel.from_pretrained("pretraining", trust_remote_code=True).eval()
        with torch.no_grad():
            direct = encoder(**processor(Image.open("cxr_features.png"), return_tensors="pt"))
        tokens, pooled = torch.tensor(tokens)[0], torch.tensor(pooled)[0]
        print(json.dumps({"tokens": tokens.shape, "pooled": pooled.shape,
                          "same_tokens": torch.allclose(tokens, direct.last_hidden_state[0], atol=1e-5),
                          "same_pooled": torch.allclose(pooled, direct.pooler_output[0], atol=1e-5)}))
    """, saved)
    assert result == {"tokens": [1 + 16, 32], "pooled": [32], "same_tokens": True, "same_pooled": True}


def test_model_loaded_through_remote_code_saves_every_file_its_auto_map_names(saved, tmp_path):
    """Fine-tune-and-save without the package: the re-saved folder has all the code files (as the package saves
    them), so it loads, with the processor settings beside it, through every auto_map entry."""
    import shutil

    shutil.copytree(saved / "classifier", tmp_path / "lab" / "classifier")
    run_fresh("""
        import json
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained("classifier", trust_remote_code=True)
        model.save_pretrained("../user/resaved")
        print(json.dumps({}))
    """, tmp_path / "lab")
    resaved = tmp_path / "user" / "resaved"
    auto_map = json.loads((resaved / "config.json").read_text())["auto_map"]
    assert {f"{reference.split('.')[0]}.py" for reference in auto_map.values()} == HUB_FILES - {"masking.py"}
    assert HUB_FILES <= {p.name for p in resaved.iterdir()}
    shutil.copyfile(saved / "classifier" / "preprocessor_config.json", resaved / "preprocessor_config.json")
    result = run_fresh("""
        import json
        from transformers import AutoImageProcessor
        processor = AutoImageProcessor.from_pretrained("resaved", trust_remote_code=True)
        print(json.dumps({"processor": type(processor).__name__}))
    """, resaved.parent)
    assert result == {"processor": "GroupMaskedViTImageProcessor"}
