"""medseg_fast.filters.gaussian against scipy.ndimage.gaussian_filter."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from medseg_fast import edges, filters
from medseg_fast._errors import EmptyImageError, InvalidImageError, InvalidParameterError, NonFiniteError

from conftest import ellipsoid_phantom, layouts, run_isa_variants


def _ref(img, sigma, mode="nearest", cval=0.0):
    return ndi.gaussian_filter(img.astype(np.float64), sigma, mode=mode, cval=cval, truncate=4.0)


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap", "constant"])
# The last two: kernel radii larger than the axis (every border row is a
# reflection of rows the in-place passes have already overwritten) and row
# counts that are not a multiple of the register window.
@pytest.mark.parametrize("shape,sigma", [((37, 41), 1.5), ((9, 13, 17), (0.7, 1.2, 2.0)),
                                         ((301, 11), 6.0), ((21, 23, 70), (5.0, 4.0, 3.0))])
def test_matches_scipy_modes(backend, mode, shape, sigma):
    for dtype in (np.float32, np.float64):
        img = np.random.default_rng(1).normal(size=shape).astype(dtype)
        out = filters.gaussian(img, sigma, mode=mode, cval=0.5, backend=backend)
        assert out.dtype == dtype and out.shape == img.shape
        # same weights, same double accumulation order, one rounding per pass: bit-identical
        np.testing.assert_array_equal(out, ndi.gaussian_filter(img, sigma, mode=mode, cval=0.5, truncate=4.0))
        np.testing.assert_allclose(out, _ref(img, sigma, mode, 0.5), rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap", "constant"])
def test_x_pass_line_groups_and_chunks(backend, mode):
    """The pass along x takes lines in groups of a vector's lanes (4, 8 or 16) through
    chunks of at least 256 positions (filters.hpp xgroup): line counts around the group
    sizes, lines across chunk boundaries, kernels wider than the line, an in-place x pass
    (after y) and the float32 path's leftover lines all give scipy's bits (or, float32
    path, the same bits as one line at a time: a single line never forms a group)."""
    rng = np.random.default_rng(11)
    for ny, nx, sigma in [(7, 5, 0.4), (8, 300, 2.0), (9, 257, 20.0), (17, 600, 1.0), (33, 1031, 70.0),
                          (16, 13, 6.0), (15, 512, 3.0)]:
        for dtype in (np.float32, np.float64, np.uint8):
            img = rng.normal(100, 50, (ny, nx)).clip(0, 255).astype(dtype)
            ref1 = ndi.gaussian_filter1d(img.astype(np.float32 if dtype == np.uint8 else dtype), sigma, axis=1,
                                         mode=mode, cval=0.5, truncate=4.0)
            out = filters.gaussian(img, (0.0, sigma), mode=mode, cval=0.5, backend=backend)
            np.testing.assert_array_equal(out, ref1, err_msg=f"{ny}x{nx} s{sigma} {dtype.__name__}")
            out2 = filters.gaussian(img, (1.5, sigma), mode=mode, cval=0.5, backend=backend)  # x pass in place
            ref2 = ndi.gaussian_filter(img.astype(out2.dtype), (1.5, sigma), mode=mode, cval=0.5, truncate=4.0)
            np.testing.assert_array_equal(out2, ref2, err_msg=f"{ny}x{nx} s{sigma} {dtype.__name__} y+x")
        f = img.astype(np.float32)
        fast = filters.gaussian(f, (1.5, sigma), mode=mode, cval=0.5, precision="float32", backend=backend)
        rows = np.stack([filters.gaussian(np.ascontiguousarray(f[:, j:j + 1].T), (0.0, 1.5), mode=mode, cval=0.5,
                                          precision="float32", backend=backend)[0] for j in range(nx)], axis=1)
        one_by_one = np.stack([filters.gaussian(rows[i:i + 1], (0.0, sigma), mode=mode, cval=0.5,
                                                precision="float32", backend=backend)[0] for i in range(ny)])
        np.testing.assert_array_equal(fast, one_by_one)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64, np.bool_])
def test_dtypes_on_ct(backend, ct_small, dtype):
    img = ct_small.astype(dtype) if dtype != np.bool_ else ct_small > 1000
    out = filters.gaussian(img, 2.0, backend=backend)
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)
    ref = _ref(img, 2.0)
    np.testing.assert_allclose(out, ref, rtol=2e-6, atol=2e-6 * max(1.0, np.abs(ref).max()))


def test_spacing_means_mm(backend):
    img, _ = ellipsoid_phantom((20, 24, 28))
    sp = (2.5, 0.8, 0.8)
    out = filters.gaussian(img, 2.0, spacing=sp, backend=backend)
    assert img.dtype == np.float32
    # the same arithmetic as scipy on the float32 image: equal bit for bit
    np.testing.assert_array_equal(out, ndi.gaussian_filter(img, [2.0 / s for s in sp], mode="nearest", truncate=4.0))


def test_layouts_and_threads(backend):
    img, _ = ellipsoid_phantom((16, 20, 24), noise=5)
    ref = filters.gaussian(img, 1.3, backend=backend, num_threads=1)
    for name, a in layouts(img).items():
        before = a.copy()
        out = filters.gaussian(a, 1.3, backend=backend, num_threads=2)
        np.testing.assert_array_equal(out, ref, err_msg=name)
        np.testing.assert_array_equal(a, before)


def test_cpu_and_numba_agree(ct_small):
    a = filters.gaussian(ct_small, 1.7, backend="cpu")
    b = filters.gaussian(ct_small, 1.7, backend="numba")
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "args,exc",
    [
        ((np.zeros((0, 5), np.float32), 1.0), EmptyImageError),
        ((np.zeros(5, np.float32), 1.0), InvalidImageError),
        ((np.zeros((2, 2, 2, 2), np.float32), 1.0), InvalidImageError),
        ((np.array([[1.0, np.nan]], np.float32), 1.0), NonFiniteError),
        ((np.array([[1.0, np.inf]]), 1.0), NonFiniteError),
        ((np.zeros((4, 4)), 0.0), InvalidParameterError),
        ((np.zeros((4, 4)), -1.0), InvalidParameterError),
        ((np.zeros((4, 4)), (1.0, 2.0, 3.0)), InvalidParameterError),
        ((np.zeros((4, 4), np.int64), 1.0), InvalidImageError),
        ((np.zeros((4, 4), np.complex64), 1.0), InvalidImageError),
    ],
)
def test_bad_input(args, exc):
    with pytest.raises(exc):
        filters.gaussian(*args)


def test_bad_mode_and_threads():
    with pytest.raises(InvalidParameterError):
        filters.gaussian(np.zeros((4, 4)), 1.0, mode="bogus")
    with pytest.raises(InvalidParameterError):
        filters.gaussian(np.zeros((4, 4)), 1.0, num_threads=-2)


def test_every_simd_variant_is_bit_identical(tmp_path):
    """The run-time dispatched loops (baseline / avx2 / avx512) give the same bits.

    Each variant runs in its own process (the ISA is chosen once per process),
    capped with MEDSEG_FAST_ISA; the results must equal scipy's and each other's.
    """
    pytest.importorskip("medseg_fast._core")
    script = (
        "import hashlib, sys, numpy as np\n"
        "from medseg_fast import filters, edges, _core\n"
        "rng = np.random.default_rng(3)\n"
        "v = rng.normal(0, 300, (23, 37, 131)).astype(np.float32)\n"  # odd sizes: every tail path
        "i = rng.integers(-1024, 3000, (301, 277)).astype(np.int16)\n"
        "np.savez(sys.argv[1], isa=_core.simd_isa(), g1=filters.gaussian(v, 1.3, backend='cpu'),\n"
        "         g8=filters.gaussian(v, 8.3, backend='cpu'), g2=filters.gaussian(i, 2.0, backend='cpu'),\n"
        "         f8=filters.gaussian(v, 8.3, precision='float32', backend='cpu'),\n"
        "         f2=filters.gaussian(i, (0.0, 2.0), mode='constant', precision='float32', backend='cpu'),\n"
        "         s=edges.sobel(v, backend='cpu'), c=edges.canny(i, 2.0, backend='cpu'),\n"
        "         c3=edges.canny(v, 1.5, 100.0, 250.0, backend='cpu'),\n"
        # 2D float32 Canny with a mask and quantile thresholds (suppression rows per ISA)
        "         cm=edges.canny(v[5], 1.0, 0.6, 0.85, use_quantiles=True, mask=v[5] > -250, backend='cpu'),\n"
        # 3D Sobel row kernels: integer inputs (converted in the vector loads), rows of whole
        # vectors, rows shorter than a vector, rows of two, a single axis (the general loop)
        "         si=edges.sobel(rng.integers(-32768, 32767, (7, 19, 50)).astype(np.int16), backend='cpu'),\n"
        "         su=edges.sobel(rng.integers(0, 65535, (6, 11, 64)).astype(np.uint16), backend='cpu'),\n"
        "         s8=edges.sobel(rng.integers(0, 255, (5, 9, 7)).astype(np.uint8), backend='cpu'),\n"
        "         sb=edges.sobel(rng.integers(-128, 127, (4, 6, 2)).astype(np.int8), backend='cpu'),\n"
        "         s0=edges.sobel(v, axis=0, backend='cpu'),\n"
        # the 3D Canny magnitude volume (quantile thresholds): rows per ISA, float32 and float64
        "         m3=_core.edges.canny_magnitude(v, [0.3, 0.7, 1.1], 2),\n"
        "         m3d=_core.edges.canny_magnitude(v.astype(np.float64), [0.3, 0.7, 1.1], 2),\n"
        "         c3q=edges.canny(v, 1.5, 0.7, 0.9, use_quantiles=True, backend='cpu'),\n"
        # past 32 MiB of output: rows staged in L1 and streamed out (compared by digest)
        "         sbig=hashlib.sha1(edges.sobel(np.repeat(v[:, :32, :128], 6, axis=0).repeat(8, axis=1)\n"
        "                           .repeat(2, axis=2), backend='cpu').tobytes()).hexdigest())\n"
    )
    results = run_isa_variants(script, tmp_path)
    base = results["baseline"]
    v = np.random.default_rng(3).normal(0, 300, (23, 37, 131)).astype(np.float32)
    np.testing.assert_array_equal(base["g8"], ndi.gaussian_filter(v, 8.3, mode="nearest"))
    assert 0 < base["c3"].sum() < base["c3"].size // 2  # the 3D Canny case has edges to agree on
    assert 0 < base["cm"].sum() < base["cm"].size // 2
    # the 2D case equals scikit-image's edges
    feature = pytest.importorskip("skimage.feature")
    np.testing.assert_array_equal(base["cm"], feature.canny(v[5], 1.0, 0.6, 0.85, use_quantiles=True,
                                                            mask=v[5] > -250))
    for isa, r in results.items():
        for key in ("g1", "g8", "g2", "f8", "f2", "s", "c", "c3", "cm", "si", "su", "s8", "sb", "s0", "sbig", "m3",
                    "m3d", "c3q"):
            np.testing.assert_array_equal(r[key], base[key], err_msg=f"{isa} {key}")


@pytest.mark.parametrize("order", ["C", "F"])
def test_large_volume_plane_fused_path_matches_scipy(order):
    """Volumes beyond 8 MiB take the y/x passes plane by plane (in cache);
    Fortran order runs them x, y first, then z.  Both equal scipy bit for bit."""
    rng = np.random.default_rng(11)
    vol = np.asarray(rng.normal(0, 200, (41, 233, 239)).astype(np.float32), order=order)  # 9.1 MB
    ref = ndi.gaussian_filter(vol, (1.5, 2.0, 0.8), mode="reflect")
    out = filters.gaussian(vol, (1.5, 2.0, 0.8), mode="reflect", backend="cpu")
    np.testing.assert_array_equal(out, ref)
    i16 = (vol * 4).astype(np.int16)
    np.testing.assert_array_equal(filters.gaussian(i16, 1.0, backend="cpu", num_threads=1),
                                  ndi.gaussian_filter(i16.astype(np.float32), 1.0, mode="nearest"))


# ---------------------------------------------------------------- precision='float32'

def _fast_tol(ref):
    # ~2 * radius float32 roundings of partial sums bounded by the image's magnitude
    return 4e-6 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap", "constant"])
@pytest.mark.parametrize("shape,sigma", [((37, 41), 1.5), ((21, 23, 70), (5.0, 4.0, 3.0)), ((40, 35, 37), 8.33)])
def test_float32_precision_close_to_scipy(backend, mode, shape, sigma):
    img = np.random.default_rng(4).normal(40, 300, size=shape).astype(np.float32)
    out = filters.gaussian(img, sigma, mode=mode, cval=-20.0, precision="float32", backend=backend)
    assert out.dtype == np.float32 and out.shape == img.shape
    ref = _ref(img, sigma, mode, -20.0)
    np.testing.assert_allclose(out, ref, rtol=0, atol=_fast_tol(ref))
    exact = filters.gaussian(img, sigma, mode=mode, cval=-20.0, backend=backend)
    assert np.any(out != exact)  # it really is a different (float32) accumulation


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.bool_])
def test_float32_precision_dtypes_backends_agree(dtype, ct_small):
    img = ct_small.astype(dtype) if dtype != np.bool_ else ct_small > 1000
    vol = np.stack([img[::2, ::2]] * 5)
    for a in (img, vol):
        cpu = filters.gaussian(a, 3.0, mode="reflect", precision="float32", backend="cpu")
        nb = filters.gaussian(a, 3.0, mode="reflect", precision="float32", backend="numba")
        # the same float32 operations in the same order, fma on both (std::fma / llvm.fma): same bits
        np.testing.assert_array_equal(cpu, nb)
        ref = _ref(a, 3.0, "reflect")
        np.testing.assert_allclose(cpu, ref, rtol=0, atol=_fast_tol(ref))


def test_float32_precision_layouts_threads_and_float64():
    img, _ = ellipsoid_phantom((16, 20, 24), noise=5)
    img = img.astype(np.float32)
    ref = filters.gaussian(img, 2.5, precision="float32", backend="cpu", num_threads=1)
    for name, a in layouts(img).items():
        out = filters.gaussian(a, 2.5, precision="float32", backend="cpu", num_threads=2)
        np.testing.assert_array_equal(out, ref, err_msg=name)
    # float64 results stay exact: the option only affects float32 results
    d = img.astype(np.float64)
    np.testing.assert_array_equal(filters.gaussian(d, 2.5, precision="float32"), ndi.gaussian_filter(d, 2.5, mode="nearest"))


@pytest.mark.parametrize("order", ["C", "F"])
def test_float32_precision_plane_fused_path(order):
    rng = np.random.default_rng(12)
    vol = np.asarray(rng.normal(0, 200, (41, 233, 239)).astype(np.float32), order=order)  # 9.1 MB
    out = filters.gaussian(vol, (1.5, 6.0, 0.8), mode="mirror", precision="float32", backend="cpu")
    small = filters.gaussian(np.ascontiguousarray(vol), (1.5, 6.0, 0.8), mode="mirror", precision="float32",
                             backend="numba")
    np.testing.assert_array_equal(out, small)
    ref = _ref(vol, (1.5, 6.0, 0.8), "mirror")
    np.testing.assert_allclose(out, ref, rtol=0, atol=_fast_tol(ref))


def test_bad_precision():
    with pytest.raises(InvalidParameterError, match="precision"):
        filters.gaussian(np.zeros((4, 4), np.float32), 1.0, precision="half")


def test_float32_precision_huge_values_fall_back_to_double(backend):
    """Past FLT_MAX / 4 float sums of taps could overflow where double does not:
    such inputs take the exact path, on every backend."""
    img = np.full((6, 7), 3e38, np.float32)
    img[2, 3] = -3e38
    out = filters.gaussian(img, 1.0, precision="float32", backend=backend)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, ndi.gaussian_filter(img, 1.0, mode="nearest"))
    vol = np.zeros((30, 260, 300), np.float32)  # > 8 MiB: the plane-by-plane path
    vol[5, 7, 9] = 2e38
    out = filters.gaussian(vol, 1.0, precision="float32", backend=backend)
    np.testing.assert_array_equal(out, ndi.gaussian_filter(vol, 1.0, mode="nearest"))
    small = filters.gaussian(np.ones((5, 5), np.float32), 1.0, mode="constant", cval=3e38, precision="float32",
                             backend=backend)
    assert np.isfinite(small).all()


@pytest.mark.parametrize("precision", ["exact", "float32"])
def test_nonfinite_raises_on_every_path(backend, precision):
    """NaN/inf are found by counting the output (no separate input pass): small
    images, the plane-by-plane path (> 8 MiB, C and F order) and 3D Canny."""
    small = np.zeros((9, 11), np.float32)
    small[4, 5] = np.nan
    with pytest.raises(NonFiniteError, match="1 NaN"):
        filters.gaussian(small, 1.0, precision=precision, backend=backend)
    vol = np.zeros((41, 233, 239), np.float32)  # 9.1 MB
    vol[40, 232, 238] = -np.inf
    for order in ("C", "F"):
        with pytest.raises(NonFiniteError, match="1 infinite"):
            filters.gaussian(np.asarray(vol, order=order), 1.0, precision=precision, backend=backend)
    with pytest.raises(NonFiniteError, match="1 infinite"):
        edges.canny(vol, 1.0, backend=backend)
    vol[40, 232, 238] = 0.0
    assert not filters.gaussian(vol, 1.0, precision=precision, backend=backend).any()


@pytest.mark.parametrize("precision", ["exact", "float32"])
def test_out_written_in_place_every_layout(backend, precision):
    """out= gives the same values as a fresh result, written directly when its
    layout matches the kernel's and copied otherwise; 2D and 3D; input untouched."""
    vol, _ = ellipsoid_phantom((9, 14, 17), noise=4)
    for img in (vol.astype(np.int16), vol.astype(np.float32), vol[3].astype(np.float64)):
        rt = np.float64 if img.dtype == np.float64 else np.float32
        for name, a in layouts(img).items():
            before = a.copy()
            ref = filters.gaussian(a, 1.5, mode="reflect", precision=precision, backend=backend)
            for order in ("C", "F"):
                buf = np.full(img.shape, np.nan, rt, order=order)
                res = filters.gaussian(a, 1.5, mode="reflect", precision=precision, out=buf, backend=backend)
                assert res is buf
                np.testing.assert_array_equal(buf, ref)
            wide = np.full(img.shape[:-1] + (2 * img.shape[-1],), np.nan, rt)[..., ::2]
            assert filters.gaussian(a, 1.5, mode="reflect", precision=precision, out=wide, backend=backend) is wide
            np.testing.assert_array_equal(wide, ref)
            np.testing.assert_array_equal(a, before)


def test_out_large_volume_paths():
    """The plane-fused path (> 8 MiB) and its page pre-touch with a caller's output."""
    vol = np.random.default_rng(4).normal(0, 100, (40, 200, 300)).astype(np.float32)  # 9.6 MB
    for order in ("C", "F"):
        a = np.asarray(vol, order=order)
        buf = np.empty_like(a)
        assert filters.gaussian(a, 2.0, out=buf) is buf
        np.testing.assert_array_equal(buf, filters.gaussian(a, 2.0))


def test_out_bad_arguments(backend):
    img = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    ro = np.empty(img.shape, np.float32)
    ro.flags.writeable = False
    flat = np.zeros(img.size + 1, np.float32)
    src = flat[:-1].reshape(img.shape)
    src[...] = img
    for src_img, out in ((img, np.empty((6, 7, 9), np.float32)), (img, np.empty(img.shape, np.float64)),
                         (img, np.empty(img.shape, ">f4")), (img, ro), (img, img), (img, [0.0]),
                         (src, flat[1:].reshape(img.shape))):
        before = src_img.copy()
        with pytest.raises(InvalidParameterError, match="out"):
            filters.gaussian(src_img, 1.0, out=out, backend=backend)
        np.testing.assert_array_equal(src_img, before)
    with pytest.raises(InvalidParameterError, match="float32"):
        filters.gaussian(img.astype(np.int16), 1.0, out=np.empty(img.shape, np.int16), backend=backend)


# ------------------------------------------------------ cval, truncate, kernel size


@pytest.mark.parametrize("cval", [0.3, -1.7, 1e-3, 12345.678, np.float32(0.1)])
def test_constant_mode_any_cval_bit_exact(backend, cval):
    """cval enters scipy's double accumulation unrounded (it was rounded to float32 first)."""
    rng = np.random.default_rng(7)
    for shape, sigma in [((20, 23), 1.5), ((7, 9, 11), (0.8, 1.3, 2.1)), ((5, 40), (3.0, 0.0))]:
        for dtype in (np.float32, np.float64, np.int16, np.uint8):
            img = (rng.normal(size=shape) * 50).astype(dtype)
            ref = ndi.gaussian_filter(img.astype(np.float64 if dtype == np.float64 else np.float32), sigma,
                                      mode="constant", cval=cval, truncate=4.0)
            for a in (img, np.asfortranarray(img)):
                out = filters.gaussian(a, sigma, mode="constant", cval=cval, backend=backend)
                np.testing.assert_array_equal(out, ref, err_msg=f"{dtype} {shape}")


@pytest.mark.parametrize("cval", [np.nan, np.inf, -np.inf, "x", None, True, 1j, [0.5]])
def test_bad_cval(backend, cval):
    with pytest.raises(InvalidParameterError, match="cval"):
        filters.gaussian(np.zeros((6, 6), np.float32), 1.0, mode="constant", cval=cval, backend=backend)


@pytest.mark.parametrize("truncate", ["x", None, True, np.nan, np.inf, 0, -1.0, [4.0]])
def test_bad_truncate(truncate):
    with pytest.raises(InvalidParameterError, match="truncate"):
        filters.gaussian(np.zeros((6, 6), np.float32), 1.0, truncate=truncate)


def test_truncate_numpy_scalar_matches_scipy(backend):
    img = np.random.default_rng(2).normal(size=(15, 17)).astype(np.float32)
    np.testing.assert_array_equal(filters.gaussian(img, 1.2, truncate=np.float32(2.5), backend=backend),
                                  ndi.gaussian_filter(img, 1.2, mode="nearest", truncate=2.5))


def test_kernel_far_larger_than_image_is_a_parameter_error(backend):
    img = np.zeros((8, 9), np.float32)
    for kw in (dict(sigma=1e10), dict(sigma=1.0, spacing=(1e-300, 1.0)), dict(sigma=1e300, spacing=(1e-300, 1.0)),
               dict(sigma=300.0, truncate=4.0)):
        with pytest.raises(InvalidParameterError, match="kernel"):
            filters.gaussian(img, backend=backend, **kw)
    for sp in ("ab", (1.0, "x")):
        with pytest.raises(InvalidParameterError, match="spacing"):
            filters.gaussian(img, 1.0, spacing=sp)
    # a kernel larger than a thin axis, within the bound, is still scipy's result
    vol = np.random.default_rng(3).normal(size=(3, 12, 13)).astype(np.float32)
    for mode in ("reflect", "wrap", "constant"):
        np.testing.assert_array_equal(filters.gaussian(vol, 50.0, mode=mode, cval=0.25, backend=backend),
                                      ndi.gaussian_filter(vol, 50.0, mode=mode, cval=0.25, truncate=4.0))


def test_overflow_of_finite_input_raises(backend):
    with pytest.raises(InvalidImageError, match="overflows float32"):
        filters.gaussian(np.zeros((6, 6), np.float32), 1.0, mode="constant", cval=1e300, backend=backend)
    with pytest.raises(InvalidImageError, match="overflows float64"):
        filters.gaussian(np.full((6, 6), 1.7e308), 1.0, backend=backend)
    out = filters.gaussian(np.full((6, 6), 3.4e38, np.float32), 1.0, backend=backend)
    assert np.isfinite(out).all()
