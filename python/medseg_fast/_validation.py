"""Argument checks and the one dtype / memory-layout policy.

Dtype policy
------------
Intensity kernels accept bool, uint8, int8, uint16, int16, uint32, int32,
float32 and float64 images without converting them; they compute and return
float32, or float64 for float64 input.  64-bit integer images are refused
(cast them yourself: values beyond 2**24 do not fit float32 exactly).

Layout policy
-------------
C-ordered arrays are used as they are.  Fortran-ordered arrays are handed to
the kernels as their transposed (C-ordered) view with the per-axis parameters
reversed, so no copy is made and the result comes back in the caller's axis
order.  Big-endian and non-contiguous arrays are copied once to native C order
(documented in each function).  Input arrays are never modified.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

from ._errors import EmptyImageError, InvalidImageError, InvalidParameterError, NonFiniteError

INTENSITY_DTYPES = frozenset(
    np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64)
)


def unwrap_image(image, spacing=None):
    """Accept a medseg Image (from medseg_fast.io.load) or an array-like.

    Returns (array, spacing): with an Image and spacing None, the image's spacing.
    """
    if hasattr(image, "array") and hasattr(image, "spacing") and hasattr(image, "affine"):
        if spacing is None:
            spacing = tuple(image.spacing)
        image = image.array
    return image, spacing


def check_image(image, name="image", *, ndims=(2, 3), finite=True, allow_bool=True):
    """Validate an intensity image; return it as a numpy array (no copy).

    Raises EmptyImageError, InvalidImageError (ndim, dtype) and NonFiniteError
    (NaN/inf, when ``finite``).
    """
    if hasattr(image, "__cuda_array_interface__") and not isinstance(image, np.ndarray):
        raise InvalidImageError(f"{name} is a GPU array; this code path needs a numpy array")
    arr = np.asarray(image)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise InvalidImageError(f"{name} has unsupported dtype {arr.dtype}; expected an integer, bool or float array")
    if arr.ndim not in ndims:
        raise InvalidImageError(
            f"{name} must be {' or '.join(f'{d}D' for d in ndims)}, got an array of shape {arr.shape} (ndim={arr.ndim})"
        )
    if arr.size == 0:
        raise EmptyImageError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype.kind == "b" and not allow_bool:
        raise InvalidImageError(f"{name} is boolean; expected an intensity image")
    if arr.dtype.newbyteorder("=") not in INTENSITY_DTYPES:
        raise InvalidImageError(
            f"{name} has dtype {arr.dtype}, which is not supported; use uint8, int8, uint16, int16, uint32, "
            "int32, float32 or float64 (64-bit integers: cast to float64 or int32 first)"
        )
    if finite and arr.dtype.kind == "f":
        check_finite(arr, name)
    return arr


def _any_nonfinite(arr):
    """True if arr holds NaN/inf: a parallel C++ count for large native arrays, else
    numpy's min/max (which propagate NaN and expose +-inf without a boolean temporary)."""
    if arr.size >= (1 << 20) and arr.dtype in (np.float32, np.float64) and arr.dtype.isnative:
        from . import _backend

        core = _backend._load("cpu")
        if core is not None:
            view = arr if arr.flags.c_contiguous else (arr.T if arr.flags.f_contiguous else None)
            if view is not None:
                return core.checks.count_nonfinite(view, 0) > 0
    lo, hi = arr.min(), arr.max()
    return not (np.isfinite(lo) and np.isfinite(hi))


def check_finite(arr, name="image"):
    if _any_nonfinite(arr):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise NonFiniteError(
            f"{name} holds {n_nan} NaN and {n_inf} infinite values; replace them (e.g. np.nan_to_num) or mask them out"
        )


def check_mask(mask, shape, name="mask"):
    """Validate a mask of the image's shape; return a bool (or uint8-viewable) array."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise InvalidImageError(f"{name} has shape {m.shape}, but the image has shape {tuple(shape)}")
    if m.dtype.kind == "b":
        return m
    if m.dtype.kind in "iu":
        return m != 0
    if m.dtype.kind == "f":
        check_finite(m, name)
        return m != 0
    raise InvalidImageError(f"{name} must be boolean or integer, got dtype {m.dtype}")


def check_label_array(a, name, *, what="a boolean mask or an integer label map",
                      hint="threshold or round it first (e.g. image > t, or labels.astype(np.int32))",
                      allow_empty=False):
    """A numpy bool/integer 2D or 3D array (no copy): masks and label maps.

    GPU arrays, other dtypes, other ndims and (unless ``allow_empty``) empty
    arrays raise with a message naming ``name``; ``what`` and ``hint`` word the
    dtype error for the caller's domain.
    """
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        raise InvalidImageError(f"{name} is a GPU array; this function needs a numpy array")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biu":
        raise InvalidImageError(f"{name} must be {what}, got dtype {arr.dtype}; {hint}")
    if arr.ndim not in (2, 3):
        raise InvalidImageError(f"{name} must be 2D or 3D, got an array of shape {arr.shape} (ndim={arr.ndim})")
    if arr.size == 0 and not allow_empty:
        raise EmptyImageError(f"{name} is empty (shape {arr.shape})")
    return arr


def native_c(arr):
    """Return (view, transposed): a native-endian C-contiguous array for the kernels.

    Fortran-ordered input becomes its transposed view (no copy, ``transposed``
    True: per-axis parameters must be reversed and the result transposed back).
    Big-endian or non-contiguous input is copied once.
    """
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if np.little_endian else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="), order="K")
    if arr.flags.c_contiguous:
        return arr, False
    if arr.flags.f_contiguous:
        return arr.T, True
    return np.ascontiguousarray(arr), False


def check_out(out, shape, dtype, inputs=(), name="out"):
    """Validate a caller-provided output array (None passes through).

    It must be a numpy array of exactly the result's shape and dtype (native
    byte order), writeable, and must not share memory with any of ``inputs``
    (the kernels read neighbours of a voxel after writing it).  Any memory
    layout is accepted: one the kernel can write directly is written in place,
    any other receives a copy of the result.
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise InvalidParameterError(f"{name} must be a numpy array, got {type(out).__name__}")
    dtype = np.dtype(dtype)
    if out.shape != tuple(shape):
        raise InvalidParameterError(f"{name} has shape {out.shape}; the result has shape {tuple(shape)}")
    if out.dtype != dtype or not out.dtype.isnative:
        raise InvalidParameterError(f"{name} has dtype {out.dtype.str}; the result needs {dtype.name} in native byte "
                                    f"order (np.empty(shape, np.{dtype.name}))")
    if not out.flags.writeable:
        raise InvalidParameterError(f"{name} is read-only")
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise InvalidParameterError(f"{name} shares memory with an input; pass a separate array")
    return out


def writable_kernel_out(out, transposed):
    """The kernel-orientation view of a validated ``out`` when the kernel can write
    it directly (C-contiguous and aligned in that orientation), else None (the
    caller then copies the result into ``out``)."""
    if out is None:
        return None
    k = out.T if transposed else out
    return k if k.flags.c_contiguous and k.flags.aligned else None


def deliver(out, res, kout):
    """The result for the caller: ``res`` when no ``out`` was given, else ``out``
    holding it (already there when the kernel wrote ``kout``, a view of ``out``;
    copied otherwise)."""
    if out is None:
        return res
    if kout is None:
        np.copyto(out, res)
    return out


def copy_into(out, res):
    """Copy a (CuPy or numpy) result into the caller's ``out`` of the same kind, shape and dtype."""
    if type(out) is not type(res) or out.shape != res.shape or out.dtype != res.dtype:
        raise InvalidParameterError(f"out must be a {type(res).__module__.split('.')[0]} array of shape {res.shape} "
                                    f"and dtype {res.dtype}, got {type(out).__name__} {getattr(out, 'shape', '')} "
                                    f"{getattr(out, 'dtype', '')}")
    out[...] = res
    return out


def per_axis(value, ndim, name, *, positive=True, allow_zero=False):
    """Broadcast a scalar or sequence to a tuple of ``ndim`` floats, validated."""
    try:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            vals = (float(value),) * ndim
        elif isinstance(value, (str, bytes)):
            raise TypeError(name)
        else:
            vals = tuple(float(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidParameterError(
            f"{name} must be a number or a sequence of {ndim} numbers, got {value!r}") from None
    if len(vals) != ndim:
        raise InvalidParameterError(f"{name} needs {ndim} values (one per axis), got {len(vals)}")
    for v in vals:
        if not np.isfinite(v):
            raise InvalidParameterError(f"{name} must be finite, got {value!r}")
        if positive and (v < 0 or (v == 0 and not allow_zero)):
            raise InvalidParameterError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return vals


def core_axes(vals, ndim, transposed, fill=0.0):
    """Map per-axis values in the caller's order to the core's (z, y, x) triple."""
    vals = tuple(vals)
    if transposed:
        vals = vals[::-1]
    if ndim == 2:
        return [fill, *vals]
    return list(vals)


def finite_real(v, name):
    """``v`` as a float: a finite real number (not a bool), else InvalidParameterError."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise InvalidParameterError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def check_threads(num_threads):
    """None or <= 0 means all cores; returns the int passed to the kernels (0 = all)."""
    if num_threads is None:
        env = os.environ.get("MEDSEG_FAST_NUM_THREADS")
        return int(env) if env and env.strip().isdigit() else 0
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise InvalidParameterError(f"num_threads must be an integer or None, got {num_threads!r}")
    if num_threads < 0:
        raise InvalidParameterError(f"num_threads must be >= 1 (or None for all cores), got {num_threads}")
    return int(num_threads)


def real_dtype(dtype):
    """The float type a kernel computes in for an input dtype (float64 stays float64)."""
    dt = np.dtype(dtype)
    # by kind and size: a big-endian float64 (">f8" != np.float64) is float64 too
    return np.dtype(np.float64) if dt.kind == "f" and dt.itemsize == 8 else np.dtype(np.float32)


def dtype_max(dtype):
    """scikit-image's dtype_limits(..., clip_negative=False)[1]: 1 for floats and bool."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        return float(np.iinfo(dt).max)
    return 1.0
