"""Edge-based segmentation: Sobel gradients, Canny edges, hysteresis thresholding.

All functions work on 2D and 3D images, take ``spacing`` for physical units,
keep the input dtype (no float64 copy of integer volumes), release the GIL and
use ``num_threads`` cores on the cpu backend, and give the same answer on
every backend.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import InvalidParameterError
from ._validation import (check_finite, check_image, check_mask, check_out, check_threads, copy_into, core_axes,
                          deliver, dtype_max, native_c, per_axis, real_dtype, unwrap_image, writable_kernel_out)
from .filters import _sigma_voxels, check_kernel_radius, kernel_weights, raise_overflow

__all__ = ["sobel", "canny", "hysteresis_threshold"]


def _as_kernel_input(arr):
    return native_c(arr.view(np.uint8) if arr.dtype == np.bool_ else arr)


def _normalise_axes(axis, ndim):
    if axis is None:
        return list(range(ndim)), True
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        axes = [int(axis)]
        magnitude = False
    else:
        try:
            axes = list(axis)
        except TypeError:
            axes = None
        if axes is None or isinstance(axis, (str, bytes)) or not all(
                isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
            raise InvalidParameterError(f"axis must be None, an int or a sequence of ints, got {axis!r}")
        axes = [int(a) for a in axes]
        magnitude = len(axes) > 1
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise InvalidParameterError(f"axis {a} is out of range for a {ndim}D image")
        out.append(a % ndim)
    if len(set(out)) != len(out) or not out:
        raise InvalidParameterError(f"axis must name distinct axes, got {axis!r}")
    return out, magnitude


def sobel(image, axis=None, mask=None, spacing=None, *, preserve_range=False, out=None, backend="auto",
          num_threads=None):
    """Sobel gradient (magnitude or one axis) of a 2D or 3D image.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        bool, uint8, int8, uint16, int16, uint32, int32, float32 or float64;
        NaN/inf raise.  (An Image brings its spacing.)
    axis : None, int or sequence of int
        None: the gradient magnitude over all axes.  An int: the signed
        derivative along that axis (positive where values increase with the
        index).  A sequence: the magnitude over those axes.
    mask : array of bool, optional
        Result is set to zero outside the mask eroded by one voxel (full
        connectivity), as in scikit-image.
    spacing : sequence of float, optional
        Voxel size per axis in mm.  When given the result is the physical
        gradient in image units per mm: each derivative is the central
        difference divided by ``2 * spacing[axis]``, smoothed by the normalised
        [1, 2, 1] / 4 on the other axes, and the magnitude is the Euclidean
        norm (no 1/sqrt(ndim) factor).  Integer images are then not rescaled.
    preserve_range : bool
        Without spacing, integer images are scaled like scikit-image's
        ``img_as_float`` (divided by the dtype's maximum) unless this is True.
    out : ndarray, optional
        Array to write the result into (the image's shape; float32, or float64
        for float64 input; writeable; not overlapping the image or the mask),
        returned.  A C-ordered ``out`` for a C-ordered image (or F for F) is
        written directly, so a loop over volumes of one size allocates nothing
        and skips the OS zeroing the pages of a new output (about a quarter of
        the time of a 256^3 float32 call); any other layout receives a copy.
        On error its contents are unspecified.  For a CuPy input it must be a
        CuPy array (the result is copied into it).
    backend : {'auto', 'cpu', 'cuda', 'numba'}
    num_threads : int, optional
        Threads to use (None: all cores); the result does not depend on it.

    Returns
    -------
    ndarray of float32 (float64 for float64 input); ``out`` when given.

    Notes
    -----
    Without ``spacing`` the result equals ``skimage.filters.sobel(image, mask,
    axis=axis)`` (same kernel weights, 1/sqrt(ndim) normalisation of the
    magnitude and 'reflect' borders) to float32 rounding.  Signed integers
    are scaled as ``img_as_float`` does, the dtype minimum included (it reads
    as -max, i.e. -1.0: a clamp on load, no copy).  Where float32 arithmetic
    overflows for finite input (values of about 1e37 and more, or an extreme
    ``spacing``) the result is recomputed in float64 and rounded; if it does
    not fit float32 (or float64 for float64 input) InvalidImageError is
    raised: the result is never NaN or inf for finite input.  The 3D kernel makes
    one pass over the volume with a ring of three planes per thread (see
    cpp/include/medseg/edges.hpp); memory is the output alone.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.edges import sobel
    >>> img = np.zeros((6, 6), np.float32); img[:, 3:] = 1
    >>> sobel(img)[2].round(3)
    array([0.   , 0.   , 0.707, 0.707, 0.   , 0.   ], dtype=float32)
    >>> sobel(img, axis=1)[2].tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    >>> buf = np.empty_like(img)
    >>> sobel(img, out=buf) is buf
    True
    """
    image, spacing = unwrap_image(image, spacing)
    if _backend.is_gpu_array(image) or _backend.resolve(backend, None) == "cuda":
        name = _backend.resolve(backend, image)
        if name == "cuda":
            from . import _cuda_api

            res = _cuda_api.sobel(image, axis=axis, mask=mask, spacing=spacing, preserve_range=preserve_range)
            return res if out is None else copy_into(out, res)
    # NaN/inf: counted on the output inside the kernel instead of a separate pass (see below)
    arr = check_image(image, finite=False)
    ndim = arr.ndim
    axes, magnitude = _normalise_axes(axis, ndim)
    m = check_mask(mask, arr.shape)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr)
    smooth_norm = 4.0 ** (ndim - 1)
    if spacing is not None:
        sp = per_axis(spacing, ndim, "spacing")
        coef_user = [1.0 / (smooth_norm * 2.0 * d) for d in sp]
        post = 1.0
    else:
        scale = 1.0 if (preserve_range or arr.dtype.kind == "f") else 1.0 / dtype_max(arr.dtype)
        coef_user = [scale / smooth_norm] * ndim
        post = 1.0 / np.sqrt(ndim) if magnitude else 1.0
    sel_user = [a in axes for a in range(ndim)]
    if arr.dtype.kind == "f" and all(arr.shape[a] == 1 for a in axes):
        # every derivative is along a length-1 axis: the kernels write 0 there
        # (scipy's f - f), so a NaN/inf would not reach the output count below
        check_finite(arr)
    # scikit-image's img_as_float clips signed integers at -1.0: the dtype minimum reads as -max
    clamp = spacing is None and not preserve_range and arr.dtype.kind == "i"
    user_out = check_out(out, arr.shape, real_dtype(arr.dtype), (arr, m))
    view, transposed = _as_kernel_input(arr)
    kout = writable_kernel_out(user_out, transposed)  # None: computed fresh, then copied into out
    fam = family(name, "edges")
    args = (core_axes(sel_user, ndim, transposed, fill=False), core_axes(coef_user, ndim, transposed, fill=1.0),
            magnitude, float(post), nt)
    res, n_bad = fam.sobel(view, *args, True, kout, clamp_min=clamp)
    if n_bad:
        # a non-finite input always shows in the output; overflow of huge finite inputs can too,
        # so the input is checked to tell the two apart (and to word the error)
        if arr.dtype.kind == "f":
            check_finite(arr)
        _sobel_overflowed(fam, view, args, clamp, res, arr, spacing)
    if transposed:
        res = res.T
    if m is not None:
        mv, mt = native_c(m)
        er = fam.erode(mv, nt)
        res *= er.T if mt else er
    return deliver(user_out, res, kout)


def _sobel_overflowed(fam, view, args, clamp, res, arr, spacing):
    """Finite input, non-finite output: the float32 arithmetic overflowed (values
    near 1e37 and above, or a huge 1/spacing).  Recompute in float64 (a copy, on
    this rare path only) and round into ``res``, or raise when the result does not
    fit (float64 input: raise at once)."""
    if res.dtype == np.float32:
        wide = view.astype(np.float64)
        if clamp:
            np.maximum(wide, -np.iinfo(view.dtype).max, out=wide)
        w, bad = fam.sobel(wide, *args, True, None)
        if not bad and float(np.max(np.abs(w), initial=0.0)) <= float(np.finfo(np.float32).max):
            res[...] = w
            return
    raise_overflow("the Sobel gradient", res.dtype, arr, spacing=spacing)


def _hysteresis_params(dtype, ndim, low, high, connectivity):
    """Validated (low, high, connectivity), ``high`` rounded as scikit-image compares it."""
    for nm, v in (("low", low), ("high", high)):
        if not isinstance(v, numbers.Real) or not np.isfinite(v):
            raise InvalidParameterError(f"{nm} must be a finite number, got {v!r}")
    if low > high:
        raise InvalidParameterError(f"low ({low}) must not exceed high ({high})")
    if connectivity is None:
        connectivity = 1
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral) \
            or not 1 <= connectivity <= ndim:
        raise InvalidParameterError(f"connectivity must be an integer in 1..{ndim}, got {connectivity!r}")
    if np.dtype(dtype) == np.float32 and not isinstance(high, np.generic):
        # as scikit-image, which compares ``image > high``: NumPy rounds a Python
        # scalar to the array's float32 there (``low`` goes through np.clip first,
        # which makes it a float64, so it is compared in double)
        high = np.float32(high)
    return low, high, int(connectivity)


def hysteresis_threshold(image, low, high, connectivity=None, *, backend="auto", num_threads=None):
    """Voxels above ``low`` connected to a voxel above ``high`` (2D or 3D).

    Parameters
    ----------
    image : (M, N) or (P, M, N) array
        Any supported dtype; NaN/inf raise.
    low, high : float
        Thresholds (strict ``>``, as scikit-image); ``low > high`` raises.
    connectivity : int, optional
        1..ndim, neighbours differing in at most that many coordinates
        (1: faces, ndim: full).  Default 1, as ``apply_hysteresis_threshold``.
    backend, num_threads : see :func:`sobel`.  A CuPy (or any
        ``__cuda_array_interface__``) image runs on the cuda backend and gives
        a CuPy result; a numpy image with ``backend="cuda"`` gives numpy.

    Returns
    -------
    ndarray of bool

    Notes
    -----
    Equals ``skimage.filters.apply_hysteresis_threshold(image, low, high)``
    for connectivity 1, except that scikit-image silently clips ``low`` to
    ``high`` where this function raises.  Comparisons follow NumPy's as
    scikit-image makes them: on a float32 image a Python ``high`` is rounded
    to float32 (``image > 0.6`` in NumPy 2), ``low`` is compared in double.
    The cpu backend floods from the strong voxels, or, when weak voxels are
    under a quarter of the strong ones, from the weak ones (each weak
    component is kept if it touches a strong voxel); the same set either way,
    linear in the number of voxels, extra memory one byte per voxel plus the
    stack.  The cuda backend joins the candidates by union-find labelling
    (5 bytes per voxel on the device) and keeps the same set.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.edges import hysteresis_threshold
    >>> img = np.array([[0, 2, 2, 0, 2], [0, 0, 5, 0, 0]], np.uint8)
    >>> hysteresis_threshold(img, 1, 4).astype(int)
    array([[0, 1, 1, 0, 0],
           [0, 0, 1, 0, 0]])
    """
    image, _ = unwrap_image(image)
    if _backend.is_gpu_array(image) or _backend.resolve(backend, None) == "cuda":
        if _backend.resolve(backend, image) == "cuda":
            from . import _cuda_api

            return _cuda_api.hysteresis_threshold(image, low, high, connectivity)
    arr = check_image(image)
    low, high, connectivity = _hysteresis_params(arr.dtype, arr.ndim, low, high, connectivity)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr)
    view, transposed = _as_kernel_input(arr)
    out = family(name, "edges").hysteresis(view, float(low), float(high), int(connectivity), nt)
    return out.T if transposed else out


def _check_threshold(v, name, use_quantiles):
    if v is None:
        return None
    if not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise InvalidParameterError(f"{name} must be a finite number, got {v!r}")
    if use_quantiles and not 0.0 <= v <= 1.0:
        raise InvalidParameterError(f"with use_quantiles, {name} must lie in [0, 1], got {v}")
    if v < 0:
        raise InvalidParameterError(f"{name} must be >= 0, got {v}")
    return float(v)


def _canny_params(dtype, shape, sigma, low_threshold, high_threshold, use_quantiles, spacing):
    """Validated (sigma in voxels, low, high, as_float, unit) of :func:`canny`."""
    ndim = len(shape)
    low = _check_threshold(low_threshold, "low_threshold", use_quantiles)
    high = _check_threshold(high_threshold, "high_threshold", use_quantiles)
    sig = _sigma_voxels(sigma, ndim, spacing)
    check_kernel_radius(sig, shape, 4.0, spacing)
    # 2D bool / integer input: scikit-image's img_as_float (float64, v * (1 / max),
    # signed clipped at -1), so that the edges are its edges bit for bit; thresholds
    # in image units then scale by 1 / max as scikit-image's do.  3D: image units.
    as_float = ndim == 2 and np.dtype(dtype).kind in "biu"
    unit = dtype_max(dtype)
    if low is None:
        low = 0.1 if use_quantiles else 0.1 * unit
    if high is None:
        high = 0.2 if use_quantiles else 0.2 * unit
    if low > high:
        raise InvalidParameterError(f"low_threshold ({low}) must not exceed high_threshold ({high})")
    if as_float and not use_quantiles:  # scikit-image's values: 0.1, 0.2 or the given ones / max
        low = 0.1 if low_threshold is None else low / unit
        high = 0.2 if high_threshold is None else high / unit
    return sig, low, high, as_float, unit


# Ranks fetched on either side of the one np.percentile reads (see _percentiles):
# wide enough for any rounding of its virtual index, even in float32.
_PERCENTILE_WINDOW = 16


def _percentiles(fam, values, qs, num_threads, overwrite_input=False):
    """``np.percentile(values, qs)`` bit for bit, without its partition of a copy.

    np.percentile ('linear') reads the sorted values at floor(v) and floor(v) + 1,
    v = q / 100 * (n - 1) up to its own rounding.  ``fam.order_statistics`` gives
    the exact values of the ranks in a window around each such position (a radix
    select on the cpu: two passes over a float32 volume); numpy then computes the
    percentiles itself on a sorted stand-in of length n that equals the sorted
    data on every window and lies between the windows' values elsewhere, so the
    interpolation and its rounding are numpy's own.  256^3 float32, two
    quantiles: ~45 ms where np.percentile took 63 ms (a phantom's gradient
    magnitude) to 153 ms (random data) (AMD EPYC VM, 2 threads).  With
    ``overwrite_input`` (a C-contiguous array the caller no longer needs) the
    stand-in is written over ``values``: no memory beyond the order statistics.
    """
    flat = values.reshape(-1)
    n = flat.size
    wins = set()
    for q in qs:
        c = int(np.floor(q / 100.0 * (n - 1)))
        wins.update(range(max(0, c - _PERCENTILE_WINDOW), min(n, c + _PERCENTILE_WINDOW + 2)))
    ranks = sorted(wins)
    got = fam.order_statistics(flat, ranks, num_threads)
    if got is None:  # a NaN: numpy's own answer (NaN)
        return tuple(float(v) for v in np.percentile(values, qs))
    if overwrite_input and values.flags.c_contiguous and values.flags.writeable:
        stand = flat  # a view: the caller's buffer becomes the stand-in
    else:
        stand = np.empty(n, values.dtype)
    start = 0
    for r, v in zip(ranks, got):  # non-decreasing: each gap takes the value after it
        stand[start:r + 1] = v
        start = r + 1
    stand[start:] = got[-1]
    return tuple(float(v) for v in np.percentile(stand, qs, overwrite_input=True))


def _canny_gradient_scale(ndim, spacing, transposed):
    """(coef, inv_sp) per core axis: derivative scale and suppression direction scale."""
    if spacing is not None:
        smooth_norm = 4.0 ** (ndim - 1)
        sp = core_axes(per_axis(spacing, ndim, "spacing"), ndim, transposed, fill=1.0)
        return [1.0 / (smooth_norm * 2.0 * d) for d in sp], [1.0 / d for d in sp]
    return [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]  # the raw ndi.sobel derivatives, as scikit-image


def canny(image, sigma=1.0, low_threshold=None, high_threshold=None, mask=None, use_quantiles=False, spacing=None,
          *, backend="auto", num_threads=None):
    """Canny edges of a 2D or 3D image.

    Gaussian smoothing, Sobel gradient, non-maximum suppression along the
    gradient direction (in 3D along the 3D gradient) and hysteresis with full
    connectivity.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        Any supported dtype; NaN/inf raise.
    sigma : float or sequence of float
        Gaussian standard deviation in voxels (> 0), or in mm with ``spacing``.
    low_threshold, high_threshold : float, optional
        Hysteresis thresholds on the gradient magnitude, in the image's own
        units (for integer images scikit-image's thresholds are in the same
        units, since it divides both image and thresholds by the dtype
        maximum).  Defaults: 0.1 and 0.2 times the dtype maximum (1.0 for
        floats), as scikit-image.  With ``use_quantiles`` they are quantiles
        (0..1) of the gradient magnitude.
    mask : array of bool, optional
        Only edges inside the mask (eroded by one voxel) are returned; smoothing
        ignores voxels outside it.
    use_quantiles : bool
    spacing : sequence of float, optional
        Voxel size in mm.  Then sigma is in mm, the gradient is physical
        (units per mm, normalised Sobel as in :func:`sobel`), thresholds are in
        units per mm and suppression follows the physical gradient direction.
    backend : {'auto', 'cpu', 'cuda', 'numba'}
        A CuPy (or any ``__cuda_array_interface__``) image, and mask, run on
        the cuda backend and give a CuPy result.
    num_threads : int, optional

    Returns
    -------
    ndarray of bool

    Notes
    -----
    In 2D, without spacing, the edges equal ``skimage.feature.canny`` with the
    same arguments (the same 'constant' border with bleed-over correction, the
    same interpolated suppression and 8-connected hysteresis).  As
    scikit-image does, 2D bool and integer images are computed in float64 on
    ``img_as_float(image)`` (``image * (1 / dtype max)``, signed integers
    clipped at -1; thresholds given in image units are divided by the dtype
    maximum), float64 images in float64: the edges are the same, pixel for
    pixel.  Float32 images are computed in float32, as scikit-image does too,
    but its rounding differs in places, so a pixel whose magnitude ties a
    threshold or a neighbour within float32 rounding can differ.
    scikit-image, OpenCV and cuCIM have no 3D Canny; in 3D every dtype is
    computed in float32 on the image's own values, and the smoothing is
    ``filters.gaussian(..., precision='float32')`` (float32 accumulation,
    ~1e-6 of the exact Gaussian, the same bits on every backend).  The
    gradient, its magnitude and the suppression are computed in one pass over
    the smoothed image with per-thread rings of three planes (rows in 2D).
    Peak extra memory in 3D is the smoothed image (float32) plus one byte per
    voxel: 1.25x the bytes of a float32 input (with ``use_quantiles``, one
    more volume while the thresholds are found: the magnitude, later
    overwritten by a sorted stand-in on which numpy interpolates the exact
    order statistics; the thresholds are np.percentile's, bit for bit, where
    np.percentile itself would have partitioned a second copy).  In 2D it is
    the smoothed image (float64 except for float32 input) plus one byte per
    pixel, and for bool and integer input also the float64 ``img_as_float``
    copy (8 bytes per pixel, as scikit-image); a mask adds a masked copy and
    the smoothed mask.  A finite input whose smoothing overflows raises InvalidImageError.
    The cuda backend runs the same stages on the device (the smoothing, the
    magnitude, the suppression, then hysteresis by union-find) with the same
    arithmetic, so the edges are the cpu backend's; it keeps the magnitude
    as a volume (plus 5 bytes per voxel of labels), and with
    ``use_quantiles`` sorts it on the device for the order statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.edges import canny
    >>> img = np.zeros((32, 32), np.float32); img[8:24, 8:24] = 1
    >>> edges = canny(img, sigma=1.0)
    >>> bool(edges[8, 12]), bool(edges[16, 16])
    (True, False)
    """
    image, spacing = unwrap_image(image, spacing)
    if _backend.is_gpu_array(image) or _backend.resolve(backend, None) == "cuda":
        if _backend.resolve(backend, image) == "cuda":
            from . import _cuda_api

            return _cuda_api.canny(image, sigma, low_threshold, high_threshold, mask=mask,
                                   use_quantiles=use_quantiles, spacing=spacing)
    arr = check_image(image, finite=False)  # NaN/inf: counted by the smoothing (below)
    ndim = arr.ndim
    sig, low, high, as_float, unit = _canny_params(arr.dtype, arr.shape, sigma, low_threshold, high_threshold,
                                                   use_quantiles, spacing)
    m = check_mask(mask, arr.shape)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr)
    work = arr
    if as_float:
        work = np.multiply(arr, 1.0 / unit, dtype=np.float64)
        if arr.dtype.kind == "i":
            np.maximum(work, -1.0, out=work)

    fam = family(name, "edges")
    view, transposed = _as_kernel_input(work)
    weights = kernel_weights(core_axes(sig, ndim, transposed), 4.0)
    # 3D (no reference to match bit for bit): the float32 fast Gaussian
    # (filters.gaussian precision='float32'); 2D: scipy-exact, as scikit-image
    fast = ndim == 3
    if m is None:
        smooth, n_bad = fam.gaussian(view, weights, 4, 0.0, True, transposed, nt, fast, True)
        if n_bad:
            if arr.dtype.kind == "f":
                check_finite(arr)  # words the error (a non-finite input always shows in the output)
            raise_overflow("the Gaussian smoothing", smooth.dtype, arr)
        mview = None
    else:
        check_finite(arr)  # values outside the mask are zeroed before smoothing: check them here
        mview = np.ascontiguousarray(m.T if transposed else m)  # 1 byte/voxel, kernel orientation
        masked = np.where(mview, view, 0)
        smooth, n_bad = fam.gaussian(masked, weights, 4, 0.0, False, transposed, nt, fast, True)
        del masked
        if n_bad:
            raise_overflow("the Gaussian smoothing", smooth.dtype, arr)
        # the Gaussian of the mask in the smoothed image's type (scikit-image: mask.astype(float_type))
        msrc = mview.view(np.uint8) if smooth.dtype == np.float32 else mview.astype(smooth.dtype)
        bleed = fam.gaussian(msrc, weights, 4, 0.0, False, transposed, nt, fast)
        del msrc
        bleed += np.finfo(smooth.dtype).eps
        smooth /= bleed
        del bleed
    coef, inv_sp = _canny_gradient_scale(ndim, spacing, transposed)
    if use_quantiles:
        # the one place a magnitude volume is needed: the same values the fused pass computes
        mag = fam.canny_magnitude(smooth, coef, nt)
        low, high = _percentiles(fam, mag, [100.0 * low, 100.0 * high], nt, overwrite_input=True)
        del mag
    out = fam.canny_suppress(smooth, mview, coef, inv_sp, float(low), float(high), nt)
    return out.T if transposed else out
