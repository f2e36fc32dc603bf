"""Exceptions for wrong input (each names what is wrong), and `run_script`, which ends a script on one with its
message instead of a traceback."""

from __future__ import annotations

import os
import sys


class InputError(Exception):
    """Base class: the user's input is wrong (a flag, a path, a data or model folder, a setting, a token). Scripts run
    by `run_script` report it as `error: <message>` and exit with status 2."""


class InvalidInputError(InputError, ValueError):
    """A flag, setting or option whose value cannot be used."""


class MissingInputError(InputError, FileNotFoundError):
    """A file or folder the user named that is not there, or not the kind that was expected."""


def run_script(main) -> None:
    """Run a script's `main()`, then end the process. An `InputError` prints `error: <message>` (and its notes) on
    stderr and exits with status 2, as argparse does for a wrong flag, without a traceback; any other exception is a
    bug and propagates with its traceback. A process of a distributed run exits at once, once its output is flushed,
    with 0 or 2: freeing gloo's process group can deadlock (the freeing thread holds the GIL that a gloo worker thread
    waits for in order to release a tensor), which left finished runs hanging at exit."""
    try:
        main()
    except InputError as error:
        print(f"error: {error}", *getattr(error, "__notes__", ()), sep="\n", file=sys.stderr)
        _end(2)
    _end(0)


def _end(status: int) -> None:
    distributed = sys.modules.get("torch.distributed")  # not imported: no process group to leave
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


class DataError(InputError):
    """Base class: a file or folder that cannot be used, with the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Rebuilt from (path, reason): the default rebuilds from the message alone, which __init__ refuses, so the
        # error could not come back from a worker process.
        return type(self), (self.path, self.reason), self.__dict__.copy()


class ImageReadError(DataError):
    """An image file that is empty, corrupt or in an unsupported format."""


class LayoutError(DataError):
    """A data set folder that does not have the expected files."""


class DicomError(DataError):
    """Base class for DICOM files that cannot be turned into an image."""


class NotDicomError(DicomError):
    """The file is not DICOM (no 'DICM' marker / unparseable header)."""


class NoPixelDataError(DicomError):
    """An image object without Pixel Data."""


class NonImageDicomError(DicomError):
    """A DICOM object that is not an image (RT plan, structured report, ...)."""


class TruncatedDicomError(DicomError):
    """The file ends before its header or pixel data is complete."""


class MissingDecoderError(DicomError):
    """The transfer syntax needs a decoder plugin that is not installed."""


class UndecodableDicomError(DicomError):
    """Pixel data that the installed decoders fail on, or that lacks an element needed to read it."""
