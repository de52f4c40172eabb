"""Benchmarks of medseg_fast.instance against cc3d, scipy.ndimage, edt and scikit-image.

Run: pytest benchmarks/bench_instance.py --benchmark-only  (pytest-benchmark groups pair
our function with the references on the same input; correctness is asserted inside).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from medseg_fast import instance

ndi = pytest.importorskip("scipy.ndimage")

N = 256
SPACING = (2.5, 0.8, 0.8)


@functools.lru_cache(maxsize=None)
def sparse_mask():
    """~1% foreground blobs in 256^3."""
    rng = np.random.default_rng(0)
    f = ndi.gaussian_filter(rng.random((N, N, N), np.float32), 3)
    return f > np.quantile(f, 0.99)


@functools.lru_cache(maxsize=None)
def noisy_mask():
    """30% uniform noise in 256^3 (many tiny components)."""
    return np.random.default_rng(1).random((N, N, N), np.float32) < 0.3


@functools.lru_cache(maxsize=None)
def blob_mask():
    rng = np.random.default_rng(2)
    f = ndi.gaussian_filter(rng.random((N, N, N), np.float32), 2)
    return f > 0.5


@functools.lru_cache(maxsize=None)
def many_instances():
    """About 10,000 instances in 256^3 and an intensity image."""
    rng = np.random.default_rng(3)
    f = ndi.gaussian_filter(rng.random((N, N, N), np.float32), 1.2)
    lab, n = ndi.label(f > np.quantile(f, 0.9))
    img = rng.normal(0, 100, lab.shape).astype(np.float32)
    return lab.astype(np.int32), n, img


MASKS = {"sparse": sparse_mask, "noisy": noisy_mask}


@pytest.mark.parametrize("which", list(MASKS))
def test_label_ours(benchmark, which):
    mask = MASKS[which]()
    benchmark.group = f"label 256^3 26-conn {which}"
    out = benchmark(instance.label, mask, 3)
    ref = ndi.label(mask, np.ones((3, 3, 3)))[0]
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("which", list(MASKS))
def test_label_cc3d(benchmark, which):
    cc3d = pytest.importorskip("cc3d")
    mask = MASKS[which]()
    benchmark.group = f"label 256^3 26-conn {which}"
    out = benchmark(cc3d.connected_components, mask, connectivity=26)
    assert out.max() == instance.label(mask, 3).max()


@pytest.mark.parametrize("which", list(MASKS))
def test_label_scipy(benchmark, which):
    mask = MASKS[which]()
    benchmark.group = f"label 256^3 26-conn {which}"
    benchmark.pedantic(ndi.label, args=(mask, np.ones((3, 3, 3))), rounds=2, iterations=1)


def test_edt_ours(benchmark):
    mask = blob_mask()
    benchmark.group = "distance_transform 256^3 anisotropic"
    out = benchmark(instance.distance_transform, mask, SPACING)
    edt = pytest.importorskip("edt")
    np.testing.assert_allclose(out, edt.edt(mask, anisotropy=SPACING), rtol=1e-5, atol=1e-4)


def test_edt_edt(benchmark):
    edt = pytest.importorskip("edt")
    mask = blob_mask()
    benchmark.group = "distance_transform 256^3 anisotropic"
    benchmark(edt.edt, mask, anisotropy=SPACING)


def test_edt_scipy(benchmark):
    mask = blob_mask()
    benchmark.group = "distance_transform 256^3 anisotropic"
    benchmark.pedantic(ndi.distance_transform_edt, args=(mask,), kwargs={"sampling": SPACING}, rounds=1,
                       iterations=1)


def test_properties_ours(benchmark):
    lab, n, img = many_instances()
    benchmark.group = "properties 256^3 ~10k instances"
    p = benchmark(instance.properties, lab, img)
    assert len(p["label"]) == n


def test_properties_skimage(benchmark):
    measure = pytest.importorskip("skimage.measure")
    lab, n, img = many_instances()
    benchmark.group = "properties 256^3 ~10k instances"

    def run():
        props = measure.regionprops(lab, intensity_image=img)
        return [(r.area, r.bbox, r.centroid, r.intensity_mean, r.intensity_min, r.intensity_max) for r in props]

    rows = benchmark.pedantic(run, rounds=1, iterations=1)
    assert len(rows) == n
