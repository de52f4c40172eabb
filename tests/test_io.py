"""medseg_fast.io: the Image container, load() dispatch, save() and round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import medseg_fast.io as mio
from medseg_fast._errors import (
    ImageIOError,
    InvalidImageError,
    InvalidParameterError,
    MedsegWarning,
    NotAnImageError,
)

from _io_helpers import REVERSE, nibabel_file, pydicom_file, shared, write_series


def _raw_header(path):
    """The header as stored on disk (nibabel hides scl_slope=1/inter=0 as NaN on load)."""
    img = nib.load(path)
    hdr = img.header
    raw = nib.Nifti1Header.from_fileobj(nib.openers.ImageOpener(path), check=False)
    return hdr, raw


# --------------------------------------------------------------------------- Image


def test_image_basics():
    a = np.zeros((4, 5, 6), np.int16)
    img = mio.Image(a, spacing=(2.0, 0.5, 0.25))
    assert img.ndim == 3 and img.shape == (4, 5, 6) and img.dtype == np.int16
    np.testing.assert_array_equal(img.affine, np.diag([0.25, 0.5, 2.0, 1.0])[:, REVERSE])
    assert img.meta["shape"] == (4, 5, 6) and img.meta["dtype"] == "int16"
    assert img.meta["orientation"] == "SAR" and img.orientation == "SAR"
    assert img.meta["orientation_xyz"] == "RAS"
    assert np.asarray(img) is a
    assert "shape=(4, 5, 6)" in repr(img) and "int16" in repr(img)
    mask = img.with_array(a > 0)
    assert mask.spacing == img.spacing and mask.dtype == bool
    with pytest.raises(InvalidImageError):
        img.with_array(np.zeros((1, 2, 3)))


def test_image_spacing_from_affine_and_validation():
    aff = np.diag([3.0, 2.0, 1.0, 1.0])
    aff[:3, 3] = [1, 2, 3]
    assert mio.Image(np.zeros((2, 2, 2)), affine=aff).spacing == (3.0, 2.0, 1.0)
    with pytest.raises(InvalidImageError):
        mio.Image(np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError):
        mio.Image(np.zeros((2, 2, 2)), spacing=(1, 0, 1))
    with pytest.raises(InvalidParameterError):
        mio.Image(np.zeros((2, 2, 2)), affine=np.zeros((4, 4)))


# --------------------------------------------------------------------------- load dispatch


def test_missing_path_is_file_not_found_and_image_io_error(tmp_path):
    p = tmp_path / "nope.nii.gz"
    with pytest.raises(FileNotFoundError):
        mio.load(p)
    with pytest.raises(ImageIOError) as ei:
        mio.load(tmp_path / "missing_dir")
    assert isinstance(ei.value, mio.ImageFileNotFoundError)
    assert "missing_dir" in str(ei.value)
    with pytest.raises(FileNotFoundError):
        mio.list_series(tmp_path / "missing_dir")


def test_formats_recognised_by_content(tmp_path):
    dcm = tmp_path / "IM0001"
    dcm.write_bytes(Path(pydicom_file("CT_small.dcm")).read_bytes())
    assert mio.load(dcm).meta["format"] == "dicom"
    nii = tmp_path / "volume.img"
    nii.write_bytes(Path(nibabel_file("example4d.nii.gz")).read_bytes())
    assert mio.load(nii, volume=0).meta["format"] == "nifti"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(NotAnImageError):
        mio.load(junk)


def test_empty_folder(tmp_path):
    with pytest.raises(NotAnImageError, match="no DICOM image series"):
        mio.load(tmp_path)


def test_every_warning_is_recorded_in_meta(tmp_path):
    write_series(tmp_path, [0, 2, 4, 8])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        img = mio.load(tmp_path)
    emitted = [str(w.message) for w in rec if issubclass(w.category, MedsegWarning)]
    assert emitted and emitted == img.meta["warnings"]
    assert all(w.filename == __file__ for w in rec if issubclass(w.category, MedsegWarning))


# --------------------------------------------------------------------------- save: dtypes


def test_label_map_with_300_labels_round_trips_exactly(tmp_path):
    """W1: 300 labels come back exactly, stored as uint16 with slope 1 / inter 0 / LABEL."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 301, (7, 9, 11)).astype(np.int64)
    labels.flat[:301] = np.arange(301)
    p = mio.save(labels, tmp_path / "labels.nii.gz", spacing=(3.0, 1.5, 0.75))
    back = mio.load(p)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.array, labels)
    assert back.spacing == (3.0, 1.5, 0.75)
    hdr, raw = _raw_header(p)
    assert float(raw["scl_slope"]) == 1.0 and float(raw["scl_inter"]) == 0.0
    assert int(hdr["intent_code"]) == 1002
    assert hdr.get_data_dtype() == np.uint16


def test_label_map_with_uint8_scaled_reference_header(tmp_path):
    """W1 exactly: a uint8 source header with scl_slope 1.176 must not leak into the mask."""
    src = nib.Nifti1Image(np.arange(60, dtype=np.uint8).reshape(3, 4, 5), np.diag([2, 2, 2, 1.0]))
    src.set_data_dtype(np.uint8)
    src.header.set_slope_inter(1.176, 3.0)
    sp = tmp_path / "src.nii"
    src.to_filename(sp)
    ref = mio.load(sp)
    assert ref.dtype == np.float32
    labels = (np.arange(60).reshape(ref.shape) * 5).astype(np.int32)  # 0..295
    p = mio.save(labels, tmp_path / "seg.nii", reference=ref)
    back = mio.load(p)
    np.testing.assert_array_equal(back.array, labels)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.affine, ref.affine)


@pytest.mark.parametrize(
    "values, dtype, expected",
    [
        ([0, 1], bool, np.uint8),
        ([0, 255], np.int64, np.uint8),
        ([0, 256], np.int32, np.uint16),
        ([-1, 5], np.int32, np.int16),
        ([-1, 40000], np.int64, np.int32),
        ([0, 70000], np.uint32, np.int32),
    ],
)
def test_integer_storage_dtype(tmp_path, values, dtype, expected):
    a = np.zeros((2, 3, 4), dtype=dtype)
    a.flat[0], a.flat[-1] = values
    p = mio.save(a, tmp_path / "m.nii")
    back = mio.load(p)
    assert back.dtype == expected
    np.testing.assert_array_equal(back.array, a.astype(expected))


def test_float_saved_as_float32(tmp_path):
    a = np.linspace(-1, 1, 24).reshape(2, 3, 4)
    p = mio.save(a, tmp_path / "f.nii.gz")
    back = mio.load(p)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.array, a.astype(np.float32))
    hdr, _ = _raw_header(p)
    assert int(hdr["intent_code"]) == 0


def test_label_false_keeps_integer_image_dtype(tmp_path):
    a = np.arange(-10, 14, dtype=np.int16).reshape(2, 3, 4)
    p = mio.save(a, tmp_path / "ct.nii", label=False)
    hdr, _ = _raw_header(p)
    assert hdr.get_data_dtype() == np.int16 and int(hdr["intent_code"]) == 0


def test_saved_file_reads_the_same_in_nibabel_and_simpleitk(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    aff = np.array([[0, 0, -0.5, 10], [0, 2.0, 0, -20], [3.0, 0, 0, 30], [0, 0, 0, 1]])
    p = mio.save(a, tmp_path / "x.nii.gz", affine=aff)
    n = nib.load(p)
    np.testing.assert_array_equal(np.asarray(n.dataobj), a.T)  # nibabel sees (i, j, k)
    np.testing.assert_allclose(n.affine, aff[:, REVERSE])
    sitk = pytest.importorskip("SimpleITK")
    s = sitk.ReadImage(str(p))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s), a)  # SimpleITK sees (z, y, x)
    np.testing.assert_allclose(s.GetOrigin(), [-10, 20, 30])  # RAS -> LPS
    assert s.GetSpacing() == pytest.approx((0.5, 2.0, 3.0))


# --------------------------------------------------------------------------- save: geometry


def _assert_same_geometry_fields(src, dst):
    for f in ("sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c",
              "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "xyzt_units"):
        np.testing.assert_array_equal(np.asarray(src[f]), np.asarray(dst[f]), err_msg=f)
    np.testing.assert_array_equal(np.asarray(src["pixdim"])[:4], np.asarray(dst["pixdim"])[:4])


@pytest.mark.parametrize("qcode, scode", [(0, 2), (1, 1), (1, 0), (2, 4)])
def test_nifti_reference_codes_and_forms_copied_exactly(tmp_path, qcode, scode):
    q = np.array([[0, 0, 1.5, -30], [0, 2.0, 0, 40], [-2.5, 0, 0, 50.25], [0, 0, 0, 1]])
    s = np.array([[-1.1, 0.1, 0, 12], [0.05, 1.9, 0.2, -7], [0, -0.1, 2.4, 3.5], [0, 0, 0, 1]])
    src = nib.Nifti1Image(np.zeros((5, 6, 7), np.int16), None)
    src.header.set_qform(q, code=qcode)
    src.header.set_sform(s, code=scode)
    sp = tmp_path / "src.nii.gz"
    src.to_filename(sp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        ref = mio.load(sp)
        mask = (np.arange(ref.array.size).reshape(ref.shape) % 3 == 0)
        p = mio.save(mask, tmp_path / "mask.nii.gz", reference=ref)
        back = mio.load(p)
    _assert_same_geometry_fields(nib.load(sp).header, nib.load(p).header)
    np.testing.assert_array_equal(back.affine, ref.affine)
    assert back.spacing == ref.spacing
    np.testing.assert_array_equal(back.array, mask.astype(np.uint8))


def test_nifti_load_save_load_is_exact(tmp_path):
    for name, kw in [("anatomical.nii", {}), ("example4d.nii.gz", {"volume": 1})]:
        img = mio.load(nibabel_file(name), **kw)
        p = mio.save(img, tmp_path / ("rt_" + name.replace(".gz", "")), label=False)
        back = mio.load(p)
        np.testing.assert_array_equal(back.array, img.array)
        assert back.dtype == img.dtype
        assert back.spacing == img.spacing
        np.testing.assert_array_equal(back.affine, img.affine)


def test_totalsegmentator_nifti_round_trip(tmp_path):
    p0 = shared("totalsegmentator", "example_seg_dicom.nii.gz")
    seg = mio.load(p0)
    p = mio.save(seg, tmp_path / "seg.nii.gz")
    back = mio.load(p)
    np.testing.assert_array_equal(back.array, seg.array)
    np.testing.assert_array_equal(back.affine, seg.affine)
    assert back.spacing == seg.spacing
    _assert_same_geometry_fields(nib.load(p0).header, nib.load(p).header)
    assert int(nib.load(p).header["intent_code"]) == int(nib.load(p0).header["intent_code"])
    # a derived mask on the same grid is a label map with the same geometry fields
    p2 = mio.save(seg.with_array(seg.array == 5), tmp_path / "liver.nii.gz")
    _assert_same_geometry_fields(nib.load(p0).header, nib.load(p2).header)
    assert int(nib.load(p2).header["intent_code"]) == 1002
    assert nib.load(p2).get_data_dtype() == np.uint8


def test_dicom_reference_writes_the_image_affine(tmp_path):
    write_series(tmp_path / "ct", [0.0, 2.5, 5.0, 7.5], iop=(0.8, 0.6, 0.0, -0.6, 0.8, 0.0))
    ct = mio.load(tmp_path / "ct")
    mask = ct.array > 0
    p = mio.save(mask, tmp_path / "mask.nii.gz", reference=ct)
    back = mio.load(p)
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)  # NIfTI-1 stores float32
    assert back.spacing == pytest.approx(ct.spacing, abs=1e-5)
    np.testing.assert_array_equal(back.array, mask)
    hdr = nib.load(p).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 1
    np.testing.assert_allclose(hdr.get_qform(), hdr.get_sform(), atol=1e-4)
    # full image round trip (int16 HU): kept as int16, not marked as a label map
    p2 = mio.save(ct, tmp_path / "ct.nii.gz")
    ct2 = mio.load(p2)
    np.testing.assert_array_equal(ct2.array, ct.array)
    assert ct2.dtype == ct.dtype == np.int16
    assert int(nib.load(p2).header["intent_code"]) == 0


def test_sheared_dicom_reference_goes_to_sform_only(tmp_path):
    tilt = np.radians(15.0)
    write_series(tmp_path / "ct", [0, 2, 4, 6], stack_direction=[0, np.sin(tilt), np.cos(tilt)])
    with pytest.warns(MedsegWarning, match="gantry tilt"):
        ct = mio.load(tmp_path / "ct")
    with pytest.warns(MedsegWarning, match="sform only"):
        p = mio.save(ct.array > 0, tmp_path / "mask.nii", reference=ct)
    hdr = nib.load(p).header
    assert int(hdr["sform_code"]) == 1 and int(hdr["qform_code"]) == 0
    back = mio.load(p)
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-4)
    assert back.spacing == pytest.approx(ct.spacing, abs=1e-5)


def test_ge_tilted_scan_saves_sheared_sform(tmp_path):
    folder = shared("dcm_qa_ct_ge")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        ct = mio.load(folder)
        p = mio.save(ct.array > 300, tmp_path / "bone.nii.gz", reference=ct)
    hdr = nib.load(p).header
    assert int(hdr["qform_code"]) == 0
    np.testing.assert_allclose(nib.load(p).affine, ct.affine[:, REVERSE], atol=1e-4)


def test_save_errors(tmp_path):
    ref = mio.Image(np.zeros((2, 3, 4), np.int16))
    with pytest.raises(InvalidImageError, match="shape"):
        mio.save(np.zeros((2, 3, 5), np.uint8), tmp_path / "a.nii", reference=ref)
    with pytest.raises(InvalidImageError):
        mio.save(np.zeros((3, 4), np.uint8), tmp_path / "a.nii")
    with pytest.raises(InvalidParameterError, match=".nii"):
        mio.save(np.zeros((2, 3, 4), np.uint8), tmp_path / "a.png")
    with pytest.raises(InvalidParameterError):
        mio.save(np.zeros((2, 3, 4), np.uint8), tmp_path / "a.nii", reference=ref, spacing=(1, 1, 1))
    with pytest.raises(InvalidImageError):
        mio.save(np.zeros((2, 3, 4), np.complex64), tmp_path / "a.nii")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_save_overwrites_a_memory_mapped_source_safely(tmp_path):
    p = mio.save(np.arange(24, dtype=np.int16).reshape(2, 3, 4), tmp_path / "v.nii", label=False)
    img = mio.load(p, mmap=True)
    mio.save(img.array * 2, p, reference=img, label=False)  # written to a temp name, then renamed
    np.testing.assert_array_equal(img.array, np.arange(24).reshape(2, 3, 4))
    np.testing.assert_array_equal(mio.load(p).array, np.arange(24).reshape(2, 3, 4) * 2)


def test_four_d_reference_volume(tmp_path):
    ref = mio.load(nibabel_file("example4d.nii.gz"), volume=0)
    p = mio.save(ref.array > 100, tmp_path / "m.nii.gz", reference=ref)
    back = mio.load(p)
    assert back.shape == ref.shape
    np.testing.assert_array_equal(back.affine, ref.affine)


def test_dicom_mask_saved_on_the_totalsegmentator_grid(tmp_path):
    """A mask made on the DICOM CT and saved with it as reference overlays the seg file."""
    from _io_helpers import need_decoder

    need_decoder(pydicom.uid.JPEG2000Lossless)
    ct = mio.load(shared("totalsegmentator", "example_ct_dicom"))
    seg = mio.load(shared("totalsegmentator", "example_seg_dicom.nii.gz"))
    bone = ct.array > 200
    p = mio.save(bone, tmp_path / "bone.nii.gz", reference=ct)
    n_ours, n_ts = nib.load(p), nib.load(shared("totalsegmentator", "example_seg_dicom.nii.gz"))
    # resolve both files to the same orientation with nibabel and compare voxel by voxel
    ours = nib.as_closest_canonical(n_ours)
    ts = nib.as_closest_canonical(n_ts)
    np.testing.assert_allclose(ours.affine, ts.affine, atol=1e-3)
    vert = np.isin(np.asarray(ts.dataobj), [32, 33])
    assert np.asarray(ours.dataobj)[vert].mean() > 0.5
    assert seg.shape == ct.shape


def test_options_for_the_wrong_input_kind_are_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="series_uid"):
        mio.load(nibabel_file("anatomical.nii"), series_uid="1.2.3")
    with pytest.raises(InvalidParameterError, match="volume"):
        mio.load(pydicom_file("CT_small.dcm"), volume=1)
    write_series(tmp_path, [0, 1])
    with pytest.raises(InvalidParameterError, match="volume"):
        mio.load(tmp_path, volume=0)
    assert mio.load(nibabel_file("anatomical.nii"), strict=True).shape == (25, 41, 33)


def test_edited_affine_wins_over_the_stored_source_header(tmp_path):
    img = mio.load(nibabel_file("anatomical.nii"))
    img.affine = img.affine.copy()
    img.affine[:3, 3] += [5.0, -3.0, 2.0]
    p = mio.save(img, tmp_path / "moved.nii.gz", label=False)
    np.testing.assert_allclose(mio.load(p).affine, img.affine, atol=1e-4)


# --------------------------------------------------------------------------- audit regressions


def test_saved_files_get_the_umask_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o027)
    try:
        p = mio.save(np.zeros((2, 3, 4), np.uint8), tmp_path / "m.nii.gz", spacing=(1, 1, 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    # replacing a file keeps its permissions
    os.chmod(p, 0o604)
    mio.save(np.ones((2, 3, 4), np.uint8), p, spacing=(1, 1, 1))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o604
    assert mio.load(p).array.all()


def test_save_filesystem_errors_name_the_target_and_clean_up(tmp_path, monkeypatch):
    import os

    a = np.zeros((2, 3, 4), np.uint8)
    target = tmp_path / "no" / "such" / "m.nii.gz"
    with pytest.raises(ImageIOError, match="does not exist") as ei:
        mio.save(a, target, spacing=(1, 1, 1))
    assert str(target) in str(ei.value)
    folder = tmp_path / "isdir.nii"
    folder.mkdir()
    with pytest.raises(ImageIOError, match="folder") as ei:
        mio.save(a, folder, spacing=(1, 1, 1))
    assert str(folder) in str(ei.value)

    def denied(src, dst):
        raise PermissionError(13, "Permission denied", src)

    monkeypatch.setattr(os, "replace", denied)
    target = tmp_path / "m.nii"
    with pytest.raises(ImageIOError, match="permission denied") as ei:
        mio.save(a, target, spacing=(1, 1, 1))
    assert str(target) in str(ei.value) and ".m.nii." not in str(ei.value)
    assert ei.value.errno == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isdir.nii"]  # no temp file left


def test_save_refuses_empty_arrays(tmp_path):
    from medseg_fast._errors import EmptyImageError

    with pytest.raises(EmptyImageError, match="empty"):
        mio.save(np.zeros((0, 3, 4), np.uint8), tmp_path / "z.nii", spacing=(1, 1, 1))
    assert not list(tmp_path.iterdir())
