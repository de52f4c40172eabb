"""Benchmarks of medseg_fast.metrics against DeepMind's surface-distance and MedPy.

Run: pytest benchmarks/bench_metrics.py --benchmark-only
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from medseg_fast import metrics

ndi = pytest.importorskip("scipy.ndimage")

N = 256
SPACING = (2.5, 0.8, 0.8)


@functools.lru_cache(maxsize=None)
def liver_pair():
    """Two liver-sized (~1.5 l at this spacing) irregular masks in 256^3, offset by a few voxels."""
    z, y, x = np.ogrid[:N, :N, :N]
    rng = np.random.default_rng(0)
    bump = ndi.gaussian_filter(rng.random((N, N, N), np.float32), 6) - 0.5
    r = ((z - 128) / 45.0) ** 2 + ((y - 120) / 85.0) ** 2 + ((x - 130) / 95.0) ** 2
    a = r + 8 * bump < 1
    r2 = ((z - 130) / 44.0) ** 2 + ((y - 123) / 86.0) ** 2 + ((x - 127) / 93.0) ** 2
    b = r2 + 8 * np.roll(bump, 3, axis=2) < 1
    return a, b


@functools.lru_cache(maxsize=None)
def label_maps(n_labels=40):
    """A label map in 256^3 (40 Voronoi seeds, organs inside a body) and a copy shifted by 2 voxels."""
    rng = np.random.default_rng(1)
    seeds = rng.integers(0, N, (n_labels, 3))
    z, y, x = np.ogrid[:N, :N, :N]
    body = ((z - 128) / 120.0) ** 2 + ((y - 128) / 110.0) ** 2 + ((x - 128) / 120.0) ** 2 < 1
    truth = np.zeros((N, N, N), np.uint8)
    best = np.full((N, N, N), np.inf, np.float32)
    for i, (a, b, c) in enumerate(seeds, start=1):
        d = ((z - a) * 2.5) ** 2 + ((y - b) * 0.8) ** 2 + ((x - c) * 0.8) ** 2
        closer = d < best
        best = np.where(closer, d, best)
        truth[closer] = i
    truth[~body] = 0
    pred = np.roll(truth, 2, axis=1)
    return pred, truth


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hd95_ours(benchmark):
    a, b = liver_pair()
    benchmark.group = "hausdorff95 liver 256^3 anisotropic"
    hd = benchmark(metrics.hausdorff, a, b, 95, SPACING)
    sd = pytest.importorskip("surface_distance")
    ref = sd.compute_robust_hausdorff(sd.compute_surface_distances(b, a, SPACING), 95)
    assert abs(hd - ref) <= np.sqrt(np.sum(np.square(SPACING)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_hd95_surface_distance(benchmark):
    sd = pytest.importorskip("surface_distance")
    a, b = liver_pair()
    benchmark.group = "hausdorff95 liver 256^3 anisotropic"
    benchmark.pedantic(lambda: sd.compute_robust_hausdorff(sd.compute_surface_distances(b, a, SPACING), 95),
                       rounds=1, iterations=1)


def test_hd95_medpy(benchmark):
    binary = pytest.importorskip("medpy.metric.binary")
    a, b = liver_pair()
    benchmark.group = "hausdorff95 liver 256^3 anisotropic"
    benchmark.pedantic(binary.hd95, args=(a, b), kwargs={"voxelspacing": SPACING}, rounds=1, iterations=1)


def test_evaluate_40_labels(benchmark):
    pred, truth = label_maps()
    benchmark.group = "evaluate ~40 labels 256^3"
    t = benchmark.pedantic(metrics.evaluate, args=(pred, truth), kwargs={"spacing": SPACING}, rounds=2, iterations=1)
    present = np.union1d(np.unique(pred), np.unique(truth))
    assert len(t["label"]) == len(present[present != 0]) >= 30
    i = 7
    v = t["label"][i]
    assert t["dice"][i] == metrics.dice(pred == v, truth == v)
