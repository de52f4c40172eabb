"""medseg_fast.metrics against MedPy, DeepMind's surface-distance and numpy/scipy oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import layouts

from medseg_fast import metrics
from medseg_fast._errors import EmptyImageError, InvalidImageError, InvalidParameterError

ndi = pytest.importorskip("scipy.ndimage")


def _blob(shape, seed, p=0.3, sigma=2.0):
    rng = np.random.default_rng(seed)
    f = ndi.gaussian_filter(rng.random(shape), sigma)
    return f > np.quantile(f, 1 - p)


def _pair(shape, seed):
    a = _blob(shape, seed)
    b = ndi.binary_dilation(a, iterations=1) & ~_blob(shape, seed + 100, p=0.05, sigma=1.0)
    return a, b


def _oracle_surface(m):
    """MedPy's surface: mask minus its cross erosion with a background border."""
    return m & ~ndi.binary_erosion(m, ndi.generate_binary_structure(m.ndim, 1), border_value=0)


def _oracle_directed(a, b, sp):
    sa, sb = _oracle_surface(a), _oracle_surface(b)
    dtb = ndi.distance_transform_edt(~sb, sampling=sp)
    dta = ndi.distance_transform_edt(~sa, sampling=sp)
    return dtb[sa], dta[sb]


CASES = [((40, 44), (0.7, 1.3)), ((18, 20, 22), (2.5, 0.8, 0.9)), ((1, 24, 25), (3.0, 1.0, 1.0)),
         ((20, 1, 22), (1.0, 1.0, 2.0))]


@pytest.mark.parametrize("shape,sp", CASES)
def test_overlap_metrics(backend, shape, sp):
    a, b = _pair(shape, 1)
    inter, na, nb = np.sum(a & b), a.sum(), b.sum()
    assert metrics.dice(a, b, backend=backend) == pytest.approx(2 * inter / (na + nb), rel=1e-15)
    assert metrics.jaccard(a, b, backend=backend) == pytest.approx(inter / np.sum(a | b), rel=1e-15)
    assert metrics.precision(a, b, backend=backend) == pytest.approx(inter / na, rel=1e-15)
    assert metrics.recall(a, b, backend=backend) == pytest.approx(inter / nb, rel=1e-15)
    assert metrics.volume_similarity(a, b, backend=backend) == pytest.approx(1 - abs(na - nb) / (na + nb))


@pytest.mark.parametrize("shape,sp", CASES)
def test_surface_metrics_vs_oracle_and_medpy(backend, shape, sp):
    a, b = _pair(shape, 2)
    d_ab, d_ba = _oracle_directed(a, b, sp)
    hd = max(d_ab.max(), d_ba.max())
    got_hd = metrics.hausdorff(a, b, spacing=sp, backend=backend)
    assert got_hd == pytest.approx(hd, rel=1e-6)
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    assert metrics.hausdorff(a, b, 95, sp, backend=backend) == pytest.approx(hd95, rel=1e-6)
    assd = np.concatenate([d_ab, d_ba]).mean()
    assert metrics.average_surface_distance(a, b, sp, backend=backend) == pytest.approx(assd, rel=1e-6)
    for tol in (0.0, 1.0, 2.5):
        sdice = (np.sum(d_ab <= tol + 1e-6) + np.sum(d_ba <= tol + 1e-6)) / (d_ab.size + d_ba.size)
        assert metrics.surface_dice(a, b, tol, sp, backend=backend) == pytest.approx(sdice, abs=1e-12)
    binary = pytest.importorskip("medpy.metric.binary")
    assert got_hd == pytest.approx(binary.hd(a, b, voxelspacing=sp), rel=1e-6)
    assert metrics.average_surface_distance(a, b, sp, backend=backend) == pytest.approx(
        binary.assd(a, b, voxelspacing=sp), rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_vs_deepmind_within_voxel_diagonal():
    sd = pytest.importorskip("surface_distance")
    sp = (2.0, 0.8, 0.9)
    diag = math.sqrt(sum(s * s for s in sp))
    for seed in (3, 4):
        a, b = _pair((22, 24, 26), seed)
        ref = sd.compute_surface_distances(b, a, sp)  # gt, pred
        hd_ref = sd.compute_robust_hausdorff(ref, 100)
        hd95_ref = sd.compute_robust_hausdorff(ref, 95)
        assd_ref = np.mean(sd.compute_average_surface_distance(ref))
        hd = metrics.hausdorff(a, b, spacing=sp)
        assert abs(hd - hd_ref) <= diag
        assert abs(metrics.hausdorff(a, b, 95, sp) - hd95_ref) <= diag
        assert abs(metrics.average_surface_distance(a, b, sp) - assd_ref) <= diag / 2
        # surface Dice at t is bracketed by ours at t -/+ one diagonal (slack for area weighting)
        for tol in (1.0, 2.0, 4.0):
            ref_sd = sd.compute_surface_dice_at_tolerance(ref, tol)
            lo = metrics.surface_dice(a, b, max(tol - diag, 0.0), sp)
            hi = metrics.surface_dice(a, b, tol + diag, sp)
            assert lo - 0.05 <= ref_sd <= hi + 0.05


def test_empty_conventions(backend):
    e = np.zeros((6, 7), bool)
    m = e.copy()
    m[2:4, 2:5] = True
    assert metrics.dice(e, e, backend=backend) == 1.0
    assert metrics.jaccard(e, e, backend=backend) == 1.0
    assert metrics.dice(e, m, backend=backend) == 0.0
    assert math.isnan(metrics.precision(e, m, backend=backend))
    assert metrics.precision(m, e, backend=backend) == 0.0
    assert math.isnan(metrics.recall(m, e, backend=backend))
    assert math.isnan(metrics.hausdorff(e, e, backend=backend))
    assert metrics.hausdorff(e, m, backend=backend) == math.inf
    assert metrics.hausdorff(m, e, 95, backend=backend) == math.inf
    assert math.isnan(metrics.average_surface_distance(e, e, backend=backend))
    assert metrics.surface_dice(e, e, 1.0, backend=backend) == 1.0
    assert metrics.surface_dice(m, e, 1.0, backend=backend) == 0.0
    assert metrics.hausdorff(m, m, backend=backend) == 0.0


def test_backends_threads_layouts_identical():
    a, b = _pair((20, 21, 22), 5)
    sp = (1.5, 0.7, 0.8)
    ref = metrics.hausdorff(a, b, 95, sp, backend="cpu", num_threads=1)
    assert metrics.hausdorff(a, b, 95, sp, backend="cpu", num_threads=2) == ref
    assert metrics.hausdorff(a, b, 95, sp, backend="numba") == ref
    assd = metrics.average_surface_distance(a, b, sp, backend="cpu")
    assert metrics.average_surface_distance(a, b, sp, backend="numba") == assd
    la, lb = layouts(a.astype(np.uint8)), layouts(b.astype(np.int16) * 3)
    for name in la:
        before = la[name].copy()
        assert metrics.hausdorff(la[name], lb.get(name, lb["C"]), 95, sp) == pytest.approx(ref, rel=1e-6)
        assert metrics.average_surface_distance(la[name], lb.get(name, lb["C"]), sp) == pytest.approx(assd, rel=1e-6)
        np.testing.assert_array_equal(la[name], before)


def test_bad_input():
    a = np.zeros((5, 5), bool)
    with pytest.raises(InvalidImageError, match="shape"):
        metrics.dice(a, np.zeros((5, 6), bool))
    with pytest.raises(InvalidImageError, match="float32"):
        metrics.hausdorff(a.astype(np.float32), a)
    with pytest.raises(InvalidParameterError, match="spacing"):
        metrics.hausdorff(a, a, spacing=(1.0, -2.0))
    with pytest.raises(InvalidParameterError, match="percentile"):
        metrics.hausdorff(a, a, 101)
    with pytest.raises(InvalidParameterError, match="tolerance"):
        metrics.surface_dice(a, a, -1)
    with pytest.raises(EmptyImageError):
        metrics.dice(np.zeros((0, 3), bool), np.zeros((0, 3), bool))
    with pytest.raises(InvalidImageError, match="2D or 3D"):
        metrics.dice(np.zeros(5, bool), np.zeros(5, bool))
    with pytest.raises(InvalidImageError, match="negative"):
        metrics.evaluate(-np.ones((3, 3), np.int8), np.ones((3, 3), np.int8))
    with pytest.raises(InvalidImageError, match="integer"):
        metrics.evaluate(np.ones((3, 3), np.float32), np.ones((3, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_evaluate_matches_single_metrics(backend, dtype):
    rng = np.random.default_rng(6)
    shape = (16, 18, 20)
    truth = np.zeros(shape, dtype)
    for v in (1, 2, 3, 7):
        truth[_blob(shape, int(rng.integers(1000)), p=0.12)] = v
    pred = np.roll(truth, 1, axis=2)
    pred[pred == 3] = 0  # label 3 missing in pred
    pred[0, 0, 0] = 9  # label 9 only in pred
    sp = (2.0, 0.9, 0.8)
    t = metrics.evaluate(pred, truth, spacing=sp, backend=backend)
    assert t["label"].tolist() == [1, 2, 3, 7, 9]
    for i, v in enumerate(t["label"]):
        a, b = pred == v, truth == v
        assert t["dice"][i] == metrics.dice(a, b)
        assert t["precision"][i] == metrics.precision(a, b) or (math.isnan(t["precision"][i]))
        hd = metrics.hausdorff(a, b, spacing=sp)
        assert t["hausdorff"][i] == hd
        assert t["hausdorff_percentile"][i] == metrics.hausdorff(a, b, 95, sp)
        assd = metrics.average_surface_distance(a, b, sp)
        assert t["assd"][i] == assd or (math.isinf(assd) and math.isinf(t["assd"][i]))
        assert t["surface_dice"][i] == metrics.surface_dice(a, b, 1.0, sp)
        assert t["volume_pred_mm3"][i] == pytest.approx(a.sum() * np.prod(sp))
        assert t["pred_empty"][i] == (not a.any()) and t["truth_empty"][i] == (not b.any())
    assert t["hausdorff"][2] == math.inf and t["pred_empty"][2]
    sub = metrics.evaluate(pred, truth, labels=[2, 5], spacing=sp, backend=backend)
    assert sub["label"].tolist() == [2, 5]
    assert sub["dice"][1] == 1.0 and math.isnan(sub["hausdorff"][1])
    t2 = metrics.evaluate(pred[5], truth[5], spacing=sp[1:], backend=backend)  # 2D
    i = t2["label"].tolist().index(1)
    assert t2["hausdorff"][i] == metrics.hausdorff(pred[5] == 1, truth[5] == 1, spacing=sp[1:])


def test_real_segmentation_shifted_by_one_voxel(shared_data):
    nib = pytest.importorskip("nibabel")
    img = nib.load(shared_data / "totalsegmentator" / "example_seg.nii.gz")
    seg = np.asanyarray(img.dataobj)
    sp = tuple(float(z) for z in img.header.get_zooms()[:3])
    shifted = np.zeros_like(seg)
    shifted[1:] = seg[:-1]  # one voxel along the first axis (3 mm)
    t = metrics.evaluate(shifted, seg, spacing=sp, num_threads=2)
    assert len(t["label"]) == 41
    binary = pytest.importorskip("medpy.metric.binary")
    for i, v in enumerate(t["label"]):
        a, b = shifted == v, seg == v
        inter = np.sum(a & b)
        assert t["dice"][i] == pytest.approx(2 * inter / (a.sum() + b.sum()), rel=1e-12)
        if i % 6 == 0:  # the full-volume references are slow: every 6th label
            d_ab, d_ba = _oracle_directed(a, b, sp)
            assert t["hausdorff_percentile"][i] == pytest.approx(
                max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), rel=1e-6)
            assert t["hausdorff"][i] == pytest.approx(binary.hd(a, b, voxelspacing=sp), rel=1e-6)
        # a 3 mm shift: no surface point moves further than the shift
        assert t["hausdorff_percentile"][i] <= 3.0 + 1e-6
    nb = metrics.evaluate(shifted, seg, spacing=sp, backend="numba")
    for k in t:
        np.testing.assert_array_equal(nb[k], t[k], err_msg=k)
