"""The models train under transformers' own `Trainer`, as other image models do: real sample CXRs through the
image processor in a `datasets` transform, gradient checkpointing on, then the saved folder reloads with the
same outputs."""

import math

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForImageClassification, Trainer, TrainingArguments

from hf_datasets import build_dataset, label_names
from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTImageProcessor,
)

pytestmark = pytest.mark.slow
TINY = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64)


@pytest.fixture(scope="module")
def sample():
    ds = build_dataset("sample")
    return ds["train"], label_names(ds)


def trainer_for(model, train, output_dir, processor, with_labels: bool):
    def transform(batch):
        inputs = processor(batch["image"], return_tensors="pt")
        if with_labels:  # one-hot rows -> class indices
            inputs["labels"] = torch.tensor([int(np.argmax(row)) for row in batch["labels"]])
        return inputs

    fields = TrainingArguments.__dataclass_fields__  # recent releases renamed the switch
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    args = TrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=4, num_train_epochs=1,
                             learning_rate=1e-3, report_to=[], remove_unused_columns=False, use_cpu=True,
                             save_strategy="no", logging_steps=1, seed=0, **{checkpointing: True})
    return Trainer(model=model, args=args, train_dataset=train.with_transform(transform))


def test_trainer_fine_tunes_a_classifier_that_reloads_from_its_folder(sample, tmp_path):
    train, names = sample
    processor = GroupMaskedViTImageProcessor(size=32)
    config = GroupMaskedViTConfig(**TINY, num_labels=len(names), id2label=dict(enumerate(names)),
                                  label2id={name: i for i, name in enumerate(names)})
    model = GroupMaskedViTForImageClassification(config)
    before = model.classifier.weight.detach().clone()

    trainer = trainer_for(model, train, tmp_path / "run", processor, with_labels=True)
    result = trainer.train()
    assert model.vit.encoder.layers[0].gradient_checkpointing  # the Trainer's switch reached the blocks
    assert result.global_step == math.ceil(len(train) / 4) and math.isfinite(result.training_loss)
    assert not torch.equal(before, model.classifier.weight)

    trainer.save_model(str(tmp_path / "model"))
    processor.save_pretrained(tmp_path / "model")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "model", trust_remote_code=True).eval()
    pixels = processor(train[:4]["image"], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(pixel_values=pixels).logits, model.eval()(pixel_values=pixels).logits)


def test_trainer_runs_gmml_pretraining(sample, tmp_path):
    train, _ = sample
    model = GroupMaskedViTForPreTraining(GroupMaskedViTConfig(**TINY))
    before = [p.detach().clone() for p in model.parameters()]
    processor = GroupMaskedViTImageProcessor(size=32)
    result = trainer_for(model, train, tmp_path / "run", processor, with_labels=False).train()
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    assert all(not torch.equal(old, new) for old, new in zip(before, model.parameters()) if new.requires_grad)


def test_gradient_accumulation_gives_the_loss_and_gradients_of_one_big_batch(tmp_path):
    """Trainer averages the losses of accumulated batches (the models' losses are batch means): 4 images in one
    batch or in 2 x 2 accumulated give the same loss and gradient norm, not twice them."""
    generator = torch.Generator().manual_seed(0)
    rows = {"pixel_values": torch.randn(4, 1, 32, 32, generator=generator).numpy(), "labels": [0, 1, 0, 1]}
    train = datasets.Dataset.from_dict(rows).with_format("torch")
    logged = []
    for accumulation in (1, 2):
        torch.manual_seed(0)
        model = GroupMaskedViTForImageClassification(GroupMaskedViTConfig(**TINY, num_labels=2, drop_path_rate=0.0))
        args = TrainingArguments(output_dir=str(tmp_path / f"ga{accumulation}"),
                                 per_device_train_batch_size=4 // accumulation,
                                 gradient_accumulation_steps=accumulation, num_train_epochs=1, learning_rate=0.0,
                                 report_to=[], use_cpu=True, save_strategy="no", logging_steps=1, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=train)
        loss = trainer.train().training_loss
        logged.append((loss, next(h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h)))
    (loss_one, norm_one), (loss_two, norm_two) = logged
    assert math.isclose(loss_one, loss_two, rel_tol=1e-4) and math.isclose(norm_one, norm_two, rel_tol=1e-3)
