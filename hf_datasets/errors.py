"""Exceptions for unreadable or unsupported input; each names the offending path."""

from __future__ import annotations


class DataError(Exception):
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
