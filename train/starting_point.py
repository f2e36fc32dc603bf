"""What a run starts from: the --init model (a folder, or a Hub repo id fetched into the HF cache), the input
convention of its image processor, and the model built from it with this run's task head.

`build_model` is the one place a run's model is made: a fresh one from a preset, or --init's weights with the head
this task and these labels need (a head of another shape is replaced, an encoder of another shape refused).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from transformers import AutoConfig, modeling_utils
from transformers.utils.loading_report import log_state_dict_report

from hf_datasets.errors import InvalidInputError, MissingInputError
from modeling_cxrgm import (
    GroupMaskedViTConfig,
    GroupMaskedViTForImageClassification,
    GroupMaskedViTForPreTraining,
    GroupMaskedViTForSegmentation,
    GroupMaskedViTImageProcessor,
)
from modeling_cxrgm.image_processing_gmvit import SETTINGS as PROCESSOR_SETTINGS

from .config import TrainArgs, load_model_source

logger = logging.getLogger(__name__)
MODEL_CLASSES = {
    "pretraining": GroupMaskedViTForPreTraining,
    "classification": GroupMaskedViTForImageClassification,
    "segmentation": GroupMaskedViTForSegmentation,
}
# encoder settings a --init checkpoint's weights are tied to: another patch or hidden size does not load, and another
# head count loads but splits each attention's weights into other heads
ENCODER_SHAPE = ("patch_size", "hidden_size", "intermediate_size", "num_attention_heads", "qkv_bias")
# processor settings that a run's own flags set (the flag's name); None in a flag means "not given". The processor's
# other settings (SETTINGS, but the size) have no flag: they are --init's, else the processor's defaults
PROCESSOR_FLAGS = {"equalize": "equalize"}
# config fields that a run's flags set (besides --model_config)
CONFIG_FLAGS = {"image_size": "--image_size", "num_channels": "--num_channels", "drop_path_rate": "--drop_path",
                "label_smoothing": "--label_smoothing"}


def init_folder(init: str, required: bool = True) -> tuple[str, str | None]:
    """(--init as a local folder, the Hub repo id it was fetched for or None): "random" and folders stay as they are;
    a repo id that is no folder here is fetched (or, offline, found in the HF cache) with `snapshot_download`.
    Not `required`, a repo id that cannot be fetched is returned as it is: (repo id, repo id)."""
    if init == "random" or Path(init).exists() or init.startswith((".", "/", "~")) or init.count("/") > 1:
        return init, None
    try:
        return snapshot_download(init, allow_patterns=["*.json", "*.safetensors"]), init  # config, weights, processor
    except (OSError, ValueError) as error:  # not cached offline, no such repo, not a valid repo id
        if not required:
            return init, init
        raise MissingInputError(f"--init {init}: no such folder here, and no Hub model of that name could be fetched "
                                f"or found in the HF cache ({error})") from error


def init_processor_settings(init: str) -> dict:
    """The input convention the --init model was trained with: its saved processor's settings (those of SETTINGS,
    but the size, which follows --image_size); {} from random, or from a folder without a saved processor. The file is
    read as every model file is (`load_model_source`): one that is no JSON object, or holds a value the processor
    refuses, is named."""
    if init == "random" or not (Path(init) / "preprocessor_config.json").is_file():
        return {}
    return load_model_source(saved_processor_settings, init, "--init", "preprocessor_config.json")


def saved_processor_settings(folder) -> dict:
    """The settings of SETTINGS (but the size) that the processor saved in `folder` states, checked by making that
    processor (a TypeError for a file that is no JSON object, a ValueError naming a value it refuses)."""
    saved = GroupMaskedViTImageProcessor.get_image_processor_dict(folder)[0]
    GroupMaskedViTImageProcessor.from_dict(saved)
    return {name: saved[name] for name in PROCESSOR_SETTINGS if name != "size" and name in saved}


def build_processor(args: TrainArgs) -> GroupMaskedViTImageProcessor:
    """The run's image processor. One rule: every input setting of --init's saved processor (mean / std,
    normalisation, resize mode, bit depth, equalisation, ...) is kept, so that the encoder sees inputs as it was
    trained on them and the exported processor says what the training did; a flag given on the command line
    (PROCESSOR_FLAGS) overrides its setting, with a warning when that differs from --init's. The size is
    --image_size (positions are resampled to it); --num_channels must be --init's (its weights are made for it)."""
    settings = init_processor_settings(args.init)
    saved_channels = settings.pop("num_channels", args.num_channels)
    if saved_channels != args.num_channels:
        raise InvalidInputError(f"--init {args.init} takes {saved_channels}-channel inputs (its "
                                f"preprocessor_config.json) but --num_channels is {args.num_channels}; pass "
                                f"--num_channels {saved_channels}")
    for setting, flag in PROCESSOR_FLAGS.items():
        given = getattr(args, flag)
        if given is None:
            continue
        if setting in settings and settings[setting] != given:
            logger.warning(f"--{flag} {given!r} overrides --init {args.init}'s image processor, whose {setting} is "
                           f"{settings[setting]!r}: the pretrained encoder was trained on other inputs")
        settings[setting] = given
    return GroupMaskedViTImageProcessor(size=args.image_size, num_channels=args.num_channels, **settings)


def run_processor(args: TrainArgs, resume: Path | None) -> GroupMaskedViTImageProcessor:
    """The run's image processor: `build_processor` for a new run; a resumed run keeps the one its checkpoint
    recorded (each checkpoint holds the processor its steps were trained with), so that its remaining steps see inputs
    prepared as its first ones, whatever --init says now (or when it is no longer at hand). --init may change on
    resume (the folder moved, or is another copy), but the run took every input setting from the --init it started
    with, and the weights it goes on from are the checkpoint's: one whose processor prepares inputs otherwise is
    warned about, naming the settings, and is not followed. A checkpoint without a processor (an earlier version of this trainer) builds it from the
    arguments, as that version did."""
    processor = build_processor(args)
    recorded = None if resume is None else resume / "preprocessor_config.json"
    if recorded is None or not recorded.is_file():
        return processor
    saved = GroupMaskedViTImageProcessor.from_pretrained(resume)
    if args.init != "random" and not Path(args.init).is_dir():  # gone, or a Hub repo id not at hand: nothing to compare
        return saved
    changed = [f"{name} {getattr(saved, name)!r} -> {getattr(processor, name)!r}" for name in PROCESSOR_SETTINGS
               if getattr(saved, name) != getattr(processor, name)]
    if changed:
        logger.warning(f"--init {args.init} prepares inputs otherwise than this run did ({'; '.join(changed)}): the "
                       f"resumed run keeps its own image processor, recorded in {resume}, so that its remaining steps "
                       "see inputs prepared as its first ones (the weights it goes on from are the checkpoint's); "
                       "start a new --output_dir to fine-tune with that --init's inputs")
    return saved


def model_inputs_normalisation(processor) -> tuple[list[float], list[float]]:
    """(mean, std) the engine normalises unit-range images with: the processor's, or (0, 1) per channel for one
    that does not normalise (do_normalize false), so that the model sees what the processor gives."""
    if processor.do_normalize:
        return list(processor.image_mean), list(processor.image_std)
    return [0.0] * processor.num_channels, [1.0] * processor.num_channels


def init_config(args: TrainArgs):
    """--init's config, refused where it is no GroupMaskedViT model or takes other inputs than --num_channels; None
    from random."""
    if args.init == "random":
        return None
    base = load_model_source(AutoConfig.from_pretrained, args.init, "--init")
    if base.model_type != GroupMaskedViTConfig.model_type:
        raise InvalidInputError(f"--init {args.init} is a {base.model_type!r} model, not "
                                f"{GroupMaskedViTConfig.model_type!r}")
    if base.num_channels != args.num_channels:
        raise InvalidInputError(f"--init {args.init} has {base.num_channels} input channels but --num_channels is "
                                f"{args.num_channels}")
    return base


def build_model(args: TrainArgs, names: list[str], single_label: bool, resume: Path | None = None, base=None):
    """A fresh model from `args.preset` + `args.model_config`, or `args.init` with a new head for this task; for a run
    resumed from checkpoint `resume`, the model that checkpoint recorded (its weights are loaded from it next).
    `base`: the config `checks.checked_init_config` loaded already: --init's, or for such a resumed run its
    checkpoint's (`resumed_config`)."""
    model_class = MODEL_CLASSES[args.task]
    if resume is not None and (resume / "config.json").is_file():
        return model_class(base if base is not None else resumed_config(args, resume))
    overrides = {"drop_path_rate": args.drop_path, **args.model_config}
    base = base if base is not None else init_config(args)
    if args.task == "classification":
        overrides.update(
            num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
            problem_type="single_label_classification" if single_label else "multi_label_classification",
            label_smoothing=args.label_smoothing if single_label else 0.0,
        )
    elif args.task == "segmentation":  # no classifier --init's problem type (single-label refuses one label)
        overrides.update(num_labels=segmentation_label_count(args, base), problem_type=None)
        if overrides["num_labels"] <= 2:  # the schema's lung masks (pipelines name them)
            structures = ["lungs"] if overrides["num_labels"] == 1 else ["background", "lungs"]
            overrides.update(id2label=dict(enumerate(structures)), label2id={n: i for i, n in enumerate(structures)})
    if base is None:
        try:
            config = GroupMaskedViTConfig.from_preset(
                args.preset, image_size=args.image_size, num_channels=args.num_channels, **overrides
            )
        except ValueError as error:  # a preset, flag or --model_config value the config refuses
            raise refused_setting(error, args) from error
        return model_class(config)
    changed = [f"{name} {getattr(base, name)!r} -> {args.model_config[name]!r}" for name in ENCODER_SHAPE
               if name in args.model_config and args.model_config[name] != getattr(base, name)]
    if changed:  # the weights would not fit (or, for the heads, would silently compute something else)
        raise InvalidInputError(f"--model_config changes the encoder of --init {args.init} ({'; '.join(changed)}): "
                                "its pretrained weights only serve the architecture they were trained in; leave these "
                                "out")
    # the label count goes in as id2label: transformers builds the saved config with a num_labels argument first and
    # warns that it does not fit the saved id2label, which this run's replaces right after anyway
    count = overrides.pop("num_labels", None)
    if count is not None and "id2label" not in overrides and count != base.num_labels:
        overrides.update(id2label={i: f"LABEL_{i}" for i in range(count)},
                         label2id={f"LABEL_{i}": i for i in range(count)})
    try:  # from_pretrained sets them on --init's config unchecked: checked here as the run's model will have them
        GroupMaskedViTConfig.from_dict({**base.to_dict(), **overrides, "image_size": args.image_size})
    except ValueError as error:
        raise refused_setting(error, args) from error
    order, other_classes = None, False
    if args.task == "classification" and model_class.__name__ in (base.architectures or []):
        order = head_order(base, names)
        other_classes = order is None
    # float32 whatever the checkpoint was saved in (from_pretrained keeps a bf16/fp16 file's dtype): the weights and
    # optimiser state train in full precision, and --mixed_precision decides what runs at lower precision. A head
    # tensor of another shape (another label count, pooling or decoder width) is left out, to be checked below.
    with load_report_silenced():
        model, loading = model_class.from_pretrained(args.init, dtype=torch.float32, ignore_mismatched_sizes=True,
                                                     output_loading_info=True, **overrides)
    report_new_and_unused(loading, model.base_model_prefix, args.init)
    mismatched = [entry for entry in loading["mismatched_keys"]  # (a replaced classifier is reported once, below)
                  if not (other_classes and entry[0].startswith("classifier."))]
    replace_mismatched_head(model, mismatched, args.init)
    if other_classes:  # its outputs would mean other classes: a new head learns the data's
        initialise_afresh(model, "classifier")
        logger.warning(f"--init {args.init} has a {base.num_labels}-class head {list(base.id2label.values())} but the "
                       f"data have {len(names)} labels {names}: the head was replaced (classifier initialised "
                       "afresh for them); the encoder's weights are loaded")
    elif order is not None and order != list(range(len(order))):  # the same classes in another order: each data
        with torch.no_grad():  # label keeps its trained output
            model.classifier.weight.copy_(model.classifier.weight[order])
            model.classifier.bias.copy_(model.classifier.bias[order])
    model.set_image_size(args.image_size)  # positions resampled once if the checkpoint was trained at another size
    return model


def refused_setting(error: ValueError, args: TrainArgs) -> InvalidInputError:
    """The config's refusal of a value ("GroupMaskedViTConfig.<field>=<value>: <why>") as an input error naming the
    flag that set it: --model_config, a flag of `CONFIG_FLAGS`, else the preset or --init the value comes from."""
    named = re.match(r"GroupMaskedViTConfig\.(\w+)=", str(error))
    field = named[1] if named else None
    if field in args.model_config:
        flag = "--model_config"
    else:
        flag = CONFIG_FLAGS.get(field) or (f"--preset {args.preset}" if args.init == "random" else f"--init {args.init}")
    return InvalidInputError(f"{flag}: {error}")


# settings of a run's model that are the run's own (its data's labels, its image size, its --model_config and
# --drop_path), not its --init's: another --init given on resume is not compared on them
RUN_SETTINGS = ("id2label", "label2id", "num_labels", "problem_type", "label_smoothing", "image_size",
                "drop_path_rate", "architectures", "auto_map", "transformers_version", "dtype", "torch_dtype",
                "_name_or_path")


def resumed_config(args: TrainArgs, resume: Path) -> GroupMaskedViTConfig:
    """The config of the model a checkpoint recorded (config.json; weights to be loaded from the checkpoint), not one
    built from --init again: another --init given on resume is only where the run's weights first came from, and one
    whose model differs (another pooling, decoder, mask or layer setting) is warned about, naming the settings, not
    followed. Both files are read as every model file is (`load_model_source`): a damaged one is named."""
    config = load_model_source(GroupMaskedViTConfig.from_pretrained, resume, "--resume_from_checkpoint")
    if args.init != "random" and (Path(args.init) / "config.json").is_file():
        given = load_model_source(lambda folder: GroupMaskedViTConfig.get_config_dict(folder)[0], args.init, "--init")
        recorded = config.to_dict()
        changed = [f"{name} {recorded[name]!r} -> {value!r}" for name, value in given.items()
                   if name in recorded and name not in RUN_SETTINGS and name not in args.model_config
                   and recorded[name] != value]
        if changed:
            logger.warning(f"--init {args.init} describes another model than this run's ({'; '.join(changed)}): the "
                           f"resumed run keeps its own, recorded in {resume}; start a new --output_dir to fine-tune "
                           "that --init")
    return config


def segmentation_label_count(args: TrainArgs, base) -> int:
    """A segmenter's label count. Classification takes its labels from the data; segmentation masks hold class
    indices, which do not fix how many outputs the model has (a lung mask fits one sigmoid map or a two-class softmax
    alike), so the count is --model_config num_labels where given; else, from a segmenter --init (`base`, its
    config), that model's own count, so that its trained head is kept; else 1 (one sigmoid map)."""
    if "num_labels" in args.model_config:
        return args.model_config["num_labels"]
    if base is not None and MODEL_CLASSES["segmentation"].__name__ in (base.architectures or []):
        return base.num_labels
    return 1


def _no_load_report(record: logging.LogRecord) -> bool:
    """False for the record of transformers' load report (`load_report_silenced`)."""
    return record.funcName != log_state_dict_report.__name__


@contextlib.contextmanager
def load_report_silenced():
    """Hold back, for the load inside, the table of missing, unexpected and mismatched weights that transformers logs
    as a warning (`log_state_dict_report`, through the logger of `transformers.modeling_utils`) at the end of
    `from_pretrained`: `report_new_and_unused` and `replace_mismatched_head` say what of it matters. The logger's other
    messages pass, errors of the load are raised as ever, and other loads still report (the filter goes after it)."""
    modeling_utils.logger.addFilter(_no_load_report)
    try:
        yield
    finally:
        modeling_utils.logger.removeFilter(_no_load_report)


def report_new_and_unused(loading: dict, prefix: str, init: str) -> None:
    """Warn, from `from_pretrained`'s `loading` info, which layers of the model start afresh, --init having no weights
    for them (this task's head; an encoder layer by its name under `prefix`), and which of --init's layers are left out
    (another task's head); the other weights are loaded. (Replaced heads of another shape: `replace_mismatched_head`.)"""

    def layers(names) -> list[str]:
        return sorted({name.rpartition(".")[0] if name.startswith(f"{prefix}.") else name.partition(".")[0]
                       for name in names})

    new, unused = layers(loading["missing_keys"]), layers(loading["unexpected_keys"])
    said = [f"{', '.join(new)} initialised afresh (not in --init)"] if new else []
    said += [f"its {', '.join(unused)} left out (not part of this model)"] if unused else []
    if said:
        logger.warning(f"--init {init}: {'; '.join(said)}; the other weights are loaded")


def replace_mismatched_head(model, mismatched, init: str) -> None:
    """After `from_pretrained(..., ignore_mismatched_sizes=True)`: the head layers (outside the encoder) one of whose
    checkpoint tensors had another shape (`mismatched`: (name, saved shape, model shape)) start afresh, weights and
    biases alike, with a warning; a mismatched encoder tensor is refused, as no encoder weight may be dropped."""
    if not mismatched:
        return
    encoder = [name for name, _, _ in mismatched if name.startswith(f"{model.base_model_prefix}.")]
    if encoder:
        raise InvalidInputError(f"--init {init}: encoder weights {sorted(encoder)} have other shapes than this "
                                "model's; its pretrained weights only serve the architecture they were trained in")
    layers = sorted({name.rpartition(".")[0] for name, _, _ in mismatched})
    for layer in layers:
        initialise_afresh(model, layer)
    shapes = ", ".join(f"{name} {tuple(saved)} -> {tuple(wanted)}" for name, saved, wanted in sorted(mismatched))
    logger.warning(f"--init {init}: the head was replaced: {', '.join(layers)} initialised afresh, as this run's head "
                   f"has other shapes ({shapes}); the encoder's weights are loaded")


def initialise_afresh(model, layer: str) -> None:
    """Give the layer named `layer` new parameters, initialised as in a new model. (New ones: transformers marks the
    parameters from_pretrained filled as initialised, and its init functions then leave them as loaded.)"""
    module = model.get_submodule(layer)
    for name, parameter in list(module.named_parameters(recurse=False)):
        setattr(module, name, torch.nn.Parameter(torch.empty_like(parameter), parameter.requires_grad))
    model._init_weights(module)


def head_order(base, names: list[str]) -> list[int] | None:
    """For a classifier checkpoint continued on data labelled `names`: the head rows in the data's order when its
    head has the same classes (names matched by synonym, as in evaluation), else None (its head is replaced rather
    than its outputs silently changing meaning)."""
    from hf_datasets.labels import label_columns

    rows = label_columns([base.id2label[i] for i in range(base.num_labels)], names)
    if base.num_labels != len(names) or any(len(row) != 1 for row in rows):
        return None
    order = [row[0] for row in rows]
    return order if sorted(order) == list(range(len(names))) else None
