"""Checkpoints: `accelerator.save_state` into a hidden folder, then an atomic rename to `checkpoints/step_XXXXXXXX`.

A kill while saving leaves only a hidden `.tmp-*` folder, never a `step_*` folder that loads half; the files are
flushed to disk before the rename, so that a power loss cannot leave one either; old checkpoints are renamed away
before they are deleted, for the same reason.

Each checkpoint also holds the run's image processor (`preprocessor_config.json`: the input convention of the steps
it recorded, which a resumed run keeps) and `manifest.json`, written last before the rename: every file of the
checkpoint with its size and CRC-32. A folder is complete when its manifest is there and every file it lists is there
with that size and checksum; so a `step_*` folder that is only partly there all the same (a file system whose rename
copies and was interrupted, a truncated copy, a file lost or damaged later) is recognised before anything is loaded
from it.
`--resume_from_checkpoint latest` resumes from the newest complete checkpoint, warning about each newer one it skips;
a checkpoint whose weights are in other files (LAYOUTS) than the run's setup reads back (another FSDP
fsdp_state_dict_type, or FSDP or not) is refused, naming both, before anything is loaded.
`exported_model` is the model a checkpoint would export (its EMA weights where the run keeps an EMA; under FSDP its
weights are read from the shards or the whole-model file `save_state` wrote), which evaluation, prediction and the
probe take for it; weights in a file per process are refused, naming what is there and what is read. Their
results go beside the checkpoint (`results_path`) and outlive its deletion by retention; a checkpoint saved under a
step's name removes those of the earlier one of that name first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from accelerate.utils import DistributedType, broadcast_object_list
from accelerate.utils.constants import FSDP_MODEL_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_NAME

import modeling_cxrgm
from hf_datasets.errors import InvalidInputError, MissingInputError
from hf_datasets.shards import flush_to_disk

from .config import TrainArgs, load_model_source, load_yaml
from .export import apply_umask, save_model_atomically
from .optim import EMA
from .starting_point import MODEL_CLASSES

PREFIX = "step_"
MANIFEST = "manifest.json"  # what a complete checkpoint holds; written after everything else
# The ways a checkpoint may hold its model's weights: the files Accelerate's `save_state` writes in each setup
# (accelerate.checkpointing.save_accelerator_state, accelerate.utils.fsdp_utils.save_fsdp_model), in words
SHARDS = f"{FSDP_MODEL_NAME}_0"  # under FSDP, fsdp_state_dict_type SHARDED_STATE_DICT (fsdp.yaml): no safetensors
FULL = f"{FSDP_MODEL_NAME}.bin"  # under FSDP, FULL_STATE_DICT
LOCAL = f"{FSDP_MODEL_NAME}_rank*.bin"  # under FSDP, LOCAL_STATE_DICT
LAYOUTS = {
    SAFE_WEIGHTS_NAME: "the whole model in safetensors, as one process or DDP saves it",
    WEIGHTS_NAME: "the whole model pickled, as one process or DDP saves it with safe_serialization=False",
    SHARDS: "FSDP shards, as FSDP saves them with fsdp_state_dict_type SHARDED_STATE_DICT",
    FULL: "the whole model, as FSDP saves it with fsdp_state_dict_type FULL_STATE_DICT",
    f"{SHARDS}_rank*.bin": "a file per process, as FSDP saves SHARDED_STATE_DICT with use_dcp=False",
    LOCAL: "a file per process, as FSDP saves it with fsdp_state_dict_type LOCAL_STATE_DICT",
}
READABLE = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, SHARDS, FULL)  # those `exported_model` reads in one process
STATE_FILES = ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl")  # TrainState, EMA: as `track` registers them
# which weights `exported_model` loaded, in words (evaluate and predict say it)
WEIGHTS = {"ema": "its EMA weights, as its run exports them", "raw": "its weights (its run keeps no EMA)"}
RESULTS = ("eval", "probe")  # the kinds of results scripts write beside a checkpoint (`results_path`)
logger = logging.getLogger(__name__)
_SAVED: set[str] = set()  # the checkpoint folders (resolved) this run saved or resumed from: not saved again


@dataclass
class TrainState:
    """Where training is: optimiser step, epoch, micro-batches done in that epoch, best evaluation so far, the last
    step evaluated (a run resumed there does not evaluate it again), the seconds the run took before this process (a
    checkpoint stores them with this process's time added), and the sums of the losses (and mask fractions) read so
    far in this epoch, so a resumed epoch reports its whole mean, and the number of evaluations done."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evaluated_step: int | None = None  # the last step evaluated (None: none yet, or a checkpoint without it)
    evaluations: int | None = 0  # evaluations done so far (None: resumed from a checkpoint that kept no count)
    seconds: float = 0.0
    epoch_sums: dict = field(default_factory=lambda: {"loss": 0.0, "mask_fraction": 0.0, "count": 0})

    def __post_init__(self):
        self._since = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of the whole run so far, over resumes."""
        return self.seconds + time.perf_counter() - self._since

    def state_dict(self) -> dict:
        return {**asdict(self), "seconds": self.elapsed()}

    def load_state_dict(self, state: dict):
        for key, value in state.items():
            setattr(self, key, value)
        if "evaluations" not in state:  # an earlier version's checkpoint: the count before it is not known
            self.evaluations = None
        self._since = time.perf_counter()


def track(accelerator, state: TrainState, ema: EMA | None = None) -> None:
    """Have `save_state` / `load_state` keep the run's TrainState and its EMA, when it keeps one (STATE_FILES)."""
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)


def is_checkpoint(folder) -> bool:
    """Whether `folder` is a checkpoint written by this trainer (one without a manifest by an earlier version)."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / MANIFEST).is_file() or (folder / STATE_FILES[0]).exists())


def run_args(folder) -> TrainArgs | None:
    """The arguments of the run whose checkpoint `folder` is (`<run>/checkpoints/step_XXXXXXXX`: `<run>/args.yaml`);
    None where that file is not there (a checkpoint moved out of its run)."""
    recorded = Path(folder).resolve().parent.parent / "args.yaml"
    return TrainArgs(**load_yaml(recorded, TrainArgs)) if recorded.is_file() else None


def exported_model(folder: Path):
    """(model, image processor, weights) of checkpoint `folder` as its run exports them: the model with the EMA
    weights where the run keeps an EMA (weights "ema"), else with the weights it trains ("raw")."""
    reason = problem(folder) if (folder / MANIFEST).is_file() else None
    if reason is not None:
        raise InvalidInputError(f"Checkpoint {folder} is damaged: {reason}")
    processor = load_model_source(modeling_cxrgm.GroupMaskedViTImageProcessor.from_pretrained, folder, "--model",
                                  "preprocessor_config.json")
    model = _load_weights(_model_class(folder), folder)
    averaged = folder / STATE_FILES[1]
    if averaged.is_file():
        ema = EMA(model, decay=0.0)
        ema.load_state_dict(torch.load(averaged, map_location="cpu", weights_only=True))
        ema.copy_to(model)
    return model, processor, "ema" if averaged.is_file() else "raw"


def weights_layout(folder: Path) -> str | None:
    """The key of LAYOUTS that names the files checkpoint `folder` holds its model's weights in; None for none."""
    return next((layout for layout in LAYOUTS if any(folder.glob(layout))), None)


def _load_weights(model_class, folder: Path):
    """The model of checkpoint `folder` with the weights it trains, in float32, from the files of READABLE it holds
    them in (FSDP's merged here on the CPU); a checkpoint whose weights are in files a process of the run can only
    read back for itself is refused, naming what it holds."""
    layout = weights_layout(folder)
    if layout not in READABLE:
        raise InvalidInputError(f"Checkpoint {folder}: its model's weights cannot be read here: it holds "
                                f"{described([layout])}; a checkpoint is read from {described(READABLE)}. Evaluate the "
                                "run's export (model/), or resume the run under the Accelerate config it was saved "
                                "with")
    if layout in (SAFE_WEIGHTS_NAME, WEIGHTS_NAME):
        return model_class.from_pretrained(folder, dtype=torch.float32)
    if layout == SHARDS and not (folder / SHARDS / ".metadata").is_file():
        raise InvalidInputError(f"Checkpoint {folder}: its FSDP shards ({SHARDS}) have no .metadata file, which tells "
                                "how to read them; use another checkpoint")
    model = model_class(model_class.config_class.from_pretrained(folder)).float().eval()
    weights = model.state_dict()
    try:
        if layout == SHARDS:
            with warnings.catch_warnings():  # that it reads in this process alone, as asked
                warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
                dcp.load({"model": weights}, storage_reader=dcp.FileSystemReader(folder / SHARDS), no_dist=True)
        else:
            weights = torch.load(folder / layout, map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
    except (dcp.CheckpointException, OSError, RuntimeError, ValueError) as error:
        why = [str(failure) for failure, _ in error.failures.values()] if isinstance(error, dcp.CheckpointException) \
            else [str(error)]
        raise InvalidInputError(f"Checkpoint {folder}: the model's weights cannot be read from its "
                                f"{LAYOUTS[layout]} ({layout}): {'; '.join(why)}") from error
    return model


def described(layouts) -> str:
    """`layouts` (keys of LAYOUTS, None for none of them) in words, each with its files."""
    return " or ".join(f"{LAYOUTS[layout]} ({layout})" if layout else "no model weights" for layout in layouts)


def results_path(model, kind: str, suffix: str = "") -> Path:
    """Where a script writes its results on `model`: `<model>/<kind><suffix>`; for a checkpoint,
    `<kind>-<checkpoint><suffix>` beside it (`kind` one of RESULTS, `suffix` empty or from "-" or "."): retention
    deletes checkpoints (with what is inside them), not the results of their evaluation."""
    if is_checkpoint(model):
        folder = Path(model).resolve()
        return folder.parent / _beside(folder.name, kind, suffix)
    return Path(model) / f"{kind}{suffix}"


def _beside(checkpoint: str, kind: str, suffix: str) -> str:
    return f"{kind}-{checkpoint}{suffix}"


def _results_of(folder: Path) -> list[Path]:
    """The results written beside checkpoint `folder` (`results_path`), found by its name."""
    return sorted(path for kind in RESULTS for pattern in ("", "[-.]*")
                  for path in folder.parent.glob(_beside(folder.name, kind, pattern)))


@contextlib.contextmanager
def model_folder(source):
    """(folder, weights) to load a model from in one process: `source` itself (weights None), or for a checkpoint, a
    temporary save_pretrained folder of its `exported_model`. (Under torch.distributed only rank 0 writes one.)"""
    if not is_checkpoint(source):
        yield source, None
        return
    model, processor, weights = exported_model(Path(source))
    with tempfile.TemporaryDirectory() as scratch:
        yield save_model_atomically(model, processor, Path(scratch) / "model"), weights


def _model_class(folder: Path):
    """The model class of checkpoint `folder`: its run's task's (an earlier version's checkpoints saved before the
    run's first evaluation name the --init's model, or none), else the one its config.json names."""
    run = run_args(folder)
    if run is not None:
        return MODEL_CLASSES[run.task]
    named = modeling_cxrgm.GroupMaskedViTConfig.from_pretrained(folder).architectures or []
    if not named or not hasattr(modeling_cxrgm, named[0]):
        raise InvalidInputError(f"Checkpoint {folder} names no model class of this package ({named or 'none'}) and "
                                "has no args.yaml of its run two folders up to tell its task")
    return getattr(modeling_cxrgm, named[0])


def checkpoints(output_dir) -> list[Path]:
    """The checkpoint folders of a run (`step_*`, complete or not: see `problem`), oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def problem(folder: Path, thorough: bool = True) -> str | None:
    """Why checkpoint `folder` cannot be resumed from, or None when it is complete: its manifest is there and lists
    files that are all there with the recorded sizes and (`thorough`: read back) CRC-32 checksums."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return (f"it has no {MANIFEST}: its save did not finish, or an earlier version of this trainer wrote it (pass "
                "the folder itself to --resume_from_checkpoint to load it unchecked)")
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"its {MANIFEST} is unreadable ({error})"
    found = []
    for name, recorded in files.items():
        path = folder / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif path.stat().st_size != recorded["bytes"]:
            found.append(f"{name} has {path.stat().st_size} bytes, {recorded['bytes']} were saved")
        elif thorough and _crc32(path) != recorded["crc32"]:
            found.append(f"{name} is corrupt (its checksum differs from the one recorded when it was saved)")
    return "; ".join(found) or None


def resolve(resume: str | None, output_dir) -> Path | None:
    """The checkpoint folder to resume from: None, "latest" (None when the run has none yet) or a path.

    "latest" is the newest complete checkpoint: a warning names each newer folder skipped and why, and a run whose
    checkpoints are all damaged is refused naming them (rather than started afresh). A folder given by path must be
    complete; one without a manifest (written by an earlier version) is loaded unchecked, with a warning.
    """
    if not resume:
        return None
    if resume == "latest":
        skipped = []
        for folder in reversed(checkpoints(output_dir)):
            reason = problem(folder)
            if reason is None:
                for newer, why in skipped:
                    logger.warning(f"Skipping checkpoint {newer}: {why}. Resuming from the older {folder.name} "
                                   "instead (the steps after it are trained again)")
                return folder
            skipped.append((folder, reason))
        if skipped:
            raise InvalidInputError(f"No usable checkpoint in {Path(output_dir) / 'checkpoints'}: " + "; ".join(
                f"{folder.name}: {why}" for folder, why in skipped) + "; start a new --output_dir")
        return None
    path = Path(resume)
    if not is_checkpoint(path):
        raise MissingInputError(f"--resume_from_checkpoint {resume}: not a checkpoint folder written by this trainer")
    if not (path / MANIFEST).is_file():
        logger.warning(f"Checkpoint {path} has no {MANIFEST} (an earlier version of this trainer wrote it, or its "
                       "save did not finish): its files cannot be checked before they are loaded")
        _warn_of_newer(path, output_dir)
        return path
    reason = problem(path)
    if reason is not None:
        raise InvalidInputError(f"--resume_from_checkpoint {resume}: the checkpoint is damaged: {reason}; resume from "
                                "another one (latest: the newest complete one)")
    _warn_of_newer(path, output_dir)
    return path


def _warn_of_newer(path: Path, output_dir) -> None:
    """Warn when the run's own checkpoints hold newer steps than `path`, the one resumed from: they belong to the
    run as it went before; this run saves its own over each as it reaches its step, and until then `latest` would
    resume them, not this run."""
    if path.parent.resolve() != (Path(output_dir) / "checkpoints").resolve():
        return
    newer = [folder.name for folder in checkpoints(output_dir) if folder.name > path.name]
    if newer:
        logger.warning(f"Resuming from {path.name}, older than {', '.join(newer)} of this run: each is replaced by "
                       "this run's own when it reaches that step; a run stopped before then leaves them, and "
                       "--resume_from_checkpoint latest would then go on from them, not from this run")


def choose(accelerator, resume: str | None, output_dir) -> Path | None:
    """`resolve` on the main process (which reads and checks the files once, and warns once); every process gets
    its answer, so that all resume from the same checkpoint or all raise its error."""
    _SAVED.clear()  # a new run (several may run in one process): none of its checkpoints saved yet
    answer = [None, None]
    if accelerator.is_main_process:
        try:
            answer[0] = resolve(resume, output_dir)
        except Exception as error:  # (raised on every process below: none is left waiting for the others)
            answer[1] = error
    answer = broadcast_object_list(answer)
    if answer[1] is not None:
        raise answer[1]
    return answer[0]


def save(accelerator, output_dir, step: int, limit: int, processor=None, model_config=None) -> Path | None:
    """Save the full training state for `step` (with the run's image `processor` and `model_config`, when given: a
    resumed run goes on with both) and keep only the newest `limit` checkpoints. `limit` 0 saves none: a run that
    cannot be resumed (a benchmark's many short runs, which each wrote a full checkpoint at their end)."""
    if limit < 1:
        return None
    root = Path(output_dir) / "checkpoints"
    final = root / f"{PREFIX}{step:08d}"
    temporary = root / f".tmp-{PREFIX}{step:08d}"
    if str(final.resolve()) in _SAVED:  # saved already (at an epoch's end), or the one this run resumed from; another
        return final  # run's (resumed from an older one) or a damaged folder is replaced, not kept
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if processor is not None:
            processor.save_pretrained(temporary)
        if model_config is not None:
            model_config.save_pretrained(temporary)
        _write_manifest(temporary)
        apply_umask(temporary)  # the weights (safetensors writes them 0600) as readable as the run's other files
        for path in [*temporary.rglob("*"), temporary]:
            flush_to_disk(path)
        # results named for this step describe an earlier checkpoint of it (another run's, which a run resumed from
        # an older one replaces, or one retention deleted): gone before this one takes the name
        for stale in _results_of(final):
            logger.warning(f"Removing {stale}: the results of an earlier {final.name}, not of the one saved now")
            _remove(stale, root)
        if final.exists():  # another run's checkpoint of this step, or a damaged one: replaced
            _remove(final, root)
        os.replace(temporary, final)
        flush_to_disk(root)  # the rename itself
        # keep the newest `limit` complete checkpoints: damaged folders (newer ones a resumed run has not reached yet
        # included) do not count, so they never push out the checkpoint just saved; older damaged ones are dropped
        found = checkpoints(output_dir)
        complete = [folder for folder in found if problem(folder, thorough=False) is None]
        stale = complete[: max(0, len(complete) - max(limit, 1))]
        damaged = [folder for folder in found if folder not in complete and folder.name < final.name]
        for old in stale + damaged:
            if old in damaged:
                logger.warning(f"Removing damaged checkpoint {old} ({problem(old, thorough=False)}): {final.name} "
                               "supersedes it")
            _remove(old, root)
        for leftover in root.glob(".t*"):
            _delete(leftover)
    accelerator.wait_for_everyone()
    _SAVED.add(str(final.resolve()))
    return final


def _write_manifest(folder: Path) -> None:
    """Record every file of `folder` (but the manifest) with its size and CRC-32 in `folder/manifest.json`."""
    files = {path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "crc32": _crc32(path)}
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def _crc32(path: Path) -> int:
    checksum = 0
    with open(path, "rb") as file:
        while chunk := file.read(1 << 24):
            checksum = zlib.crc32(chunk, checksum)
    return checksum


def _remove(path: Path, root: Path) -> None:
    """Rename away, then delete (a kill while deleting leaves a hidden folder, never half a `step_*` one)."""
    trash = root / f".trash-{path.name}"
    _delete(trash)
    os.replace(path, trash)
    _delete(trash, ignore_errors=False)


def _delete(path: Path, ignore_errors: bool = True) -> None:
    """Delete the folder or file `path`, where there is one."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        if not ignore_errors:
            raise


def check_process_count(path: Path, num_processes: int) -> None:
    """Refuse to resume checkpoint `path` on another number of processes than saved it (one `random_states_<rank>.pkl`
    each): the effective batch (batch size x accumulation x processes), the learning rate scaled from it, the steps
    per epoch, and which images each process gets would all change in the middle of the run."""
    saved = len(list(path.glob("random_states_*.pkl")))
    if saved and saved != num_processes:
        raise InvalidInputError(f"Checkpoint {path} was saved by a run on {saved} processes, and this one has "
                                f"{num_processes}: the effective batch, the learning rate, the steps per epoch and "
                                f"each process's share of the data would change mid-run; resume on {saved} processes, "
                                "or start a new --output_dir (--init from this run's export keeps its weights)")


def resumable_layouts(fsdp_plugin) -> tuple[str, ...]:
    """The layouts (keys of LAYOUTS) Accelerate's `load_state` reads a model's weights from: under FSDP
    (`fsdp_plugin`; None without) the one of its fsdp_state_dict_type, else the whole model's files."""
    if fsdp_plugin is None:
        return SAFE_WEIGHTS_NAME, WEIGHTS_NAME
    return {"FULL_STATE_DICT": (FULL,), "SHARDED_STATE_DICT": (SHARDS,),
            "LOCAL_STATE_DICT": (LOCAL,)}[fsdp_plugin.state_dict_type.name]


def check_layout(path: Path, accelerator) -> None:
    """Refuse, before anything is loaded, to resume checkpoint `path` in a run that reads its model's weights from
    other files than it holds (saved under FSDP with another fsdp_state_dict_type, or under FSDP and resumed without
    it, or the reverse): `load_state` ended on a traceback from the first file it missed."""
    fsdp = accelerator.state.fsdp_plugin if accelerator.distributed_type == DistributedType.FSDP else None
    readable = resumable_layouts(fsdp)
    layout = weights_layout(path)
    if layout not in readable:
        setup = f"under FSDP with fsdp_state_dict_type {fsdp.state_dict_type.name}" if fsdp else "without FSDP"
        raise InvalidInputError(f"Checkpoint {path} holds {described([layout])}; this run ({setup}) resumes from "
                                f"{described(readable)}: resume it under the Accelerate config it was saved with, or "
                                "start a new --output_dir (--init from this run's export keeps its weights)")


def load(accelerator, path: Path):
    """Restore model, optimiser, registered objects (TrainState, EMA) and RNG states, with a clear error on mismatch."""
    try:
        accelerator.load_state(str(path))
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"Checkpoint {path} does not match this run's model or optimiser: {err}") from err
    _SAVED.add(str(Path(path).resolve()))
