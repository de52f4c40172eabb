"""The package's exception and warning hierarchy.

Every error raised on purpose by medseg_fast derives from :class:`MedsegError`
and says what was wrong and, where it can, what to do about it. Errors about
arguments also derive from the matching built-in (``ValueError``,
``TypeError``) so generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "MedsegError",
    "InvalidImageError",
    "EmptyImageError",
    "NonFiniteError",
    "InvalidParameterError",
    "BackendUnavailableError",
    "ImageIOError",
    "ImageFileNotFoundError",
    "UnsupportedMosaicError",
    "CorruptFileError",
    "NotAnImageError",
    "UnsupportedTransferSyntaxError",
    "MissingGeometryError",
    "AmbiguousSeriesError",
    "DuplicatePositionError",
    "UnevenSpacingError",
    "MedsegWarning",
]


class MedsegError(Exception):
    """Base class of every exception raised on purpose by medseg_fast."""


class InvalidImageError(MedsegError, ValueError):
    """An array argument has the wrong ndim, dtype or shape for the function."""


class EmptyImageError(InvalidImageError):
    """An array argument has no voxels (a zero-size dimension)."""


class NonFiniteError(InvalidImageError):
    """An image holds NaN or infinite values where the function needs finite ones."""


class InvalidParameterError(MedsegError, ValueError):
    """A scalar or tuple parameter (sigma, threshold, spacing, ...) is out of range."""


class BackendUnavailableError(MedsegError, RuntimeError):
    """The requested compute backend is not installed or cannot run here."""


class ImageIOError(MedsegError, OSError):
    """Base class of loading and saving errors; the message names the file."""


class ImageFileNotFoundError(ImageIOError, FileNotFoundError):
    """The path given to a loader does not exist (also a FileNotFoundError)."""


class UnsupportedMosaicError(ImageIOError):
    """A Siemens MOSAIC DICOM (slices tiled into one frame); convert it with dcm2niix."""


class CorruptFileError(ImageIOError):
    """A file is truncated, or its header contradicts its contents."""


class NotAnImageError(ImageIOError):
    """A file is not a DICOM or NIfTI image (or holds no pixel data)."""


class UnsupportedTransferSyntaxError(ImageIOError):
    """DICOM pixel data is compressed with a codec whose decoder is not installed."""


class MissingGeometryError(ImageIOError):
    """DICOM geometry tags needed to build a volume are absent."""


class AmbiguousSeriesError(ImageIOError):
    """A folder holds several series and the caller asked for exactly one."""


class DuplicatePositionError(ImageIOError):
    """Several DICOM slices of one series share a position along the slice normal."""


class UnevenSpacingError(ImageIOError):
    """Slices are unevenly spaced or missing and ``strict=True`` was asked for."""


class MedsegWarning(UserWarning):
    """The one warning class of medseg_fast (data quirks, fallbacks, approximations)."""
