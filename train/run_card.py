"""What a training run's model card says of it (`model_card_run`): its data, their label policy, preprocessing,
training and starting point, read from the run's arguments, its prepared data's record and its --init export."""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path

import torch

from hf_datasets.builders.cxr_pool import pooled_folders
from hf_datasets.registry import FOLDER_LAYOUTS

from . import data
from .config import TrainArgs
from .optim import peak_learning_rate

logger = logging.getLogger(__name__)

# builder options that decide what the labels are: the model card's label policy
LABEL_OPTIONS = ("uncertain", "blank", "readers", "labeler", "tasks", "labels", "classes", "label_column", "label_map",
                 "label_names", "other_class")


# the uncertain / blank switches: stated on the card even when left at the builder's default
POLICY_OPTIONS = ("uncertain", "blank")
NO_LABEL_OPTIONS = "the set's own labels (no label options)"  # the label policy of a set read without any


def model_card_run(args: TrainArgs, accelerator, processor, train_set, eval_set, duration_s: float,
                   epochs_trained: float, selected_by: str | None = None, evaluations: int = 1,
                   init_repo: str | None = None, prepared: dict | None = None) -> dict:
    """The `run` description the model card is written from (metrics are added by export). `selected_by`: the
    metric that picked the exported model among `evaluations` evaluations on the evaluation split; `init_repo`: the
    Hub repo id --init was fetched for (the card's base model); `prepared`: --prepared_dir's `prepared_settings`
    (read here when not given)."""
    if prepared is None:
        prepared = prepared_settings(args.prepared_dir)
    name = data_name(args, prepared)
    # the builder that read the data: a folder layout's data are named by their folder, so the card names it too
    builder = (prepared or {}).get("dataset") if args.prepared_dir else args.dataset
    hardware = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "CPU"
    # --init is a local folder: absolute, so that the card never takes a relative one (pre/model) for a Hub repo id
    init = "random" if args.init == "random" else str(Path(args.init).resolve())
    run = {
        "task": args.task,
        "train_datasets": [{"name": name, "num_images": len(train_set), "splits": list(args.train_splits),
                            "label_policy": label_policy(args, prepared),
                            **({"builder": builder} if builder else {})}],
        "eval_dataset": {"name": name, "split": args.eval_split or "+".join(args.train_splits),
                         "num_images": len(eval_set) if eval_set else 0},
        "preprocessing": {"size": processor.size, "num_channels": processor.num_channels,
                          "resize_mode": processor.resize_mode, "normalization": processor.normalization,
                          "bit_depth": processor.bit_depth, "equalize": processor.equalize,
                          "windowing": "DICOM: modality LUT, header VOI (window or VOI LUT), MONOCHROME1 inverted; "
                                       "PNG/JPEG: as stored"},
        "training": {"epochs": round(epochs_trained, 2), "batch_size": args.batch_size * args.grad_accum_steps
                     * accelerator.num_processes, "learning_rate": peak_learning_rate(args, accelerator.num_processes),
                     "precision": args.mixed_precision, "hardware": f"{accelerator.num_processes} x {hardware}",
                     "duration_s": round(duration_s, 1), "seed": args.seed, "per_device_batch_size": args.batch_size,
                     "init": "random" if init == "random" else ("gmml" if _is_gmml(init) else init_repo or init)},
    }
    if builder == "cxr_pool":  # a pool is its folders: the card lists each (a public set's title and licence)
        options = ((prepared or {}).get("options") if args.prepared_dir else args.dataset_options) or {}
        members = _pooled_counts(train_set) or _pool_option_folders(options, args.data_dir)
        if members:
            entry = run["train_datasets"][0]
            run["train_datasets"] = [{**entry, "name": member, "num_images": count, "builder": builder}
                                     for member, count in members.items()]
        if evaluated := _pooled_counts(eval_set):  # the card names the evaluated data by them too
            run["eval_dataset"]["folders"] = evaluated
    sources = train_set.source_counts() if isinstance(train_set, data.CXRDataset) else None
    if sources is not None:  # the data sets the model saw: train.evaluate's drift report takes them as in-domain
        run["train_sources"] = sources
    if selected_by and evaluations > 1:  # the card's results then come from the split that chose the model
        run["eval_dataset"]["selected_by"] = {"metric": selected_by, "evaluations": evaluations}
    if init != "random":
        run["base_model"] = init_repo or _declared_repo(init) or init
        if earlier := _init_datasets(init):
            run["earlier_datasets"] = earlier
    if args.hub_model_id:
        run["repo_id"] = args.hub_model_id
    return run


def _pooled_counts(dataset) -> dict[str, int] | None:
    """Images per pooled folder of a cxr_pool's `dataset` (a CXRDataset), read from its rows' paths (relative to the
    pool's data_dir: <folder>/<file>; duplicates and excluded patients already left out); None where it has none to
    read (a set given without them)."""
    paths, rows = getattr(dataset, "sources", None), getattr(dataset, "rows", None)
    if paths is None or rows is None:
        return None
    column = paths["path"]
    return pooled_folders(column[i] for i in rows) or None


def _pool_option_folders(options: dict, data_dir: str | None) -> dict[str, None]:
    """A pool's folders where its rows cannot be read, their images not counted (None): its `folders` option, else
    the folders of `data_dir` with a labels.csv."""
    folders = options.get("folders")
    if not folders and data_dir and Path(data_dir).is_dir():
        folders = sorted(path.parent.name for path in Path(data_dir).glob("*/labels.csv"))
    return {str(member): None for member in folders or ()}


def prepared_settings(prepared_dir: str | None) -> dict | None:
    """What --prepared_dir's prepare_settings.json says the shards were prepared from: {"dataset": the builder's name
    or None, "options": its build options, or None where they cannot be told (a streamed set not built here), "folder":
    the name of the data's folder, or None (an earlier version recorded none)}; None without --prepared_dir or such a
    file (shards saved otherwise).
    It only names the data and their label policy on the card: a damaged file (an earlier version wrote it in place,
    and a kill could cut it short) is warned about, naming it, and the card then names the data by their folder and
    the label policy "unknown". run_training reads it before training, since the
    card is written after it."""
    if not prepared_dir:
        return None
    path = Path(prepared_dir) / "prepare_settings.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
        dataset, options, folder = saved.get("dataset"), saved.get("options", {}), saved.get("folder")
        if not all(value is None or isinstance(value, str) for value in (dataset, folder)) or \
                not (options is None or isinstance(options, dict)):
            raise ValueError(f"its dataset {dataset!r}, folder {folder!r} or options {options!r} are not names and a "
                             "mapping")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        logger.warning(f"{path} cannot be read ({error}): the model card names the training data by their folder "
                       "and their label policy \"unknown\"; the shards themselves are used as they are")
        return {"dataset": None, "options": None, "folder": None}
    return {"dataset": dataset, "options": options, "folder": folder}


def data_name(args: TrainArgs, prepared: dict | None = None) -> str:
    """The training data's name on the card: a public set's builder name (for --prepared_dir, the one it was prepared
    from: `prepared`, its `prepared_settings`, read here when not given), whose source, licence and population the
    card then gives; a folder layout's folder (kermany_pediatric, not cxr_folder; for --prepared_dir the one it was
    prepared from, else, from an earlier version, which recorded none, the prepared folder)."""
    dataset, folder = args.dataset, args.data_dir
    if args.prepared_dir:
        prepared = prepared if prepared is not None else prepared_settings(args.prepared_dir)
        dataset, folder = (prepared or {}).get("dataset"), (prepared or {}).get("folder") or args.prepared_dir
    if dataset and dataset not in FOLDER_LAYOUTS:
        return dataset
    return Path(os.path.abspath(folder or "data")).name  # "." names the folder it is


def label_policy(args, prepared: dict | None = None) -> str:
    """The label options a run's data (`args`: TrainArgs or EvalArgs) was built with (for --prepared_dir: when it was
    prepared, `prepared`, its `prepared_settings`, read here when not given), e.g. "blank=zeros, uncertain=ones",
    `NO_LABEL_OPTIONS` (a set without label options, e.g. nih, kermany), or "unknown" (a damaged
    prepare_settings.json). A set with uncertain / blank switches always states both, those left at their default
    included."""
    options, dataset = args.dataset_options, args.dataset
    if args.prepared_dir:
        prepared = prepared if prepared is not None else prepared_settings(args.prepared_dir)
    if args.prepared_dir and prepared is not None:
        options, dataset = prepared["options"], prepared["dataset"]
        if options is None:
            return "unknown"
    options = {**_policy_defaults(dataset), **options}
    chosen = sorted(set(options) & set(LABEL_OPTIONS))
    return ", ".join(f"{name}={_option_text(options[name])}" for name in chosen) or NO_LABEL_OPTIONS


def _policy_defaults(dataset: str | None) -> dict:
    """The defaults of the named builder's uncertain / blank switches ({} for a set without them)."""
    import importlib
    import inspect

    from hf_datasets.registry import BUILDERS

    if dataset not in BUILDERS:
        return {}
    module, function = BUILDERS[dataset]
    builder = getattr(importlib.import_module(f"hf_datasets.builders.{module}"), function)
    return {name: parameter.default for name, parameter in inspect.signature(builder).parameters.items()
            if name in POLICY_OPTIONS}


def _option_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _declared_repo(path: str) -> str | None:
    """The Hub repo id a local --init export was made for (its run.json's `repo_id`, from that run's
    --hub_model_id), else None: the card's base model is then that repo, not a local folder's name."""
    run_file = Path(path) / "run.json"
    try:
        repo_id = json.loads(run_file.read_text()).get("repo_id") if run_file.is_file() else None
    except (OSError, ValueError, AttributeError):  # a damaged record names no repo
        return None
    return repo_id if isinstance(repo_id, str) and repo_id.count("/") == 1 else None


def _init_datasets(path: str) -> list[dict]:
    """The data sets a local --init export's weights were trained on, from its run.json: those its own --init had
    (`earlier_datasets`), then its `train_datasets`, each with the `stage` (that run's task) that used it; none for
    a folder without a readable record (a Hub download carries none: the card points at the base model's card)."""
    run_file = Path(path) / "run.json"
    try:
        record = json.loads(run_file.read_text()) if run_file.is_file() else {}
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    earlier = [d for d in record.get("earlier_datasets") or [] if isinstance(d, dict)]
    own = [{**d, "stage": record.get("task")} for d in record.get("train_datasets") or [] if isinstance(d, dict)]
    return earlier + own


def _is_gmml(path: str) -> bool:
    """Whether the --init folder holds a GMML pretraining model (False once it is gone: a resumed run may outlive it,
    and the card then names the folder)."""
    config = Path(path) / "config.json"
    architectures = (json.loads(config.read_text()).get("architectures") or []) if config.is_file() else []
    return any(a.endswith("ForPreTraining") for a in architectures)
