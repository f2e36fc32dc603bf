"""Run arguments: dataclasses read from the command line and/or a YAML file with the same names.

`--config file.yaml` is read first, then any command-line flag overrides it (a mapping such as --model_config
overrides the keys it names, the YAML's other keys stay); the resolved arguments are written to
`<output_dir>/args.yaml` so a run can be repeated with `--config <output_dir>/args.yaml`. A run resumed with
`--resume_from_checkpoint` starts from the arguments it recorded there, so `--output_dir` and that flag suffice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hf_datasets.errors import InvalidInputError, MissingInputError

RECIPES = Path(__file__).parent / "recipes"


@dataclass
class TrainArgs:
    """Arguments of pretrain.py, finetune_classification.py and finetune_segmentation.py."""

    task: str = "classification"  # pretraining | classification | segmentation (set by the script)
    output_dir: str = "outputs/run"
    # data: build from the original layout (--dataset, --data_dir) or load prepared shards (--prepared_dir)
    dataset: str | None = None
    data_dir: str | None = None
    dataset_options: dict = field(default_factory=dict)
    prepared_dir: str | None = None
    train_splits: list[str] = field(default_factory=lambda: ["train"])
    eval_split: str | None = "test"
    label_mode: str = "auto"  # auto | single | multi
    num_workers: int = 0
    # model
    preset: str = "vit_small_patch16_224"
    image_size: int = 224
    num_channels: int = 1
    equalize: bool | None = None  # histogram-equalise each image (a processor setting, kept in the export); None: as
    # --init's saved processor (off from random)
    model_config: dict = field(default_factory=dict, metadata={"help": (
        "any GroupMaskedViTConfig fields, as a JSON object, over the preset (or the --init model's config). "
        "num_labels: classification takes it from the data's labels; segmentation (whose masks hold class indices, "
        "which do not fix it) from here where given, else from a segmenter --init (its own count, so its head is "
        "kept), else 1 (one sigmoid map)")})
    init: str = "random"  # "random" or a folder saved by save_pretrained (e.g. a GMML export)
    # optimisation
    epochs: int = 100
    max_steps: int | None = None  # stop after this many optimiser steps (schedules still span `epochs`)
    batch_size: int = 64  # per device
    grad_accum_steps: int = 1
    blr: float = 5e-4  # lr = blr * effective batch / lr_batch_divisor, unless `lr` is given
    lr: float | None = None
    lr_batch_divisor: int = 256
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.04
    weight_decay_end: float | None = 0.4  # cosine weight-decay schedule end; None keeps it constant
    layer_decay: float = 1.0  # layer-wise lr decay (fine-tuning: e.g. 0.65)
    clip_grad: float | None = 3.0
    clip_mode: str = "per_param"  # per_param | global
    ema_decay: float | None = None
    label_smoothing: float = 0.0
    drop_path: float = 0.1
    mixed_precision: str | None = None  # no | bf16 | fp16; default: `accelerate launch`'s setting (else no)
    torch_compile: bool = False
    torch_compile_mode: str | None = None  # default | reduce-overhead (CUDA graphs) | max-autotune; implies compiling
    seed: int = 0
    # augmentation (see augment.py)
    crop_scale: list[float] = field(default_factory=lambda: [0.05, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip_p: float = 0.5
    rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
    jitter: float = 0.1
    jitter_p: float = 0.3
    blur_p: float = 0.1
    # checkpoints, logging
    save_every_steps: int = 500
    save_total_limit: int = 2  # 0: no checkpoints (the run cannot be resumed)
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    eval_every_epochs: int = 1
    metric_for_best: str | None = None  # default: loss (pretraining), auroc_macro, dice
    log_every_steps: int = 10
    report_to: str = "tensorboard"  # tensorboard | none | any Accelerate tracker
    card: bool = True  # write a model card (README.md) into the exported folder
    hub_model_id: str | None = None  # "user/name" the model card refers to


@dataclass
class EvalArgs:
    """Arguments of evaluate.py."""

    model: str = "outputs/run/model"
    output_dir: str | None = None  # default: <model>/eval-<split>; a checkpoint's: eval-<checkpoint>-<split> beside it
    dataset: str | None = None
    data_dir: str | None = None
    dataset_options: dict = field(default_factory=dict)
    prepared_dir: str | None = None
    split: str = "test"
    in_domain_source: str | None = None  # drift reference; default the most frequent one the model trained on
    batch_size: int | None = None  # default: a pretraining model's per-device training batch (see seed), else 32
    num_workers: int = 0
    bootstrap: int = 1000  # resamples for the 95% intervals: of the patients where the split has patient ids
    threshold: float | None = None  # as predict.py's: the probability (default 0.5) at which a multi-label classifier
    # predicts a label, above which a one-label segmenter's pixel is in the mask
    mixed_precision: str | None = None  # no | bf16 | fp16; default: `accelerate launch`'s setting (else no)
    seed: int | None = None  # default: a pretraining model's training seed (its loss is then the run's), else 0


@dataclass
class PredictArgs:
    """Arguments of predict.py."""

    model: str = "outputs/run/model"
    inputs: list[str] = field(default_factory=list)  # files or folders: .dcm, .png, .jpg/.jpeg
    output: str | None = None  # classification: a CSV (default predictions.csv); segmentation: a folder of mask PNGs
    # and masks.csv (default masks)
    batch_size: int = 16
    threshold: float | None = None  # the probability (default 0.5) at which a multi-label classifier predicts a
    # label, above which a one-label segmenter's pixel is in the mask
    on_error: str = "raise"  # raise | skip: an unreadable image stops the run, or is reported and listed (*_skipped.csv)
    device: str | None = None  # default: cuda when available, else cpu
    num_workers: int = 0  # processes reading and preprocessing the files while the model runs
    resume: bool = False  # append to the existing table(s), skipping the files already listed there


def _field_type(tp):
    """(scalar parser, nargs, whether None is a value) for a dataclass annotation (they are strings under
    `from __future__ import annotations`)."""
    tp = eval(tp, vars(typing)) if isinstance(tp, str) else tp  # noqa: S307 - annotations of this module only
    optional = (isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union) and \
        type(None) in typing.get_args(tp)
    if optional:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is dict:
        return json_object, None, optional
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0], "+", optional
    return tp, None, optional


def json_object(text: str) -> dict:
    """A command-line JSON object, e.g. '{"patch_size": 8}'; anything else is an error that says so."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error}); write an object, e.g. "
                                         "'{\"key\": 1}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object; write one, e.g. '{{\"key\": 1}}'")
    return value


def parse_args(cls, argv=None, defaults: dict | None = None):
    """Fill `cls` from script `defaults`, then `--config` YAML, then explicit command-line flags."""
    parser = argparse.ArgumentParser(description=cls.__doc__)
    source = "YAML file"
    if cls is TrainArgs:  # the recipes are training arguments
        source += f", or a recipe name ({', '.join(recipe_names())}),"
    parser.add_argument("--config", help=f"{source} with any of the arguments below (flags override it)")
    for f in dataclasses.fields(cls):
        kind, nargs, optional = _field_type(f.type)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = f"default: {(defaults or {}).get(f.name, default)}"
        if f.metadata.get("help"):
            shown = f"{f.metadata['help']} ({shown})"
        if kind is bool:
            parser.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=shown)
        else:
            parser.add_argument(f"--{f.name}", type=_none_or(kind) if optional else kind, nargs=nargs,
                                default=argparse.SUPPRESS, help=shown)
    namespace = vars(parser.parse_args(argv))
    values = dict(defaults or {})
    config_path = namespace.pop("config", None)
    config = load_yaml(config_path, cls) if config_path else {}
    values.update(recorded_run_args(cls, {**values, **config, **namespace}))
    values.update(config)
    configured = dict(values)
    for name, given in namespace.items():
        if isinstance(given, dict) and isinstance(configured.get(name), dict) and _merges(name, configured, namespace):
            given = {**configured[name], **given}  # a mapping flag overrides the keys it names, the YAML's others stay
        values[name] = given
    return cls(**values)


def recorded_run_args(cls, given: dict) -> dict:
    """The arguments a run being resumed (`given` names --resume_from_checkpoint) recorded: args.yaml of its
    --output_dir, else of the run whose checkpoint folder is named; {} for a new run or none recorded. Flags and
    --config given on resume override them (the run then refuses those that would make it another run). Not
    --max_steps: where an earlier invocation was to stop, not where the run ends (resumed without it, a run goes
    on to its last epoch)."""
    resume = given.get("resume_from_checkpoint")
    if not resume or "output_dir" not in {f.name for f in dataclasses.fields(cls)}:
        return {}
    runs = [Path(given.get("output_dir") or "")] + ([] if resume == "latest" else [Path(resume).parent.parent])
    recorded = next((run / "args.yaml" for run in runs if (run / "args.yaml").is_file()), None)
    if recorded is None:
        return {}
    return {name: value for name, value in load_yaml(recorded, cls).items() if name != "max_steps"}


def _merges(name: str, values: dict, namespace: dict) -> bool:
    """Whether a command-line mapping merges over the YAML's (key by key) rather than replacing it: always, except
    --dataset_options with a command-line --dataset other than the YAML's, whose options were another builder's."""
    return not (name == "dataset_options" and "dataset" in namespace and namespace["dataset"] != values.get("dataset"))


def _none_or(kind):
    """The parser of an optional field's flag: None, none or null is None, anything else `kind`'s."""
    def convert(text):
        return None if text in ("None", "none", "null") else kind(text)

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def recipe_names() -> list[str]:
    """The recipes `--config` takes by name (train/recipes/*.yaml)."""
    return sorted(path.stem for path in RECIPES.glob("*.yaml"))


def load_yaml(path, cls) -> dict:
    """The mapping in a YAML file, checked against the fields of `cls`; a recipe name is looked up in recipes/."""
    path = Path(path)
    if not path.exists() and (RECIPES / f"{path.name}.yaml").exists():
        path = RECIPES / f"{path.name}.yaml"
    if not path.is_file():
        recipes = f", nor a recipe name ({', '.join(recipe_names())})" if cls is TrainArgs else ""
        raise MissingInputError(f"{path}: no such YAML file{recipes}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise InvalidInputError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise InvalidInputError(f"{path}: expected a mapping of argument names to values, not a "
                                f"{type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidInputError(f"{path}: unknown arguments {unknown}; valid names are the {cls.__name__} fields")
    return {f.name: _yaml_value(path, f.name, values[f.name], *_field_type(f.type))
            for f in dataclasses.fields(cls) if f.name in values}


def recipe_model_config(name: str) -> dict:
    """The `model_config` of recipe `name` (train/recipes/<name>.yaml): the model settings it trains with."""
    return load_yaml(RECIPES / f"{name}.yaml", TrainArgs).get("model_config", {})


def _yaml_value(path, name: str, value, kind, nargs, optional: bool):
    """`value` as the field's type, as the command line would give it: YAML reads `1e-3` as text (a float needs a
    dot there), which becomes a float; a value of another type, or none for a field that needs one, is an
    InvalidInputError naming the argument."""
    if value is None:
        if optional:
            return None
        if kind is str:  # the args.yaml of a run of an earlier version recorded `--report_to none` as null
            return "none"
        raise InvalidInputError(f"{path}: {name} has no value (an empty entry, or every line under it commented "
                                "out): give it one, or leave the entry out for its default")
    if nargs:
        if not isinstance(value, list):
            raise InvalidInputError(f"{path}: {name} must be a list, got {value!r}")
        return [_yaml_value(path, name, item, kind, None, False) for item in value]
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    expected = {bool: (bool,), int: (int,), float: (int, float), str: (str,), json_object: (dict,)}[kind]
    if isinstance(value, expected) and (kind is bool or not isinstance(value, bool)):
        return float(value) if kind is float else value
    hint = " (YAML reads unquoted no/yes/off/on as booleans: quote the text)" if isinstance(value, bool) else ""
    type_name = {bool: "true or false", int: "an integer", float: "a number", str: "text", json_object: "a mapping"}
    raise InvalidInputError(f"{path}: {name} must be {type_name[kind]}, got {value!r}{hint}")


def save_args(args, output_dir) -> Path:
    """Write the resolved arguments to `<output_dir>/args.yaml`."""
    path = Path(output_dir) / "args.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dataclasses.asdict(args), sort_keys=False))
    return path


def takes_threshold(config) -> bool:
    """Whether a model's decisions cut probabilities at a threshold: a multi-label classifier's (per label) and a
    one-label segmenter's (per pixel); the others take the most probable class or make none (pretraining)."""
    architecture = (config.architectures or [""])[0]
    if architecture.endswith("ForImageClassification"):
        return config.problem_type == "multi_label_classification"
    return architecture.endswith("ForSegmentation") and config.num_labels == 1


def decision_threshold(threshold: float | None, config, model) -> float:
    """--threshold, 0.5 when not given; refused, naming `model` (the --model), outside [0, 1] and for a model whose
    decisions take no threshold (`takes_threshold`), where it would change nothing."""
    if threshold is None:
        return 0.5
    if not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(f"--threshold {threshold}: a probability, from 0 to 1")
    if not takes_threshold(config):
        architecture = (config.architectures or [""])[0]
        if architecture.endswith("ForSegmentation"):
            kind = "segmentation model with several labels (each pixel takes its most probable one)"
        elif architecture.endswith("ForPreTraining"):
            kind = "pretraining model (it makes no decisions)"
        else:
            kind = "single-label classifier (the most probable class is predicted)"
        raise InvalidInputError(f"--threshold applies to multi-label classifiers and one-label segmenters; {model} "
                                f"is a {kind}")
    return threshold


def load_model_source(load, source, flag: str, file: str = "config.json"):
    """`load(source)` (a `from_pretrained` reading `file`); when that fails for a `source` that is no folder here, the
    error names `flag` and says so, instead of the Hub's repo-id or connection message; a folder here without
    config.json or `file` is refused naming it (and its `model/` export where it is a run's output folder), and a
    `file` that is no JSON object, or holds a value that the loaded class refuses, is named with the folder."""
    folder = Path(source)
    if folder.is_dir() and not (folder / "config.json").is_file():
        hint = f"; it is a run's folder: pass {folder / 'model'}" if (folder / "model" / "config.json").is_file() \
            else " (expected a save_pretrained folder, e.g. a run's model/)"
        raise MissingInputError(f"{flag} {source}: no config.json there{hint}")
    if folder.is_dir() and not (folder / file).is_file():
        raise MissingInputError(f"{flag} {source}: no {file} there; the model cannot be used without it (restore it "
                                "from where the model was saved: a run's model/ and checkpoints hold it)")
    try:
        return load(source)
    except (OSError, TypeError, ValueError) as error:  # (TypeError: a file whose JSON is no object)
        if isinstance(error, OSError) and not folder.exists():
            raise MissingInputError(f"{flag} {source}: no such folder here, and no model of that name could be loaded "
                                    f"from the Hub or its cache ({error})") from error
        problem = json_problem(folder / file)
        if problem is not None:
            raise InvalidInputError(f"{flag} {source}: its {file} ({folder / file}) {problem}; restore the file or "
                                    "choose another model") from error
        if not isinstance(error, ValueError):
            raise
        raise InvalidInputError(f"{flag} {source}: its {file} holds a value that cannot be used ({error}); restore "
                                "the file or choose another model") from error


def json_problem(path: Path) -> str | None:
    """Why the file at `path` is no JSON object, as "is not valid JSON (...)" or "holds a ..., not a JSON object"
    (None where it is one, or where there is no such file)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, ValueError) as error:
        return f"is not valid JSON ({error})"
    return None if isinstance(value, dict) else f"holds a {type(value).__name__}, not a JSON object"
