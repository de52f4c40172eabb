"""medseg_fast.edges against scikit-image (sobel, canny, hysteresis) and phantoms."""

import functools

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.feature as skfeature
import skimage.filters as skfilters

from medseg_fast import edges
from medseg_fast._errors import EmptyImageError, InvalidImageError, InvalidParameterError, NonFiniteError

from conftest import ellipsoid_phantom, layouts, nibabel_file

DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64]


def _close(out, ref, rel=None):
    """Equal to float rounding of the output type: 8e-6 of the largest value for
    float32 output, 1e-12 for float64 (a float64 result computed in float32 fails)."""
    if rel is None:
        rel = 2e-6 if out.dtype == np.float32 else 2.5e-13
    scale = max(1e-12, float(np.abs(ref).max()))
    np.testing.assert_allclose(out, ref, rtol=0, atol=rel * scale * 4)


# ----------------------------------------------------------------------- sobel


@pytest.mark.parametrize("dtype", DTYPES)
def test_sobel_matches_skimage_on_ct(backend, ct_small, dtype):
    img = np.clip(ct_small, 0, None).astype(dtype) if dtype in (np.uint8, np.uint16) else ct_small.astype(dtype)
    if dtype == np.uint8:
        img = (ct_small // 16).clip(0, 255).astype(np.uint8)
    out = edges.sobel(img, backend=backend)
    ref = skfilters.sobel(img)
    assert out.dtype == (np.float64 if dtype == np.float64 else np.float32)
    _close(out, ref)


@pytest.mark.parametrize("shape", [(31, 47), (11, 17, 23), (1, 9, 10), (7, 1, 9), (5, 6, 1), (1, 1, 1), (1, 5)])
def test_sobel_all_axes_and_shapes(backend, shape):
    img = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    _close(edges.sobel(img, backend=backend), skfilters.sobel(img))
    for ax in range(len(shape)):
        _close(edges.sobel(img, axis=ax, backend=backend), skfilters.sobel(img, axis=ax))
    if len(shape) == 3:
        _close(edges.sobel(img, axis=(0, 2), backend=backend), skfilters.sobel(img, axis=(0, 2)))
        # skimage mishandles negative axes (it also smooths along the edge axis): compare with axis=2
        _close(edges.sobel(img, axis=-1, backend=backend), skfilters.sobel(img, axis=2))


def test_sobel_mask_matches_skimage(backend, mr_small):
    mask = mr_small > np.percentile(mr_small, 30)
    _close(edges.sobel(mr_small, mask=mask, backend=backend), skfilters.sobel(mr_small, mask=mask))
    vol, lab = ellipsoid_phantom((12, 14, 16), noise=3)
    _close(edges.sobel(vol, mask=lab > 0, backend=backend), skfilters.sobel(vol, mask=lab > 0))


def test_sobel_real_nifti(backend):
    import nibabel as nib

    arr = np.asarray(nib.load(nibabel_file("tests", "data", "anatomical.nii")).dataobj).T  # big-endian int16
    assert arr.dtype.byteorder == ">"
    _close(edges.sobel(arr, backend=backend), skfilters.sobel(arr.astype(np.int16)))


def test_sobel_preserve_range_and_spacing(backend):
    img = np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10)
    out = edges.sobel(img, preserve_range=True, backend=backend)
    _close(out, skfilters.sobel(img) * 32767)
    # a linear ramp of 3 units/mm along x, 2 along z with anisotropic spacing: the
    # physical gradient is exact away from the border
    sp = (2.5, 0.7, 0.5)
    z, y, x = np.meshgrid(*[np.arange(n) * s for n, s in zip((8, 9, 10), sp)], indexing="ij")
    ramp = (3 * x + 2 * z).astype(np.float32)
    g = edges.sobel(ramp, spacing=sp, backend=backend)
    np.testing.assert_allclose(g[1:-1, 1:-1, 1:-1], np.sqrt(13), rtol=1e-5)
    gx = edges.sobel(ramp, axis=2, spacing=sp, backend=backend)
    np.testing.assert_allclose(gx[1:-1, 1:-1, 1:-1], 3, rtol=1e-5)


def test_sobel_layouts_threads_and_no_mutation(backend):
    vol, _ = ellipsoid_phantom((14, 18, 22), noise=4)
    for dtype in (np.int16, np.float32):
        img = vol.astype(dtype)
        ref = edges.sobel(img, backend=backend, num_threads=1)
        for name, a in layouts(img).items():
            before = a.copy()
            # Fortran order runs on the transposed view: the same values up to float rounding
            check = np.testing.assert_array_equal if name != "F" else _close
            check(edges.sobel(a, backend=backend, num_threads=2), ref)
            check(edges.sobel(a, axis=0, backend=backend), edges.sobel(img, axis=0, backend=backend))
            np.testing.assert_array_equal(a, before)


def test_sobel_backends_agree_exactly(ct_small):
    vol, _ = ellipsoid_phantom((10, 20, 30), noise=7)
    for img in (ct_small, vol):
        np.testing.assert_array_equal(edges.sobel(img, backend="cpu"), edges.sobel(img, backend="numba"))
    # 3D edge cases of the z-first kernel (edges.hpp sobel3d_zrow / sobel3d_orow): two planes, one
    # row, one column, rows shorter than / one past a vector, integer inputs (the dtype minimum
    # clamped), single axes and pairs (the general combine), physical spacing
    rng = np.random.default_rng(12)
    cases = [rng.normal(0, 50, sh).astype(np.float32) for sh in ((2, 1, 5), (3, 4, 1), (4, 3, 17), (3, 5, 33))]
    cases += [rng.integers(-32768, 32767, (5, 6, 19)).astype(np.int16),
              rng.integers(0, 255, (3, 7, 40)).astype(np.uint8), rng.normal(0, 1, (4, 5, 6))]
    cases[4][1, 2, :4] = -32768
    # float32 rows starting anywhere in a cache line (the AVX-512 rows read aligned lines and
    # shift their lanes): C-contiguous views at 0..15 floats from a 64-byte boundary
    base = rng.normal(0, 50, 4 * 6 * 70 + 64).astype(np.float32)
    start = (-base.ctypes.data // 4) % 16
    for k in (0, 1, 4, 9, 15):
        cases.append(base[start + k:start + k + 4 * 6 * 70].reshape(4, 6, 70))
    for img in cases:
        for kw in ({}, {"axis": 0}, {"axis": 2}, {"axis": (0, 1)}, {"spacing": (2.0, 0.5, 0.7)}):
            np.testing.assert_array_equal(edges.sobel(img, backend="cpu", **kw),
                                          edges.sobel(img, backend="numba", **kw), err_msg=f"{img.shape} {kw}")


def test_sobel_large_volume_streaming_path():
    """Outputs beyond 32 MiB are written with streaming stores: same values,
    NaN count still found, on an offset (unaligned) output row start."""
    rng = np.random.default_rng(5)
    vol = rng.normal(0, 100, (67, 381, 359)).astype(np.float32)  # 36.6 MB, odd row length
    ref = skfilters.sobel(vol)
    np.testing.assert_allclose(edges.sobel(vol, backend="cpu"), ref, rtol=0, atol=8e-6 * float(np.abs(ref).max()))
    np.testing.assert_array_equal(edges.sobel(vol, backend="cpu", num_threads=1), edges.sobel(vol, backend="cpu"))
    vol[33, 200, 100] = np.nan
    with pytest.raises(NonFiniteError):
        edges.sobel(vol, backend="cpu")


def test_sobel_3d_dynamic_work_items_any_thread_count():
    """The 3D Sobel hands out (band, z part) items dynamically (parts of >= 64 planes,
    bands of ~64 KiB): the same bits for 1, 2 and 3 threads, into `out=` too, and the
    numba kernel's bits, on a volume with several bands and z parts."""
    vol = np.random.default_rng(9).normal(0, 100, (150, 130, 141)).astype(np.float32)
    one = edges.sobel(vol, backend="cpu", num_threads=1)
    for nt in (2, 3):
        np.testing.assert_array_equal(edges.sobel(vol, backend="cpu", num_threads=nt), one)
        buf = np.empty_like(vol)
        edges.sobel(vol, backend="cpu", num_threads=nt, out=buf)
        np.testing.assert_array_equal(buf, one)
    np.testing.assert_array_equal(edges.sobel(vol, backend="numba"), one)
    ref = skfilters.sobel(vol)
    np.testing.assert_allclose(one, ref, rtol=0, atol=8e-6 * float(np.abs(ref).max()))


def test_sobel_out_written_in_place_every_layout(backend):
    """out= gives the same values as a fresh result: written directly when its
    layout matches the kernel's, copied otherwise; with a mask; 2D and 3D."""
    vol, lab = ellipsoid_phantom((9, 14, 17), noise=4)
    for img, mask in ((vol.astype(np.int16), None), (vol, lab > 0), (vol[4].astype(np.float64), None)):
        rt = np.float64 if img.dtype == np.float64 else np.float32
        for name, a in layouts(img).items():
            before = a.copy()
            ref = edges.sobel(a, mask=mask, backend=backend)
            for order in ("C", "F"):
                buf = np.full(img.shape, np.nan, rt, order=order)
                res = edges.sobel(a, mask=mask, out=buf, backend=backend)
                assert res is buf
                np.testing.assert_array_equal(buf, ref)
            big = np.full((2,) + img.shape, np.nan, rt)
            strided = big[1]  # contiguous but offset; and a strided view below
            assert edges.sobel(a, mask=mask, out=strided, backend=backend) is strided
            np.testing.assert_array_equal(strided, ref)
            wide = np.full(img.shape[:-1] + (2 * img.shape[-1],), np.nan, rt)[..., ::2]
            np.testing.assert_array_equal(edges.sobel(a, mask=mask, out=wide, backend=backend), ref)
            np.testing.assert_array_equal(a, before)
    # one buffer reused across calls and axes
    img = vol.astype(np.float32)
    buf = np.empty_like(img)
    for ax in (None, 0, 2):
        np.testing.assert_array_equal(edges.sobel(img, axis=ax, out=buf, backend=backend),
                                      edges.sobel(img, axis=ax, backend=backend))


def test_sobel_out_bad_arguments(backend):
    img = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    bad = {
        "shape": np.empty((6, 7, 9), np.float32),
        "dtype": np.empty(img.shape, np.float64),
        "big-endian": np.empty(img.shape, ">f4"),
        "list": [[0.0] * 8] * 7,
    }
    ro = np.empty(img.shape, np.float32)
    ro.flags.writeable = False
    bad["read-only"] = ro
    bad["the image itself"] = img
    flat = np.concatenate([img.ravel(), [0.0]]).astype(np.float32)
    shifted = flat[:img.size].reshape(img.shape)  # the image, and one element on: overlapping views
    bad["overlapping the image"] = flat[1:].reshape(img.shape)
    for what, out in bad.items():
        src = shifted if what == "overlapping the image" else img
        before = src.copy()
        with pytest.raises(InvalidParameterError, match="out"):
            edges.sobel(src, out=out, backend=backend)
        np.testing.assert_array_equal(src, before)
    # int16 input: the result is float32, so a float64 or int16 out is refused
    with pytest.raises(InvalidParameterError, match="float32"):
        edges.sobel(img.astype(np.int16), out=np.empty(img.shape, np.int16), backend=backend)


def test_sobel_out_kernel_rechecks():
    """The binding re-checks what memory safety depends on, whatever Python passed."""
    from medseg_fast._core import edges as core

    img = np.zeros((4, 5, 6), np.float32)
    args = (img, [True] * 3, [1.0] * 3, True, 1.0, 1, False)
    for out in (np.empty((4, 5, 7), np.float32), np.empty((4, 5, 6), np.float64),
                np.empty((4, 5, 6), np.float32, order="F"), np.empty((4, 5, 6), ">f4")):
        with pytest.raises(ValueError):
            core.sobel(*args, out)
    ro = np.empty(img.shape, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        core.sobel(*args, ro)
    with pytest.raises(TypeError):
        core.sobel(*args, [0.0])
    buf = np.empty(img.shape, np.float32)
    assert core.sobel(*args, buf) is buf


def test_sobel_accepts_bool(backend):
    m = np.zeros((6, 6), bool)
    m[2:4, 2:4] = True
    _close(edges.sobel(m, backend=backend), skfilters.sobel(m))


# ----------------------------------------------------------------------- canny


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.float32, np.float64])
def test_canny_2d_equals_skimage_on_ct(backend, ct_small, sigma, dtype):
    img = ct_small.astype(dtype)
    for lo, hi in [(20, 60), (50, 150)]:
        ours = edges.canny(img, sigma=sigma, low_threshold=lo, high_threshold=hi, backend=backend)
        ref = skfeature.canny(img, sigma=sigma, low_threshold=lo, high_threshold=hi)
        assert ref.sum() > 100
        np.testing.assert_array_equal(ours, ref)


def test_canny_2d_defaults_quantiles_and_mask(backend, mr_small, ct_small):
    img = mr_small.astype(np.float32) / mr_small.max()
    np.testing.assert_array_equal(edges.canny(img, backend=backend), skfeature.canny(img))
    np.testing.assert_array_equal(
        edges.canny(ct_small, sigma=1.5, low_threshold=0.7, high_threshold=0.9, use_quantiles=True, backend=backend),
        skfeature.canny(ct_small, sigma=1.5, low_threshold=0.7, high_threshold=0.9, use_quantiles=True),
    )
    mask = np.zeros(ct_small.shape, bool)
    mask[10:100, 20:110] = True
    ours = edges.canny(ct_small.astype(np.float32), sigma=1.5, low_threshold=30, high_threshold=90, mask=mask,
                       backend=backend)
    ref = skfeature.canny(ct_small.astype(np.float32), sigma=1.5, low_threshold=30, high_threshold=90, mask=mask)
    assert ref.sum() > 100
    np.testing.assert_array_equal(ours, ref)
    assert not ours[~mask].any()


def test_canny_2d_noisy_phantom(backend):
    img, lab = ellipsoid_phantom((96, 112), noise=15, seed=4)
    ours = edges.canny(img, sigma=2.0, low_threshold=40, high_threshold=100, backend=backend)
    np.testing.assert_array_equal(ours, skfeature.canny(img, sigma=2.0, low_threshold=40, high_threshold=100))


def _boundary(lab):
    return lab ^ ndi.binary_erosion(lab)


def test_canny_3d_sphere_has_edges_on_its_surface(backend):
    n = 40
    z, y, x = np.mgrid[:n, :n, :n]
    r = np.sqrt((z - 19.3) ** 2 + (y - 20.1) ** 2 + (x - 19.7) ** 2)
    vol = np.where(r <= 12, 200.0, 10.0).astype(np.float32)
    vol += np.random.default_rng(0).normal(0, 5, vol.shape).astype(np.float32)
    e = edges.canny(vol, sigma=1.5, low_threshold=200, high_threshold=500, backend=backend)
    assert e.sum() > 0.8 * _boundary(r <= 12).sum()
    # every edge voxel lies on the true surface (within one voxel) ...
    assert np.abs(r[e] - 12).max() <= 1.5
    # ... and almost every surface voxel has an edge within one voxel
    near = ndi.binary_dilation(e, np.ones((3, 3, 3), bool))
    surf = _boundary(r <= 12)
    assert near[surf].mean() > 0.97
    # one voxel thick along the normal: few edge voxels have an edge neighbour on the same ray
    assert e.sum() < 1.6 * surf.sum()


def test_canny_3d_is_orientation_consistent_and_thread_independent(backend):
    vol, _ = ellipsoid_phantom((24, 28, 32), noise=6)
    ref = edges.canny(vol, sigma=1.0, low_threshold=50, high_threshold=150, backend=backend, num_threads=1)
    assert ref.sum() > 500
    for name, a in layouts(vol).items():
        before = a.copy()
        out = edges.canny(a, sigma=1.0, low_threshold=50, high_threshold=150, backend=backend, num_threads=2)
        np.testing.assert_array_equal(out, ref, err_msg=name)
        np.testing.assert_array_equal(a, before)
    # a 3D volume whose slices do not interact (huge z spacing) behaves like stacked 2D only
    # in the interior; checked instead: transposing the volume transposes the edges except at ties
    t = edges.canny(np.ascontiguousarray(vol.transpose(2, 1, 0)), sigma=1.0, low_threshold=50, high_threshold=150,
                    backend=backend)
    assert (t.transpose(2, 1, 0) != ref).mean() < 0.002


def test_canny_3d_mask_and_spacing(backend):
    vol, lab = ellipsoid_phantom((24, 28, 32), noise=3)
    mask = np.zeros(vol.shape, bool)
    mask[:, :, :16] = True
    e = edges.canny(vol, sigma=1.0, low_threshold=50, high_threshold=150, mask=mask, backend=backend)
    assert e.sum() > 50 and not e[:, :, 15:].any()
    # with spacing, sigma is in mm and thresholds in units/mm
    sp = (3.0, 1.0, 1.0)
    e2 = edges.canny(vol, sigma=2.0, spacing=sp, low_threshold=5, high_threshold=15, backend=backend)
    surf = _boundary(lab > 0)
    near = ndi.binary_dilation(e2, np.ones((3, 3, 3), bool))
    assert near[surf].mean() > 0.9


def test_canny_backends_agree_exactly():
    vol, _ = ellipsoid_phantom((20, 30, 40), noise=10, seed=2)
    for kw in [dict(sigma=1.0, low_threshold=30, high_threshold=90), dict(sigma=1.5, use_quantiles=True,
                                                                          low_threshold=0.8, high_threshold=0.95)]:
        np.testing.assert_array_equal(edges.canny(vol, backend="cpu", **kw), edges.canny(vol, backend="numba", **kw))
        np.testing.assert_array_equal(edges.canny(vol[5], backend="cpu", **kw),
                                      edges.canny(vol[5], backend="numba", **kw))
    # rows > 4096 / nx: the cpu kernel walks several row bands (halo rows recomputed)
    big, _ = ellipsoid_phantom((9, 97, 110), noise=10, seed=4)
    mask = np.zeros(big.shape, bool)
    mask[:, 5:90, 3:105] = True
    for kw in [dict(sigma=1.0, low_threshold=30, high_threshold=90),
               dict(sigma=1.2, low_threshold=20, high_threshold=60, mask=mask, spacing=(2.0, 0.7, 0.9)),
               dict(sigma=1.2, low_threshold=20, high_threshold=60, spacing=(2.0, 0.7, 0.9))]:
        np.testing.assert_array_equal(edges.canny(big, backend="cpu", **kw), edges.canny(big, backend="numba", **kw))
    # noise: candidates everywhere, gradients in every direction (the AVX-512 suppression
    # tests 16 columns at once; every tie and interpolation must come out as the scalar test's)
    noise = np.random.default_rng(7).normal(0, 40, (12, 40, 70)).astype(np.float32)
    for kw in [dict(sigma=0.8, low_threshold=10, high_threshold=40), dict(sigma=0.6, use_quantiles=True,
                                                                          low_threshold=0.5, high_threshold=0.9)]:
        got = edges.canny(noise, backend="cpu", **kw)
        assert 0 < got.sum() < got.size // 2
        np.testing.assert_array_equal(got, edges.canny(noise, backend="numba", **kw))


def test_threads_agree_where_the_work_is_split(backend):
    """num_threads 1 and 2 give the same bits at sizes where the cpu kernels do
    split the work (3D: planes of >= 16384 voxels, 2D: >= 2 * 32768 / nx rows;
    smaller inputs run on one thread whatever num_threads says)."""
    from medseg_fast import filters

    vol, _ = ellipsoid_phantom((8, 160, 160), noise=6, seed=3)
    img = np.ascontiguousarray(np.tile(vol[4], (2, 1))[:300, :280])
    for a in (vol, img):
        for x in (a.astype(np.float32), a.astype(np.int16)):
            one = edges.sobel(x, backend=backend, num_threads=1)
            assert np.count_nonzero(one) > x.size // 4
            np.testing.assert_array_equal(edges.sobel(x, backend=backend, num_threads=2), one)
            np.testing.assert_array_equal(filters.gaussian(x, 1.5, backend=backend, num_threads=2),
                                          filters.gaussian(x, 1.5, backend=backend, num_threads=1))
        kw = dict(sigma=1.0, low_threshold=50, high_threshold=150)
        one = edges.canny(a, backend=backend, num_threads=1, **kw)
        assert one.sum() > 200
        np.testing.assert_array_equal(edges.canny(a, backend=backend, num_threads=2, **kw), one)
    # the 2D split also against scikit-image (row blocks with halo rows)
    f = img.astype(np.float32)
    _close(edges.sobel(f, backend=backend, num_threads=2), skfilters.sobel(f))
    np.testing.assert_array_equal(edges.canny(f, 1.0, 50, 150, backend=backend, num_threads=2),
                                  skfeature.canny(f, 1.0, 50, 150))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sobel_3d_dtypes_match_skimage(backend, dtype):
    vol, _ = ellipsoid_phantom((12, 20, 24), noise=9, seed=6)
    img = (vol + (0 if dtype in (np.int16, np.float32, np.float64) else 200)).clip(0 if dtype != np.int16 else None)
    img = (img / 8 if dtype == np.uint8 else img).astype(dtype)
    for axis in (None, 0, 1, 2):
        _close(edges.sobel(img, axis=axis, backend=backend), skfilters.sobel(img, axis=axis))


@pytest.mark.parametrize("shape, axis", [((1, 9, 10), 0), ((5, 6, 1), 2), ((9, 1), 1), ((1, 7), 0),
                                         ((1, 1, 6), (0, 1))])
def test_sobel_nan_along_length_one_axes_raises(backend, shape, axis):
    """A derivative along a length-1 axis is 0 for finite input (scipy: f - f) and NaN
    for NaN input; it must raise like every other NaN, on every backend."""
    x = np.zeros(shape, np.float32)
    x.flat[x.size // 2] = np.nan
    with pytest.raises(NonFiniteError):
        edges.sobel(x, axis=axis, backend=backend)
    x.flat[x.size // 2] = 1.0
    np.testing.assert_array_equal(edges.sobel(x, axis=axis, backend=backend), 0)


# ------------------------------------------------------------------ hysteresis


@pytest.mark.parametrize("shape", [(40, 50), (12, 16, 20)])
def test_hysteresis_matches_skimage(backend, shape):
    img = ndi.gaussian_filter(np.random.default_rng(5).random(shape), 1.0)
    lo, hi = np.percentile(img, [40, 90])
    ref = skfilters.apply_hysteresis_threshold(img, lo, hi)
    np.testing.assert_array_equal(edges.hysteresis_threshold(img, lo, hi, backend=backend), ref)
    for c in range(1, len(shape) + 1):
        st = ndi.generate_binary_structure(len(shape), c)
        labels, _ = ndi.label(img > lo, st)
        keep = np.unique(labels[img > hi])
        expected = np.isin(labels, keep[keep > 0])
        out = edges.hysteresis_threshold(img.astype(np.float32), float(lo), float(hi), connectivity=c,
                                         backend=backend)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("shape", [(48, 96, 80), (720, 400)])
def test_hysteresis_parallel_slabs_match_label_oracle(shape):
    """Past 2**18 voxels the cpu flood runs one slab per thread and passes
    seeds across slab boundaries until none is left: same set for any count,
    also for paths that cross the boundaries many times (a zig-zag ribbon)."""
    rng = np.random.default_rng(8)
    img = ndi.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
    lo, hi = (float(v) for v in np.percentile(img, [45, 99.5]))
    zig = np.zeros(shape, bool)  # weak ribbon running back and forth along axis 0
    n0, n1 = shape[0], shape[1]
    for k, c in enumerate(range(2, n1 - 2, 6)):
        rows = slice(1, n0 - 1)
        zig[(rows, slice(c, c + 2)) + ((slice(3, 5),) if len(shape) == 3 else ())] = True
        ends = (n0 - 2) if k % 2 == 0 else 1
        zig[(slice(ends, ends + 1), slice(c, c + 8)) + ((slice(3, 5),) if len(shape) == 3 else ())] = True
    img[zig] = (lo + hi) / 2          # weak, connected only through the ribbon
    img[(1, 2) + ((3,) if len(shape) == 3 else ())] = hi + 1.0  # one strong voxel at the ribbon's start
    for c in range(1, len(shape) + 1):
        st = ndi.generate_binary_structure(len(shape), c)
        labels, _ = ndi.label(img > lo, st)
        keep = np.unique(labels[img > hi])
        expected = np.isin(labels, keep[keep > 0])
        for nt in (1, 2, 3, 4):
            out = edges.hysteresis_threshold(img, lo, hi, connectivity=c, backend="cpu", num_threads=nt)
            np.testing.assert_array_equal(out, expected, err_msg=f"connectivity {c}, {nt} threads")


def test_hysteresis_python_float_thresholds_on_float32(backend):
    """scikit-image computes image > high, where NumPy rounds a Python float to the
    float32 image's type, and image > low with low made a float64 by np.clip: values
    equal to float32(high) then differ from a double comparison (quantised maps)."""
    rng = np.random.default_rng(0)
    for shape in ((40, 50), (9, 30, 40)):
        img = (rng.integers(0, 10, shape) / 10).astype(np.float32)
        for lo, hi in ((0.3, 0.6), (0.3, 0.7), (0.7, 0.7), (0.2, np.float64(0.6)), (np.float32(0.3), 0.6),
                       (0.1, 1), (0.3, np.float32(0.6))):
            ref = skfilters.apply_hysteresis_threshold(img, lo, hi)
            out = edges.hysteresis_threshold(img, lo, hi, backend=backend)
            np.testing.assert_array_equal(out, ref, err_msg=f"{shape} {lo!r} {hi!r}")
        # the case that needs the rounding: 0.6 > float32(0.6) in double
        assert (skfilters.apply_hysteresis_threshold(img, 0.3, 0.6) !=
                skfilters.apply_hysteresis_threshold(img, 0.3, np.float64(0.6))).any()


def test_hysteresis_integer_and_layouts(backend, ct_small):
    ref = skfilters.apply_hysteresis_threshold(ct_small, 900, 1200)
    for name, a in layouts(ct_small).items():
        np.testing.assert_array_equal(edges.hysteresis_threshold(a, 900, 1200, backend=backend), ref, err_msg=name)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.bool_])
def test_hysteresis_integer_thresholds_any_value(backend, dtype):
    """Integer images compare in their own type against floor(t) + 1 (cpu): fractional,
    whole, negative and out-of-range thresholds give scikit-image's sets."""
    rng = np.random.default_rng(21)
    info = np.iinfo(dtype) if dtype != np.bool_ else None
    lo_v, hi_v = (0, 2) if dtype == np.bool_ else (max(info.min, -60), min(info.max, 60))
    img = ndi.uniform_filter(rng.integers(lo_v, hi_v, (12, 40, 41)).astype(np.int64), 3).astype(dtype)
    cases = [(10.5, 20.5), (10, 20), (-3.5, 7), (-1e12, 30), (5, 1e12), (-1e12, -1e11), (1e12, 2e12),
             (0.0, 0.0), (0.5, 0.5), (19.999, 20.0)]
    for lo, hi in cases:
        ref = skfilters.apply_hysteresis_threshold(img, lo, hi)
        out = edges.hysteresis_threshold(img, lo, hi, backend=backend)
        np.testing.assert_array_equal(out, ref, err_msg=f"{np.dtype(dtype).name} {lo} {hi}")


@pytest.mark.parametrize("weak_fraction", [0.0, 0.02, 0.5, 0.97])
def test_hysteresis_flood_sides_match_label_oracle(backend, weak_fraction):
    """The flood starts from the weak side when weak voxels are few (under a quarter
    of the strong ones), from the strong side otherwise, and skips the flood when
    either set is empty: the same set as labelling the candidates every time,
    past 2**18 voxels (slabs) and below, for every connectivity."""
    rng = np.random.default_rng(31)
    for shape in ((64, 70, 66), (30, 41)):
        base = ndi.gaussian_filter(rng.random(shape), 1.2)
        lo = float(np.quantile(base, 0.55))
        # strong: the top of the remaining candidates, weak: a fraction of them
        hi = float(np.quantile(base[base > lo], weak_fraction)) if weak_fraction > 0 else lo
        img = base.astype(np.float32)
        lo32, hi32 = float(np.float32(lo)), float(np.float32(hi))
        for c in range(1, len(shape) + 1):
            labels, _ = ndi.label(img > lo32, ndi.generate_binary_structure(len(shape), c))
            keep = np.unique(labels[img > hi32])
            expected = np.isin(labels, keep[keep > 0])
            out = edges.hysteresis_threshold(img, lo32, hi32, connectivity=c, backend=backend)
            np.testing.assert_array_equal(out, expected, err_msg=f"{shape} c{c} weak {weak_fraction}")


# ------------------------------------------------------------------- bad input


@pytest.mark.parametrize("func", ["sobel", "canny", "hysteresis_threshold"])
def test_bad_images(func):
    f = getattr(edges, func)
    if func == "hysteresis_threshold":
        f = functools.partial(f, low=0.5, high=1.0)
    with pytest.raises(EmptyImageError):
        f(np.zeros((0, 4), np.float32))
    with pytest.raises(InvalidImageError):
        f(np.zeros(4, np.float32))
    with pytest.raises(InvalidImageError):
        f(np.zeros((2, 2, 2, 2), np.float32))
    with pytest.raises(NonFiniteError):
        f(np.array([[0, np.nan], [1, 2]], np.float32))
    with pytest.raises(NonFiniteError):
        f(np.array([[0, -np.inf], [1, 2]]))
    with pytest.raises(InvalidImageError):
        f(np.zeros((3, 3), np.int64))
    if func != "hysteresis_threshold":  # no mask argument
        with pytest.raises(InvalidImageError):
            f(np.zeros((3, 3)), mask=np.ones((3, 4), bool))
    else:  # the input is left as it was
        img = np.random.default_rng(1).random((20, 30)).astype(np.float32)
        before = img.copy()
        assert edges.hysteresis_threshold(img, 0.5, 0.9).any()
        np.testing.assert_array_equal(img, before)


def test_bad_parameters():
    img = np.zeros((8, 8), np.float32)
    with pytest.raises(InvalidParameterError):
        edges.canny(img, sigma=0)
    with pytest.raises(InvalidParameterError):
        edges.canny(img, sigma=-1)
    with pytest.raises(InvalidParameterError):
        edges.canny(img, low_threshold=0.5, high_threshold=0.2)
    with pytest.raises(InvalidParameterError):
        edges.canny(img, low_threshold=0.5, high_threshold=1.5, use_quantiles=True)
    with pytest.raises(InvalidParameterError):
        edges.canny(img, low_threshold=float("nan"))
    with pytest.raises(InvalidParameterError):
        edges.canny(img, spacing=(1.0, 0.0))
    with pytest.raises(InvalidParameterError):
        edges.sobel(img, axis=2)
    with pytest.raises(InvalidParameterError):
        edges.sobel(img, axis=(0, 0))
    with pytest.raises(InvalidParameterError):
        edges.sobel(img, spacing=(-1, 1))
    with pytest.raises(InvalidParameterError):
        edges.hysteresis_threshold(img, 2, 1)
    with pytest.raises(InvalidParameterError):
        edges.hysteresis_threshold(img, 0, 1, connectivity=3)
    with pytest.raises(InvalidParameterError):
        edges.hysteresis_threshold(img, float("nan"), 1)
    with pytest.raises(InvalidParameterError):
        edges.sobel(img, num_threads=-1)


def test_constant_image_has_no_edges(backend):
    img = np.full((16, 16, 16), 7, np.int16)
    assert not edges.canny(img, sigma=1, backend=backend).any()
    assert not edges.canny(img[3], sigma=2, backend=backend).any()
    assert not edges.sobel(img, backend=backend).any()


def test_nonfinite_detected_in_large_volumes():
    """Large float inputs are checked by the parallel C++ counter (F order too)."""
    vol = np.zeros((8, 384, 384), np.float32)
    vol[7, 383, 383] = np.inf
    with pytest.raises(NonFiniteError, match="1 infinite"):
        edges.sobel(vol)
    vol[7, 383, 383] = 0
    vol[0, 0, 0] = np.nan
    with pytest.raises(NonFiniteError, match="1 NaN"):
        edges.canny(np.asfortranarray(vol))
    vol[0, 0, 0] = 0
    assert not edges.sobel(vol).any()


# ------------------------------------------------ signed minimum, overflow, validation


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32])
def test_sobel_signed_dtype_minimum_as_skimage(backend, dtype):
    """img_as_float clips signed integers at -1.0: the dtype minimum (-128, CT's
    -32768 padding) reads as -max, on every path, without changing other values."""
    lo = np.iinfo(dtype).min
    img2 = np.array([[lo] * 4 + [0] * 4] * 6, dtype)
    vol = np.random.default_rng(3).integers(-100, 100, size=(5, 7, 9)).astype(dtype)
    vol[:, :, :3] = lo
    vol[1, 2, 5] = lo
    for img in (img2, vol, np.asfortranarray(vol), vol.astype(vol.dtype.newbyteorder(">"))):
        _close(edges.sobel(img, backend=backend), skfilters.sobel(img))
        for ax in range(img.ndim):
            _close(edges.sobel(img, axis=ax, backend=backend), skfilters.sobel(img, axis=ax))
    mask = np.ones(vol.shape, bool)
    mask[0, 0, 0] = False
    _close(edges.sobel(vol, mask=mask, backend=backend), skfilters.sobel(vol, mask=mask))
    # preserve_range and spacing keep the raw values: the minimum is an ordinary value there
    f32 = img2.astype(np.float32)
    np.testing.assert_array_equal(edges.sobel(img2, preserve_range=True, backend=backend),
                                  edges.sobel(f32, backend=backend))
    np.testing.assert_array_equal(edges.sobel(img2, spacing=(1.0, 0.5), backend=backend),
                                  edges.sobel(f32, spacing=(1.0, 0.5), backend=backend))


def test_sobel_signed_minimum_backends_agree_exactly():
    vol = np.random.default_rng(4).integers(-32768, 32767, size=(6, 9, 11), endpoint=True).astype(np.int16)
    vol[:, :4] = -32768
    for img in (vol, vol[2]):
        for axis in (None, 0, 1):
            np.testing.assert_array_equal(edges.sobel(img, axis=axis, backend="cpu"),
                                          edges.sobel(img, axis=axis, backend="numba"))


def test_sobel_huge_finite_values_never_nan(backend):
    """float32 arithmetic overflows for values near 1e38: recomputed in float64
    where the result fits float32, a clear error where it does not."""
    for img in (np.full((4, 4), 3e38, np.float32), np.full((3, 4, 5), 3e38, np.float32)):
        out = edges.sobel(img, backend=backend)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, skfilters.sobel(img).astype(np.float32))  # zeros
    step = np.zeros((6, 8), np.float32)
    step[:, 4:] = 2e38  # 3 * 2e38 overflows float32 inside the kernel; the gradient fits
    out = edges.sobel(step, backend=backend)
    assert np.isfinite(out).all() and out.max() > 1e37
    _close(out, skfilters.sobel(step.astype(np.float64)))  # (scikit-image's float32 result holds inf)
    buf = np.full(step.shape, np.nan, np.float32)
    assert edges.sobel(step, axis=1, out=buf, backend=backend) is buf
    _close(buf, skfilters.sobel(step.astype(np.float64), axis=1))
    assert np.array_equal(edges.sobel(step, backend="cpu"), edges.sobel(step, backend="numba"))
    with pytest.raises(InvalidImageError, match="overflows float32.*float64 input"):
        edges.sobel(np.array([[3e38, -3e38] * 3] * 6, np.float32), backend=backend)
    with pytest.raises(InvalidImageError, match="overflows float64.*rescale"):
        edges.sobel(np.full((4, 4), 1.7e308), backend=backend)
    # an extreme spacing: the float32 coefficient 1 / (8 spacing) is inf
    ones = np.ones((6, 8), np.float32)
    assert not edges.sobel(ones, spacing=(1.0, 1e-300), backend=backend).any()
    with pytest.raises(InvalidImageError, match="spacing"):
        edges.sobel(np.cumsum(ones, axis=1), spacing=(1.0, 1e-300), backend=backend)


def _binary_phantom():
    yy, xx = np.mgrid[:24, :28]
    m = (yy - 11.3) ** 2 / 49 + (xx - 13.1) ** 2 / 64 < 1
    m[3:7, 18:25] = True
    m[15:21, 2:5] = True
    return m


def _phantom(kind):
    m = _binary_phantom()
    noise = np.random.default_rng(5).integers(-25, 25, m.shape)
    if kind == "bool":
        return m
    if kind == "uint8":
        return (m * 150 + 60 + noise).astype(np.uint8)
    if kind == "int8":
        img = (m * 100 - 50 + noise).astype(np.int8)
        img[:2] = -128
        return img
    img = (m * 1040 - 1000 + noise).astype(np.int16)  # CT-like, with -32768 padding
    img[:, :3] = -32768
    return img


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("kind", ["bool", "uint8", "int8", "int16"])
def test_canny_2d_bool_and_integer_equal_skimage(backend, kind, sigma):
    """bool / integer input is computed in float64 on img_as_float(image), as
    scikit-image does: the same edges, pixel for pixel."""
    img = _phantom(kind)
    unit = 1.0 if kind == "bool" else float(np.iinfo(img.dtype).max)
    mask = np.ones(img.shape, bool)
    mask[:, 20:] = False
    cases = [{}, dict(low_threshold=0.05 * unit, high_threshold=0.3 * unit),
             dict(low_threshold=0.5, high_threshold=0.9, use_quantiles=True), dict(mask=mask)]
    if kind == "int16":  # a step of 1040 beside -32768 padding: thresholds in raw units
        cases += [dict(low_threshold=200, high_threshold=600), dict(low_threshold=200, high_threshold=600, mask=mask)]
        assert skfeature.canny(img, sigma, **cases[-2])[:, 5:].sum() > 20
    for kw in cases:
        ref = skfeature.canny(img, sigma, **kw)
        for a in (img, np.asfortranarray(img)):
            np.testing.assert_array_equal(edges.canny(a, sigma, backend=backend, **kw), ref, err_msg=str(kw))
    assert skfeature.canny(img, sigma, **cases[1]).sum() > 20


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_canny_2d_equals_skimage_on_pydicom_files(backend, name, sigma):
    import pydicom

    from conftest import pydicom_file

    img = pydicom.dcmread(pydicom_file(name)).pixel_array
    assert img.dtype.kind == "i"
    mask = np.zeros(img.shape, bool)
    mask[5:-9, 7:-4] = True
    for a in (img, img > np.percentile(img, 60), img.astype(np.float64)):
        for kw in ({}, dict(low_threshold=100, high_threshold=400), dict(mask=mask),
                   dict(mask=mask, low_threshold=100, high_threshold=400),
                   dict(low_threshold=0.6, high_threshold=0.95, use_quantiles=True)):
            if a.dtype == np.bool_ and "low_threshold" in kw and not kw.get("use_quantiles"):
                kw = dict(kw, low_threshold=0.5, high_threshold=1.5)
            ref = skfeature.canny(a, sigma, **kw)
            # int16 with the default thresholds (fractions of 32767) finds nothing, in
            # scikit-image too; every other case must compare real edge maps
            if not (a.dtype.kind == "i" and "low_threshold" not in kw):
                assert ref.any(), f"{a.dtype} {kw}"
            np.testing.assert_array_equal(edges.canny(a, sigma, backend=backend, **kw), ref,
                                          err_msg=f"{a.dtype} {kw}")


def test_canny_backends_agree_on_float64_paths():
    img = _phantom("int16")
    for kw in ({}, dict(mask=_binary_phantom()), dict(low_threshold=0.2, high_threshold=0.8,
                                                            use_quantiles=True)):
        np.testing.assert_array_equal(edges.canny(img, 1.0, backend="cpu", **kw),
                                      edges.canny(img, 1.0, backend="numba", **kw))


def test_parameter_types_raise_package_errors():
    img = np.random.default_rng(0).normal(size=(8, 9)).astype(np.float32)
    for sp in ("ab", "12", b"12", (1.0, "x"), (1.0, None), (10**400, 1)):
        for f in (edges.sobel, edges.canny):
            with pytest.raises(InvalidParameterError, match="spacing"):
                f(img, spacing=sp)
    for axis in ("x", (1.5,), (0, True), 1.0):
        with pytest.raises(InvalidParameterError, match="axis"):
            edges.sobel(img, axis=axis)
    np.testing.assert_array_equal(edges.sobel(img, axis=(np.int64(1),)), edges.sobel(img, axis=1))
    for c in (True, False, 1.0, "1", 0, 3):
        with pytest.raises(InvalidParameterError, match="connectivity"):
            edges.hysteresis_threshold(img, 0, 1, connectivity=c)
    np.testing.assert_array_equal(edges.hysteresis_threshold(img, 0, 1, connectivity=np.int64(2)),
                                  edges.hysteresis_threshold(img, 0, 1, connectivity=2))


def test_canny_huge_kernel_is_a_parameter_error():
    img = np.zeros((8, 9), np.float32)
    for kw in (dict(sigma=1e10), dict(spacing=(1e-300, 1.0)), dict(sigma=1e300, spacing=(1e-300, 1.0))):
        with pytest.raises(InvalidParameterError, match="kernel"):
            edges.canny(img, **kw)


# ------------------------------------------------- exact percentiles (Canny's quantile thresholds)


def _percentile_inputs():
    rng = np.random.default_rng(17)
    for n in (1, 2, 5, 37, 1000, 2**20 + 3):
        for dtype in (np.float32, np.float64):
            yield f"normal-{n}-{dtype.__name__}", rng.normal(0, 1, n).astype(dtype)
            yield f"ties-{n}-{dtype.__name__}", np.round(rng.normal(0, 2, n)).astype(dtype)
            yield f"sorted-{n}-{dtype.__name__}", np.sort(np.abs(rng.normal(0, 1, n))).astype(dtype)
    special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 3.4e38, -3.4e38, 1.0, 1.0], np.float32)
    yield "special-float32", special
    yield "special-float64", special.astype(np.float64)
    yield "volume", np.abs(np.random.default_rng(3).normal(0, 20, (40, 50, 60))).astype(np.float32)


def test_order_statistics_exact(backend):
    from medseg_fast._dispatch import family

    fam = family(backend, "edges")
    for name, v in _percentile_inputs():
        s = np.sort(v.reshape(-1))
        n = s.size
        ranks = sorted({0, n - 1, n // 2, n // 3, max(0, n - 2), min(n - 1, 1)})
        for nt in (1, 2):
            got = fam.order_statistics(v, ranks, nt)
            assert got == [float(s[r]) for r in ranks], name  # same values (+0.0 == -0.0)
    nan = np.ones(100, np.float32)
    nan[7] = np.nan
    assert fam.order_statistics(nan, [3], 1) is None
    for bad in ([100], [-1]):  # ranks outside the array
        with pytest.raises(ValueError, match="outside"):
            fam.order_statistics(np.ones(100, np.float32), bad, 1)


def test_canny_percentiles_equal_numpy(backend):
    """edges._percentiles gives np.percentile's values bit for bit (Canny's quantile thresholds)."""
    from medseg_fast._dispatch import family
    from medseg_fast.edges import _percentiles

    fam = family(backend, "edges")
    for name, v in _percentile_inputs():
        for qs in ([0.0, 100.0], [10.0, 20.0], [50.0, 50.5], [99.9, 100.0], [33.3, 66.7], [80.0, 90.0], [1e-9, 7.0]):
            before = v.copy()
            with np.errstate(all="ignore"):  # numpy's own lerp warns on the infinities of "special"
                want = tuple(float(x) for x in np.percentile(v, qs))
                got = _percentiles(fam, v, qs, 2)
                np.testing.assert_array_equal(v, before)  # input untouched
                # the stand-in written over the caller's buffer: the same values
                got_in_place = _percentiles(fam, before, qs, 1, overwrite_input=True)
            for g in (got, got_in_place):
                assert all(np.float64(a).tobytes() == np.float64(w).tobytes() or (a == w == 0.0)
                           for a, w in zip(g, want)), (name, qs, g, want)
    nan = np.ones(100, np.float32)
    nan[7] = np.nan
    assert all(np.isnan(x) for x in _percentiles(fam, nan, [10.0, 20.0], 1))
