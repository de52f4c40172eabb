"""medseg_fast.panoptic: encoding round trips, combine on phantoms, PQ against a direct implementation."""

from __future__ import annotations

import numpy as np
import pytest

from medseg_fast import panoptic
from medseg_fast._errors import InvalidImageError, InvalidParameterError

ndi = pytest.importorskip("scipy.ndimage")


def _scene(shape, seed):
    """Semantic map: stuff class 1 (a slab), thing class 2 (several blobs), thing 3 (blobs)."""
    rng = np.random.default_rng(seed)
    sem = np.zeros(shape, np.uint8)
    sem[..., : shape[-1] // 4] = 1
    for cls, p in ((2, 0.08), (3, 0.05)):
        f = ndi.gaussian_filter(rng.random(shape), 1.5)
        sem[(f > np.quantile(f, 1 - p)) & (sem == 0)] = cls
    return sem


@pytest.mark.parametrize("shape", [(60, 64), (14, 30, 32)])
def test_combine_components_and_decode(backend, shape):
    sem = _scene(shape, 1)
    pan = panoptic.combine(sem, thing_classes=[2, 3], backend=backend)
    assert pan.dtype == np.uint32
    s, inst = panoptic.decode(pan)
    np.testing.assert_array_equal(s, sem)
    assert np.all(inst[sem == 1] == 0) and np.all(inst[sem == 0] == 0)
    for cls in (2, 3):
        ref, n = ndi.label(sem == cls)
        got = inst * (sem == cls)
        assert got.max() == n
        # per class numbering in raster order: equals scipy's per-class labelling
        np.testing.assert_array_equal(got, ref)


def test_combine_with_instances_and_split():
    sem = np.zeros((20, 40), np.uint8)
    sem[:, :5] = 1
    sem[5:15, 10:30] = 2
    inst = np.zeros_like(sem, dtype=np.int32)
    inst[5:15, 10:20] = 70
    inst[5:15, 20:30] = 9
    pan = panoptic.combine(sem, inst, thing_classes=[2])
    assert set(np.unique(pan).tolist()) == {0, 1000, 2001, 2002}
    assert pan[6, 11] == 2001 and pan[6, 25] == 2002  # raster order of first voxel
    # two touching disks in one thing class: split separates them
    pytest.importorskip("medseg_fast.region")
    yy, xx = np.mgrid[:30, :50]
    disks = ((yy - 15) ** 2 + (xx - 15) ** 2 < 100) | ((yy - 15) ** 2 + (xx - 33) ** 2 < 100)
    sem2 = disks.astype(np.uint8) * 4
    assert panoptic.combine(sem2, thing_classes=[4]).max() == 4001
    assert panoptic.combine(sem2, thing_classes=[4], split=True, min_distance=6).max() == 4002


def test_offset_and_errors():
    sem = np.zeros((3, 3000), np.uint8)
    sem[1, ::2] = 2  # 1500 isolated instances
    with pytest.raises(InvalidParameterError, match="offset"):
        panoptic.combine(sem, thing_classes=[2])
    pan = panoptic.combine(sem, thing_classes=[2], offset=10000)
    assert pan.max() == 2 * 10000 + 1500
    with pytest.raises(InvalidImageError):
        panoptic.combine(np.zeros((3, 3), np.float32))
    with pytest.raises(InvalidImageError, match="shape"):
        panoptic.combine(sem, np.zeros((2, 2), np.int32), thing_classes=[2])
    with pytest.raises(InvalidParameterError):
        panoptic.decode(pan, offset=1)


def _pq_reference(pred, truth, offset=1000):
    """Direct PQ from the definition (Kirillov et al. 2019), void = 0, loops over segment pairs."""
    res = {}
    psegs = [v for v in np.unique(pred) if v != 0]
    tsegs = [v for v in np.unique(truth) if v != 0]
    matched_p, matched_t = set(), set()
    for t in tsegs:
        for p in psegs:
            if p // offset != t // offset:
                continue
            a, b = pred == p, truth == t
            inter = np.sum(a & b)
            union = np.sum(a | b) - np.sum(a & (truth == 0))
            if inter / union > 0.5:
                c = int(t // offset)
                r = res.setdefault(c, [0, 0, 0, 0.0])
                r[0] += 1
                r[3] += inter / union
                matched_p.add(p)
                matched_t.add(t)
    for t in tsegs:
        if t not in matched_t:
            res.setdefault(int(t // offset), [0, 0, 0, 0.0])[2] += 1
    for p in psegs:
        if p not in matched_p:
            a = pred == p
            if np.sum(a & (truth == 0)) / a.sum() > 0.5:
                continue
            res.setdefault(int(p // offset), [0, 0, 0, 0.0])[1] += 1
    return res


@pytest.mark.parametrize("shape", [(50, 60), (12, 24, 26)])
def test_quality_vs_reference(shape):
    sem = _scene(shape, 2)
    truth = panoptic.combine(sem, thing_classes=[2, 3])
    rng = np.random.default_rng(3)
    pred_sem = np.roll(sem, 1, axis=-1)
    pred_sem[rng.random(shape) < 0.02] = 0
    pred = panoptic.combine(pred_sem, thing_classes=[2, 3])
    r = panoptic.quality(pred, truth, thing_classes=[2, 3])
    ref = _pq_reference(pred, truth)
    per = r["per_class"]
    assert per["class"].tolist() == sorted(ref)
    for i, c in enumerate(per["class"]):
        tp, fp, fn, iou = ref[c]
        assert (per["tp"][i], per["fp"][i], per["fn"][i]) == (tp, fp, fn)
        den = tp + 0.5 * fp + 0.5 * fn
        assert per["pq"][i] == pytest.approx(iou / den)
        assert per["sq"][i] == pytest.approx(iou / tp if tp else 0.0)
        assert per["pq"][i] == pytest.approx(per["sq"][i] * per["rq"][i])
    assert r["all"]["pq"] == pytest.approx(np.mean(per["pq"]))
    assert r["things"]["n"] == 2 and r["stuff"]["n"] == 1
    perfect = panoptic.quality(truth, truth)
    assert perfect["all"]["pq"] == 1.0 and perfect["all"]["fp"] == 0 and perfect["all"]["fn"] == 0


def test_quality_void_and_empty():
    t = np.zeros((4, 10), np.uint32)
    t[:, :5] = 1001
    p = np.zeros_like(t)
    p[:, :5] = 1001
    p[:, 6:] = 1002  # lies entirely in void: not a false positive
    r = panoptic.quality(p, t)
    assert r["all"]["fp"] == 0 and r["all"]["pq"] == 1.0
    e = panoptic.quality(np.zeros((3, 3), np.uint32), np.zeros((3, 3), np.uint32))
    assert e["all"]["n"] == 0 and np.isnan(e["all"]["pq"])
    with pytest.raises(InvalidImageError, match="shape"):
        panoptic.quality(p, t[:2])
