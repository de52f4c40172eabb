"""CUDA implementations behind :func:`medseg_fast.filters.gaussian`,
:func:`medseg_fast.edges.sobel`, :func:`medseg_fast.edges.canny` and
:func:`medseg_fast.edges.hysteresis_threshold` (private; call the public
functions).

Inputs
------
* a CuPy array, or any object exposing ``__cuda_array_interface__`` (PyTorch CUDA
  tensors, Numba device arrays, ...): wrapped with ``cupy.asarray`` (no copy) and
  the result is a CuPy array on the same device;
* a numpy array (the caller asked for ``backend="cuda"``): copied to the current
  device, computed there, and the result comes back as numpy.

Layout: C-ordered arrays are used as they are; Fortran-ordered ones as their
transposed view (no copy, per-axis parameters reversed, result transposed back,
exactly like :func:`medseg_fast._validation.native_c`); other strided device
arrays are copied once to C order.

The kernels (cpp/cuda/edges_cuda.cu, cpp/cuda/canny_cuda.cu) run on CuPy's current stream of the array's
device and compute every voxel with the same float operations, in the same
order, as the CPU kernels, so results are equal to the cpu backend (bit for bit
where both builds avoid FMA contraction, which ours do).

The pure-Python part of each function is written against a small "ops" object
(:class:`_DeviceOps` on the GPU).  The tests also run it with :class:`_HostOps`,
which executes the very same device code paths on the CPU through
``medseg_fast._cuda._host_check``, so everything but the launches themselves is
checked on machines without a GPU.
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._errors import BackendUnavailableError, EmptyImageError, InvalidImageError, InvalidParameterError, NonFiniteError
from ._validation import (INTENSITY_DTYPES, check_image, check_mask, core_axes, dtype_max, per_axis,
                          real_dtype, unwrap_image)

__all__ = ["gaussian", "sobel", "canny", "hysteresis_threshold"]

_MODES = {"nearest": 0, "reflect": 1, "mirror": 2, "wrap": 3, "constant": 4}


# ----------------------------------------------------------------------------- ops


class _DeviceOps:
    """CuPy arrays and the compiled _cuda kernels, on the current stream."""

    def __init__(self):
        ext = _backend.cuda_ext()  # BackendUnavailableError when there is no extension/CuPy/GPU
        try:
            import cupy
        except ImportError as exc:  # pragma: no cover - cuda_ext() already needs cupy
            raise BackendUnavailableError("the cuda backend needs CuPy (pip install cupy-cuda12x)") from exc
        if not _ext_sees_devices(ext):
            raise BackendUnavailableError(
                "CuPy sees a GPU but medseg_fast._cuda does not (its CUDA runtime, "
                f"{ext.runtime_version()}, may need a newer NVIDIA driver); use backend='cpu' or rebuild "
                "medseg-fast with the CUDA toolkit that matches the driver"
            )
        self.xp = cupy
        self.ext = ext.edges
        self.max_radius = int(self.ext.max_gaussian_radius)

    def is_gpu_input(self, a):
        return hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)

    def wrap(self, a):
        return self.xp.asarray(a)  # zero-copy for __cuda_array_interface__ objects

    def upload(self, a):
        return self.xp.asarray(a)

    def device_of(self, a):
        return a.device

    def _stream(self):
        return self.xp.cuda.get_current_stream().ptr

    @staticmethod
    def _ptr(a):
        return int(a.data.ptr) if a is not None else 0

    def gaussian(self, view, out, tmp, shape, ndim, sigma, truncate, mode, cval, renormalise):
        self.ext.gaussian(self._ptr(view), view.dtype.name, self._ptr(out), self._ptr(tmp), shape, ndim, sigma,
                          truncate, mode, cval, renormalise, self._stream())

    def passes(self, shape, ndim, sigma):
        return self.ext.gaussian_passes(shape, ndim, sigma)

    def passes_w(self, shape, ndim, weights):
        return self.ext.gaussian_w_passes(shape, ndim, weights)

    def sobel(self, view, out, shape, ndim, sel, coef, magnitude, post, eroded):
        self.ext.sobel(self._ptr(view), view.dtype.name, self._ptr(out), shape, ndim, sel, coef, magnitude, post,
                       self._ptr(eroded), self._stream())

    def erode(self, mask_u8, out, shape, ndim):
        self.ext.erode(self._ptr(mask_u8), self._ptr(out), shape, ndim, self._stream())

    def gaussian_w(self, view, out, tmp, shape, ndim, weights, mode, cval, fast, reverse, bleed):
        self.ext.gaussian_w(self._ptr(view), view.dtype.name, self._ptr(out), self._ptr(tmp), shape, ndim, weights,
                            mode, cval, fast, reverse, bleed, self._stream())

    def canny_magnitude(self, S, mag, shape, ndim, coef):
        self.ext.canny_magnitude(self._ptr(S), S.dtype.name, self._ptr(mag), shape, ndim, coef, self._stream())

    def canny_nms(self, S, mag, eroded, out, shape, ndim, coef, inv_sp, low, high):
        self.ext.canny_nms(self._ptr(S), self._ptr(mag), S.dtype.name, self._ptr(eroded), self._ptr(out), shape, ndim,
                           coef, inv_sp, low, high, self._stream())

    def hysteresis_classify(self, view, st, shape, ndim, low, high):
        self.ext.hysteresis_classify(self._ptr(view), view.dtype.name, self._ptr(st), shape, ndim, low, high,
                                     self._stream())

    def labels_buffer(self, shape):
        return self.xp.empty(shape, dtype=np.uint32)

    def hysteresis_connect(self, st, out, labels, shape, ndim, connectivity):
        self.ext.hysteresis_connect(self._ptr(st), self._ptr(out), self._ptr(labels), shape, ndim, connectivity,
                                    self._stream())

    def to_host(self, a):
        return self.xp.asnumpy(a)


_EXT_DEVICES: list[bool] = []


def _ext_sees_devices(ext):
    """Whether the extension's own (static) CUDA runtime finds a device; asked once."""
    if not _EXT_DEVICES:
        _EXT_DEVICES.append(ext.device_count() > 0)
    return _EXT_DEVICES[0]


class _NullDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _HostOps:
    """numpy arrays standing in for device arrays; the device code paths run on the
    CPU (``_cuda._host_check``).  For tests on machines without a GPU."""

    def __init__(self, inputs_on_device=True):
        from . import _cuda

        self.inputs_on_device = inputs_on_device
        self.xp = np
        self.hc = _cuda._host_check
        self.ext = _cuda.edges
        self.max_radius = int(_cuda.edges.max_gaussian_radius)

    def is_gpu_input(self, a):
        return self.inputs_on_device

    def wrap(self, a):
        a = np.asarray(a)
        if not a.dtype.isnative:  # device arrays are always native-endian
            a = a.astype(a.dtype.newbyteorder("="), order="K")
        return a

    def upload(self, a):
        return np.array(a)  # order "K", like cupy.asarray of a numpy array

    def device_of(self, a):
        return _NullDevice()

    @staticmethod
    def _check_args(view, out, shape, ndim):
        # what the device entry points rely on: C-ordered buffers and the (nz, ny, nx) triple
        assert view.flags.c_contiguous and out.flags.c_contiguous and out.shape == view.shape
        assert ndim == view.ndim and list(shape) == ([1, *view.shape] if ndim == 2 else list(view.shape))

    def gaussian(self, view, out, tmp, shape, ndim, sigma, truncate, mode, cval, renormalise):
        self._check_args(view, out, shape, ndim)
        assert out.dtype == real_dtype(view.dtype)
        if self.passes(shape, ndim, sigma) >= 2:
            assert tmp is not None and tmp.shape == out.shape and tmp.dtype == out.dtype and tmp.flags.c_contiguous
        out[...] = self.hc.gaussian(view, sigma, truncate, mode, cval, renormalise)

    def passes(self, shape, ndim, sigma):
        return self.ext.gaussian_passes(shape, ndim, sigma)

    def passes_w(self, shape, ndim, weights):
        return self.ext.gaussian_w_passes(shape, ndim, weights)

    def sobel(self, view, out, shape, ndim, sel, coef, magnitude, post, eroded):
        self._check_args(view, out, shape, ndim)
        assert out.dtype == real_dtype(view.dtype)
        assert eroded is None or (eroded.dtype == np.uint8 and eroded.shape == view.shape and eroded.flags.c_contiguous)
        out[...] = self.hc.sobel(view, sel, coef, magnitude, post, eroded)

    def erode(self, mask_u8, out, shape, ndim):
        self._check_args(mask_u8, out, shape, ndim)
        assert mask_u8.dtype == np.uint8 and out.dtype == np.uint8
        out[...] = self.hc.erode(mask_u8.view(np.bool_))

    def gaussian_w(self, view, out, tmp, shape, ndim, weights, mode, cval, fast, reverse, bleed):
        self._check_args(view, out, shape, ndim)
        assert out.dtype == real_dtype(view.dtype)
        if self.passes_w(shape, ndim, weights) >= 2:
            assert tmp is not None and tmp.shape == out.shape and tmp.dtype == out.dtype and tmp.flags.c_contiguous
        out[...] = self.hc.gaussian_w(view, weights, mode, cval, fast, reverse, bleed)

    def canny_magnitude(self, S, mag, shape, ndim, coef):
        self._check_args(S, mag, shape, ndim)
        assert S.dtype in (np.float32, np.float64) and mag.dtype == S.dtype
        mag[...] = self.hc.canny_magnitude(S, coef)

    def canny_nms(self, S, mag, eroded, out, shape, ndim, coef, inv_sp, low, high):
        self._check_args(S, out, shape, ndim)
        assert mag.dtype == S.dtype and mag.shape == S.shape and mag.flags.c_contiguous and out.dtype == np.uint8
        assert eroded is None or (eroded.dtype == np.uint8 and eroded.shape == S.shape and eroded.flags.c_contiguous)
        out[...] = self.hc.canny_nms(S, mag, eroded, coef, inv_sp, low, high)

    def hysteresis_classify(self, view, st, shape, ndim, low, high):
        self._check_args(view, st, shape, ndim)
        assert st.dtype == np.uint8
        st[...] = self.hc.hysteresis_classify(view, low, high)

    def labels_buffer(self, shape):
        return None  # the host emulation keeps its own

    def hysteresis_connect(self, st, out, labels, shape, ndim, connectivity):
        self._check_args(st, out, shape, ndim)
        assert st.dtype == np.uint8 and out.dtype == np.bool_ and labels is None
        out[...] = self.hc.hysteresis_connect(st, connectivity)

    def to_host(self, a):
        return np.asarray(a)


# ----------------------------------------------------------------------- validation


def _all_finite(ops, a):
    """Whether a float device array holds no NaN or inf: two reductions, no boolean temporary."""
    with ops.device_of(a):
        return bool(np.isfinite(float(a.min())) and np.isfinite(float(a.max())))


def _check_device_image(ops, a, name="image"):
    """check_image for device arrays: same rules, same exceptions and messages."""
    xp = ops.xp
    dt = np.dtype(a.dtype)
    if dt.kind not in "biuf":
        raise InvalidImageError(f"{name} has unsupported dtype {dt}; expected an integer, bool or float array")
    if a.ndim not in (2, 3):
        raise InvalidImageError(f"{name} must be 2D or 3D, got an array of shape {a.shape} (ndim={a.ndim})")
    if a.size == 0:
        raise EmptyImageError(f"{name} is empty (shape {a.shape})")
    if dt.newbyteorder("=") not in INTENSITY_DTYPES:
        raise InvalidImageError(
            f"{name} has dtype {dt}, which is not supported; use uint8, int8, uint16, int16, uint32, "
            "int32, float32 or float64 (64-bit integers: cast to float64 or int32 first)"
        )
    if dt.kind == "f" and not _all_finite(ops, a):
        with ops.device_of(a):
            n_nan = int(xp.isnan(a).sum())
            n_inf = int(xp.isinf(a).sum())
        raise NonFiniteError(
            f"{name} holds {n_nan} NaN and {n_inf} infinite values; replace them (e.g. nan_to_num) or mask "
            "them out"
        )
    return a


def _check_device_mask(ops, mask, shape):
    """check_mask for device masks: a boolean device array of the image's shape."""
    xp = ops.xp
    m = ops.wrap(mask)
    if tuple(m.shape) != tuple(shape):
        raise InvalidImageError(f"mask has shape {tuple(m.shape)}, but the image has shape {tuple(shape)}")
    kind = np.dtype(m.dtype).kind
    if kind == "b":
        return m
    with ops.device_of(m):
        if kind in "iu":
            return m != 0
        if kind == "f":
            if not _all_finite(ops, m):
                raise NonFiniteError(
                    f"mask holds {int(xp.isnan(m).sum())} NaN and {int(xp.isinf(m).sum())} infinite values; "
                    "replace them or mask them out"
                )
            return m != 0
    raise InvalidImageError(f"mask must be boolean or integer, got dtype {m.dtype}")


def _prepare(ops, image):
    """(validated device array, input was a host array)."""
    if ops.is_gpu_input(image):
        return _check_device_image(ops, ops.wrap(image)), False
    arr = check_image(image)
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if np.little_endian else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="), order="K")
    return ops.upload(arr), True  # keeps C or F order; _layout handles both


def _layout(ops, a):
    """(C-contiguous array, transposed): F order -> transposed view, other strides -> one copy."""
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.flags.c_contiguous:
        return a, False
    if a.flags.f_contiguous:
        return a.T, True
    return ops.xp.ascontiguousarray(a), False


def _core_shape(view):
    return [1, *view.shape] if view.ndim == 2 else list(view.shape)


def _finish(ops, out, transposed, host_input):
    out = out.T if transposed else out
    return ops.to_host(out) if host_input else out


# ----------------------------------------------------------------------- functions


def _gaussian(ops, image, sigma, *, spacing=None, mode="nearest", cval=0.0, truncate=4.0):
    from .filters import _sigma_voxels

    image, spacing = unwrap_image(image, spacing)
    a, host_input = _prepare(ops, image)
    if mode not in _MODES:
        raise InvalidParameterError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if not (np.isfinite(truncate) and truncate > 0):
        raise InvalidParameterError(f"truncate must be > 0, got {truncate!r}")
    sig = _sigma_voxels(sigma, a.ndim, spacing)
    for s in sig:
        if s > 1e-15 and int(truncate * s + 0.5) > ops.max_radius:
            raise InvalidParameterError(
                f"sigma {s:g} voxels with truncate {truncate:g} gives a kernel radius of {int(truncate * s + 0.5)}; "
                f"the cuda backend supports radii up to {ops.max_radius} (use backend='cpu' or a smaller sigma)"
            )
    with ops.device_of(a):
        view, transposed = _layout(ops, a)
        ndim = view.ndim
        shape = _core_shape(view)
        core_sigma = [float(v) for v in core_axes(sig, ndim, transposed)]
        out = ops.xp.empty(view.shape, dtype=real_dtype(view.dtype))
        tmp = ops.xp.empty_like(out) if ops.passes(shape, ndim, core_sigma) >= 2 else None
        ops.gaussian(view, out, tmp, shape, ndim, core_sigma, float(truncate), _MODES[mode], float(cval), False)
        del tmp  # CuPy's pool reuses it in stream order: safe while the kernel still runs
        return _finish(ops, out, transposed, host_input)


def _sobel_params(dtype, ndim, axis, spacing, preserve_range, transposed):
    """Core (z, y, x) axes selection and coefficients, the same as edges.sobel's."""
    from .edges import _normalise_axes

    axes, magnitude = _normalise_axes(axis, ndim)
    smooth_norm = 4.0 ** (ndim - 1)
    if spacing is not None:
        sp = per_axis(spacing, ndim, "spacing")
        coef_user = [1.0 / (smooth_norm * 2.0 * d) for d in sp]
        post = 1.0
    else:
        scale = 1.0 if (preserve_range or np.dtype(dtype).kind == "f") else 1.0 / dtype_max(dtype)
        coef_user = [scale / smooth_norm] * ndim
        post = 1.0 / np.sqrt(ndim) if magnitude else 1.0
    sel_user = [a in axes for a in range(ndim)]
    sel = [bool(v) for v in core_axes(sel_user, ndim, transposed, fill=False)]
    coef = [float(v) for v in core_axes(coef_user, ndim, transposed, fill=1.0)]
    return sel, coef, magnitude, float(post)


def _sobel(ops, image, *, axis=None, mask=None, spacing=None, preserve_range=False):
    image, spacing = unwrap_image(image, spacing)
    a, host_input = _prepare(ops, image)
    user_dtype = a.dtype  # bool keeps its dtype_max of 1 (as on the cpu)
    # validate every parameter before any work on the device
    _sobel_params(user_dtype, a.ndim, axis, spacing, preserve_range, False)
    m = None
    if mask is not None:
        if ops.is_gpu_input(mask):
            m = _check_device_mask(ops, mask, a.shape)
        else:
            m = ops.upload(check_mask(mask, a.shape))
    with ops.device_of(a):
        view, transposed = _layout(ops, a)
        ndim = view.ndim
        shape = _core_shape(view)
        sel, coef, magnitude, post = _sobel_params(user_dtype, ndim, axis, spacing, preserve_range, transposed)
        if spacing is None and not preserve_range and view.dtype.kind == "i":
            # scikit-image's img_as_float clips signed integers at -1.0 (the cpu kernel
            # clamps on load, edges.hpp SobelParams.clamp_min): here a clamped copy,
            # made only when the dtype minimum is present
            lo = np.iinfo(view.dtype).min
            if bool((view == lo).any()):
                view = ops.xp.maximum(view, view.dtype.type(lo + 1))
        eroded = None
        if m is not None:
            # the mask in the image view's layout; erosion with the full element commutes with transposition
            mv = ops.xp.ascontiguousarray((m.T if transposed else m).view(np.uint8))
            eroded = ops.xp.empty(mv.shape, dtype=np.uint8)
            ops.erode(mv, eroded, shape, ndim)
        out = ops.xp.empty(view.shape, dtype=real_dtype(view.dtype))
        ops.sobel(view, out, shape, ndim, sel, coef, magnitude, post, eroded)
        return _finish(ops, out, transposed, host_input)


def _gaussian_w(ops, src, shape, ndim, weights, fast, reverse, bleed):
    """filters.hpp gaussian (mode constant, cval 0) with the given core-axis weights: a new array."""
    xp = ops.xp
    out = xp.empty(src.shape, dtype=real_dtype(src.dtype))
    if fast and out.dtype == np.float32 and src.dtype.kind == "f":
        # filters.hpp's guard: float sums of taps could overflow past FLT_MAX / 4
        lim = float(np.finfo(np.float32).max) / 4
        fast = max(float(src.max()), -float(src.min())) <= lim
    tmp = xp.empty_like(out) if ops.passes_w(shape, ndim, weights) >= 2 else None
    ops.gaussian_w(src, out, tmp, shape, ndim, weights, _MODES["constant"], 0.0, bool(fast), bool(reverse),
                   bool(bleed))
    del tmp
    return out


class _DeviceRanks:
    """``order_statistics`` (see edges._percentiles) of a device array: a sort on
    the device, and only the requested ranks' values come back to the host."""

    def __init__(self, ops):
        self.ops = ops

    def order_statistics(self, flat, ranks, num_threads):
        xp = self.ops.xp
        s = xp.sort(flat)  # exact: a permutation; NaN sorts last, as in numpy
        if bool(xp.isnan(s[-1])):
            return [float("nan")] * len(ranks)  # (the stand-in then holds NaN: numpy's NaN answer)
        return [float(v) for v in self.ops.to_host(s[xp.asarray(ranks)])]


def _canny(ops, image, sigma, low_threshold, high_threshold, mask, use_quantiles, spacing):
    from .edges import _canny_gradient_scale, _canny_params
    from .filters import kernel_weights, raise_overflow

    image, spacing = unwrap_image(image, spacing)
    a, host_input = _prepare(ops, image)  # NaN / inf raise here
    ndim = a.ndim
    sig, low, high, as_float, unit = _canny_params(np.dtype(a.dtype), a.shape, sigma, low_threshold, high_threshold,
                                                   use_quantiles, spacing)
    for s_ in sig:
        r = int(4.0 * s_ + 0.5)
        if s_ > 1e-15 and r > ops.max_radius:
            raise InvalidParameterError(
                f"sigma {s_:g} voxels gives a kernel radius of {r}; the cuda backend supports radii up to "
                f"{ops.max_radius} (use backend='cpu' or a smaller sigma)")
    if a.size >= 2**32 - 1:
        raise InvalidImageError(f"image has {a.size} voxels; the cuda Canny labels fewer than 2**32 - 1 "
                                "(use backend='cpu' or split the volume)")
    m = None
    if mask is not None:
        m = _check_device_mask(ops, mask, a.shape) if ops.is_gpu_input(mask) else ops.upload(check_mask(mask, a.shape))
    xp = ops.xp
    with ops.device_of(a):
        view, transposed = _layout(ops, a)
        shape = _core_shape(view)
        work = view
        if as_float:  # scikit-image's img_as_float, as the cpu path
            work = xp.multiply(view, 1.0 / unit, dtype=np.float64)
            if np.dtype(a.dtype).kind == "i":
                xp.maximum(work, -1.0, out=work)
        weights = kernel_weights(core_axes(sig, ndim, transposed), 4.0)
        fast = ndim == 3  # the float32 fast Gaussian in 3D, scipy-exact in 2D (as the cpu path)
        eroded = None
        if m is None:
            smooth = _gaussian_w(ops, work, shape, ndim, weights, fast, transposed, True)
            if not _all_finite(ops, smooth):  # (the input is finite: checked above)
                raise_overflow("the Gaussian smoothing", smooth.dtype, a)
        else:
            mview = xp.ascontiguousarray((m.T if transposed else m).view(np.uint8))
            masked = xp.where(mview.view(np.bool_), work, work.dtype.type(0))
            smooth = _gaussian_w(ops, masked, shape, ndim, weights, fast, transposed, False)
            del masked
            if not _all_finite(ops, smooth):
                raise_overflow("the Gaussian smoothing", smooth.dtype, a)
            msrc = mview if smooth.dtype == np.float32 else mview.astype(smooth.dtype)
            bleed = _gaussian_w(ops, msrc, shape, ndim, weights, fast, transposed, False)
            del msrc
            bleed += np.finfo(smooth.dtype).eps
            smooth /= bleed
            del bleed
            eroded = xp.empty(mview.shape, dtype=np.uint8)
            ops.erode(mview, eroded, shape, ndim)
        coef, inv_sp = _canny_gradient_scale(ndim, spacing, transposed)
        mag = xp.empty(smooth.shape, dtype=smooth.dtype)
        ops.canny_magnitude(smooth, mag, shape, ndim, coef)
        if use_quantiles:
            # the cpu path's thresholds exactly (CuPy's percentile interpolates differently):
            # edges._percentiles with the order statistics from a sort on the device
            from .edges import _percentiles

            low, high = _percentiles(_DeviceRanks(ops), mag, [100.0 * low, 100.0 * high], None)
        labels = xp.empty(smooth.shape, dtype=np.uint8)
        ops.canny_nms(smooth, mag, eroded, labels, shape, ndim, coef, inv_sp, float(low), float(high))
        del mag, smooth
        out = xp.empty(labels.shape, dtype=np.bool_)
        ops.hysteresis_connect(labels, out, ops.labels_buffer(labels.shape), shape, ndim, ndim)
        return _finish(ops, out, transposed, host_input)


def _hysteresis(ops, image, low, high, connectivity):
    from .edges import _hysteresis_params

    image, _ = unwrap_image(image)
    a, host_input = _prepare(ops, image)
    low, high, connectivity = _hysteresis_params(np.dtype(a.dtype), a.ndim, low, high, connectivity)
    if a.size >= 2**32 - 1:
        raise InvalidImageError(f"image has {a.size} voxels; the cuda hysteresis labels fewer than 2**32 - 1 "
                                "(use backend='cpu' or split the volume)")
    xp = ops.xp
    with ops.device_of(a):
        view, transposed = _layout(ops, a)
        shape = _core_shape(view)
        st = xp.empty(view.shape, dtype=np.uint8)
        ops.hysteresis_classify(view, st, shape, view.ndim, float(low), float(high))
        out = xp.empty(view.shape, dtype=np.bool_)
        ops.hysteresis_connect(st, out, ops.labels_buffer(view.shape), shape, view.ndim, connectivity)
        return _finish(ops, out, transposed, host_input)


def canny(image, sigma=1.0, low_threshold=None, high_threshold=None, *, mask=None, use_quantiles=False, spacing=None):
    """CUDA :func:`medseg_fast.edges.canny` (same parameters and edges).

    The stages of the cpu path, each on the device: the Gaussian (the 3D float32
    fast path and the 2D scipy-exact one with the bleed-over correction), the
    gradient magnitude, the suppression with both thresholds, and hysteresis by
    union-find labelling.  Device memory beyond the input and the result: the
    smoothed image and the magnitude (float32, float64 for 2D integer or float64
    input), one Gaussian scratch volume while smoothing, and 5 bytes per voxel
    for the labels; with ``use_quantiles`` the magnitude is sorted on the device
    and the few order statistics numpy's percentile reads come back to the host
    (the cpu path's thresholds exactly; a sorted copy on the device and a
    stand-in of the magnitude's size on the host while they are found).

    Examples
    --------
    >>> import cupy as cp                                  # doctest: +SKIP
    >>> from medseg_fast.edges import canny                # doctest: +SKIP
    >>> img = cp.zeros((32, 32), cp.float32); img[8:24, 8:24] = 1   # doctest: +SKIP
    >>> e = canny(img, sigma=1.0)                          # doctest: +SKIP
    >>> bool(e[8, 12]), bool(e[16, 16])                    # doctest: +SKIP
    (True, False)
    """
    return _canny(_DeviceOps(), image, sigma, low_threshold, high_threshold, mask, use_quantiles, spacing)


def hysteresis_threshold(image, low, high, connectivity=None):
    """CUDA :func:`medseg_fast.edges.hysteresis_threshold` (same parameters and set).

    Labels the voxels above ``low`` and above ``high`` in one kernel, then joins
    the candidates by union-find (Playne & Hawick 2018) and keeps the components
    holding a strong voxel.  Device memory: 1 byte per voxel of labels and 4 of
    union-find links, besides the result.

    Examples
    --------
    >>> import cupy as cp                                  # doctest: +SKIP
    >>> from medseg_fast.edges import hysteresis_threshold # doctest: +SKIP
    >>> img = cp.asarray([[0, 2, 2, 0, 2], [0, 0, 5, 0, 0]], cp.uint8)  # doctest: +SKIP
    >>> hysteresis_threshold(img, 1, 4).astype(int).tolist()  # doctest: +SKIP
    [[0, 1, 1, 0, 0], [0, 0, 1, 0, 0]]
    """
    return _hysteresis(_DeviceOps(), image, low, high, connectivity)


def gaussian(image, sigma, *, spacing=None, mode="nearest", cval=0.0, truncate=4.0):
    """CUDA :func:`medseg_fast.filters.gaussian` (same parameters and result).

    A CuPy / ``__cuda_array_interface__`` input gives a CuPy array on its device;
    a numpy input is copied to the current device and the result returned as numpy.
    Device memory: the output, plus one scratch volume of the output type when
    two or more axes are smoothed.  Kernel radius ``int(truncate * sigma + 0.5)``
    is limited to 1023 voxels.

    Examples
    --------
    >>> import cupy as cp                                  # doctest: +SKIP
    >>> from medseg_fast.filters import gaussian           # doctest: +SKIP
    >>> out = gaussian(cp.ones((64, 64, 64), cp.int16), 2.0)   # doctest: +SKIP
    >>> type(out).__module__.split(".")[0], out.dtype      # doctest: +SKIP
    ('cupy', dtype('float32'))
    """
    return _gaussian(_DeviceOps(), image, sigma, spacing=spacing, mode=mode, cval=cval, truncate=truncate)


def sobel(image, *, axis=None, mask=None, spacing=None, preserve_range=False):
    """CUDA :func:`medseg_fast.edges.sobel` (same parameters and result).

    A CuPy / ``__cuda_array_interface__`` input gives a CuPy array on its device;
    a numpy input is copied to the current device and the result returned as numpy.
    One fused kernel reads the input once and writes the output once; a mask adds
    one byte per voxel (its erosion) and one small kernel.

    Examples
    --------
    >>> import cupy as cp                                  # doctest: +SKIP
    >>> from medseg_fast.edges import sobel                # doctest: +SKIP
    >>> img = cp.zeros((6, 6), cp.float32); img[:, 3:] = 1 # doctest: +SKIP
    >>> sobel(img)[2].round(3).tolist()                    # doctest: +SKIP
    [0.0, 0.0, 0.707, 0.707, 0.0, 0.0]
    """
    return _sobel(_DeviceOps(), image, axis=axis, mask=mask, spacing=spacing, preserve_range=preserve_range)
