"""Benchmarks of medseg_fast.cluster against scikit-learn, scikit-fuzzy and OpenCV (issue 6, Speed).

Run:  pytest benchmarks/bench_cluster.py --benchmark-only [--benchmark-group-by=group]

Each group pairs our function with the reference on the same input, and each
test asserts that the answer is right.  The references are slow on these
sizes, so they run once (pedantic, one round).  MEDSEG_BENCH_SCALE=0.5 halves
every edge (for a quick look on a busy machine); the issue's sizes are scale 1.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from medseg_fast.cluster import agglomerative, fuzzy_cmeans, kmeans, mean_shift

SCALE = float(os.environ.get("MEDSEG_BENCH_SCALE", "1"))


def _n(n):
    return max(16, int(round(n * SCALE)))


@functools.lru_cache(maxsize=None)
def ct_like(shape):
    """A CT-like int16 phantom: air, soft tissue, an organ and bone, with noise."""
    rng = np.random.default_rng(0)
    g = np.indices(shape, sparse=True)
    r = sum(((x - n / 2) / (n / 2.4)) ** 2 for x, n in zip(g, shape))
    r2 = sum(((x - n / 1.7) / (n / 6)) ** 2 for x, n in zip(g, shape))
    img = np.where(r < 1, 40, -950) + np.where(r < 0.35, 60, 0) + np.where(r2 < 1, 700, 0)
    return (img + rng.normal(0, 25, shape)).astype(np.int16)


@functools.lru_cache(maxsize=None)
def grey8(shape):
    rng = np.random.default_rng(1)
    g = np.indices(shape)
    r = sum(((x - n / 2) / (n / 2.5)) ** 2 for x, n in zip(g, shape))
    img = np.where(r < 1, 120, 40) + np.where(r < 0.3, 80, 0) + rng.normal(0, 10, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _init4(img):
    """Initial centres at the phantom's class values (air, soft tissue, organ, bone), so that every
    implementation converges to the same well-separated solution."""
    return np.array([-950.0, 40.0, 100.0, 740.0])


# ---------------------------------------------------------------- k-means, 256^3 int16, k=4


@pytest.mark.benchmark(group="kmeans-256^3-int16-k4")
def test_kmeans_medseg(benchmark):
    vol = ct_like((_n(256),) * 3)
    labels, centers = benchmark(kmeans, vol, 4, init=_init4(vol))
    assert labels.dtype == np.uint8 and len(np.unique(centers)) == 4


@pytest.mark.benchmark(group="kmeans-256^3-int16-k4")
def test_kmeans_sklearn(benchmark):
    cluster = pytest.importorskip("sklearn.cluster")
    vol = ct_like((_n(256),) * 3)
    init = _init4(vol)
    X = vol.reshape(-1, 1).astype(np.float64)
    km = benchmark.pedantic(lambda: cluster.KMeans(4, init=init[:, None], n_init=1).fit(X), rounds=1, iterations=1)
    _, ours = kmeans(vol, 4, init=init)
    np.testing.assert_allclose(ours, np.sort(km.cluster_centers_[:, 0]), rtol=1e-3)


@pytest.mark.benchmark(group="kmeans-256^3-int16-k4")
def test_kmeans_opencv(benchmark):
    cv2 = pytest.importorskip("cv2")
    vol = ct_like((_n(256),) * 3)
    init = _init4(vol)
    X = vol.reshape(-1, 1).astype(np.float32)
    lab0 = np.argmin(np.abs(X - init[None, :].astype(np.float32)), axis=1).astype(np.int32)[:, None]
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 300, 1e-4)
    _, _, centers = benchmark.pedantic(
        lambda: cv2.kmeans(X, 4, lab0.copy(), crit, 1, cv2.KMEANS_USE_INITIAL_LABELS), rounds=1, iterations=1)
    _, ours = kmeans(vol, 4, init=init, tol=0.0)
    # OpenCV sums in float32: on 256^3 its centre of the big air cluster drifts by tens of HU, so
    # only the other centres are compared
    np.testing.assert_allclose(ours[1:], np.sort(centers[:, 0])[1:], rtol=5e-3)


# ---------------------------------------------------------------- fuzzy c-means


def _partition(x, centers, m=2.0):
    d = np.fmax(np.abs(x[None, :] - centers[:, None]), np.finfo(np.float64).eps)
    u = d ** (-2.0 / (m - 1))
    return u / u.sum(0)


@pytest.mark.benchmark(group="fcm-512^2-c4")
def test_fcm_medseg(benchmark):
    img = ct_like((_n(512), _n(512)))
    labels, u, centers = benchmark(fuzzy_cmeans, img, 4, init=_init4(img), max_iter=100)
    assert u.dtype == np.float32 and u.shape == (4,) + img.shape


@pytest.mark.benchmark(group="fcm-512^2-c4")
def test_fcm_skfuzzy(benchmark):
    skfuzzy = pytest.importorskip("skfuzzy")
    img = ct_like((_n(512), _n(512)))
    init = _init4(img)
    x = img.reshape(-1).astype(np.float64)
    u0 = _partition(x, init)
    cntr, *_ = benchmark.pedantic(lambda: skfuzzy.cluster.cmeans(x[None], 4, 2.0, 1e-5, 100, init=u0.copy()),
                                  rounds=1, iterations=1)
    _, _, ours = fuzzy_cmeans(img, 4, init=init, max_iter=100)
    np.testing.assert_allclose(ours, np.sort(cntr[:, 0]), rtol=1e-3)


@pytest.mark.benchmark(group="fcm-256^3-c4")
def test_fcm_volume_medseg(benchmark):
    vol = ct_like((_n(256),) * 3)
    labels, u, centers = benchmark.pedantic(fuzzy_cmeans, args=(vol, 4), kwargs={"init": _init4(vol)}, rounds=3,
                                            iterations=1)
    assert u.shape == (4,) + vol.shape


@pytest.mark.benchmark(group="fcm_s1-256^3-c4")
def test_fcm_s1_volume_medseg(benchmark):
    vol = ct_like((_n(256),) * 3)
    labels, u, centers = benchmark.pedantic(fuzzy_cmeans, args=(vol, 4),
                                            kwargs={"init": _init4(vol), "spatial_weight": 1.0, "max_iter": 50},
                                            rounds=1, iterations=1)
    assert u.shape == (4,) + vol.shape


# ---------------------------------------------------------------- mean-shift


@pytest.mark.benchmark(group="mean_shift-512^2")
def test_mean_shift_medseg(benchmark):
    img = ct_like((_n(512), _n(512)))
    labels, modes = benchmark(mean_shift, img, 150.0)
    assert len(modes) >= 2


@pytest.mark.benchmark(group="mean_shift-512^2")
def test_mean_shift_sklearn(benchmark):
    cluster = pytest.importorskip("sklearn.cluster")
    img = ct_like((_n(512), _n(512)))
    X = img.reshape(-1, 1).astype(np.float64)
    ms = benchmark.pedantic(lambda: cluster.MeanShift(bandwidth=150.0, bin_seeding=True).fit(X), rounds=1,
                            iterations=1)
    _, modes = mean_shift(img, 150.0)
    np.testing.assert_allclose(modes, np.sort(ms.cluster_centers_[:, 0]), atol=15.0)


@pytest.mark.benchmark(group="mean_shift_spatial-512^2")
def test_mean_shift_spatial_medseg(benchmark):
    img = grey8((_n(512), _n(512)))
    labels, modes = benchmark.pedantic(mean_shift, args=(img, 20.0), kwargs={"spatial_bandwidth": 5.0}, rounds=3,
                                       iterations=1)
    assert labels.min() >= 1


@pytest.mark.benchmark(group="mean_shift_spatial-512^2")
def test_mean_shift_spatial_opencv(benchmark):
    cv2 = pytest.importorskip("cv2")
    img = grey8((_n(512), _n(512)))
    rgb = np.repeat(img[..., None], 3, axis=2)
    out = benchmark.pedantic(lambda: cv2.pyrMeanShiftFiltering(rgb, 5, 20 * np.sqrt(3), maxLevel=0), rounds=3,
                             iterations=1)
    labels, modes = mean_shift(img, 20.0, spatial_bandwidth=5.0)
    assert np.abs(out[..., 0].astype(float) - modes[labels - 1]).mean() < 4.0


# ---------------------------------------------------------------- agglomerative, 256^2


@pytest.mark.benchmark(group="agglomerative-256^2")
def test_agglomerative_medseg(benchmark):
    img = ct_like((_n(256), _n(256)))
    labels = benchmark(agglomerative, img, 4)
    assert len(np.unique(labels)) == 4


@pytest.mark.benchmark(group="agglomerative-256^2")
def test_agglomerative_sklearn(benchmark):
    cluster = pytest.importorskip("sklearn.cluster")
    from sklearn.feature_extraction.image import grid_to_graph
    from sklearn.metrics import adjusted_rand_score

    img = ct_like((_n(256), _n(256)))
    conn = grid_to_graph(*img.shape)
    X = img.reshape(-1, 1).astype(np.float64)
    ag = benchmark.pedantic(
        lambda: cluster.AgglomerativeClustering(4, linkage="ward", connectivity=conn).fit(X), rounds=1, iterations=1)
    assert adjusted_rand_score(ag.labels_, agglomerative(img, 4).ravel()) >= 0.99
