"""medseg_fast.cluster.agglomerative against scikit-learn's structured Ward (grid_to_graph)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts

from medseg_fast import MedsegWarning
from medseg_fast.cluster import agglomerative

sklearn_cluster = pytest.importorskip("sklearn.cluster")
from sklearn.feature_extraction.image import grid_to_graph  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402


def _sk_ward(img, k, mask=None):
    if mask is None:
        conn = grid_to_graph(*img.shape)
        X = img.reshape(-1, 1).astype(np.float64)
    else:
        conn = grid_to_graph(*img.shape, mask=mask)
        X = img[mask].reshape(-1, 1).astype(np.float64)
    return sklearn_cluster.AgglomerativeClustering(k, linkage="ward", connectivity=conn).fit(X).labels_


@pytest.mark.parametrize("case", ["ct64", "mr64", "ct96", "ct128"])
def test_ward_equals_sklearn_on_real_slices(case, ct_small, mr_small, backend):
    img = {"ct64": ct_small[::2, ::2], "mr64": mr_small, "ct96": ct_small[16:112, 20:116], "ct128": ct_small}[case]
    for k in (3, 6):
        ref = _sk_ward(img, k)
        labels = agglomerative(img, k, backend=backend)
        assert labels.shape == img.shape and labels.dtype == np.uint8
        assert set(np.unique(labels)) == set(range(1, k + 1))
        assert adjusted_rand_score(ref, labels.ravel()) >= 0.99
        means = [img[labels == i].mean() for i in range(1, k + 1)]
        assert np.all(np.diff(means) > 0)


def test_ward_3d_and_mask_equal_sklearn(backend):
    img, truth = ellipsoid_phantom((12, 16, 18), seed=12, noise=15.0)
    ref = _sk_ward(img, 4)
    labels = agglomerative(img, 4, backend=backend)
    assert adjusted_rand_score(ref, labels.ravel()) >= 0.99
    mask = truth > 0
    ref = _sk_ward(img, 3, mask=mask)
    labels = agglomerative(img, 3, mask=mask, backend=backend)
    assert np.all(labels[~mask] == 0)
    assert adjusted_rand_score(ref, labels[mask]) >= 0.99
    assert adjusted_rand_score(truth[mask], labels[mask]) > 0.9


def test_ward_initial_labels(mr_small, backend):
    # singleton regions: identical to the voxel run
    ids = np.arange(1, mr_small.size + 1).reshape(mr_small.shape)
    np.testing.assert_array_equal(agglomerative(mr_small, 4, initial_labels=ids, backend=backend),
                                  agglomerative(mr_small, 4, backend=backend))
    # regular grid of 4x4 supervoxels: clusters are unions of blocks, and on an image that is
    # constant on the blocks the result equals the voxel-level Ward
    blocky = np.kron(mr_small[::4, ::4], np.ones((4, 4), mr_small.dtype))
    a = agglomerative(blocky, 4, initial_labels=(4, 4), backend=backend)
    assert all(len(np.unique(a[i:i + 4, j:j + 4])) == 1 for i in range(0, 64, 4) for j in range(0, 64, 4))
    assert adjusted_rand_score(agglomerative(blocky, 4, backend=backend).ravel(), a.ravel()) >= 0.99
    # a user label map, label 0 ignored
    lab = np.zeros(mr_small.shape, np.int32)
    lab[:, 8:] = ids[:, 8:]
    out = agglomerative(mr_small, 3, initial_labels=lab, backend=backend)
    assert np.all(out[:, :8] == 0) and np.all(out[:, 8:] > 0)
    ref = _sk_ward(mr_small, 3, mask=lab > 0)
    assert adjusted_rand_score(ref, out[lab > 0]) >= 0.99


def test_ward_connectivity_and_disconnected_mask(backend):
    img, _ = ellipsoid_phantom((40, 40), seed=13, noise=5.0)
    a1 = agglomerative(img, 4, connectivity=1, backend=backend)
    a2 = agglomerative(img, 4, connectivity=2, backend=backend)
    assert len(np.unique(a1)) == len(np.unique(a2)) == 4
    mask = np.zeros(img.shape, bool)
    mask[:, :10] = True
    mask[:, 20:30] = True
    mask[:, 35:] = True
    with pytest.warns(MedsegWarning, match="disconnected"):
        out = agglomerative(img, 2, mask=mask, backend=backend)
    assert len(np.unique(out[mask])) == 3


def test_ward_layouts_threads_backends(mr_small, backend):
    img = mr_small[:40, :48]
    ref = agglomerative(img, 5, backend=backend)
    for name, arr in layouts(img).items():
        before = arr.copy()
        out = agglomerative(arr, 5, backend=backend, num_threads=1)
        if name == "F":  # leaf order differs: ties may break differently
            assert adjusted_rand_score(ref.ravel(), out.ravel()) >= 0.99
        else:
            np.testing.assert_array_equal(out, ref, err_msg=name)
        np.testing.assert_array_equal(arr, before)
    other = "numba" if backend == "cpu" else "cpu"
    np.testing.assert_array_equal(agglomerative(img, 5, backend=other), ref)
    vol = np.stack([img, img[::-1]]).astype(np.float32)
    np.testing.assert_array_equal(agglomerative(vol, 3, backend="cpu", connectivity=3),
                                  agglomerative(vol, 3, backend="numba", connectivity=3))
