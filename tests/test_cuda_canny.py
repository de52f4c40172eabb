"""Tests of the cuda Canny and hysteresis (cpp/cuda/canny_cuda.cu, _cuda_api.canny /
hysteresis_threshold).

As tests/test_cuda.py: the device code paths run on the CPU through
``medseg_fast._cuda._host_check`` wherever the ``_cuda`` extension is built, and
must equal the cpu kernels bit for bit (the smoothing, the magnitude, the
suppression labels) and as sets (hysteresis, whose union-find is also run in
reverse order); the whole Python layer runs with the host ops against the public
cpu functions and against scikit-image; on a GPU the real kernels are checked
the same way (``_device_check``, then CuPy arrays through the public API).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import medseg_fast
from medseg_fast import edges
from medseg_fast._errors import (BackendUnavailableError, EmptyImageError, InvalidImageError, InvalidParameterError,
                                 NonFiniteError)
from medseg_fast.filters import kernel_weights

from conftest import ellipsoid_phantom, layouts, random_array


def _host_ops(on_device):
    from medseg_fast import _cuda_api

    return _cuda_api._HostOps(inputs_on_device=on_device)


# ------------------------------------------------------------ kernels (host emulation)

W_DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64]


@pytest.mark.parametrize("shape", [(9, 13, 17), (3, 1, 40), (1, 7, 5), (21, 30), (30, 1)])
@pytest.mark.parametrize("dtype", W_DTYPES)
def test_host_gaussian_w_equals_core(cuda_mod, core, shape, dtype):
    """Every option of filters.hpp's gaussian the cuda Canny uses: double or float32
    accumulation, either pass order, the bleed-over division; and every border mode."""
    a = random_array(shape, dtype, seed=len(shape) + shape[0])
    if np.dtype(dtype).kind == "f":
        a = (a / 10).astype(dtype)
    sigmas = [[1.3, 0.9, 2.1], [0.0, 0.7, 1.5], [2.0, 0.0, 0.8]]
    if len(shape) == 2:
        sigmas = [[0.0] + s[1:] for s in sigmas]
    for sig, fast, rev, bleed in itertools.product(sigmas, (False, True), (False, True), (False, True)):
        w = kernel_weights(sig, 4.0)
        for mode in ((4,) if bleed else (0, 1, 2, 3, 4)):
            cval = 0.0 if bleed else -2.5
            want = core.edges.gaussian(a, w, mode, cval, bleed, rev, 1, fast)
            got = cuda_mod._host_check.gaussian_w(a, w, mode, cval, fast, rev, bleed)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"{sig} fast={fast} rev={rev} bleed={bleed} mode={mode}")


def _smoothed(shape, dtype, seed, quantised):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 1, shape)
    if quantised:  # many exact ties between neighbours
        s = np.round(s * 3)
    return s.astype(dtype)


CANNY_SCALES = [([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]), ([0.3, 0.07, 0.11], [1 / 0.6, 1 / 0.35, 1 / 0.55])]


@pytest.mark.parametrize("shape", [(12, 17, 23), (3, 3, 3), (5, 2, 9), (1, 6, 6), (40, 37), (2, 40), (3, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_host_canny_stages_equal_core_suppress(cuda_mod, core, shape, dtype):
    """magnitude -> suppression labels -> union-find hysteresis == edges.hpp canny_suppress."""
    hc = cuda_mod._host_check
    rng = np.random.default_rng(4)
    nd = len(shape)
    for quantised, (coef, inv_sp), use_mask in itertools.product((False, True), CANNY_SCALES, (False, True)):
        S = _smoothed(shape, dtype, 7, quantised)
        m = rng.random(shape) > 0.15 if use_mask else None
        eroded = None if m is None else hc.erode(m).astype(np.uint8)
        mag = hc.canny_magnitude(S, coef)
        for lo, hi in ((0.5, 1.5), (0.0, 0.8), (1.0, 1.0)):
            want = core.edges.canny_suppress(S, None if m is None else m.astype(np.uint8), coef, inv_sp, lo, hi, 1)
            lab = hc.canny_nms(S, mag, eroded, coef, inv_sp, lo, hi)
            assert set(np.unique(lab)) <= {0, 1, 2}
            for rev in (False, True):
                got = hc.hysteresis_connect(lab, nd, rev)
                np.testing.assert_array_equal(got, want, err_msg=f"q={quantised} {coef} mask={use_mask} {lo},{hi}")


@pytest.mark.parametrize("shape", [(12, 17, 23), (1, 5, 7), (4, 1, 9), (40, 37), (1, 9)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_canny_magnitude_same_on_every_path(cuda_mod, core, shape, dtype):
    """The magnitude for quantile thresholds is the one the suppression compares,
    bit for bit, on cpu, numba and the cuda code (3D: along x, y, then z)."""
    from medseg_fast._numba import edges as nb_edges

    S = _smoothed(shape, dtype, 11, False)
    coef = [0.3, 0.07, 0.11]
    want = core.edges.canny_magnitude(S, coef, 1)
    np.testing.assert_array_equal(core.edges.canny_magnitude(S, coef, 2), want)
    np.testing.assert_array_equal(cuda_mod._host_check.canny_magnitude(S, coef), want)
    np.testing.assert_array_equal(nb_edges.canny_magnitude(S, coef, 1), want)


@pytest.mark.parametrize("shape", [(12, 17, 23), (1, 9, 9), (40, 37), (30, 1)])
@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.float32,
                                   np.float64])
def test_host_hysteresis_equals_core(cuda_mod, core, shape, dtype):
    hc = cuda_mod._host_check
    rng = np.random.default_rng(2)
    a = rng.normal(100, 80, shape).clip(0, 250).astype(dtype)
    ak = a.view(np.uint8) if a.dtype == np.bool_ else a  # (the Python layer passes bool as uint8)
    for lo, hi in ((90, 150), (100.5, 100.5), (200, 120), (-5, 300), (0.5, 0.7)):
        st = hc.hysteresis_classify(ak, lo, hi)
        for conn in range(1, len(shape) + 1):
            want = core.edges.hysteresis(ak, float(lo), float(hi), conn, 1)
            for rev in (False, True):
                np.testing.assert_array_equal(hc.hysteresis_connect(st, conn, rev), want, err_msg=f"{lo},{hi} {conn}")


def test_host_hysteresis_long_paths(cuda_mod, core):
    """A spiral (one weak component thousands of voxels long, strong at one end) and
    a comb: union-find merges across the whole image, in either visiting order."""
    n = 61
    sp = np.zeros((n, n), np.uint8)
    y, x, d = 0, 0, 0
    steps = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    lo_y, hi_y, lo_x, hi_x = 0, n - 1, 0, n - 1
    while lo_y <= hi_y and lo_x <= hi_x:  # walls of a square spiral, two apart
        for xx in range(lo_x, hi_x + 1):
            sp[lo_y, xx] = 1
        for yy in range(lo_y, hi_y + 1):
            sp[yy, hi_x] = 1
        for xx in range(lo_x, hi_x + 1):
            sp[hi_y, xx] = 1
        for yy in range(lo_y + 2, hi_y + 1):
            sp[yy, lo_x] = 1
        lo_y, hi_y, lo_x, hi_x = lo_y + 2, hi_y - 2, lo_x + 2, hi_x - 2
    del y, x, d, steps
    img = sp.astype(np.float32)
    img[0, 0] = 5.0
    comb = np.zeros((40, 50), np.float32)
    comb[::2, :] = 1
    comb[:, 0] = 1
    comb[-1, -1] = 5  # strong at the far end: every tooth through the spine
    hc = cuda_mod._host_check
    for im in (img, comb, np.stack([img[:40, :50], comb, comb[::-1]])):
        st = hc.hysteresis_classify(im, 0.5, 4.0)
        for conn in range(1, im.ndim + 1):
            want = core.edges.hysteresis(im, 0.5, 4.0, conn, 1)
            for rev in (False, True):
                np.testing.assert_array_equal(hc.hysteresis_connect(st, conn, rev), want)


# ---------------------------------------------------------------- Python layer (host ops)

CANNY_KWARGS_3D = [
    {},
    {"sigma": 1.5, "low_threshold": 20.0, "high_threshold": 60.0},
    {"sigma": (1.0, 2.0, 0.7), "low_threshold": 0.6, "high_threshold": 0.9, "use_quantiles": True},
    {"sigma": 1.2, "spacing": (2.5, 0.8, 0.9), "low_threshold": 5.0, "high_threshold": 15.0},
]
CANNY_KWARGS_2D = [
    {},
    {"sigma": 2.0},
    {"sigma": (1.0, 2.0), "low_threshold": 0.7, "high_threshold": 0.95, "use_quantiles": True},
    {"sigma": 1.0, "spacing": (0.5, 2.0), "low_threshold": 0.01, "high_threshold": 0.05},
]


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.bool_])
def test_host_pipeline_canny_equals_cpu(cuda_mod, on_device, dtype):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    vol, _ = ellipsoid_phantom((18, 21, 25), seed=3, noise=20.0)
    img2, _ = ellipsoid_phantom((40, 44), seed=4, noise=20.0)
    if np.dtype(dtype).kind == "b":
        vol, img2 = vol > 0, img2 > 0
    elif np.dtype(dtype).kind == "u":
        vol, img2 = np.clip(vol, 0, None), np.clip(img2, 0, None)
    if np.dtype(dtype).itemsize == 2:  # contrast against the default thresholds (0.1, 0.2 x dtype max)
        vol, img2 = vol * 40, img2 * 40
    vol, img2 = vol.astype(dtype), img2.astype(dtype)
    rng = np.random.default_rng(9)
    cases = found = 0
    for img, kwargs_list in ((vol, CANNY_KWARGS_3D), (img2, CANNY_KWARGS_2D)):
        mask = rng.random(img.shape) > 0.05
        for name, arr in layouts(img).items():
            before = arr.copy()
            for kw in [*kwargs_list, {"mask": mask}, {"mask": np.asfortranarray(mask), "sigma": 1.3}]:
                want = edges.canny(arr, backend="cpu", **kw)
                cases, found = cases + 1, found + bool(want.any())
                got = _cuda_api._canny(ops, arr, kw.get("sigma", 1.0), kw.get("low_threshold"),
                                       kw.get("high_threshold"), kw.get("mask"), kw.get("use_quantiles", False),
                                       kw.get("spacing"))
                assert isinstance(got, np.ndarray) and got.dtype == np.bool_ and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {kw}")
            np.testing.assert_array_equal(arr, before)
    assert found >= cases // 2  # most cases have edges to compare


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64, np.bool_])
def test_host_pipeline_hysteresis_equals_cpu(cuda_mod, on_device, dtype):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    rng = np.random.default_rng(6)
    for shape in ((17, 19, 23), (37, 41)):
        img = rng.normal(100, 60, shape).clip(0, 250).astype(dtype)
        for name, arr in layouts(img).items():
            before = arr.copy()
            for lo, hi, conn in ((90, 150, None), (0.5, 0.6, 1), (80, 80, len(shape)), (100.2, 180.7, 2)):
                want = edges.hysteresis_threshold(arr, lo, hi, conn, backend="cpu")
                got = _cuda_api._hysteresis(ops, arr, lo, hi, conn)
                assert got.dtype == np.bool_ and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {lo} {hi} {conn}")
            np.testing.assert_array_equal(arr, before)


def test_host_pipeline_matches_scikit_image(cuda_mod, ct_small):
    """The cuda code path against scikit-image on pydicom's CT_small (2D Canny, hysteresis)."""
    feature = pytest.importorskip("skimage.feature")
    skf = pytest.importorskip("skimage.filters")
    from medseg_fast import _cuda_api

    ops = _host_ops(False)
    ct = ct_small.astype(np.float32)
    ct = (ct - ct.min()) / (ct.max() - ct.min())
    for kw in ({"sigma": 1.0}, {"sigma": 2.0, "low_threshold": 0.02, "high_threshold": 0.08}):
        want = feature.canny(ct.astype(np.float64), **kw)
        got = _cuda_api._canny(ops, ct.astype(np.float64), kw["sigma"], kw.get("low_threshold"),
                               kw.get("high_threshold"), None, False, None)
        np.testing.assert_array_equal(got, want)
    ct16 = ct_small.astype(np.int16)
    want = feature.canny(ct16, sigma=1.5, low_threshold=200, high_threshold=600)
    got = _cuda_api._canny(ops, ct16, 1.5, 200, 600, None, False, None)
    np.testing.assert_array_equal(got, want)
    mag = skf.sobel(ct)
    lo, hi = np.percentile(mag, [80, 95])
    want = skf.apply_hysteresis_threshold(mag, lo, hi)
    np.testing.assert_array_equal(_cuda_api._hysteresis(ops, mag, lo, hi, None), want)


def test_device_ranks_give_numpy_percentiles(cuda_mod):
    """The cuda Canny's quantile thresholds: order statistics from a sort (on the device;
    numpy arrays here) and numpy's interpolation, bit for bit np.percentile's, NaN included."""
    from medseg_fast import _cuda_api
    from medseg_fast.edges import _percentiles

    ranks = _cuda_api._DeviceRanks(_host_ops(True))
    rng = np.random.default_rng(12)
    for v in (rng.normal(0, 1, 1001).astype(np.float32), np.round(rng.normal(0, 2, (30, 40))),
              np.abs(rng.normal(0, 20, (9, 10, 11))).astype(np.float32), np.float32([3.0])):
        for qs in ([0.0, 100.0], [80.0, 90.0], [33.3, 66.7]):
            want = tuple(float(x) for x in np.percentile(v, qs))
            assert _percentiles(ranks, v, qs, None) == want
    nan = np.ones(50, np.float32)
    nan[3] = np.nan
    assert all(np.isnan(x) for x in _percentiles(ranks, nan, [10.0, 90.0], None))


@pytest.mark.parametrize("on_device", [True, False], ids=["device-input", "host-input"])
def test_host_pipeline_canny_bad_input(cuda_mod, on_device):
    from medseg_fast import _cuda_api

    ops = _host_ops(on_device)
    good = np.zeros((8, 9), np.float32)
    nan = good.copy()
    nan[2, 3] = np.nan

    def canny(x, sigma=1.0, lo=None, hi=None, mask=None, q=False, spacing=None):
        return _cuda_api._canny(ops, x, sigma, lo, hi, mask, q, spacing)

    for fn in (canny, lambda x: _cuda_api._hysteresis(ops, x, 0.1, 0.2, None)):
        with pytest.raises(EmptyImageError):
            fn(np.zeros((0, 5), np.float32))
        with pytest.raises(InvalidImageError):
            fn(np.zeros((2, 3, 4, 5), np.float32))
        with pytest.raises(InvalidImageError):
            fn(np.zeros((4, 4), np.int64))
        with pytest.raises(NonFiniteError):
            fn(nan)
    for sigma in (0.0, -1.0, np.nan, [1.0]):
        with pytest.raises(InvalidParameterError):
            canny(good, sigma)
    with pytest.raises(InvalidParameterError):
        canny(good, 1.0, 0.5, 0.2)  # low > high
    with pytest.raises(InvalidParameterError):
        canny(good, 1.0, 0.5, 1.5, q=True)  # quantile above 1
    with pytest.raises(InvalidParameterError, match="radius"):
        canny(np.zeros((8, 300), np.float32), 300.0)  # radius 1200 > 1023: the cuda backend's limit
    with pytest.raises(InvalidImageError):
        canny(good, mask=np.ones((8, 8), bool))
    with pytest.raises(InvalidParameterError):
        canny(good, spacing=(1.0, 0.0))
    # values near the float32 limit: the 3D fast smoothing falls back to double (its
    # guard), as on the cpu, and nothing overflows
    big3 = np.full((6, 7, 8), 3e38, np.float32)
    big3[3, 3, 3] = -3e38
    big2 = np.full((16, 17), 3e38, np.float32)
    big2[::2] = -3e38
    for big in (big3, big2):
        np.testing.assert_array_equal(canny(big), edges.canny(big, backend="cpu"))
    for lo, hi, conn in ((0.5, 0.2, None), (np.nan, 1.0, None), (0.1, 0.2, 3), (0.1, 0.2, 0), (0.1, 0.2, True)):
        with pytest.raises(InvalidParameterError):
            _cuda_api._hysteresis(ops, good, lo, hi, conn)


def test_bindings_reject_bad_arguments(cuda_mod):
    e, hc = cuda_mod.edges, cuda_mod._host_check
    w = kernel_weights([0.0, 1.0, 1.0], 4.0)
    with pytest.raises(ValueError, match="constant"):
        hc.gaussian_w(np.zeros((4, 5), np.float32), w, 1, 0.0, False, False, True)  # bleed needs mode constant
    with pytest.raises(ValueError):
        hc.gaussian_w(np.zeros((4, 5), np.float32), [[], [0.5, 0.5], []], 4, 0.0, False, False, False)  # even
    with pytest.raises(ValueError):
        hc.gaussian_w(np.zeros((4, 5), np.float32), w[:2], 4, 0.0, False, False, False)
    with pytest.raises(TypeError):
        hc.canny_magnitude(np.zeros((4, 5), np.int16), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        hc.canny_nms(np.zeros((4, 5), np.float32), np.zeros((4, 6), np.float32), None, [1.0] * 3, [1.0] * 3, 0.1,
                     0.2)
    with pytest.raises(ValueError):
        hc.hysteresis_connect(np.zeros((4, 5), np.uint8), 3)
    with pytest.raises(ValueError, match="null"):
        e.canny_magnitude(0, "float32", 0x2000, [1, 8, 8], 2, [1.0, 1.0, 1.0], 0)
    with pytest.raises(ValueError, match="connectivity"):  # checked before any CUDA call
        e.hysteresis_connect(0x1000, 0x2000, 0x3000, [1, 8, 8], 2, 3, 0)
    with pytest.raises(ValueError, match="odd"):
        e.gaussian_w(0x1000, "float32", 0x2000, 0, [1, 8, 8], 2, [[], [0.5, 0.5], []], 4, 0.0, False, False, False, 0)
    with pytest.raises(ValueError, match="constant"):
        e.gaussian_w(0x1000, "float32", 0x2000, 0, [1, 8, 8], 2, [[], [1.0], []], 1, 0.0, False, False, True, 0)
    assert e.gaussian_w_passes([4, 8, 8], 3, kernel_weights([1.0, 0.0, 2.0], 4.0)) == 2
    assert e.gaussian_w_passes([1, 8, 8], 2, kernel_weights([5.0, 1.0, 2.0], 4.0)) == 2  # z ignored in 2D


def test_launch_without_gpu_raises(cuda_mod):
    if cuda_mod.device_count() > 0:
        pytest.skip("a GPU is visible; this checks the error path without one")
    img = np.zeros((4, 5), np.float32)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod._device_check.hysteresis(img, 0.1, 0.2, 1)
    with pytest.raises(RuntimeError, match="CUDA error"):
        cuda_mod._device_check.canny_suppress(img, None, [1.0] * 3, [1.0] * 3, 0.1, 0.2)


def test_backend_cuda_unavailable_raises_for_canny():
    if "cuda" in medseg_fast.available_backends():
        pytest.skip("the cuda backend is available here")
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(BackendUnavailableError):
        edges.canny(img, backend="cuda")
    with pytest.raises(BackendUnavailableError):
        edges.hysteresis_threshold(img, 0.1, 0.2, backend="cuda")


# ------------------------------------------------- GPU, without CuPy (_device_check)


@pytest.fixture(scope="module")
def gpu_mod(cuda_mod):
    if cuda_mod.device_count() < 1:
        pytest.skip("no GPU visible to medseg_fast._cuda")
    return cuda_mod


@pytest.mark.parametrize("shape", [(35, 20, 70), (3, 3, 3), (1, 6, 9), (37, 45)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_device_canny_suppress_equals_core(gpu_mod, core, shape, dtype):
    rng = np.random.default_rng(3)
    for quantised, (coef, inv_sp), use_mask in itertools.product((False, True), CANNY_SCALES, (False, True)):
        S = _smoothed(shape, dtype, 5, quantised)
        m = rng.random(shape) > 0.15 if use_mask else None
        eroded = None if m is None else core.edges.erode(m, 1).astype(np.uint8)
        want = core.edges.canny_suppress(S, None if m is None else m.astype(np.uint8), coef, inv_sp, 0.5, 1.5, 1)
        np.testing.assert_array_equal(gpu_mod._device_check.canny_suppress(S, eroded, coef, inv_sp, 0.5, 1.5), want)


@pytest.mark.parametrize("shape", [(35, 20, 70), (64, 64, 64), (37, 45), (1, 300)])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_device_hysteresis_equals_core(gpu_mod, core, shape, dtype):
    rng = np.random.default_rng(8)
    a = rng.normal(100, 60, shape).clip(0, 250).astype(dtype)
    for conn in range(1, len(shape) + 1):
        want = core.edges.hysteresis(a, 90.0, 150.0, conn, 1)
        for _ in range(3):  # a race in the union-find would show as a run-to-run difference
            np.testing.assert_array_equal(gpu_mod._device_check.hysteresis(a, 90.0, 150.0, conn), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_device_gaussian_w_equals_core(gpu_mod, core, dtype):
    a = random_array((35, 20, 70), dtype, seed=2)
    for fast, rev, bleed in itertools.product((False, True), (False, True), (False, True)):
        w = kernel_weights([1.3, 0.9, 2.1], 4.0)
        want = core.edges.gaussian(a, w, 4, 0.0, bleed, rev, 1, fast)
        np.testing.assert_array_equal(gpu_mod._device_check.gaussian_w(a, w, 4, 0.0, fast, rev, bleed), want)


# ------------------------------------------------------------------ GPU with CuPy


@pytest.fixture(scope="module")
def cp():
    cupy = pytest.importorskip("cupy")
    if "cuda" not in medseg_fast.available_backends():
        pytest.skip("the cuda backend is unavailable (no _cuda extension or no GPU)")
    return cupy


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_gpu_canny_and_hysteresis_equal_cpu(cp, dtype):
    vol, _ = ellipsoid_phantom((40, 48, 56), seed=5, noise=20.0)
    vol = np.clip(vol, 0, None).astype(dtype)
    img2 = vol[20]
    for img, kws in ((vol, CANNY_KWARGS_3D), (img2, CANNY_KWARGS_2D)):
        d = cp.asarray(img)
        for kw in [*kws, {"mask": img > 0}]:
            want = edges.canny(img, backend="cpu", **kw)
            got = edges.canny(d, **{k: (cp.asarray(v) if k == "mask" else v) for k, v in kw.items()})
            assert isinstance(got, cp.ndarray)
            np.testing.assert_array_equal(cp.asnumpy(got), want, err_msg=str(kw))
        np.testing.assert_array_equal(edges.canny(img, backend="cuda"), edges.canny(img, backend="cpu"))
        lo, hi = np.percentile(img, [60, 90])
        want = edges.hysteresis_threshold(img, lo, hi, backend="cpu")
        np.testing.assert_array_equal(cp.asnumpy(edges.hysteresis_threshold(d, lo, hi)), want)
        np.testing.assert_array_equal(cp.asnumpy(d), img)  # input untouched
