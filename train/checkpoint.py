"""Checkpoints: `accelerator.save_state` into a hidden folder, then an atomic rename to `checkpoints/step_XXXXXXXX`.

A kill while saving leaves only a hidden `.tmp-*` folder, never a `step_*` folder that loads half; the files are
flushed to disk before the rename, so that a power loss cannot leave one either; old checkpoints are renamed away
before they are deleted, for the same reason.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PREFIX = "step_"


@dataclass
class TrainState:
    """Where training is: optimiser step, epoch, micro-batches done in that epoch, best evaluation so far, and the
    seconds the run took before this process (a checkpoint stores them with this process's time added), and the
    sums of the losses (and mask fractions) read so far in this epoch, so a resumed epoch reports its whole mean."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
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
        self._since = time.perf_counter()


def checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def resolve(resume: str | None, output_dir) -> Path | None:
    """The checkpoint folder to resume from: None, "latest" (None when the run has none yet) or a path."""
    if not resume:
        return None
    if resume == "latest":
        found = checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    if not (path.is_dir() and (path / "custom_checkpoint_0.pkl").exists()):
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: not a checkpoint folder written by this trainer")
    return path


def save(accelerator, output_dir, step: int, limit: int) -> Path:
    """Save the full training state for `step` and keep only the newest `limit` checkpoints."""
    root = Path(output_dir) / "checkpoints"
    final = root / f"{PREFIX}{step:08d}"
    temporary = root / f".tmp-{PREFIX}{step:08d}"
    if final.exists():
        return final
    if accelerator.is_main_process:
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in [*temporary.rglob("*"), temporary]:
            _flush_to_disk(path)
        os.replace(temporary, final)
        _flush_to_disk(root)  # the rename itself
        for old in checkpoints(output_dir)[: max(0, len(checkpoints(output_dir)) - max(limit, 1))]:
            trash = root / f".trash-{old.name}"
            os.replace(old, trash)
            shutil.rmtree(trash)
        for leftover in root.glob(".t*"):
            shutil.rmtree(leftover, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _flush_to_disk(path: Path) -> None:
    """fsync a file, or a folder's entries (where the file system allows it for folders)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:
        if not path.is_dir():  # some file systems refuse to fsync a folder: its files are flushed all the same
            raise
    finally:
        os.close(descriptor)


def load(accelerator, path: Path):
    """Restore model, optimiser, registered objects (TrainState, EMA) and RNG states, with a clear error on mismatch."""
    try:
        accelerator.load_state(str(path))
    except (RuntimeError, KeyError, ValueError) as err:
        raise ValueError(f"Checkpoint {path} does not match this run's model or optimiser: {err}") from err
