"""medseg_fast.semantic: class maps from thresholds, multi-Otsu classes and CT
tissues (phantoms with known truth, TotalSegmentator's example CT)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import ellipsoid_phantom, layouts

from medseg_fast import semantic as S
from medseg_fast import threshold as T
from medseg_fast._errors import EmptyImageError, InvalidParameterError, NonFiniteError


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# ---------------------------------------------------------------- classify


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_classify_vs_searchsorted(dtype, backend):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 120, (6, 9, 11)).astype(dtype)
    t = [10, 10, 40.5, 99]
    ref = np.searchsorted(np.asarray(t, np.float64), img.astype(np.float64), side="left")
    out = S.classify(img, t, backend=backend)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)
    # equal to a threshold stays in the lower class (image > t is the upper one)
    assert S.classify(np.array([[10, 11]], dtype), [10], backend=backend).tolist() == [[0, 1]]
    for name, v in layouts(img).items():
        np.testing.assert_array_equal(S.classify(v, t, backend=backend), ref, err_msg=name)


def test_classify_mask_many_classes_threads(backend):
    img = np.arange(600, dtype=np.float32).reshape(20, 30)
    m = img % 3 != 0
    out = S.classify(img, [100, 300], mask=m, backend=backend)
    np.testing.assert_array_equal(out, np.where(m, np.searchsorted([100, 300], img, side="left") + 1, 0))
    t = np.arange(0.5, 300.5)  # 300 thresholds -> uint16
    out = S.classify(img, t, backend=backend, num_threads=1)
    assert out.dtype == np.uint16 and out.max() == 300
    np.testing.assert_array_equal(out, S.classify(img, t, backend=backend, num_threads=2))


def test_classify_bad_input(backend):
    img = np.zeros((4, 4), np.float32)
    with pytest.raises(InvalidParameterError, match="sorted"):
        S.classify(img, [5, 1], backend=backend)
    with pytest.raises(InvalidParameterError):
        S.classify(img, [], backend=backend)
    with pytest.raises(InvalidParameterError):
        S.classify(img, [np.nan], backend=backend)
    img[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        S.classify(img, [1.0], backend=backend)
    # regression: non-numeric thresholds leaked numpy's ValueError / TypeError
    for bad in (["a"], "abc", [1j], [[1, 2], [3]]):
        with pytest.raises(InvalidParameterError, match="numbers"):
            S.classify(np.zeros((4, 4), np.float32), bad, backend=backend)


def test_classify_threshold_count_limit(backend):
    # regression: 65535 thresholds passed the check, then the mask's extra class made the
    # binding raise a plain ValueError
    img = np.arange(70000, dtype=np.float64).reshape(70, 1000)
    m = np.ones(img.shape, bool)
    m[0, :10] = False
    t = np.arange(0.5, 65535.5)
    out = S.classify(img, t, backend=backend)
    assert out.dtype == np.uint16 and out.max() == 65535
    with pytest.raises(InvalidParameterError, match="65534 thresholds are supported with a mask"):
        S.classify(img, t, mask=m, backend=backend)
    out = S.classify(img, t[:-1], mask=m, backend=backend)
    assert out.dtype == np.uint16 and out.max() == 65535 and out[0, 0] == 0 and out[0, 10] == 11
    with pytest.raises(InvalidParameterError, match="65535 thresholds"):
        S.classify(img, np.arange(65536.0), backend=backend)


# ---------------------------------------------------------------- multi-Otsu classes


@pytest.mark.parametrize("shape", [(48, 56), (24, 28, 32)])
def test_multiotsu_classes_phantom(shape, backend):
    skf = pytest.importorskip("skimage.filters")
    img, labels = ellipsoid_phantom(shape, seed=3, noise=12.0)
    out = S.multiotsu_classes(img, 4, backend=backend)
    assert out.dtype == np.uint8 and out.shape == img.shape
    ref_t = skf.threshold_multiotsu(img, 4)
    np.testing.assert_array_equal(out, np.searchsorted(ref_t.astype(np.float64), img, side="left"))
    if len(shape) == 2:  # classes ordered by intensity = phantom labels (in 3D the tiny inner
        assert (out == labels).mean() > 0.99  # classes make Otsu split the background instead)
    # with a body mask: thresholds from inside only, classes 1..3 inside, 0 outside
    body = labels > 0
    out_m = S.multiotsu_classes(img, 3, mask=body, backend=backend)
    assert (out_m[~body] == 0).all()
    assert (out_m[body] == labels[body]).mean() > 0.99


def test_multiotsu_classes_real(ct_small, backend):
    t = T.multiotsu(ct_small, 3, backend=backend)
    out = S.multiotsu_classes(ct_small, 3, backend=backend)
    np.testing.assert_array_equal(out, (ct_small > t[0]).astype(np.uint8) + (ct_small > t[1]))


# ---------------------------------------------------------------- CT tissues


def _chest_phantom():
    """(z, y, x) HU phantom: air -1000 outside, body 40 HU with a fat layer,
    two lungs -850 HU with an airway leaving through the top slice, a spine of
    700 HU, a bowel gas pocket -1000 HU with a -700 HU rim, and a table below
    the body (not connected to it).  Returns (hu, truth) with truth classes of
    ct_tissues."""
    nz, ny, nx = 24, 64, 72
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    hu = np.full((nz, ny, nx), -1000, np.int16)
    truth = np.zeros((nz, ny, nx), np.uint8)
    body = ((y - 30) / 24.0) ** 2 + ((x - 36) / 32.0) ** 2 <= 1
    inner = ((y - 30) / 21.0) ** 2 + ((x - 36) / 29.0) ** 2 <= 1
    hu[body] = -100
    truth[body] = 3  # fat
    hu[inner] = 40
    truth[inner] = 4  # soft tissue
    for cx in (22, 50):
        lung = (((y - 28) / 12.0) ** 2 + ((x - cx) / 10.0) ** 2 <= 1) & (z >= 8)
        hu[lung] = -850
        truth[lung] = 2
    airway = ((y - 28) ** 2 + (x - 36) ** 2 <= 4) & (z >= 10)
    hu[airway] = -1000
    truth[airway] = 1
    spine = ((y - 46) ** 2 + (x - 36) ** 2 <= 16)
    hu[spine] = 700
    truth[spine] = 5
    gas = ((y - 30) ** 2 + (x - 36) ** 2 + (z - 2) ** 2 <= 16) & (z < 4)
    rim = ((y - 30) ** 2 + (x - 36) ** 2 + (z - 2) ** 2 <= 20) & (z < 4) & ~gas
    hu[rim] = -700
    truth[rim] = 1
    hu[gas] = -1000
    truth[gas] = 1
    table = (y >= 58) & (y <= 60)
    hu[table] = 300
    return hu, truth


def test_ct_tissues_phantom(backend):
    hu, truth = _chest_phantom()
    out = S.ct_tissues(hu, backend=backend)
    assert out.dtype == np.uint8 and out.shape == hu.shape
    np.testing.assert_array_equal(out, truth)  # table and outside air: 0; airway and gas + rim: air
    body = S.body_mask(hu, backend=backend)
    np.testing.assert_array_equal(body, truth > 0)
    # without the component rule the -700 HU rim of the gas pocket would be "lung"
    plain = S.ct_tissues(hu, gas_by_component=False, backend=backend)
    assert (plain[(hu == -700)] == 2).all()
    # a 3D fill leaves the airway (open at the top slice) and the lungs it reaches outside the body
    body3 = S.body_mask(hu, fill_holes="3d", backend=backend)
    assert not body3[truth == 2].any() and body3[truth == 4].all()


def test_semantic_functions_leave_their_input_unchanged(backend):
    hu, _ = _chest_phantom()
    for name, a in layouts(hu).items():
        before = a.copy()
        S.ct_tissues(a, backend=backend)
        S.body_mask(a, backend=backend)
        S.classify(a, [-500, 0], backend=backend)
        S.multiotsu_classes(a, 3, backend=backend)
        np.testing.assert_array_equal(a, before, err_msg=name)


def test_classify_dtype_boundary(backend):
    a = np.arange(600, dtype=np.float32).reshape(20, 30)
    for n, plain, masked in ((254, np.uint8, np.uint8), (255, np.uint8, np.uint16), (256, np.uint16, np.uint16)):
        t = np.linspace(-0.5, 598.5, n)
        out = S.classify(a, t, backend=backend)
        assert out.dtype == plain and int(out.max()) == n
        out = S.classify(a, t, mask=a >= 0, backend=backend)
        assert out.dtype == masked and int(out.max()) == n + 1


def test_ct_tissues_range_boundaries(backend):
    """Each default range is lo <= HU < hi: voxels at exactly a boundary take the
    upper class (body voxels from -500 up to -190 HU are "other", -501 is lung)."""
    hu, truth = _chest_phantom()
    cases = [(-191, 6), (-190, 3), (-30, 3), (-29, 4), (149, 4), (150, 5), (-500, 6), (-501, 2)]
    spots = np.argwhere(truth == 4)[::997][:len(cases)]
    assert len(spots) == len(cases)
    hu, truth = hu.copy(), truth.copy()
    for (z, y, x), (v, c) in zip(spots, cases):
        hu[z, y, x] = v
        truth[z, y, x] = c
    out = S.ct_tissues(hu, backend=backend)
    for (z, y, x), (v, c) in zip(spots, cases):
        assert out[z, y, x] == c, (v, out[z, y, x], c)
    np.testing.assert_array_equal(out, truth)
    assert S.DEFAULT_CT_RANGES["fat"] == (-190.0, -29.0) and S.CT_OTHER == "other"


def test_ct_tissues_2d_layouts_and_ranges(backend):
    hu, truth = _chest_phantom()
    sl = np.ascontiguousarray(hu[12])
    out = S.ct_tissues(sl, backend=backend)
    np.testing.assert_array_equal(out, truth[12])
    for name, v in layouts(sl).items():
        np.testing.assert_array_equal(S.ct_tissues(v, backend=backend), truth[12], err_msg=name)
    # custom ranges (a gap: body voxels in no range become the extra class n + 1)
    out = S.ct_tissues(sl, [("lung", -900, -800), ("dense", 100, 3000)], backend=backend)
    assert set(np.unique(out)) == {0, 1, 2, 3}
    assert (out[truth[12] == 2] == 1).all() and (out[truth[12] == 5] == 2).all()
    assert (out[truth[12] == 4] == 3).all()


def test_ct_tissues_bad_input(backend):
    hu, _ = _chest_phantom()
    with pytest.raises(InvalidParameterError, match="overlap"):
        S.ct_tissues(hu, {"a": (-100, 50), "b": (0, 200)}, backend=backend)
    with pytest.raises(InvalidParameterError):
        S.ct_tissues(hu, {"a": (50, -100)}, backend=backend)
    with pytest.raises(EmptyImageError, match="Hounsfield"):
        S.ct_tissues(np.full((5, 6, 7), -1000, np.int16), backend=backend)
    with pytest.raises(InvalidParameterError):
        S.body_mask(hu, fill_holes="sideways")
    with pytest.raises(EmptyImageError):
        S.ct_tissues(hu, body=np.zeros(hu.shape, bool))


def test_ct_tissues_backends_and_threads_agree():
    hu, _ = _chest_phantom()
    a = S.ct_tissues(hu, backend="cpu", num_threads=1)
    np.testing.assert_array_equal(a, S.ct_tissues(hu, backend="cpu", num_threads=2))
    np.testing.assert_array_equal(a, S.ct_tissues(hu, backend="numba"))


def test_ct_tissues_totalsegmentator_lungs(shared_data, backend):
    nib = pytest.importorskip("nibabel")
    ts = shared_data / "totalsegmentator"
    ct = np.asarray(nib.load(str(ts / "example_ct_sm.nii.gz")).dataobj).T  # (z, y, x)
    seg = np.asarray(nib.load(str(ts / "example_seg.nii.gz")).dataobj).T
    lung = (seg >= 10) & (seg <= 14)  # lung lobes
    out = S.ct_tissues(ct, backend=backend)
    d = _dice(out == 2, lung)
    bare = _dice((ct >= -950) & (ct < -500), lung)  # same HU range, air around the patient included
    assert d > 0.8, d
    assert d > bare + 0.5, (d, bare)
    body = S.body_mask(ct, backend=backend)
    assert body[seg > 0].mean() > 0.999  # every labelled organ is inside the body
    assert (out[~body] == 0).all() and (out[body] > 0).all()


def test_ct_tissues_memory_and_3d_layouts(shared_data, backend):
    """Peak numpy allocations of ct_tissues on an int16 CT stay within 4x the
    input's bytes (labels, class map and masks: about 7 bytes per voxel); it
    was 12x while np.bincount copied the uint32 labels to int64 (and a
    weighted one the lung mask to float64) and the component classes were
    indexed in one piece.  3D Fortran-ordered and strided input give the
    answer of the C-ordered copy."""
    import tracemalloc

    nib = pytest.importorskip("nibabel")
    ct = np.asarray(nib.load(str(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")).dataobj).T
    big = np.ascontiguousarray(np.tile(ct, (2, 2, 2)))
    ref = S.ct_tissues(big, backend=backend)
    tracemalloc.start()
    try:
        S.ct_tissues(big, backend=backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 4 * big.nbytes, peak / big.nbytes
    np.testing.assert_array_equal(S.ct_tissues(np.asfortranarray(big), backend=backend), ref)
    sub = big[::2, :, ::3]
    np.testing.assert_array_equal(S.ct_tissues(sub, backend=backend),
                                  S.ct_tissues(np.ascontiguousarray(sub), backend=backend))


def test_class_maps_save_as_label_maps(shared_data, tmp_path, backend):
    nib = pytest.importorskip("nibabel")
    from medseg_fast import io

    img = io.load(str(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz"))  # Image: (z, y, x) HU + spacing
    classes = S.ct_tissues(img, backend=backend)
    thr = T.sauvola(img, 15.0, r=1000.0, backend=backend)  # window in mm from the Image's spacing
    assert thr.shape == img.array.shape
    out = io.save(classes, str(tmp_path / "tissues.nii.gz"), reference=img)
    back = io.load(out)
    np.testing.assert_array_equal(back.array, classes)
    hdr = nib.load(out).header
    assert hdr.get_data_dtype() == np.uint8 and hdr.get_intent()[0] == "label"
