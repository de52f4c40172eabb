"""medseg_fast.region.split_merge: phantom classes (adjusted Rand index), invariants, backends.

No reference library implements split-and-merge in 3D, so the checks are the
phantom's known classes, a brute-force check of the homogeneity guarantee, and
agreement between backends / thread counts / layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ellipsoid_phantom, layouts
from test_region_felzenszwalb import ari

from medseg_fast._errors import InvalidImageError, InvalidParameterError, NonFiniteError
from medseg_fast.region import split_merge


@pytest.mark.parametrize("shape", [(40, 48, 56), (37, 45, 51), (97, 113)])
def test_phantom_classes(backend, shape):
    img, lab = ellipsoid_phantom(shape, noise=5.0, dtype=np.float32)
    seg = split_merge(img, 10.0, backend=backend)
    score = ari(lab, seg)
    assert score >= 0.95, score
    # every region is homogeneous (std <= threshold), labels are 0..K-1
    assert np.array_equal(np.unique(seg), np.arange(seg.max() + 1))
    counts = np.bincount(seg.ravel())
    means = np.bincount(seg.ravel(), img.ravel().astype(np.float64)) / counts
    sq = np.bincount(seg.ravel(), img.ravel().astype(np.float64) ** 2) / counts
    assert np.all(np.sqrt(np.maximum(sq - means**2, 0)) <= 10.0 + 1e-9)


def test_range_criterion_and_noise_free_exact(backend):
    img, lab = ellipsoid_phantom((30, 34, 38), noise=0.0, dtype=np.float32)
    for crit in ("std", "range"):
        seg = split_merge(img, 0.5, criterion=crit, backend=backend)
        # noise-free: every region is one class, and each connected class is one region
        assert ari(lab, seg) == 1.0 or all(len(np.unique(lab[seg == k])) == 1 for k in range(seg.max() + 1))
        for k in range(seg.max() + 1):
            vals = img[seg == k]
            assert vals.max() - vals.min() <= 0.5


def test_real_ct_backends_threads_layouts(ct_small):
    ref = split_merge(ct_small, 40.0, backend="cpu", num_threads=1)
    np.testing.assert_array_equal(split_merge(ct_small, 40.0, backend="cpu", num_threads=2), ref)
    np.testing.assert_array_equal(split_merge(ct_small, 40.0, backend="numba"), ref)
    for name, arr in layouts(ct_small).items():
        np.testing.assert_array_equal(split_merge(arr, 40.0, backend="cpu"), ref, err_msg=name)
    vol, _ = ellipsoid_phantom((17, 23, 29), noise=8.0)
    for crit in ("std", "range"):
        a = split_merge(vol.astype(np.int16), 15, min_size=2, criterion=crit, backend="cpu")
        b = split_merge(vol.astype(np.int16), 15, min_size=2, criterion=crit, backend="numba")
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.float32, np.float64])
def test_dtypes(backend, dtype):
    img, lab = ellipsoid_phantom((20, 24, 26), noise=3.0, dtype=np.float64)
    img = np.clip(img * 0.8, 0, None).astype(dtype)
    seg = split_merge(img, 8.0, backend=backend)
    assert ari(lab, seg) >= 0.9
    c = img.copy()
    split_merge(img, 8.0, backend=backend)
    np.testing.assert_array_equal(img, c)


def test_min_size_and_edge_cases(backend):
    img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    fine = split_merge(img, 0.0, backend=backend)
    coarse = split_merge(img, 0.0, min_size=4, backend=backend)
    assert fine.max() + 1 == img.size  # every voxel its own region (random values)
    assert coarse.max() + 1 == 16  # 4x4 blocks are never split further
    assert (split_merge(np.full((5, 7), 3, np.uint8), 0, backend=backend) == 0).all()
    for shape in [(1, 7, 5), (7, 1, 5), (7, 5, 1), (1, 1, 1)]:
        seg = split_merge(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), 0.1, backend=backend)
        assert seg.max() + 1 == np.prod(shape)


def test_bad_input(backend):
    img = np.zeros((6, 6), np.float32)
    with pytest.raises(InvalidParameterError):
        split_merge(img, -1, backend=backend)
    with pytest.raises(InvalidParameterError):
        split_merge(img, 1, min_size=0, backend=backend)
    with pytest.raises(InvalidParameterError):
        split_merge(img, 1, criterion="mean", backend=backend)
    with pytest.raises(InvalidImageError):
        split_merge(np.zeros((0, 3), np.float32), 1, backend=backend)
    bad = img.copy()
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        split_merge(bad, 1, backend=backend)


def test_cli_methods_run_on_a_phantom():
    import inspect

    from medseg_fast.region import CLI_METHODS

    img, lab = ellipsoid_phantom((16, 20, 22), noise=4.0)
    img = (img * 3).astype(np.int16)
    assert set(CLI_METHODS) == {"grow", "felzenszwalb", "split-merge", "watershed"}
    for name, entry in CLI_METHODS.items():
        sig = inspect.signature(entry["run"])
        for p in entry["params"]:
            assert p in sig.parameters, (name, p)
        out = entry["run"](img, (2.0, 1.0, 1.0))
        assert out.shape == img.shape and out.dtype.kind in "bu", name
        assert out.any(), name
    # grow with an explicit seed and range reaches the organ
    seed = tuple(int(v) for v in np.argwhere(lab == 2).mean(axis=0).round())
    g = CLI_METHODS["grow"]["run"](img, (1.0, 1.0, 1.0), seed=seed, lower=450, upper=750)
    assert 2 * (g & (lab == 2)).sum() / (g.sum() + (lab == 2).sum()) >= 0.95
