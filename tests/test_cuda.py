"""Tests of the cuda backend: filters.gaussian and edges.sobel on the GPU.

Three groups:

* host checks, run wherever the ``_cuda`` extension is built, GPU or not: the
  extension imports without touching CUDA; the device code paths, executed on
  the CPU by ``medseg_fast._cuda._host_check`` (the same ``__host__ __device__``
  block bodies and per-voxel functions, each barrier-separated phase run for all
  threads of a block in turn), equal the cpu backend bit for bit; the whole
  Python layer of the cuda path (``_cuda_api`` with its host ops) equals the
  public cpu functions over dtypes, 2D/3D, layouts, axis, spacing and masks, and
  matches scikit-image / scipy; argument errors; a launch without a GPU raises.
* without a usable cuda backend: ``backend="cuda"`` raises BackendUnavailableError.
* on a GPU without CuPy (``_cuda._device_check``: cudaMalloc, copy, the real
  kernels, copy back): the kernels equal the CPU kernels bit for bit.
* on a GPU (CuPy and a device): CUDA equals CPU to float32 rounding, CuPy in →
  CuPy out, numpy in with ``backend="cuda"`` → numpy out, errors on device arrays.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from medseg_fast.filters import kernel_weights
import pytest

import medseg_fast
from medseg_fast import edges, filters
from medseg_fast._errors import (BackendUnavailableError, EmptyImageError, InvalidImageError, InvalidParameterError,
                                 NonFiniteError)

from conftest import ellipsoid_phantom, layouts, random_array

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.float32, np.float64]
MODES = ["nearest", "reflect", "mirror", "wrap", "constant"]
# 3D shapes cross the kernel's tile (32 x 16 in x, y) and z-chunk (32) boundaries,
# and include one-voxel-thick dimensions (HAZARDS K5).
SHAPES_3D = [(35, 20, 70), (33, 16, 32), (3, 1, 1), (2, 17, 1), (1, 9, 40), (40, 3, 5)]
SHAPES_2D = [(37, 45), (1, 1), (1, 30), (30, 1)]


# --------------------------------------------------------------------------- host


def test_extension_imports_without_gpu_and_lazily(cuda_mod):
    code = (
        "import sys, medseg_fast\n"
        "assert 'medseg_fast._cuda' not in sys.modules\n"
        "import medseg_fast._cuda as c\n"
        "assert callable(c.edges.sobel) and callable(c.edges.gaussian) and callable(c.edges.erode)\n"
        "assert callable(c._host_check.sobel)\n"
        "print(c.architectures)\n"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    with_devices_hidden = subprocess.run(
        [sys.executable, "-c", "import medseg_fast._cuda as c; print(c.device_count())"],
        env=env, capture_output=True, text=True, timeout=120)
    assert with_devices_hidden.returncode == 0 and with_devices_hidden.stdout.strip() == "0"


def test_device_border_index_equals_core(cuda_mod):
    assert cuda_mod._host_check.border_index_mismatches() == 0


SOBEL_PARAMS = [
    ([True, True, True], [0.3, 0.7, 1.1], True, 0.577),
    ([False, True, True], [1.0, 0.25, 0.5], True, 0.7),
    ([True, False, True], [0.5, 1.0, 2.0], True, 1.0),
    ([True, False, False], [0.3, 1.0, 1.0], False, 1.0),
    ([False, True, False], [1.0, 0.3, 1.0], False, 1.0),
    ([False, False, True], [1.0, 1.0, 0.9], False, 1.0),
]


@pytest.mark.parametrize("shape", SHAPES_3D + SHAPES_2D)
@pytest.mark.parametrize("dtype", DTYPES)
def test_host_sobel_kernel_equals_core(cuda_mod, core, shape, dtype):
    a = random_array(shape, dtype, seed=len(shape) + shape[-1])
    rng = np.random.default_rng(1)
    eroded = rng.random(shape) > 0.3
    for axes, coef, mag, post in SOBEL_PARAMS:
        if len(shape) == 2 and axes[0]:
            continue
        want = core.edges.sobel(a, axes, coef, mag, post, 1)
        got = cuda_mod._host_check.sobel(a, axes, coef, mag, post)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)  # bit-identical; NaN (an unwritten voxel) fails
        got_m = cuda_mod._host_check.sobel(a, axes, coef, mag, post, eroded)
        np.testing.assert_array_equal(got_m, want * eroded)


def _same_weights_rounding(got, want):
    """The CPU takes numpy's Gaussian weights (scipy-exact), the CUDA launcher computes
    them with the C library's exp: they may differ in the last bit of a double, so
    results agree to one float32 ulp (float64: 1e-12 relative), not always bit for bit."""
    if got.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(want).max())))
    else:
        np.testing.assert_allclose(got, want, rtol=2.5e-7, atol=2.5e-7 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("shape", [(35, 20, 70), (3, 1, 4), (1, 6, 9), (37, 45), (1, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_host_gaussian_kernel_equals_core(cuda_mod, core, shape, dtype):
    a = random_array(shape, dtype, seed=3)
    sigmas = [[1.3, 0.0, 2.1], [0.0, 0.8, 0.0], [2.5, 1.0, 0.6], [0.0, 0.0, 0.0]]
    if len(shape) == 2:
        sigmas = [[0.0, 1.5, 0.8], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]
    for sigma in sigmas:
        for mode in range(5):
            for renorm in (False,):  # bleed correction (Canny) is CPU-only
                want = core.edges.gaussian(a, kernel_weights(sigma, 4.0), mode, -2.5, renorm, False, 1)
                got = cuda_mod._host_check.gaussian(a, sigma, 4.0, mode, -2.5, renorm)
                assert got.dtype == want.dtype
                _same_weights_rounding(got, want)


@pytest.mark.parametrize("shape", SHAPES_3D + SHAPES_2D + [(4, 5, 6)])
def test_host_erode_equals_core(cuda_mod, core, shape):
    rng = np.random.default_rng(5)
    for p in (0.05, 0.5):
        m = rng.random(shape) > p
        np.testing.assert_array_equal(cuda_mod._host_check.erode(m), core.edges.erode(m, 1))
    full = np.ones(shape, bool)
    np.testing.assert_array_equal(cuda_mod._host_check.erode(full), core.edges.erode(full, 1))


def _host_ops(on_device):
    from medseg_fast import _cuda_api

    return _cuda_api._HostOps(inputs_on_device=on_device)


SOBEL_KWARGS_3D = [
    {},
    {"axis": 0},
    {"axis": -1},
    {"axis": (0, 2)},
    {"spacing": (2.5, 0.7, 0.9)},
    {"axis": 1, "spacing": (2.5, 0.7, 0.9)},
    {"preserve_range": True},
]


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.bool_])
def test_host_pipeline_sobel_equals_cpu(cuda_mod, on_device, dtype):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    img3 = random_array((34, 19, 41), dtype, seed=7)
    img2 = random_array((37, 45), dtype, seed=8)
    rng = np.random.default_rng(9)
    for img, kwargs_list in ((img3, SOBEL_KWARGS_3D), (img2, [{}, {"axis": 0}, {"axis": 1}, {"spacing": (0.5, 2.0)}])):
        mask = rng.random(img.shape) > 0.1
        for name, arr in layouts(img).items():
            before = arr.copy()
            for kw in [*kwargs_list, {"mask": mask}, {"mask": np.asfortranarray(mask), "axis": 0},
                       {"mask": mask.astype(np.uint8)}]:
                want = edges.sobel(arr, backend="cpu", **kw)
                got = _cuda_api._sobel(ops, arr, **kw)
                assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {kw}")
            np.testing.assert_array_equal(arr, before)  # input not modified


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_host_pipeline_sobel_signed_minimum(cuda_mod, on_device, dtype):
    """The dtype minimum reads as -max (scikit-image's img_as_float clips at -1), as on the cpu."""
    from medseg_fast import _cuda_api

    info = np.iinfo(dtype)
    img = random_array((9, 11, 13), dtype, seed=4)
    img[:, :, :5] = info.min
    img[2, 3, 7] = info.max
    before = img.copy()
    for kw in ({}, {"axis": 2}, {"preserve_range": True}, {"spacing": (1.0, 2.0, 0.5)}):
        want = edges.sobel(img, backend="cpu", **kw)
        got = _cuda_api._sobel(_host_ops(on_device), img, **kw)
        np.testing.assert_array_equal(got, want, err_msg=str(kw))
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_host_pipeline_gaussian_equals_cpu(cuda_mod, on_device, dtype):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    img3 = random_array((21, 18, 35), dtype, seed=11)
    img2 = random_array((30, 41), dtype, seed=12)
    for img in (img3, img2):
        nd = img.ndim
        cases = [
            {"sigma": 1.5},
            {"sigma": [0.0] + [1.2] * (nd - 1), "mode": "reflect"},
            {"sigma": 2.0, "spacing": (1.5,) * nd, "mode": "constant", "cval": 3.0},
            {"sigma": 0.7, "mode": "wrap"},
            {"sigma": 1.2, "mode": "mirror", "truncate": 2.0},
        ]
        for name, arr in layouts(img).items():
            before = arr.copy()
            for kw in cases:
                want = filters.gaussian(arr, backend="cpu", **kw)
                got = _cuda_api._gaussian(ops, arr, **kw)
                assert got.dtype == want.dtype and got.shape == want.shape
                # weights (numpy vs C exp) and, for F order, pass order may differ in the last bit
                _same_weights_rounding(got, want)
            np.testing.assert_array_equal(arr, before)


def test_host_pipeline_matches_references_on_real_data(cuda_mod, ct_small):
    """The cuda code path against scikit-image and scipy on pydicom's CT_small."""
    skf = pytest.importorskip("skimage.filters")
    ndi = pytest.importorskip("scipy.ndimage")
    from medseg_fast import _cuda_api

    ops = _host_ops(False)
    ct = ct_small.astype(np.int16)
    want = skf.sobel(ct)
    got = _cuda_api._sobel(ops, ct)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(np.abs(want).max()))
    for ax in (0, 1):
        np.testing.assert_allclose(_cuda_api._sobel(ops, ct, axis=ax), skf.sobel(ct, axis=ax), rtol=1e-4,
                                   atol=1e-6 * float(np.abs(want).max()))
    vol, _ = ellipsoid_phantom((24, 28, 33), seed=2, noise=5.0)
    np.testing.assert_allclose(_cuda_api._sobel(ops, vol), skf.sobel(vol.astype(np.float64)), rtol=1e-4, atol=1e-3)
    g = _cuda_api._gaussian(ops, ct, 1.7)
    ref = ndi.gaussian_filter(ct.astype(np.float64), 1.7, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    g3 = _cuda_api._gaussian(ops, vol, (1.0, 2.0, 0.5), mode="reflect")
    ref3 = ndi.gaussian_filter(vol.astype(np.float64), (1.0, 2.0, 0.5), mode="reflect")
    np.testing.assert_allclose(g3, ref3, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
def test_host_pipeline_bad_input(cuda_mod, on_device):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    good = np.zeros((8, 9), np.float32)
    nan = good.copy()
    nan[2, 3] = np.nan
    inf = good.copy()
    inf[0, 0] = np.inf
    for fn in (lambda x: _cuda_api._sobel(ops, x), lambda x: _cuda_api._gaussian(ops, x, 1.0)):
        with pytest.raises(EmptyImageError):
            fn(np.zeros((0, 5), np.float32))
        with pytest.raises(InvalidImageError):
            fn(np.zeros((2, 3, 4, 5), np.float32))
        with pytest.raises(InvalidImageError):
            fn(np.zeros(7, np.float32))
        with pytest.raises(InvalidImageError):
            fn(np.zeros((4, 4), np.int64))
        with pytest.raises(InvalidImageError):
            fn(np.zeros((4, 4), np.complex64))
        with pytest.raises(NonFiniteError):
            fn(nan)
        with pytest.raises(NonFiniteError):
            fn(inf)
    for sigma in (0.0, -1.0, np.nan, [1.0], [0.0, 0.0]):
        with pytest.raises(InvalidParameterError):
            _cuda_api._gaussian(ops, good, sigma)
    with pytest.raises(InvalidParameterError):
        _cuda_api._gaussian(ops, good, 1.0, mode="bogus")
    with pytest.raises(InvalidParameterError):
        _cuda_api._gaussian(ops, good, 1.0, truncate=0.0)
    with pytest.raises(InvalidParameterError, match="radius"):
        _cuda_api._gaussian(ops, good, 500.0)  # radius 2000 > 1023: the cuda backend's limit
    with pytest.raises(InvalidParameterError):
        _cuda_api._gaussian(ops, good, 1.0, spacing=(1.0, -1.0))
    for axis in (2, -3, (0, 0), ()):
        with pytest.raises(InvalidParameterError):
            _cuda_api._sobel(ops, good, axis=axis)
    for spacing in ((1.0,), (1.0, 0.0), (1.0, np.inf)):
        with pytest.raises(InvalidParameterError):
            _cuda_api._sobel(ops, good, spacing=spacing)
    with pytest.raises(InvalidImageError):
        _cuda_api._sobel(ops, good, mask=np.ones((8, 8), bool))
    with pytest.raises(NonFiniteError):
        _cuda_api._sobel(ops, good, mask=nan)


def test_binding_rejects_bad_arguments_before_cuda(cuda_mod):
    e = cuda_mod.edges
    args = dict(src=0x1000, dtype="float32", dst=0x2000, shape=[1, 8, 8], ndim=2, axes=[False, True, True],
                coef=[1.0, 1.0, 1.0], magnitude=True, post=1.0, eroded_mask=0, stream=0)
    with pytest.raises(ValueError, match="null"):
        e.sobel(**{**args, "src": 0})
    with pytest.raises(TypeError, match="dtype"):
        e.sobel(**{**args, "dtype": "complex64"})
    with pytest.raises(ValueError):
        e.sobel(**{**args, "shape": [8, 8]})
    with pytest.raises(ValueError):
        e.sobel(**{**args, "ndim": 4})
    with pytest.raises(ValueError):
        e.sobel(**{**args, "shape": [2, 8, 8]})  # ndim 2 needs nz == 1
    with pytest.raises(ValueError):
        e.sobel(**{**args, "axes": [False, False, False]})
    with pytest.raises(ValueError):
        e.gaussian(0x1000, "float32", 0x2000, 0, [1, 8, 8], 2, [0.0, 1.0, 1.0], 4.0, 7, 0.0, False, 0)
    assert e.gaussian_passes([4, 8, 8], 3, [1.0, 0.0, 2.0]) == 2
    assert e.gaussian_passes([1, 8, 8], 2, [5.0, 1.0, 2.0]) == 2  # z ignored in 2D
    assert e.gaussian_passes([4, 8, 8], 3, [0.0, 0.0, 0.0]) == 0


def test_launch_without_gpu_raises_runtime_error(cuda_mod):
    if cuda_mod.device_count() > 0:
        pytest.skip("a GPU is visible; this checks the error path without one")
    args = (0x1000, "float32", 0x2000, [1, 8, 8], 2, [False, True, True], [1.0, 1.0, 1.0], True, 1.0, 0, 0)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod.edges.sobel(*args)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod.edges.erode(0x1000, 0x2000, [1, 8, 8], 2, 0)
    img = np.zeros((4, 5), np.float32)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod._device_check.sobel(img, [False, True, True], [1.0, 1.0, 1.0], True, 1.0)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod._device_check.gaussian(img, [0.0, 1.0, 1.0], 4.0, 0, 0.0, False)


# ------------------------------------------------- GPU, without CuPy (_device_check)


@pytest.fixture(scope="module")
def gpu_mod(cuda_mod):
    if cuda_mod.device_count() < 1:
        pytest.skip("no GPU visible to medseg_fast._cuda")
    return cuda_mod


@pytest.mark.parametrize("shape", SHAPES_3D + SHAPES_2D + [(70, 45, 100), (300, 257)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_device_sobel_kernel_equals_core(gpu_mod, core, shape, dtype):
    """The real kernels, launched without CuPy, against the CPU kernel: bit-identical
    (same operations in the same order, no FMA contraction, correctly rounded sqrt)."""
    a = random_array(shape, dtype, seed=len(shape) + shape[-1])
    eroded = np.random.default_rng(1).random(shape) > 0.3
    for axes, coef, mag, post in SOBEL_PARAMS:
        if len(shape) == 2 and axes[0]:
            continue
        want = core.edges.sobel(a, axes, coef, mag, post, 1)
        got = gpu_mod._device_check.sobel(a, axes, coef, mag, post)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(gpu_mod._device_check.sobel(a, axes, coef, mag, post, eroded), want * eroded)


@pytest.mark.parametrize("shape", [(35, 20, 70), (3, 1, 4), (1, 6, 9), (37, 45), (1, 7)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_device_gaussian_kernel_equals_core(gpu_mod, core, shape, dtype):
    a = random_array(shape, dtype, seed=3)
    sigmas = [[1.3, 0.0, 2.1], [0.0, 0.8, 0.0], [2.5, 1.0, 0.6], [0.0, 0.0, 0.0]]
    if len(shape) == 2:
        sigmas = [[0.0, 1.5, 0.8], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]
    for sigma in sigmas:
        for mode in range(5):
            for renorm in (False,):  # bleed correction (Canny) is CPU-only
                want = core.edges.gaussian(a, kernel_weights(sigma, 4.0), mode, -2.5, renorm, False, 1)
                got = gpu_mod._device_check.gaussian(a, sigma, 4.0, mode, -2.5, renorm)
                assert got.dtype == want.dtype
                _same_weights_rounding(got, want)


@pytest.mark.parametrize("shape", SHAPES_3D + SHAPES_2D)
def test_device_erode_equals_core(gpu_mod, core, shape):
    m = np.random.default_rng(5).random(shape) > 0.05
    np.testing.assert_array_equal(gpu_mod._device_check.erode(m), core.edges.erode(m, 1))


# ----------------------------------------------------------------- no cuda backend


def test_backend_cuda_unavailable_raises():
    if "cuda" in medseg_fast.available_backends():
        pytest.skip("the cuda backend is available here")
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(BackendUnavailableError):
        edges.sobel(img, backend="cuda")
    with pytest.raises(BackendUnavailableError):
        filters.gaussian(img, 1.0, backend="cuda")
    with pytest.raises(BackendUnavailableError):
        with medseg_fast.use_backend("cuda"):
            pass
    from medseg_fast import _cuda_api

    with pytest.raises(BackendUnavailableError):
        _cuda_api.sobel(img)
    with pytest.raises(BackendUnavailableError):
        _cuda_api.gaussian(img, 1.0)


# --------------------------------------------------------------------------- GPU


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    if "cuda" not in medseg_fast.available_backends():
        pytest.skip("the cuda backend is unavailable (no _cuda extension or no GPU)")
    return cupy


def _poison_pool(cp, nbytes):
    """Leave NaN-filled blocks in CuPy's pool so an unwritten output would show."""
    junk = [cp.full(nbytes // 4 + 64, cp.nan, dtype=cp.float32) for _ in range(3)]
    cp.cuda.get_current_stream().synchronize()
    del junk


def _close(got, want):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert not np.isnan(got).any()
    scale = float(np.abs(want).max()) or 1.0
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * scale)


@pytest.mark.parametrize("dtype", DTYPES + [np.bool_])
@pytest.mark.parametrize("shape", [(35, 20, 70), (70, 45, 100), (1, 9, 40), (37, 45), (300, 257)])
def test_gpu_sobel_equals_cpu(cp, dtype, shape):
    img = random_array(shape, dtype, seed=21)
    nd = img.ndim
    rng = np.random.default_rng(22)
    mask = rng.random(shape) > 0.1
    spacing = (2.5, 0.7, 0.9)[-nd:]
    cases = [{}, {"axis": 0}, {"axis": nd - 1}, {"spacing": spacing}, {"mask": mask}, {"preserve_range": True}]
    if nd == 3:
        cases.append({"axis": (0, 2)})
    for name, arr in layouts(img).items():
        if name == "big-endian":
            continue  # CuPy holds native byte order only; big-endian numpy input is covered below
        d = cp.asarray(arr)
        for kw in cases:
            want = edges.sobel(arr, backend="cpu", **kw)
            kw_d = {k: (cp.asarray(v) if k == "mask" else v) for k, v in kw.items()}
            _poison_pool(cp, want.nbytes)
            got = edges.sobel(d, **kw_d)
            assert isinstance(got, cp.ndarray)
            _close(cp.asnumpy(got), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(35, 20, 70), (37, 45)])
def test_gpu_gaussian_equals_cpu(cp, dtype, shape):
    img = random_array(shape, dtype, seed=31)
    nd = img.ndim
    for name, arr in layouts(img).items():
        if name == "big-endian":
            continue
        d = cp.asarray(arr)
        for mode in MODES:
            for kw in ({"sigma": 1.5}, {"sigma": [0.0] + [2.0] * (nd - 1)}, {"sigma": 1.0, "spacing": (0.5,) * nd}):
                want = filters.gaussian(arr, mode=mode, cval=1.5, backend="cpu", **kw)
                _poison_pool(cp, want.nbytes)
                got = filters.gaussian(d, mode=mode, cval=1.5, **kw)
                assert isinstance(got, cp.ndarray)
                _close(cp.asnumpy(got), want)


def test_gpu_numpy_input_with_backend_cuda_returns_numpy(cp, ct_small):
    for arr in layouts(ct_small.astype(np.int16)).values():  # big-endian and F order included
        got = edges.sobel(arr, backend="cuda")
        assert isinstance(got, np.ndarray)
        _close(got, edges.sobel(arr, backend="cpu"))
        g = filters.gaussian(arr, 2.0, backend="cuda")
        assert isinstance(g, np.ndarray)
        _close(g, filters.gaussian(arr, 2.0, backend="cpu"))
    with medseg_fast.use_backend("cuda"):
        assert isinstance(edges.sobel(ct_small), np.ndarray)


def test_gpu_auto_dispatch_and_input_untouched(cp):
    img, _ = ellipsoid_phantom((40, 48, 56), seed=3, noise=4.0)
    d = cp.asarray(img)
    before = d.copy()
    s = edges.sobel(d)
    g = filters.gaussian(d, 1.0)
    assert isinstance(s, cp.ndarray) and isinstance(g, cp.ndarray)
    assert s.dtype == cp.float32 and g.dtype == cp.float32
    assert bool((d == before).all())
    _close(cp.asnumpy(s), edges.sobel(img, backend="cpu"))


def test_gpu_sobel_and_gaussian_out(cp):
    """out= on the cuda backend: the result lands in the caller's CuPy array (or numpy
    array for numpy input); a mismatched kind, shape or dtype is refused."""
    img = random_array((21, 30, 40), np.float32, seed=43)
    want = edges.sobel(img, backend="cpu")
    d = cp.asarray(img)
    buf = cp.full(img.shape, cp.nan, cp.float32)
    assert edges.sobel(d, out=buf) is buf
    _close(cp.asnumpy(buf), want)
    host = np.full(img.shape, np.nan, np.float32)
    assert edges.sobel(img, out=host, backend="cuda") is host
    _close(host, want)
    for bad in (np.empty(img.shape, np.float32), cp.empty(img.shape, cp.float64), cp.empty((21, 30, 41), cp.float32)):
        with pytest.raises(InvalidParameterError):
            edges.sobel(d, out=bad)
    gbuf = cp.full(img.shape, cp.nan, cp.float32)
    assert filters.gaussian(d, 1.5, out=gbuf) is gbuf
    _close(cp.asnumpy(gbuf), filters.gaussian(img, 1.5, backend="cpu"))
    with pytest.raises(InvalidParameterError):
        filters.gaussian(d, 1.5, out=np.empty(img.shape, np.float32))


def test_gpu_non_default_stream(cp):
    img = random_array((33, 40, 50), np.float32, seed=41)
    want = edges.sobel(img, backend="cpu")
    with cp.cuda.Stream(non_blocking=True) as st:
        d = cp.asarray(img)
        got = edges.sobel(d)
        st.synchronize()
    _close(cp.asnumpy(got), want)


def test_gpu_bad_input(cp):
    with pytest.raises(EmptyImageError):
        edges.sobel(cp.zeros((0, 4), cp.float32))
    with pytest.raises(InvalidImageError):
        edges.sobel(cp.zeros((2, 2, 2, 2), cp.float32))
    with pytest.raises(InvalidImageError):
        filters.gaussian(cp.zeros((4, 4), cp.int64), 1.0)
    x = cp.zeros((5, 5), cp.float32)
    x[1, 1] = cp.nan
    with pytest.raises(NonFiniteError):
        edges.sobel(x)
    with pytest.raises(NonFiniteError):
        filters.gaussian(x, 1.0)
    with pytest.raises(InvalidParameterError):
        filters.gaussian(cp.zeros((5, 5), cp.float32), 0.0)
    with pytest.raises(InvalidImageError):
        edges.sobel(cp.zeros((5, 5), cp.float32), mask=cp.ones((5, 4), bool))
    with pytest.raises(InvalidParameterError):
        edges.sobel(cp.zeros((5, 5), cp.float32), axis=3)
