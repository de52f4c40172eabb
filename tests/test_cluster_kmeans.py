"""medseg_fast.cluster.kmeans against scikit-learn KMeans (and OpenCV) on real scans and phantoms."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts, nibabel_file

from medseg_fast.cluster import kmeans

sklearn_cluster = pytest.importorskip("sklearn.cluster")
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def _quantile_init(values, k):
    return np.quantile(values.astype(np.float64), np.linspace(0.05, 0.95, k))


def _sk_kmeans(X, init):
    km = sklearn_cluster.KMeans(len(init), init=np.asarray(init, np.float64).reshape(len(init), -1), n_init=1,
                                max_iter=300, tol=1e-4)
    return km.fit(X)


@pytest.mark.parametrize("scan", ["ct_small", "mr_small"])
def test_kmeans_equals_sklearn_on_real_slices(scan, backend, request):
    img = request.getfixturevalue(scan)
    init = _quantile_init(img, 4)
    X = img.reshape(-1, 1).astype(np.float64)
    ref = _sk_kmeans(X, init)
    labels, centers, inertia = kmeans(img, 4, init=init, return_inertia=True, backend=backend)
    ref_c = np.sort(ref.cluster_centers_[:, 0])
    np.testing.assert_allclose(centers, ref_c, rtol=1e-4)
    assert inertia <= ref.inertia_ * (1 + 1e-9)
    assert labels.dtype == np.uint8 and labels.shape == img.shape
    # same partition, and labels ordered by increasing centre
    assert adjusted_rand_score(ref.labels_, labels.ravel()) == 1.0
    means = [img[labels == i].mean() for i in range(1, 5)]
    assert np.all(np.diff(means) > 0)


def test_kmeans_inertia_not_worse_than_sklearn_kmeanspp(ct_small, mr_small, backend):
    for img in (ct_small, mr_small):
        X = img.reshape(-1, 1).astype(np.float64)
        ref = sklearn_cluster.KMeans(4, n_init=3, random_state=0).fit(X)
        _, _, inertia = kmeans(img, 4, n_init=3, random_state=0, return_inertia=True, backend=backend)
        assert inertia <= ref.inertia_ * (1 + 1e-6)


def test_kmeans_3d_real_volume(backend):
    nib = pytest.importorskip("nibabel")
    vol = np.asarray(nib.load(nibabel_file("tests", "data", "anatomical.nii")).dataobj)  # big-endian int16, F order
    init = _quantile_init(vol, 3)
    ref = _sk_kmeans(vol.reshape(-1, 1).astype(np.float64), init)
    labels, centers = kmeans(vol, 3, init=init, backend=backend)
    np.testing.assert_allclose(centers, np.sort(ref.cluster_centers_[:, 0]), rtol=1e-4)
    assert adjusted_rand_score(ref.labels_, labels.ravel()) == 1.0


def test_kmeans_shared_ct(shared_data, backend):
    nib = pytest.importorskip("nibabel")
    vol = np.asarray(nib.load(str(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")).dataobj)
    sub = vol[::2, ::2, :]
    init = _quantile_init(sub, 4)
    ref = _sk_kmeans(sub.reshape(-1, 1).astype(np.float64), init)
    labels, centers, inertia = kmeans(sub, 4, init=init, return_inertia=True, backend=backend)
    np.testing.assert_allclose(centers, np.sort(ref.cluster_centers_[:, 0]), rtol=1e-4)
    assert inertia <= ref.inertia_ * (1 + 1e-9)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
def test_kmeans_dtypes_and_mask(dtype, backend):
    img, truth = ellipsoid_phantom((12, 20, 22), seed=1, noise=15.0)
    img = np.clip(img * 0.6 + 20, 0, 255).astype(dtype)
    mask = truth > 0
    init = np.array([70.0, 130.0, 200.0])
    X = img[mask].reshape(-1, 1).astype(np.float64)
    ref = _sk_kmeans(X, init)
    labels, centers = kmeans(img, 3, mask=mask, init=init, backend=backend)
    np.testing.assert_allclose(centers, np.sort(ref.cluster_centers_[:, 0]), rtol=1e-4)
    assert np.all(labels[~mask] == 0) and np.all(labels[mask] > 0)
    assert adjusted_rand_score(ref.labels_, labels[mask]) == 1.0
    # phantom truth: body / two inner ellipsoids
    assert (labels[mask] == truth[mask]).mean() > 0.99


def test_kmeans_several_features_equals_sklearn(backend):
    rng = np.random.default_rng(3)
    img, truth = ellipsoid_phantom((30, 34), seed=2, noise=10.0)
    rgb = np.stack([img, 0.5 * img + rng.normal(0, 5, img.shape), 300 - img], axis=0).astype(np.float32)
    init = np.array([[0, 0, 300], [100, 50, 200], [200, 100, 100], [300, 150, 0]], np.float64)
    X = np.moveaxis(rgb, 0, -1).reshape(-1, 3)
    ref = _sk_kmeans(X, init)
    labels, centers = kmeans(rgb, 4, channel_axis=0, init=init, backend=backend)
    order = np.argsort(ref.cluster_centers_[:, 0])
    np.testing.assert_allclose(centers, ref.cluster_centers_[order], rtol=1e-4, atol=1e-3)
    assert adjusted_rand_score(ref.labels_, labels.ravel()) == 1.0
    assert (labels == truth + 1).mean() > 0.99


def test_kmeans_position_features_respect_spacing(backend):
    img = np.zeros((10, 40), np.float32)
    sp = (2.0, 0.5)
    labels, centers = kmeans(img + np.arange(40) % 2, 2, position_weight=1.0, spacing=sp, init=np.array(
        [[0.0, 9.0, 2.0], [1.0, 9.0, 18.0]]), backend=backend)
    X = np.stack([(img + np.arange(40) % 2).ravel(), *(g.ravel() * s for g, s in zip(np.indices(img.shape), sp))], 1)
    ref = _sk_kmeans(X, np.array([[0.0, 9.0, 2.0], [1.0, 9.0, 18.0]]))
    assert adjusted_rand_score(ref.labels_, labels.ravel()) == 1.0
    assert centers.shape == (2, 3)


def test_kmeans_layouts_threads_and_no_mutation(ct_small, backend):
    ref, ref_c = kmeans(ct_small, 3, random_state=5, backend=backend)
    for name, arr in layouts(ct_small).items():
        before = arr.copy()
        lab, c = kmeans(arr, 3, random_state=5, backend=backend, num_threads=1)
        np.testing.assert_array_equal(lab, ref, err_msg=name)
        np.testing.assert_array_equal(c, ref_c)
        np.testing.assert_array_equal(arr, before)
    vol = np.stack([ct_small] * 3).astype(np.float32)
    vol2 = np.stack([vol, vol[::-1]], -1)
    a = kmeans(vol2, 3, channel_axis=-1, random_state=1, backend=backend, num_threads=1)
    b = kmeans(vol2, 3, channel_axis=-1, random_state=1, backend=backend, num_threads=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_kmeans_2d_equals_3d_single_slice(mr_small, backend):
    a = kmeans(mr_small, 3, random_state=0, backend=backend)
    b = kmeans(mr_small[None], 3, random_state=0, backend=backend)
    np.testing.assert_array_equal(a[0], b[0][0])
    np.testing.assert_array_equal(a[1], b[1])


def test_kmeans_backends_agree(ct_small):
    vol = np.stack([ct_small, ct_small.T]).astype(np.float32)
    feats = np.stack([vol, np.abs(vol - 900)], -1)
    out = {}
    for be in ("cpu", "numba"):
        out[be] = (kmeans(ct_small, 4, random_state=7, backend=be),
                   kmeans(feats, 4, channel_axis=-1, random_state=7, backend=be, num_threads=2))
    for x, y in zip(out["cpu"], out["numba"]):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])


def test_kmeans_matches_opencv(ct_small):
    cv2 = pytest.importorskip("cv2")
    init = _quantile_init(ct_small, 3)
    X = ct_small.reshape(-1, 1).astype(np.float32)
    lab0 = np.argmin(np.abs(X - init[None, :].astype(np.float32)), axis=1).astype(np.int32)[:, None]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 300, 1e-6)
    compact, _, cv_centers = cv2.kmeans(X, 3, lab0.copy(), crit, 1, cv2.KMEANS_USE_INITIAL_LABELS)
    # run both to convergence (OpenCV's stopping rule differs from scikit-learn's)
    _, centers, inertia = kmeans(ct_small, 3, init=init, tol=0.0, return_inertia=True)
    np.testing.assert_allclose(centers, np.sort(cv_centers[:, 0]), rtol=1e-4)
    assert inertia <= compact * (1 + 1e-5)
