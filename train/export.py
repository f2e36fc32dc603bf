"""The end of every run: a Hub-loadable model folder with its image processor, metrics.json and a model card."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def current_umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting it and setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(folder) -> None:
    """Give every file under `folder` the mode the umask gives a newly created file (0644 under umask 022), and every
    folder the mode it gives a new folder. transformers (safetensors) writes `model.safetensors` 0600 whatever the
    umask, and copies keep that mode: an exported model shared with the group or other users would then have
    readable config and processor files but unreadable weights. Never wider than the umask allows."""
    mask = current_umask()
    folder = Path(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def staging_folder(directory: Path):
    """A fresh hidden folder `.tmp-<name>` beside `directory` to write its new contents in; removed when writing them
    fails, so that no half-written folder is left and `directory` (an earlier export) stays as it was."""
    temporary = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        yield temporary
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def save_model_atomically(model, processor, directory, state_dict: dict | None = None) -> Path:
    """`save_pretrained` of model (with `state_dict`, e.g. gathered from FSDP shards, when given) and processor
    into a hidden folder, then renamed over `directory`."""
    directory = Path(directory)
    with staging_folder(directory) as temporary:
        model.save_pretrained(temporary, state_dict=state_dict)
        processor.save_pretrained(temporary)
        apply_umask(temporary)
    return replace_folder(temporary, directory)


def replace_folder(new: Path, directory: Path) -> Path:
    """Rename the finished folder `new` to `directory`. An earlier `directory` is first moved aside (`.old-<name>`)
    and removed only once `new` is in its place: a stop in between leaves a whole folder, under its name or beside it,
    never none."""
    if directory.exists():
        old = directory.with_name(f".old-{directory.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(new, directory)
        shutil.rmtree(old)
    else:
        os.replace(new, directory)
    return directory


def write_metrics(metrics: dict, *paths, text: dict | None = None) -> None:
    """Write finite float metrics, and `text` fields (e.g. which weights were scored, the labels without an AUROC),
    as JSON to each path."""
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    clean.update(text or {})
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")


def export(best_dir, output_dir, metrics: dict, run: dict, card: bool = True) -> Path:
    """Copy the best model folder to `<output_dir>/model`, add metrics.json (there and in output_dir) and README.md.

    `run` is the model-card description (task, datasets, preprocessing, training); its `metrics` are filled here.
    The folder is written beside `model` and renamed over it (`replace_folder`): an export that fails leaves the
    earlier `model` and `<output_dir>/metrics.json` as they were and no half-written folder.
    """
    model_dir = Path(output_dir) / "model"
    with staging_folder(model_dir) as temporary:
        shutil.copytree(best_dir, temporary)
        write_metrics(metrics, temporary / "metrics.json",  # with how they were scored (the labels without an AUROC)
                      text={k: v for k, v in metrics.items() if not isinstance(v, (int, float))})
        run = {**run, "metrics": json.loads((temporary / "metrics.json").read_text())}
        (temporary / "run.json").write_text(json.dumps(run, indent=2) + "\n")
        if card:
            try:
                from model_cards import write_model_card
            except ImportError:
                logger.warning("model_cards is not installed: %s has no model card", model_dir)
            else:
                write_model_card(temporary, run)
        apply_umask(temporary)
    replace_folder(temporary, model_dir)
    shutil.copyfile(model_dir / "metrics.json", Path(output_dir) / "metrics.json")  # once the export is in place
    return model_dir
