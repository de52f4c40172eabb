"""medseg_fast.region.grow / grow_confidence against SimpleITK and skimage.segmentation.flood."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts

from medseg_fast._errors import InvalidImageError, InvalidParameterError, NonFiniteError
from medseg_fast.region import grow, grow_confidence

sitk = pytest.importorskip("SimpleITK")
skseg = pytest.importorskip("skimage.segmentation")


def _sitk_connected(img, seeds, lower, upper, full):
    r = sitk.ConnectedThreshold(sitk.GetImageFromArray(img), seedList=[tuple(int(v) for v in s[::-1]) for s in seeds],
                                lower=float(lower), upper=float(upper), connectivity=1 if full else 0)
    return sitk.GetArrayFromImage(r).astype(bool)


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())


@pytest.fixture(scope="module")
def phantom():
    img, lab = ellipsoid_phantom((28, 36, 40), noise=12.0, dtype=np.float32)
    seed = tuple(int(v) for v in np.argwhere(lab == 2).mean(axis=0).round())
    assert lab[seed] == 2
    return img, lab, seed


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
def test_range_matches_simpleitk_3d(backend, phantom, dtype):
    img, lab, seed = phantom
    im = np.clip(img * (0.8 if dtype == np.uint8 else 3.0), 0, None).astype(dtype)
    lower, upper = float(np.percentile(im[lab == 2], 2)) + 0.5, float(np.percentile(im[lab == 2], 99))
    for conn in (1, 3):
        ref = _sitk_connected(im, [seed], lower, upper, full=conn == 3)
        got = grow(im, [seed], lower=lower, upper=upper, connectivity=conn, backend=backend)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, ref)
    # the organ is recovered
    got = grow(im, [seed], lower=lower, upper=upper, backend=backend)
    assert _dice(got, lab == 2) >= 0.95


def test_range_2d_real_ct_and_mr(backend, ct_small, mr_small):
    for img, q in ((ct_small, (60, 64)), (mr_small, (32, 32))):
        v = float(img[q])
        for conn in (1, 2):
            ref = _sitk_connected(img, [q], v - 60, v + 60, full=conn == 2)
            got = grow(img, q, lower=v - 60, upper=v + 60, connectivity=conn, backend=backend)
            np.testing.assert_array_equal(got, ref)
            assert got.sum() > 1
    # several seeds, a seed mask
    seeds = [(10, 10), (60, 64), (100, 30)]
    ref = _sitk_connected(ct_small, seeds, 800, 1200, full=False)
    mask = np.zeros(ct_small.shape, bool)
    mask[tuple(np.array(seeds).T)] = True
    np.testing.assert_array_equal(grow(ct_small, seeds, lower=800, upper=1200, backend=backend), ref)
    np.testing.assert_array_equal(grow(ct_small, mask, lower=800, upper=1200, backend=backend), ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_tolerance_matches_flood(backend, phantom, dtype):
    img, lab, seed = phantom
    im = np.clip(img, 0, 255).astype(dtype) if dtype == np.uint8 else img.astype(dtype)
    for tol in (0, 25, 40.5):
        for conn in (1, 2, 3):
            ref = skseg.flood(im, seed, tolerance=tol, connectivity=conn)
            got = grow(im, seed, tolerance=tol, connectivity=conn, backend=backend)
            np.testing.assert_array_equal(got, ref, err_msg=f"tol={tol} conn={conn}")
    # 2D, real data
    sl = im[14]
    s2 = seed[1:]
    np.testing.assert_array_equal(grow(sl, s2, tolerance=30, connectivity=2, backend=backend),
                                  skseg.flood(sl, s2, tolerance=30, connectivity=2))


def test_tolerance_multiple_seeds_is_union(backend, ct_small):
    seeds = [(20, 20), (64, 64)]
    ref = skseg.flood(ct_small, seeds[0], tolerance=50, connectivity=1) | \
        skseg.flood(ct_small, seeds[1], tolerance=50, connectivity=1)
    np.testing.assert_array_equal(grow(ct_small, seeds, tolerance=50, backend=backend), ref)


def test_layouts_threads_and_2d_vs_3d(backend, phantom):
    img, lab, seed = phantom
    ref = grow(img, seed, lower=150, upper=400, backend=backend)
    for name, arr in layouts(img).items():
        np.testing.assert_array_equal(grow(arr, seed, lower=150, upper=400, backend=backend), ref, err_msg=name)
    np.testing.assert_array_equal(grow(img, seed, lower=150, upper=400, backend=backend, num_threads=1),
                                  grow(img, seed, lower=150, upper=400, backend=backend, num_threads=2))
    sl = img[seed[0]]
    np.testing.assert_array_equal(grow(sl[None], (0,) + seed[1:], lower=150, upper=400, backend=backend)[0],
                                  grow(sl, seed[1:], lower=150, upper=400, backend=backend))


def test_seed_outside_range_gives_empty(backend):
    img = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert not grow(img, (0, 0), lower=5, upper=10, backend=backend).any()
    ref = _sitk_connected(img, [(0, 0)], 5, 10, full=False)
    assert not ref.any()


def test_confidence_vs_simpleitk(backend, phantom):
    img, lab, seed = phantom
    for dtype, scale in ((np.int16, 3.0), (np.float32, 1.0)):
        im = (img * scale).astype(dtype)
        for mult, iters in ((2.5, 4), (3.0, 1), (2.0, 0)):
            ref = sitk.GetArrayFromImage(sitk.ConfidenceConnected(
                sitk.GetImageFromArray(im), seedList=[seed[::-1]], numberOfIterations=iters, multiplier=mult,
                initialNeighborhoodRadius=1)).astype(bool)
            got = grow_confidence(im, [seed], multiplier=mult, iterations=iters, backend=backend)
            assert _dice(got, ref) >= 0.99, (dtype, mult, iters, _dice(got, ref))
        got = grow_confidence(im, [seed], backend=backend)
        assert _dice(got, lab == 2) >= 0.95


def test_confidence_2d_real_ct(backend, ct_small):
    seeds = [(60, 64), (64, 60)]
    ref = sitk.GetArrayFromImage(sitk.ConfidenceConnected(
        sitk.GetImageFromArray(ct_small), seedList=[s[::-1] for s in seeds], numberOfIterations=3, multiplier=2.5,
        initialNeighborhoodRadius=2)).astype(bool)
    got = grow_confidence(ct_small, seeds, iterations=3, radius=2, backend=backend)
    assert ref.sum() > 20
    assert _dice(got, ref) >= 0.99


def test_confidence_threads_and_layouts(backend, phantom):
    img, _, seed = phantom
    a = grow_confidence(img, [seed], backend=backend, num_threads=1)
    b = grow_confidence(np.asfortranarray(img), [seed], backend=backend, num_threads=2)
    np.testing.assert_array_equal(a, b)


def test_input_not_modified(backend, phantom):
    img, _, seed = phantom
    c = img.copy()
    grow(img, seed, tolerance=20, backend=backend)
    grow_confidence(img, seed, backend=backend)
    np.testing.assert_array_equal(img, c)


def test_bad_input(backend):
    img = np.zeros((6, 7), np.float32)
    with pytest.raises(InvalidParameterError):
        grow(img, [], lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, [(6, 0)], lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, [(-1, 0)], lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, [(1, 2, 3)], lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, np.zeros(img.shape, bool), lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidImageError):
        grow(img, np.zeros((3, 3), bool), lower=0, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, (0, 0), backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, (0, 0), lower=0, tolerance=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, (0, 0), lower=2, upper=1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, (0, 0), lower=np.nan, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow(img, (0, 0), tolerance=1, connectivity=3, backend=backend)
    bad = img.copy()
    bad[0, 1] = np.inf
    with pytest.raises(NonFiniteError):
        grow(bad, (0, 0), tolerance=1, backend=backend)
    with pytest.raises(NonFiniteError):
        grow_confidence(bad, (0, 0), backend=backend)
    with pytest.raises(InvalidParameterError):
        grow_confidence(img, (0, 0), multiplier=0, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow_confidence(img, (0, 0), iterations=-1, backend=backend)
    with pytest.raises(InvalidParameterError):
        grow_confidence(img, [(9, 9)], backend=backend)
