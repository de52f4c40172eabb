"""medseg_fast.cluster.fuzzy_cmeans against scikit-fuzzy and a numpy FCM_S1 oracle."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts

from medseg_fast.cluster import fuzzy_cmeans

skfuzzy = pytest.importorskip("skfuzzy")

EPS = np.finfo(np.float64).eps


def _partition(X, centers, m):
    """Memberships (c, n) of points X (n, F) for centres (c, F): skfuzzy's init= partition."""
    d = np.sqrt(((X[None, :, :] - centers[:, None, :]) ** 2).sum(2))
    d = np.fmax(d, EPS)
    u = d ** (-2.0 / (m - 1))
    return u / u.sum(0)


@pytest.mark.parametrize("scan,m", [("ct_small", 2.0), ("mr_small", 2.0), ("mr_small", 1.7), ("mr_float", 2.0)])
def test_fcm_equals_skfuzzy_on_real_slices(scan, m, backend, request):
    if scan == "mr_float":  # float image: sorted distinct values instead of the integer histogram
        img = request.getfixturevalue("mr_small").astype(np.float32) * np.float32(0.37)
    else:
        img = request.getfixturevalue(scan)
    init = np.quantile(img.astype(np.float64), [0.05, 0.4, 0.7, 0.95])
    X = img.reshape(-1, 1).astype(np.float64)
    # the same iteration step for step: equal max_iter gives equal centres even before convergence
    # (scikit-fuzzy is slow: 40 iterations keep the test short)
    cntr, u, *_ = skfuzzy.cluster.cmeans(X.T, 4, m, 1e-5, 40, init=_partition(X, init[:, None], m))
    labels, memb, centers = fuzzy_cmeans(img, 4, m=m, init=init, max_iter=40, backend=backend)
    order = np.argsort(cntr[:, 0])
    np.testing.assert_allclose(centers, cntr[order, 0], rtol=1e-3)
    assert memb.dtype == np.float32 and memb.shape == (4,) + img.shape
    np.testing.assert_allclose(memb.reshape(4, -1), u[order], atol=2e-3)
    np.testing.assert_array_equal(labels, np.argmax(memb, 0) + 1)


def test_fcm_several_features_equals_skfuzzy(backend):
    img, truth = ellipsoid_phantom((24, 30), seed=4, noise=12.0)
    two = np.stack([img, 0.3 * img + 50], -1).astype(np.float32)
    init = np.array([[0.0, 50], [110, 80], [190, 110], [310, 140]])
    X = two.reshape(-1, 2).astype(np.float64)
    cntr, *_ = skfuzzy.cluster.cmeans(X.T, 4, 2.0, 1e-4, 300, init=_partition(X, init, 2.0))
    labels, memb, centers = fuzzy_cmeans(two, 4, channel_axis=-1, init=init, tol=1e-7, max_iter=300,
                                         backend=backend)
    np.testing.assert_allclose(centers, cntr[np.argsort(cntr[:, 0])], rtol=1e-3)
    assert (labels == truth + 1).mean() > 0.98


def _fcm_s1_oracle(img, mask, centers, m, alpha, n_iter):
    """Chen & Zhang (2004) FCM_S1 update equations in plain numpy (3x3(x3) mean filter in mask)."""
    from scipy import ndimage

    w = mask.astype(np.float64)
    size = 3
    xs = ndimage.uniform_filter(img.astype(np.float64) * w, size, mode="constant") * size ** img.ndim
    ws = ndimage.uniform_filter(w, size, mode="constant") * size ** img.ndim
    xbar = (xs / np.maximum(ws, 1))[mask]
    x = img.astype(np.float64)[mask]
    c = centers.astype(np.float64).copy()
    for _ in range(n_iter):
        d2 = np.maximum((x[:, None] - c) ** 2 + alpha * (xbar[:, None] - c) ** 2, EPS * EPS)
        u = d2 ** (-1.0 / (m - 1))
        u /= u.sum(1, keepdims=True)
        um = np.maximum(u, EPS) ** m
        c = (um * (x + alpha * xbar)[:, None]).sum(0) / ((1 + alpha) * um.sum(0))
    return c


@pytest.mark.parametrize("shape", [(48, 52), (14, 20, 24)])
def test_fcm_s1_equals_oracle(shape, backend):
    img, truth = ellipsoid_phantom(shape, seed=5, noise=40.0)
    mask = np.ones(shape, bool)
    mask[..., :3] = False
    init = np.array([0.0, 100, 200, 300])
    ref = _fcm_s1_oracle(img, mask, init, 2.0, 0.8, 60)
    _, memb, centers = fuzzy_cmeans(img, 4, mask=mask, spatial_weight=0.8, init=init, tol=0.0, max_iter=60,
                                    backend=backend)
    np.testing.assert_allclose(centers, np.sort(ref), rtol=1e-4)
    assert np.all(memb[:, ~mask] == 0)
    np.testing.assert_allclose(memb[:, mask].sum(0), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(96, 96), (24, 40, 40)])
def test_fcm_s1_beats_plain_fcm_on_noisy_phantom(shape, backend):
    # four tissue classes in blocks of equal size (0, 100, 200, 300) with Gaussian noise sigma 40
    rng = np.random.default_rng(6)
    truth = (np.indices(shape)[-1] * 4 // shape[-1]).astype(np.uint8)
    truth = np.where(np.indices(shape)[-2] % 40 < 20, truth, 3 - truth)
    img = (truth * 100.0 + rng.normal(0, 40, shape)).astype(np.float32)
    plain, _, _ = fuzzy_cmeans(img, 4, random_state=0, backend=backend)
    spatial, _, _ = fuzzy_cmeans(img, 4, spatial_weight=1.0, random_state=0, backend=backend)
    acc_plain = (plain == truth + 1).mean()
    acc_spatial = (spatial == truth + 1).mean()
    print(f"noisy phantom accuracy: FCM {acc_plain:.4f}, FCM_S1 {acc_spatial:.4f}")
    assert acc_spatial > acc_plain + 0.05
    assert acc_spatial > 0.93


def test_fcm_layouts_threads_backends(mr_small, backend):
    ref = fuzzy_cmeans(mr_small, 3, random_state=2, backend=backend)
    for name, arr in layouts(mr_small).items():
        before = arr.copy()
        out = fuzzy_cmeans(arr, 3, random_state=2, backend=backend, num_threads=1)
        for a, b in zip(ref, out):
            np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(arr, before)
    vol = np.stack([mr_small] * 4)
    a = fuzzy_cmeans(vol, 3, spatial_weight=0.5, random_state=2, backend=backend, num_threads=1)
    b = fuzzy_cmeans(vol, 3, spatial_weight=0.5, random_state=2, backend=backend, num_threads=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_fcm_backends_agree(ct_small):
    vol = np.stack([ct_small, ct_small[::-1]]).astype(np.float32)
    res = {be: (fuzzy_cmeans(ct_small, 4, random_state=3, backend=be),
                fuzzy_cmeans(vol, 3, spatial_weight=0.7, random_state=3, backend=be))
           for be in ("cpu", "numba")}
    for x, y in zip(res["cpu"], res["numba"]):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
        np.testing.assert_array_equal(x[2], y[2])
