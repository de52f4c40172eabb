"""Smoothing filters shared by the segmentation modes."""

from __future__ import annotations


import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import InvalidImageError, InvalidParameterError
from ._validation import (check_finite, check_image, check_out, check_threads, copy_into, core_axes, deliver,
                          finite_real, native_c, per_axis, real_dtype, unwrap_image, writable_kernel_out)

__all__ = ["gaussian"]

_MODES = {"nearest": 0, "reflect": 1, "mirror": 2, "wrap": 3, "constant": 4}


def gaussian_kernel1d(sigma, truncate=4.0):
    """scipy.ndimage's Gaussian weights (same arithmetic, so bit-identical)."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x**2)
    return phi / phi.sum()


def kernel_weights(sig_core, truncate):
    """Per core axis (z, y, x) weight lists for the kernels; [] skips an axis (scipy's sigma <= 1e-15 rule)."""
    return [gaussian_kernel1d(s, truncate).tolist() if s > 1e-15 else [] for s in sig_core]


def _sigma_voxels(sigma, ndim, spacing):
    """Validated per-axis sigma in voxels (sigma in mm when spacing is given)."""
    scalar = np.isscalar(sigma)
    sig = per_axis(sigma, ndim, "sigma", allow_zero=not scalar)
    if not any(s > 0 for s in sig):
        raise InvalidParameterError(f"sigma must be > 0 (at least on one axis), got {sigma!r}")
    if spacing is not None:
        sp = per_axis(spacing, ndim, "spacing")
        sig = tuple(s / d for s, d in zip(sig, sp))
    return sig


# A kernel radius (int(truncate * sigma + 0.5), in voxels) above
# max(_RADIUS_FLOOR, _RADIUS_PER_VOXEL * axis length) is refused: such a kernel
# is nearly flat over the image, and its weights, line buffers and tap loops
# grow with the radius, not the image (sigma=1e10 once asked numpy for 8e10
# weights).  Generous enough for a one-slice axis smoothed with the in-plane
# sigma.
_RADIUS_FLOOR = 1024
_RADIUS_PER_VOXEL = 8


def check_kernel_radius(sig, shape, truncate, spacing=None):
    """Raise InvalidParameterError when a Gaussian kernel is far larger than the image.

    ``sig`` is the per-axis sigma in voxels (the caller's axis order), ``shape``
    the image's shape.
    """
    for a, (s, n) in enumerate(zip(sig, shape)):
        if s <= 1e-15:  # axis not smoothed
            continue
        r = truncate * s + 0.5
        limit = max(_RADIUS_FLOOR, _RADIUS_PER_VOXEL * int(n))
        if not r <= limit:  # (also inf / nan)
            hint = " (sigma is in mm: check that spacing is in mm too)" if spacing is not None else ""
            raise InvalidParameterError(
                f"sigma of {s:.6g} voxels along axis {a} (truncate {truncate:g}) needs a Gaussian kernel of radius "
                f"{r:.6g} voxels, more than the {limit} allowed for an axis of {n} voxels; use a smaller sigma"
                f"{hint}")


def check_truncate(truncate):
    """``truncate`` as a float: a finite real number > 0."""
    t = finite_real(truncate, "truncate")
    if not t > 0:
        raise InvalidParameterError(f"truncate must be > 0, got {truncate!r}")
    return t


_PRECISIONS = ("exact", "float32")


def gaussian(image, sigma, *, spacing=None, mode="nearest", cval=0.0, truncate=4.0, precision="exact",
             out=None, backend="auto", num_threads=None):
    """Gaussian smoothing of a 2D or 3D image, in float32.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        Any of bool, uint8, int8, uint16, int16, uint32, int32, float32,
        float64.  NaN or inf raise.  A medseg Image brings its spacing, so
        ``sigma`` is then in mm.
    sigma : float or sequence of floats
        Standard deviation, in voxels, or in mm when ``spacing`` is given.  A
        scalar must be > 0; a sequence may hold zeros for axes left unsmoothed.
    spacing : sequence of floats, optional
        Voxel size per axis (mm), in the array's axis order.
    mode : {'nearest', 'reflect', 'mirror', 'wrap', 'constant'}
        Border handling, as in scipy.ndimage (default 'nearest', like
        ``skimage.filters.gaussian``).
    cval : float
        Value outside the image for mode='constant' (a finite real number).
    truncate : float
        The kernel stops at ``truncate * sigma`` (scipy's radius rule); > 0.
        A kernel radius above max(1024, 8 x the axis length) voxels raises
        InvalidParameterError (such a kernel is nearly flat over the image).
    precision : {'exact', 'float32'}
        'exact' (default): each pass accumulates in double, scipy's result bit
        for bit (below).  'float32' (cpu and numba; float32 results only, a
        float64 input stays exact): each pass accumulates in float32 with one
        fused multiply-add per pair of taps, about 2x faster for wide kernels
        (sigma >= 2) and within ~1e-6 of the exact result relative to the
        image's largest magnitude.  Still deterministic: the same bits on every
        CPU, thread count and backend.
    out : ndarray, optional
        Array to write the result into (the image's shape; float32, or float64
        for float64 input; writeable; not overlapping the image), returned.  A
        C-ordered ``out`` for a C-ordered image (or F for F) is written
        directly, so a loop over volumes of one size allocates nothing; any
        other layout receives a copy.  On error its contents are unspecified.
        For a CuPy input it must be a CuPy array (the result is copied into it).
    backend : {'auto', 'cpu', 'cuda', 'numba'}
    num_threads : int, optional
        Threads to use (None: all cores).  The result does not depend on it.

    Returns
    -------
    ndarray of float32 (float64 for float64 input), the input's shape (``out``
    when given).  Values stay in the input's units (scikit-image's
    ``preserve_range=True``).  Each pass accumulates in double and rounds
    once, in scipy's order, so a float32 or float64 result equals
    ``scipy.ndimage.gaussian_filter(image, sigma, mode=mode, cval=cval,
    truncate=truncate)`` on the same dtype bit for bit, every mode and cval
    included (cval enters the double accumulation unrounded, as in scipy).
    Integer input is not rescaled (scipy's behaviour; the dtype minimum of a
    signed type is an ordinary value).  An input whose result overflows the
    output type (values near its largest finite value, or such a cval) raises
    InvalidImageError instead of returning inf.

    Notes
    -----
    Separable: one pass per axis, the first converting the input straight into
    the output, later ones in place.  Peak extra memory is the output plus a
    small slab buffer per thread; the input is never padded or copied (a
    big-endian or non-contiguous input is copied once to native C order).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.filters import gaussian
    >>> img = np.zeros((9, 9), np.int16); img[4, 4] = 100
    >>> out = gaussian(img, 1.0)
    >>> out.dtype, round(float(out.sum()), 3)
    (dtype('float32'), 100.0)
    >>> fast = gaussian(img, 1.0, precision="float32")
    >>> bool(np.allclose(fast, out, rtol=0, atol=1e-5 * 100))
    True
    >>> buf = np.empty((9, 9), np.float32)
    >>> gaussian(img, 1.0, out=buf) is buf
    True
    """
    image, spacing = unwrap_image(image, spacing)
    if precision not in _PRECISIONS:
        raise InvalidParameterError(f"precision must be 'exact' or 'float32', got {precision!r}")
    if not isinstance(mode, str) or mode not in _MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    truncate = check_truncate(truncate)
    cval = finite_real(cval, "cval")
    if _backend.is_gpu_array(image):
        name = _backend.resolve(backend, image)
        if name == "cuda":
            from . import _cuda_api

            if getattr(image, "ndim", None) in (2, 3):
                check_kernel_radius(_sigma_voxels(sigma, image.ndim, spacing), image.shape, truncate, spacing)
            res = _cuda_api.gaussian(image, sigma, spacing=spacing, mode=mode, cval=cval, truncate=truncate)
            return res if out is None else copy_into(out, res)
    # NaN/inf: counted on the output inside the kernel instead of a separate pass
    arr = check_image(image, finite=False)
    sig = _sigma_voxels(sigma, arr.ndim, spacing)
    check_kernel_radius(sig, arr.shape, truncate, spacing)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr)
    if name == "cuda":
        from . import _cuda_api

        check_finite(arr)
        res = _cuda_api.gaussian(arr, sigma, spacing=spacing, mode=mode, cval=cval, truncate=truncate)
        return res if out is None else copy_into(out, res)
    user_out = check_out(out, arr.shape, real_dtype(arr.dtype), (arr,))
    view, transposed = native_c(arr.view(np.uint8) if arr.dtype == np.bool_ else arr)
    kout = writable_kernel_out(user_out, transposed)
    weights = kernel_weights(core_axes(sig, arr.ndim, transposed), truncate)
    res, n_bad = family(name, "edges").gaussian(view, weights, _MODES[mode], cval, False, transposed, nt,
                                                precision == "float32", True, kout)
    if n_bad:
        # a non-finite input always shows in the output (every weight is positive);
        # the input check tells it from an overflow and words the error
        if arr.dtype.kind == "f":
            check_finite(arr)
        raise_overflow("the Gaussian", res.dtype, arr, cval if mode == "constant" else None)
    return deliver(user_out, res.T if transposed else res, kout)


def raise_overflow(what, dtype, arr, cval=None, spacing=None):
    """InvalidImageError for a finite input whose result overflowed ``dtype``."""
    amax = max(abs(float(arr.min())), abs(float(arr.max())))
    also = [f"cval {cval:g}"] if cval is not None and cval != 0 else []
    if spacing is not None:
        also.append(f"spacing {tuple(spacing)}")
    extra = f" (with {', '.join(also)})" if also else ""
    fix = ("pass float64 input or rescale the image" if np.dtype(dtype) == np.float32
           else "rescale the image (e.g. divide it by its largest magnitude)")
    raise InvalidImageError(f"{what} of this image overflows {np.dtype(dtype).name}: its values reach {amax:.3g}"
                            f"{extra}, too close to the largest finite {np.dtype(dtype).name}; {fix}")
