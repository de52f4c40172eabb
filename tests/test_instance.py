"""medseg_fast.instance against scipy.ndimage, cc3d, edt and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import layouts

from medseg_fast import instance
from medseg_fast._errors import EmptyImageError, InvalidImageError, InvalidParameterError

ndi = pytest.importorskip("scipy.ndimage")


def _struct(ndim, c):
    return ndi.generate_binary_structure(ndim, c)


def _blobs(shape, seed, p=0.5, sigma=1.5):
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.random(shape), sigma)
    return noise > np.quantile(noise, 1 - p)


def same_partition(a, b):
    """True when a and b are equal up to a relabelling of non-zero labels."""
    if not np.array_equal(a == 0, b == 0):
        return False
    fg = a != 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


# ------------------------------------------------------------------ label

SHAPES = [(37, 41), (9, 23, 31), (1, 12, 13), (12, 1, 13), (12, 13, 1), (1, 1, 1), (1, 17), (17, 1)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.3, 0.6])
def test_label_equals_scipy(backend, shape, p):
    rng = np.random.default_rng(abs(hash((shape, p))) % 2**32)
    mask = rng.random(shape) < p
    ndim = mask.ndim
    for c in range(1, ndim + 1):
        ref, n = ndi.label(mask, _struct(ndim, c))
        got, k = instance.label(mask, c, return_num=True, backend=backend, num_threads=1)
        assert got.dtype == np.uint32
        assert k == n
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("ndim", [2, 3])
def test_label_threads_identical_and_blobs(backend, ndim):
    shape = (160, 170) if ndim == 2 else (40, 45, 50)
    mask = _blobs(shape, 3, p=0.45)
    for c in range(1, ndim + 1):
        ref, n = ndi.label(mask, _struct(ndim, c))
        assert n > 5
        a = instance.label(mask, c, backend=backend, num_threads=1)
        b = instance.label(mask, c, backend=backend, num_threads=2)
        np.testing.assert_array_equal(a, ref)
        np.testing.assert_array_equal(b, ref)


def test_label_neighbour_counts_accepted():
    mask = _blobs((20, 22, 24), 1)
    np.testing.assert_array_equal(instance.label(mask, 26), ndi.label(mask, np.ones((3, 3, 3)))[0])
    np.testing.assert_array_equal(instance.label(mask[0], 8), ndi.label(mask[0], np.ones((3, 3)))[0])
    np.testing.assert_array_equal(instance.label(mask, 6), ndi.label(mask)[0])


def test_label_cpu_numba_agree_multilabel():
    rng = np.random.default_rng(5)
    lab = rng.integers(0, 4, (14, 15, 16)).astype(np.int32)
    for c in (1, 2, 3):
        a = instance.label(lab, c, backend="cpu")
        b = instance.label(lab, c, backend="numba")
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_label_multilabel_vs_cc3d(backend, dtype):
    cc3d = pytest.importorskip("cc3d")
    rng = np.random.default_rng(7)
    lab = (rng.integers(0, 5, (18, 19, 21)) * (_blobs((18, 19, 21), 2, p=0.7))).astype(dtype)
    if np.dtype(dtype).kind == "i":
        lab = np.where(lab == 3, -3, lab).astype(dtype)  # negative labels
    for c, cc in ((1, 6), (2, 18), (3, 26)):
        got, n = instance.label(lab, c, return_num=True, backend=backend)
        ref, nref = cc3d.connected_components(lab, connectivity=cc, return_N=True)
        assert n == nref
        assert same_partition(got, ref)
        # per label: exactly scipy's components, in raster order
        for v in np.unique(lab[lab != 0]):
            sel = lab == v
            r, _ = ndi.label(sel, _struct(3, c))
            ids = got[sel]
            _, first = np.unique(ids, return_index=True)
            order = ids[np.sort(first)]  # our ids in raster order of first voxel
            remap = np.zeros(int(got.max()) + 1, np.int64)
            remap[order] = np.arange(1, len(order) + 1)
            np.testing.assert_array_equal(remap[got] * sel, r)
            assert np.all(np.diff(order.astype(np.int64)) > 0)  # raster-order numbering


def test_label_layouts_and_not_modified(backend):
    mask = _blobs((11, 13, 17), 4).astype(np.uint16) * 3
    ref = ndi.label(mask)[0]
    for name, arr in layouts(mask).items():
        before = arr.copy()
        got = instance.label(arr, backend=backend)
        np.testing.assert_array_equal(got, ref, err_msg=name)
        np.testing.assert_array_equal(arr, before)


def test_label_background_and_out_dtype(backend):
    mask = _blobs((30, 31), 8)
    inv = instance.label(mask, background=1, backend=backend)
    np.testing.assert_array_equal(inv, ndi.label(~mask)[0])
    small = instance.label(mask, out_dtype=np.uint8, backend=backend)
    assert small.dtype == np.uint8
    np.testing.assert_array_equal(small, ndi.label(mask)[0])
    checker = np.indices((40, 40)).sum(0) % 2 == 0  # 800 isolated voxels
    with pytest.raises(InvalidParameterError, match="cannot hold"):
        instance.label(checker, out_dtype=np.uint8, backend=backend)
    assert instance.label(checker, out_dtype=np.int64).dtype == np.int64


def test_label_edge_cases(backend):
    assert instance.label(np.zeros((5, 6), bool), return_num=True, backend=backend)[1] == 0
    e, n = instance.label(np.zeros((0, 4), bool), return_num=True, backend=backend)
    assert e.shape == (0, 4) and n == 0
    full = np.ones((4, 5, 6), np.uint8)
    assert instance.label(full, return_num=True, backend=backend)[1] == 1
    with pytest.raises(InvalidImageError, match="integer"):
        instance.label(np.zeros((4, 4), np.float32))
    with pytest.raises(InvalidImageError, match="2D or 3D"):
        instance.label(np.zeros(4, bool))
    with pytest.raises(InvalidImageError, match="2D or 3D"):
        instance.label(np.zeros((2, 2, 2, 2), bool))
    with pytest.raises(InvalidParameterError, match="connectivity"):
        instance.label(np.zeros((4, 4), bool), 3)
    with pytest.raises(InvalidParameterError, match="connectivity"):
        instance.label(np.zeros((4, 4, 4), bool), 0)
    with pytest.raises(InvalidParameterError, match="background"):
        instance.label(np.zeros((4, 4), np.uint8), background=300)


def test_label_real_segmentation_every_label(shared_data):
    nib = pytest.importorskip("nibabel")
    seg = np.asanyarray(nib.load(shared_data / "totalsegmentator" / "example_seg.nii.gz").dataobj)
    assert seg.flags.f_contiguous
    labels = np.unique(seg[seg != 0])
    assert len(labels) == 41
    for c in (1, 3):
        got = instance.label(seg, c, num_threads=2)
        got_nb = instance.label(seg, c, backend="numba")
        np.testing.assert_array_equal(got, got_nb)
        for v in labels:
            sel = seg == v
            ref, n = ndi.label(sel, _struct(3, c))
            ids = got[sel]
            uniq, first = np.unique(ids, return_index=True)
            assert len(uniq) == n
            order = ids[np.sort(first)]
            remap = np.zeros(int(got.max()) + 1, np.int64)
            remap[order] = np.arange(1, n + 1)
            np.testing.assert_array_equal(remap[got] * sel, ref)
        # the binary mask of the whole body equals scipy exactly
        np.testing.assert_array_equal(instance.label(seg != 0, c), ndi.label(seg != 0, _struct(3, c))[0])


# ------------------------------------------------------------------ distance transform


def _check_edt(got, ref):
    assert got.dtype == np.float32
    scale = max(float(ref.max()), 1.0)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("shape,spacing", [((37, 41), (0.7, 1.9)), ((13, 17, 19), (2.5, 0.8, 1.1)),
                                           ((1, 15, 16), (3.0, 1.0, 0.5)), ((15, 1, 16), (1.0, 2.0, 0.5)),
                                           ((15, 16, 1), (1.0, 2.0, 0.5)), ((9, 10), None)])
def test_distance_equals_scipy(backend, shape, spacing):
    mask = _blobs(shape, 11, p=0.6, sigma=1.2)
    ref = ndi.distance_transform_edt(mask, sampling=spacing)
    got = instance.distance_transform(mask, spacing, backend=backend, num_threads=1)
    _check_edt(got, ref)
    np.testing.assert_array_equal(instance.distance_transform(mask, spacing, backend=backend, num_threads=2), got)


def test_distance_backends_identical_signed():
    mask = _blobs((21, 22, 23), 12)
    for signed in (False, True):
        a = instance.distance_transform(mask, (1.5, 0.6, 0.9), signed=signed, backend="cpu")
        b = instance.distance_transform(mask, (1.5, 0.6, 0.9), signed=signed, backend="numba")
        np.testing.assert_array_equal(a, b)
    s = instance.distance_transform(mask, (1.5, 0.6, 0.9), signed=True)
    np.testing.assert_allclose(s[mask], -ndi.distance_transform_edt(mask, sampling=(1.5, 0.6, 0.9))[mask], rtol=1e-6)
    np.testing.assert_allclose(s[~mask], ndi.distance_transform_edt(~mask, sampling=(1.5, 0.6, 0.9))[~mask],
                               rtol=1e-6)


def test_distance_vs_edt_package_and_layouts():
    edt = pytest.importorskip("edt")
    mask = _blobs((16, 18, 20), 13).astype(np.uint8) * 7
    ref = edt.edt(mask != 0, anisotropy=(2.0, 0.5, 0.75))
    for name, arr in layouts(mask).items():
        before = arr.copy()
        got = instance.distance_transform(arr, (2.0, 0.5, 0.75))
        _check_edt(got, ref)
        np.testing.assert_array_equal(arr, before, err_msg=name)


def test_distance_phantom_known_truth(backend):
    # a ball of radius 10 mm sampled at 1 x 0.5 x 0.5 mm: the centre is ~10 mm from the outside
    zz, yy, xx = np.mgrid[-12:13, -24:25, -24:25].astype(np.float64)
    r = np.sqrt(zz**2 + (yy * 0.5) ** 2 + (xx * 0.5) ** 2)
    ball = r <= 10
    d = instance.distance_transform(ball, (1.0, 0.5, 0.5), backend=backend)
    assert 10.0 <= d[12, 24, 24] <= 10.5
    inner = ball & (r < 8)
    assert np.all(np.abs(d[inner] - (10 - r[inner])) <= 0.6)


def test_distance_edge_cases(backend):
    full = np.ones((4, 5), bool)
    assert np.all(np.isinf(instance.distance_transform(full, backend=backend)))
    assert np.all(instance.distance_transform(np.zeros((4, 5), bool), backend=backend) == 0)
    assert np.all(np.isinf(instance.distance_transform(np.zeros((4, 5), bool), signed=True, backend=backend)))
    one = np.zeros((5, 5, 5), bool)
    one[2, 2, 2] = True
    assert instance.distance_transform(one, backend=backend)[2, 2, 2] == 1.0
    with pytest.raises(InvalidParameterError, match="spacing"):
        instance.distance_transform(one, (1.0, -1.0, 1.0))
    with pytest.raises(InvalidParameterError, match="spacing"):
        instance.distance_transform(one, (1.0, 1.0))
    with pytest.raises(InvalidImageError):
        instance.distance_transform(one.astype(np.float32))
    with pytest.raises(EmptyImageError):
        instance.distance_transform(np.zeros((0, 3), bool))


# ------------------------------------------------------------------ properties and utilities


def _instances(shape, seed):
    mask = _blobs(shape, seed, p=0.4, sigma=1.0)
    return ndi.label(mask)[0]


@pytest.mark.parametrize("shape", [(40, 45), (14, 15, 16), (1, 20, 21)])
def test_properties_vs_regionprops(backend, shape):
    measure = pytest.importorskip("skimage.measure")
    lab = _instances(shape, 21)
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, shape).astype(np.float32)
    sp = (1.5, 0.5, 0.75)[-lab.ndim:]
    p = instance.properties(lab, img, spacing=sp, backend=backend, num_threads=1)
    ref = measure.regionprops(lab, intensity_image=img)
    assert p["label"].tolist() == [r.label for r in ref]
    np.testing.assert_array_equal(p["voxel_count"], [r.area for r in ref])
    np.testing.assert_array_equal(p["bbox"], [r.bbox for r in ref])
    np.testing.assert_allclose(p["centroid"], [r.centroid for r in ref], rtol=1e-12)
    np.testing.assert_allclose(p["centroid_mm"], np.array([r.centroid for r in ref]) * sp, rtol=1e-12)
    np.testing.assert_allclose(p["volume_mm3"], np.array([r.area for r in ref]) * np.prod(sp))
    np.testing.assert_allclose(p["mean_intensity"], [r.intensity_mean for r in ref], rtol=1e-6)
    np.testing.assert_array_equal(p["min_intensity"], [r.intensity_min for r in ref])
    np.testing.assert_array_equal(p["max_intensity"], [r.intensity_max for r in ref])
    p2 = instance.properties(lab, img, spacing=sp, backend=backend, num_threads=2)
    for k in p:
        np.testing.assert_array_equal(p[k], p2[k])


def test_properties_backends_layouts_dtypes():
    lab = _instances((12, 13, 14), 22)
    img = np.random.default_rng(1).integers(-500, 1500, lab.shape).astype(np.int16)
    ref = instance.properties(lab, img, backend="cpu")
    nb = instance.properties(lab, img, backend="numba")
    for k in ref:
        np.testing.assert_array_equal(ref[k], nb[k], err_msg=k)
    for dt in (np.uint8, np.uint16, np.int32, np.int64):
        for name, arr in layouts(lab.astype(dt)).items():
            got = instance.properties(arr, layouts(img)[name] if name in layouts(img) else img)
            for k in ref:
                np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{dt} {name} {k}")
    big = lab.astype(np.int64) * 10**9  # sparse label values: compacted first
    pb = instance.properties(big)
    np.testing.assert_array_equal(pb["label"], ref["label"].astype(np.int64) * 10**9)
    np.testing.assert_array_equal(pb["voxel_count"], ref["voxel_count"])
    with pytest.raises(InvalidImageError, match="negative"):
        instance.properties(-lab.astype(np.int32))
    with pytest.raises(InvalidImageError, match="shape"):
        instance.properties(lab, img[:-1])


def test_remove_small_keep_largest_relabel(backend):
    morphology = pytest.importorskip("skimage.morphology")
    mask = _blobs((30, 32, 34), 23, p=0.3, sigma=1.0)
    for c in (1, 3):
        got = instance.remove_small(mask, 20, connectivity=c, backend=backend)
        ref = morphology.remove_small_objects(mask, max_size=19, connectivity=c)
        np.testing.assert_array_equal(got, ref)
    lab, n = ndi.label(mask)
    sizes = np.bincount(lab.ravel())
    got = instance.remove_small(lab.astype(np.uint16), 20, backend=backend)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.where(sizes[lab] >= 20, lab, 0))
    # in mm^3
    got_mm = instance.remove_small(lab, 20 * 0.5, spacing=(0.5, 1.0, 1.0), backend=backend)
    np.testing.assert_array_equal(got_mm, np.where(sizes[lab] >= 20, lab, 0))
    # keep_largest
    sizes[0] = 0
    order = np.argsort(-sizes, kind="stable")
    np.testing.assert_array_equal(instance.keep_largest(mask, backend=backend), lab == order[0])
    np.testing.assert_array_equal(instance.keep_largest(mask, 3, backend=backend), np.isin(lab, order[:3]))
    assert not instance.keep_largest(np.zeros((4, 4), bool), backend=backend).any()
    # relabel_sequential vs skimage
    segmentation = pytest.importorskip("skimage.segmentation")
    sparse = (lab * 7).astype(np.int32)
    out, values = instance.relabel_sequential(sparse, backend=backend)
    ref, fw, inv = segmentation.relabel_sequential(sparse)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(values, np.unique(sparse[sparse != 0]))
    with pytest.raises(InvalidParameterError):
        instance.remove_small(mask, -1)
    with pytest.raises(InvalidParameterError):
        instance.keep_largest(mask, 0)


# ------------------------------------------------------------------ split


def _touching_phantom(shape, spacing, n, rmin, rmax, seed):
    """Balls (disks) with known labels, many of them touching or overlapping slightly."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s) * d for s, d in zip(shape, spacing)], indexing="ij")
    truth = np.zeros(shape, np.int32)
    placed = []
    tries = 0
    while len(placed) < n and tries < 20000:
        tries += 1
        r = rng.uniform(rmin, rmax)
        c = np.array([rng.uniform(r, s * d - r) for s, d in zip(shape, spacing)])
        dists = [np.linalg.norm(c - c2) / (r + r2) for c2, r2 in placed]
        if dists and min(dists) < 0.85:
            continue  # too much overlap
        if dists and min(dists) > 1.05 and rng.random() < 0.8:
            continue  # prefer touching placements
        placed.append((c, r))
        ball = sum((g - ci) ** 2 for g, ci in zip(grids, c)) <= r * r
        truth[ball & (truth == 0)] = len(placed)
    touching = sum(1 for i, (c, r) in enumerate(placed)
                   if any(np.linalg.norm(c - c2) <= (r + r2) for j, (c2, r2) in enumerate(placed) if i != j))
    return truth, touching


def _matched_fraction(truth, lab):
    ok = 0
    n = int(truth.max())
    for i in range(1, n + 1):
        t = truth == i
        ids, cnt = np.unique(lab[t], return_counts=True)
        best = max((c / np.sum(t | (lab == j)) for j, c in zip(ids, cnt) if j != 0), default=0.0)
        ok += best >= 0.5
    return ok / n


@pytest.mark.parametrize("shape,spacing,r", [((160, 170), (1.0, 1.0), (7, 12)),
                                             ((40, 70, 72), (2.0, 1.0, 1.0), (6, 10))])
def test_split_touching_phantom(backend, shape, spacing, r):
    pytest.importorskip("medseg_fast.region")
    truth, touching = _touching_phantom(shape, spacing, 20 if len(shape) == 2 else 12, *r, seed=3)
    mask = truth > 0
    assert touching >= 4  # the phantom really has touching objects
    n_cc = ndi.label(mask)[1]
    assert n_cc < truth.max()  # connected components alone do not separate them
    lab = instance.split(mask, spacing, min_distance=0.8 * r[0], backend=backend)
    assert lab.dtype == np.uint32
    assert np.array_equal(lab > 0, mask)
    assert _matched_fraction(truth, lab) >= 0.9
    again = instance.split(mask, spacing, min_distance=0.8 * r[0], backend=backend, num_threads=2)
    np.testing.assert_array_equal(again, lab)


def test_split_backends_agree_and_edge_cases():
    pytest.importorskip("medseg_fast.region")
    truth, _ = _touching_phantom((60, 64), (1.0, 1.0), 6, 6, 9, seed=4)
    a = instance.split(truth > 0, backend="cpu")
    b = instance.split(truth > 0, backend="numba")
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(instance.split(np.asfortranarray(truth > 0)), a)
    assert not instance.split(np.zeros((8, 9), bool)).any()
    tiny = np.zeros((9, 9), bool)
    tiny[4, 4] = True
    # a one-voxel object has no marker above min_radius but is kept
    assert instance.split(tiny, min_radius=5.0)[4, 4] == 1
    with pytest.raises(InvalidParameterError, match="min_distance"):
        instance.split(tiny, min_distance=0)
    with pytest.raises(InvalidParameterError, match="min_radius"):
        instance.split(tiny, min_radius=-1)


def test_cli_methods():
    methods = instance.CLI_METHODS
    assert {"components", "split"} <= set(methods)
    img = np.zeros((20, 30), np.float32)
    img[2:6, 2:6] = 1
    img[10:15, 10:25] = 1
    lab = methods["components"]["run"](img, (1.0, 1.0), threshold=0.5, connectivity=1, min_size=17.0)
    assert lab.shape == img.shape and lab.max() == 1 and lab[12, 12] == 1
    lab = methods["split"]["run"](img, (1.0, 1.0), threshold=0.5)
    assert lab.shape == img.shape and lab.max() >= 2
    for m in methods.values():
        assert callable(m["run"]) and isinstance(m["help"], str)
        for name, (typ, default, helptext) in m["params"].items():
            assert isinstance(default, typ) and helptext
