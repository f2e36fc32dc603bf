"""Hub-hosted checkpoints, offline: load by repo id from a populated HF cache and run the pipelines and the model
card's snippets, in fresh interpreters that cannot import the package (only the code files shipped with the weights
are used)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
)

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "data"))

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)
TASKS = {GroupMaskedViTForImageClassification: "classification", GroupMaskedViTForSegmentation: "segmentation",
         GroupMaskedViTForPreTraining: "pretraining"}


def real_cxr() -> Path:
    """A real pediatric CXR (Kermany et al., CC BY 4.0) from the pneumonia-model-package wheel, never imported."""
    spec = importlib.util.find_spec("pneumonia_model_package")
    if spec is None:
        pytest.skip("pip install --no-deps pneumonia-model-package==0.3.0")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "pneumonia-data" / "val"
    return sorted(folder.glob("*.jpeg"))[0]


def cache_snapshot(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay `folder` out as the HF cache does after a download: blobs behind snapshots/<commit>, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for file in folder.iterdir():
        blob = repo / "blobs" / f"{file.name}.blob"
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def run_fresh_process(code: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    """Offline interpreter outside the project (the package is not importable), without progress bars; it must
    succeed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cwd / "hf_home"),
               HF_MODULES_CACHE=str(cwd / "modules"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_fresh(code: str, cwd: Path, cache: Path) -> dict:
    """Run `code` as `run_fresh_process` does; returns the JSON it prints last."""
    return json.loads(run_fresh_process(code, cwd, cache).stdout.strip().splitlines()[-1])


def sixteen_bit_and_dicom(cxr: Path, folder: Path) -> None:
    """The real CXR as a 12-bit grey PNG (`chest_xray.png`) and as a MONOCHROME1 CR with rescale and window
    (`chest_xray.dcm`), the forms a pipeline cannot read."""
    import pydicom
    from factory import write_dicom
    from PIL import Image

    grey = np.asarray(Image.open(cxr).convert("L").resize((40, 48)), dtype=np.uint16)
    Image.fromarray(grey * 16).save(folder / "chest_xray.png")
    path = write_dicom(folder / "chest_xray.dcm", 4095 - grey * 16, photometric="MONOCHROME1", window=(900, 1800))
    dataset = pydicom.dcmread(path)
    dataset.RescaleSlope, dataset.RescaleIntercept = 0.5, -100
    dataset.save_as(path)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A cache holding a classifier, a binary lung segmenter, a background / lungs segmenter and a GMML pretraining
    export, each with its card, plus a real CXR (also as 16-bit PNG and DICOM) and the task models' reference
    logits."""
    from model_cards import write_model_card

    root = tmp_path_factory.mktemp("cached_hub")
    torch.manual_seed(0)
    processor = GroupMaskedViTImageProcessor(size=32, num_channels=1)
    models = {
        "alice/cxrgm-cls": GroupMaskedViTForImageClassification(GroupMaskedViTConfig(
            **TINY, num_labels=2, id2label={0: "normal", 1: "pneumonia"}, label2id={"normal": 0, "pneumonia": 1})),
        "alice/cxrgm-lungs": GroupMaskedViTForSegmentation(GroupMaskedViTConfig(
            **TINY, num_labels=1, id2label={0: "lung"}, label2id={"lung": 0})),
        "alice/cxrgm-lungs2": GroupMaskedViTForSegmentation(GroupMaskedViTConfig(
            **TINY, num_labels=2, id2label={0: "background", 1: "lung"}, label2id={"background": 0, "lung": 1})),
        "alice/cxrgm-gmml": GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY)),
    }
    shutil.copyfile(real_cxr(), root / "cxr.jpeg")
    sixteen_bit_and_dicom(root / "cxr.jpeg", root)
    from PIL import Image

    inputs = processor(Image.open(root / "cxr.jpeg"), return_tensors="pt")
    expected = {}
    for repo_id, model in models.items():
        folder = root / "export" / repo_id.split("/")[1]
        model.eval().save_pretrained(folder)
        processor.save_pretrained(folder)
        task = TASKS[type(model)]
        write_model_card(folder, {"task": task, "repo_id": repo_id})
        cache_snapshot(root / "cache", repo_id, folder)
        if task != "pretraining":
            with torch.no_grad():
                expected[repo_id] = model(**inputs).logits.tolist()
    return root, expected, models, processor


def test_checkpoint_loads_by_repo_id_from_the_cache_offline(hub):
    root, expected, _, _ = hub
    result = run_fresh("""
        import json, sys
        import torch
        from PIL import Image
        from transformers import AutoImageProcessor, AutoModelForImageClassification
        processor = AutoImageProcessor.from_pretrained("alice/cxrgm-cls", trust_remote_code=True)
        model = AutoModelForImageClassification.from_pretrained("alice/cxrgm-cls", trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**processor(Image.open("cxr.jpeg"), return_tensors="pt")).logits
        print(json.dumps({"logits": logits.tolist(), "module": type(model).__module__,
                          "package": "modeling_cxrgm" in sys.modules}))
    """, root, root / "cache")
    assert result["module"].startswith("transformers_modules.") and result["package"] is False
    assert torch.allclose(torch.tensor(result["logits"]), torch.tensor(expected["alice/cxrgm-cls"]), atol=1e-5)


def test_classification_and_segmentation_pipelines_on_a_real_cxr(hub):
    root, expected, _, _ = hub
    result = run_fresh("""
        import json
        from PIL import Image
        from transformers import pipeline
        image = Image.open("cxr.jpeg")
        classify = pipeline("image-classification", model="alice/cxrgm-cls", trust_remote_code=True)
        segment = pipeline("image-segmentation", model="alice/cxrgm-lungs", trust_remote_code=True)
        classes = classify("cxr.jpeg")
        masks = segment(image)
        print(json.dumps({"classes": classes, "image_size": image.size,
                          "masks": [{"label": m["label"], "size": m["mask"].size, "mode": m["mask"].mode,
                                     "values": sorted(set(m["mask"].getdata())), "score": m["score"]}
                                    for m in masks]}))
    """, root, root / "cache")
    assert sorted(c["label"] for c in result["classes"]) == ["normal", "pneumonia"]
    assert abs(sum(c["score"] for c in result["classes"]) - 1) < 1e-5
    assert (torch.tensor(expected["alice/cxrgm-lungs"]) > 0).any(), "the seeded segmenter should find some lung"
    (mask,) = result["masks"]  # a binary model reports its foreground only
    assert mask["label"] == "lung" and mask["mode"] == "L" and mask["size"] == result["image_size"]
    assert mask["values"] == [0, 255] and 0.5 < mask["score"] <= 1


def test_the_segmentation_pipeline_logs_no_unsupported_model_error(hub):
    """By repo id too, the image-segmentation pipeline logged that 'GroupMaskedViTForSegmentation' is not supported
    for image-segmentation (transformers' own notice of code files new in the modules cache may come before)."""
    root, _, _, _ = hub
    result = run_fresh_process("""
        from transformers import pipeline
        pipeline("image-segmentation", model="alice/cxrgm-lungs", trust_remote_code=True)("cxr.jpeg")
        pipeline("image-classification", model="alice/cxrgm-cls", trust_remote_code=True)("cxr.jpeg")
    """, root, root / "cache")
    assert "not supported" not in result.stderr, result.stderr


def test_the_cards_model_pipeline_and_dicom_snippets_give_train_predicts_results_without_the_package(hub):
    """The card gave the model classes in one line, without the post-processing a one-label segmenter needs (its
    semantic map is refused), and said a DICOM "must be windowed first (the cxrgm data tools do this)": a user without
    the package had no way to read one, and the pipelines clip 16-bit PNGs. Its snippets, run as written on a 16-bit
    PNG and a MONOCHROME1 DICOM with rescale and window, give what train.predict computes (hf_datasets' DICOM reader,
    the processor, its post-processing at the image's size); the classifier's pipeline on `read_dicom`'s array gives
    its probabilities too. A pretraining card named neither the pipeline its Hub page offers (image-feature-extraction)
    nor which tensor it returns: its processor and model snippet and its pipeline snippet (8-bit file) give the
    encoder's last hidden state and CLS token."""
    from hf_datasets.dicom import read_dicom
    from PIL import Image

    root, _, models, processor = hub
    result = run_fresh(r"""
        import json, re
        from huggingface_hub import hf_hub_download
        results = {}

        def snippets(repo_id):
            card = open(hf_hub_download(repo_id, "README.md"), encoding="utf-8").read()
            return card, re.findall(r"```python\n(.*?)```", card, re.S)

        for repo_id in ("alice/cxrgm-cls", "alice/cxrgm-lungs", "alice/cxrgm-lungs2", "alice/cxrgm-gmml"):
            card, blocks = snippets(repo_id)
            model_code, dicom_code = (blocks[0], blocks[2]) if repo_id.endswith("gmml") else blocks[1:]
            assert 'Image.open("chest_xray.png")' in model_code, model_code
            images = [("png", 'Image.open("chest_xray.png")'), ("dicom", 'read_dicom("chest_xray.dcm")')]
            if repo_id.endswith("gmml"):  # the 8-bit file its pipeline is compared on
                images.append(("jpeg", 'Image.open("cxr.jpeg")'))
            for name, image in images:
                namespace = {}
                exec(dicom_code, namespace)
                exec(model_code.replace('Image.open("chest_xray.png")', image), namespace)
                keys = ("features", "embedding") if repo_id.endswith("gmml") else \
                    [next(key for key in ("probabilities", "mask", "label_map") if key in namespace)]
                results[f"{repo_id} {name}"] = [namespace[key].tolist() for key in keys]

        card, (pipeline_code, _, dicom_code) = snippets("alice/cxrgm-cls")
        (pipeline_on_dicom,) = re.findall(r"`(classifier\(read_dicom\([^`]*\))`", card)
        namespace = {}
        exec(dicom_code, namespace)
        exec(pipeline_code, namespace)
        results["alice/cxrgm-cls pipeline dicom"] = eval(pipeline_on_dicom, namespace)

        _, (_, pipeline_code, _) = snippets("alice/cxrgm-gmml")
        assert 'pipeline("image-feature-extraction"' in pipeline_code, pipeline_code
        namespace = {}
        exec(pipeline_code.replace('"chest_xray.png"', '"cxr.jpeg"'), namespace)  # pipelines read 8-bit files only
        results["alice/cxrgm-gmml pipeline jpeg"] = [namespace[key].tolist() for key in ("features", "embedding")]
        print(json.dumps(results))
    """, root, root / "cache")
    images = {"png": Image.open(root / "chest_xray.png"), "dicom": read_dicom(root / "chest_xray.dcm")[0],
              "jpeg": Image.open(root / "cxr.jpeg")}
    compared = set()
    for repo_id, model in models.items():
        for name, image in images.items():
            with torch.no_grad():
                inputs = processor(image, return_tensors="pt")
                outputs = model.vit(**inputs) if repo_id.endswith("gmml") else model(**inputs)
            size = [np.asarray(image).shape[:2]]
            if repo_id.endswith("gmml"):
                wanted = [outputs.last_hidden_state, outputs.pooler_output]
            elif repo_id.endswith("cls"):
                wanted = [outputs.logits.softmax(-1)[0]]
            elif model.config.num_labels == 1:
                wanted = [processor.post_process_instance_segmentation(outputs, target_sizes=size)[0]["segmentation"]]
            else:
                wanted = [processor.post_process_semantic_segmentation(outputs, target_sizes=size)[0]]
            keys = [f"{repo_id} {name}"] + ([f"{repo_id} pipeline jpeg"] if name == "jpeg" else [])
            for key in (key for key in keys if key in result):
                compared.add(key)
                for got, want in zip(result[key], wanted, strict=True):
                    got = torch.tensor(got)
                    assert got.shape == want.shape, (key, got.shape, want.shape)
                    assert torch.allclose(got.to(want.dtype), want, atol=1e-6), key
    assert compared == set(result) - {"alice/cxrgm-cls pipeline dicom"} and "alice/cxrgm-gmml pipeline jpeg" in compared
    assert torch.tensor(result["alice/cxrgm-lungs2 dicom"]).unique().tolist() == [0, 1]
    with torch.no_grad():
        wanted = models["alice/cxrgm-cls"](**processor(images["dicom"], return_tensors="pt")).logits.softmax(-1)[0]
    scores = {entry["label"]: entry["score"] for entry in result["alice/cxrgm-cls pipeline dicom"]}
    assert scores.keys() == {"normal", "pneumonia"}
    assert np.allclose([scores["normal"], scores["pneumonia"]], wanted.tolist(), atol=1e-6)
