"""Group-masked ViT (GMML) for chest X-rays on the Hugging Face stack.

Importing this package registers the config, every model class and the image processor with the Auto classes, so
`AutoModel*.from_pretrained(folder)` works here without `trust_remote_code`; a saved folder also carries the code
files for `trust_remote_code=True` wherever this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForImageSegmentation,
    AutoModelForPreTraining,
    AutoModelForSemanticSegmentation,
)
from transformers.models.auto.video_processing_auto import AutoVideoProcessor  # the top-level name needs torchvision

from .configuration_gmvit import PRESETS, GroupMaskedViTConfig
from .image_processing_gmvit import GroupMaskedViTImageProcessor
from .masking import gmml_corrupt, masks_for_targets, sample_group_masks
from .modeling_gmvit import (
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForPreTrainingOutput,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTModel,
    GroupMaskedViTPreTrainedModel,
)

AutoConfig.register(GroupMaskedViTConfig.model_type, GroupMaskedViTConfig, exist_ok=True)
for _auto, _model in (
    (AutoModel, GroupMaskedViTModel),
    (AutoModelForPreTraining, GroupMaskedViTForPreTraining),
    (AutoModelForImageClassification, GroupMaskedViTForImageClassification),
    (AutoModelForSemanticSegmentation, GroupMaskedViTForSegmentation),
    (AutoModelForImageSegmentation, GroupMaskedViTForSegmentation),
):
    _auto.register(GroupMaskedViTConfig, _model, exist_ok=True)
AutoImageProcessor.register(
    GroupMaskedViTConfig, image_processor_classes={"pil": GroupMaskedViTImageProcessor}, exist_ok=True
)
# No video processor: said here, since transformers otherwise guesses one from the image processor's auto_map and
# asks whether to run that (missing) custom code whenever a pipeline is built without trust_remote_code.
AutoVideoProcessor.register(GroupMaskedViTConfig, video_processor_classes={}, exist_ok=True)

GroupMaskedViTConfig.register_for_auto_class("AutoConfig")
GroupMaskedViTImageProcessor.register_for_auto_class("AutoImageProcessor")
GroupMaskedViTModel.register_for_auto_class("AutoModel")
GroupMaskedViTForPreTraining.register_for_auto_class("AutoModelForPreTraining")
GroupMaskedViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
GroupMaskedViTForSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")

__all__ = [
    "PRESETS",
    "GroupMaskedViTConfig",
    "GroupMaskedViTImageProcessor",
    "GroupMaskedViTModel",
    "GroupMaskedViTPreTrainedModel",
    "GroupMaskedViTForPreTraining",
    "GroupMaskedViTForPreTrainingOutput",
    "GroupMaskedViTForImageClassification",
    "GroupMaskedViTForSegmentation",
    "gmml_corrupt",
    "masks_for_targets",
    "sample_group_masks",
]
