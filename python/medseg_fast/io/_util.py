"""Helpers shared by the DICOM and NIfTI readers (no public names here).

* :class:`ImageFileNotFoundError` -- the "no such path" error, catchable both as
  :class:`~medseg_fast.ImageIOError` and as the built-in :class:`FileNotFoundError`.
* :class:`UnsupportedMosaicError` -- a Siemens MOSAIC DICOM (several slices tiled
  into one frame), which these readers do not demosaic.
* :class:`WarningLog` -- emits :class:`~medseg_fast.MedsegWarning` and keeps the
  messages for ``Image.meta['warnings']``.
* :func:`rescaled_dtype` / :func:`apply_rescale` -- the one policy for turning
  stored values into output values (DICOM RescaleSlope/Intercept, NIfTI
  scl_slope/scl_inter): integer output when the slopes and intercepts are
  integral and the result fits, float32 otherwise, never float64; the work is
  done one slice at a time, in place when the item sizes allow.
"""

from __future__ import annotations

import errno
import os
import sys
import warnings

import numpy as np

from .._errors import ImageIOError, MedsegWarning

__all__ = [
    "ImageFileNotFoundError",
    "UnsupportedMosaicError",
    "WarningLog",
    "rescaled_dtype",
    "apply_rescale",
    "check_exists",
]


# re-exported from the package's one error hierarchy
from .._errors import ImageFileNotFoundError, UnsupportedMosaicError  # noqa: E402,F401


class WarningLog(list):
    """A list of warning messages that also emits each one as a MedsegWarning."""

    def warn(self, message: str) -> None:
        self.append(message)
        # Point the warning at the first caller outside medseg_fast.io.
        here = os.path.dirname(os.path.abspath(__file__))
        frame, level = sys._getframe(0), 1
        while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
            frame, level = frame.f_back, level + 1
        warnings.warn(message, MedsegWarning, stacklevel=level)


def check_exists(path: str) -> None:
    """Raise :class:`ImageFileNotFoundError` when *path* does not exist."""
    if not os.path.exists(path):
        raise ImageFileNotFoundError(
            errno.ENOENT,
            "No such file or directory (expected a .nii/.nii.gz file, a DICOM file "
            "or a folder of DICOM files)",
            path,
        )


_INT16 = np.iinfo(np.int16)
_INT32 = np.iinfo(np.int32)


def _is_identity(slopes, intercepts) -> bool:
    return all(float(s) == 1.0 for s in slopes) and all(float(b) == 0.0 for b in intercepts)


def rescaled_dtype(raw_dtype, slopes, intercepts, mins, maxs) -> np.dtype:
    """Choose the output dtype for ``stored * slope + intercept``.

    Parameters
    ----------
    raw_dtype : numpy dtype
        dtype of the stored values.
    slopes, intercepts, mins, maxs : sequences of float
        One entry per slice (or a single entry for the whole volume): the slope and
        intercept to apply and the range of the stored values they apply to.

    Returns
    -------
    numpy.dtype
        * float stored values -> float32 (no rescale is applied to float DICOM data);
        * identity rescale of 8-bit data -> the stored dtype (uint8 masks stay uint8);
        * identity rescale of 32-bit data whose range does not fit int32 -> the
          stored dtype (never a lossy float32);
        * integral slopes and intercepts -> int16 when the rescaled range fits,
          else int32;
        * anything else -> float32.
    """
    raw_dtype = np.dtype(raw_dtype)
    if raw_dtype.kind == "f":
        return np.dtype(np.float32)
    identity = _is_identity(slopes, intercepts)
    if identity and raw_dtype.itemsize == 1:
        return raw_dtype.newbyteorder("=")
    if all(float(s).is_integer() for s in slopes) and all(float(b).is_integer() for b in intercepts):
        lo = hi = None
        for s, b, mn, mx in zip(slopes, intercepts, mins, maxs):
            a, c = int(s) * int(mn) + int(b), int(s) * int(mx) + int(b)
            lo = min(a, c) if lo is None else min(lo, a, c)
            hi = max(a, c) if hi is None else max(hi, a, c)
        if lo is None or (lo >= _INT16.min and hi <= _INT16.max):
            return np.dtype(np.int16)
        if lo >= _INT32.min and hi <= _INT32.max:
            return np.dtype(np.int32)
        if identity:
            return raw_dtype.newbyteorder("=")
    return np.dtype(np.float32)


def apply_rescale(raw: np.ndarray, slopes, intercepts, out_dtype) -> np.ndarray:
    """Return ``raw[i] * slopes[i] + intercepts[i]`` as *out_dtype*, slice by slice.

    *raw* is indexed along axis 0 (one slope/intercept per slice; a single pair is
    broadcast). The result reuses *raw*'s buffer when the item sizes match and *raw*
    is writeable, so no second full-size array is allocated; otherwise one output
    array is allocated and filled one slice at a time. Each slice is computed in
    int64 (integer output) or float64 (float output) and then stored, so the
    rounding is that of one multiplication and one addition in double precision.
    """
    out_dtype = np.dtype(out_dtype)
    n = raw.shape[0]
    if len(slopes) == 1 and n != 1:
        slopes = list(slopes) * n
        intercepts = list(intercepts) * n
    identity = _is_identity(slopes, intercepts)
    if identity and raw.dtype == out_dtype:
        return raw
    if (
        raw.dtype.itemsize == out_dtype.itemsize
        and raw.flags.writeable
        and raw.flags.c_contiguous
        and raw.dtype.isnative
    ):
        out = raw.view(out_dtype)
    else:
        out = np.empty(raw.shape, dtype=out_dtype)
    work = np.float64 if out_dtype.kind == "f" else np.int64
    for i in range(n):
        s, b = slopes[i], intercepts[i]
        tmp = raw[i].astype(work)  # a copy: safe even when out aliases raw
        if out_dtype.kind != "f":
            s, b = int(s), int(b)
        if s != 1:
            tmp *= s
        if b != 0:
            tmp += b
        out[i] = tmp
    return out
