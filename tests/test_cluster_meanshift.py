"""medseg_fast.cluster.mean_shift against scikit-learn MeanShift and OpenCV pyrMeanShiftFiltering."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts

from medseg_fast.cluster import mean_shift

sklearn_cluster = pytest.importorskip("sklearn.cluster")
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def _sk_modes(X, bw, min_bin_freq=1):
    ms = sklearn_cluster.MeanShift(bandwidth=bw, bin_seeding=True, min_bin_freq=min_bin_freq).fit(X)
    return ms


@pytest.mark.parametrize("scan,frac", [("ct_small", 10), ("mr_small", 10), ("mr_small", 25)])
def test_mean_shift_equals_sklearn_on_real_slices(scan, frac, backend, request):
    img = request.getfixturevalue(scan)
    X = img.reshape(-1, 1).astype(np.float64)
    bw = float(np.ptp(X)) / frac
    ref = _sk_modes(X, bw)
    labels, modes = mean_shift(img, bw, backend=backend)
    ref_modes = np.sort(ref.cluster_centers_[:, 0])
    assert modes.shape == ref_modes.shape
    np.testing.assert_allclose(modes, ref_modes, atol=bw / 10)
    assert adjusted_rand_score(ref.labels_, labels.ravel()) > 0.999


def test_mean_shift_min_bin_freq_and_mask(ct_small, backend):
    mask = ct_small > 100
    X = ct_small[mask].reshape(-1, 1).astype(np.float64)
    bw = 60.0
    ref = _sk_modes(X, bw, min_bin_freq=20)
    labels, modes = mean_shift(ct_small, bw, mask=mask, min_bin_freq=20, backend=backend)
    np.testing.assert_allclose(modes, np.sort(ref.cluster_centers_[:, 0]), atol=bw / 10)
    assert np.all(labels[~mask] == 0) and np.all(labels[mask] > 0)
    assert adjusted_rand_score(ref.labels_, labels[mask]) > 0.999


def test_mean_shift_3d_phantom(backend):
    img, truth = ellipsoid_phantom((20, 28, 30), seed=8, noise=12.0)
    labels, modes = mean_shift(img.astype(np.int16), 45.0, backend=backend)
    np.testing.assert_allclose(modes, [0, 100, 200, 300], atol=6)
    assert (labels == truth + 1).mean() > 0.99


def test_mean_shift_several_features_equals_sklearn(backend):
    img, truth = ellipsoid_phantom((30, 32), seed=9, noise=8.0)
    two = np.stack([img, 0.5 * img[::-1]], -1).astype(np.float32)
    X = two.reshape(-1, 2).astype(np.float64)
    ref = _sk_modes(X, 40.0)
    labels, modes = mean_shift(two, 40.0, channel_axis=-1, backend=backend)
    order = np.lexsort(ref.cluster_centers_.T[::-1])
    assert modes.shape == ref.cluster_centers_.shape
    np.testing.assert_allclose(modes, ref.cluster_centers_[order], atol=4.0)
    assert adjusted_rand_score(ref.labels_, labels.ravel()) > 0.999


def _blocks(shape, seed, noise):
    rng = np.random.default_rng(seed)
    idx = np.indices(shape)
    truth = ((idx[-1] * 3 // shape[-1]) + (idx[-2] * 2 // shape[-2]) * 3).astype(np.int32)
    vals = np.array([20, 100, 180, 220, 60, 140])
    img = vals[truth] + rng.normal(0, noise, shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


def test_spatial_range_segments_phantom_2d_and_cv2(backend):
    img, truth = _blocks((60, 72), 10, 7.0)
    labels, modes = mean_shift(img, 20.0, spatial_bandwidth=5.0, backend=backend)
    assert labels.dtype == np.uint8 and labels.min() >= 1
    # the big regions are recovered (isolated noisy voxels may form their own small regions)
    big = np.bincount(labels.ravel())
    main = np.argsort(big)[::-1][:6]
    assert np.isin(labels, main).mean() > 0.97
    assert adjusted_rand_score(truth.ravel(), labels.ravel()) > 0.9
    # qualitative comparison with OpenCV (2D, 8-bit colour only): the filtered images agree
    cv2 = pytest.importorskip("cv2")
    rgb = np.repeat(img[..., None], 3, axis=2)
    # OpenCV's range distance is over 3 equal channels: sr = hr * sqrt(3)
    filt = cv2.pyrMeanShiftFiltering(rgb, 5, 20 * np.sqrt(3), maxLevel=0)[..., 0].astype(np.float64)
    ours = modes[labels - 1]
    assert np.abs(filt - ours).mean() < 4.0
    assert np.abs(filt - img).mean() > 4.0  # both actually smooth the noise


def test_spatial_range_3d_and_spacing(backend):
    img, truth = ellipsoid_phantom((16, 24, 24), seed=11, noise=10.0)
    labels, modes = mean_shift(img, 45.0, spatial_bandwidth=2.0, backend=backend)
    big = np.argsort(np.bincount(labels.ravel()))[::-1][:4]
    assert np.isin(labels, big).mean() > 0.97
    assert adjusted_rand_score(truth.ravel(), labels.ravel()) > 0.85
    # physical units: (spacing s, bandwidth h) equals (2 s, 2 h)
    a = mean_shift(img, 45.0, spatial_bandwidth=3.0, spacing=(2.0, 1.0, 1.0), backend=backend)
    b = mean_shift(img, 45.0, spatial_bandwidth=6.0, spacing=(4.0, 2.0, 2.0), backend=backend)
    np.testing.assert_array_equal(a[0], b[0])
    c = mean_shift(img, 45.0, spatial_bandwidth=3.0, spacing=(1.0, 1.0, 1.0), backend=backend)
    assert not np.array_equal(a[0], c[0]) or not np.array_equal(a[1], c[1])


def test_mean_shift_layouts_threads_backends(mr_small, backend):
    bw = 150.0
    ref = mean_shift(mr_small, bw, backend=backend)
    ref_sr = mean_shift(mr_small, bw, spatial_bandwidth=3.0, backend=backend, num_threads=1)
    for name, arr in layouts(mr_small).items():
        before = arr.copy()
        out = mean_shift(arr, bw, backend=backend)
        np.testing.assert_array_equal(out[0], ref[0], err_msg=name)
        np.testing.assert_array_equal(out[1], ref[1])
        out = mean_shift(arr, bw, spatial_bandwidth=3.0, backend=backend, num_threads=2)
        np.testing.assert_array_equal(out[0], ref_sr[0], err_msg=name)
        np.testing.assert_array_equal(out[1], ref_sr[1])
        np.testing.assert_array_equal(arr, before)


def test_mean_shift_backends_agree(mr_small):
    two = np.stack([mr_small, mr_small.T], -1).astype(np.float32)
    res = {be: (mean_shift(mr_small, 120.0, backend=be), mean_shift(two, 200.0, channel_axis=-1, backend=be),
                mean_shift(mr_small, 120.0, spatial_bandwidth=4.0, backend=be)) for be in ("cpu", "numba")}
    for x, y in zip(res["cpu"], res["numba"]):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
