"""DICOM loading: single files, series assembly, decoders, bad input, real scans."""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID

import medseg_fast.io as mio
from medseg_fast._errors import (
    AmbiguousSeriesError,
    CorruptFileError,
    DuplicatePositionError,
    ImageIOError,
    InvalidImageError,
    MedsegWarning,
    MissingGeometryError,
    NotAnImageError,
    UnevenSpacingError,
    UnsupportedTransferSyntaxError,
)

from _io_helpers import (
    decoder_available,
    need_decoder,
    nibabel_file,
    nicom_file,
    normal_of,
    pydicom_file,
    shared,
    write_series,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _quiet_load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)
        return mio.load(*args, **kwargs)


# --------------------------------------------------------------------------- single files


def test_ct_small_values_geometry_and_meta():
    p = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(p)
    img = mio.load(p)
    assert img.shape == (1, 128, 128) and img.ndim == 3
    assert img.dtype == np.int16  # slope 1, intercept -1024: integral -> int16, not float64
    expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(img.array[0], expected)
    assert img.array.flags.c_contiguous
    # spacing: (SliceThickness for a lone slice, row spacing, column spacing)
    assert img.spacing == (float(ds.SliceThickness), float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
    assert img.meta["slice_spacing_source"] == "SliceThickness"
    # origin: LPS -> RAS
    np.testing.assert_allclose(img.affine[:3, 3], LPS_TO_RAS @ np.asarray(ds.ImagePositionPatient, float))
    assert img.affine.dtype == np.float64 and img.affine.shape == (4, 4)
    assert img.meta["orientation"] == "SPL" and img.meta["orientation_xyz"] == "LPS"
    m = img.meta
    assert m["format"] == "dicom" and m["modality"] == "CT" and m["source"] == p
    assert m["series_uid"] == ds.SeriesInstanceUID
    assert m["rescale"]["intercept"] == -1024.0 and m["rescale"]["applied"]
    assert m["shape"] == (1, 128, 128) and m["dtype"] == "int16"
    assert m["warnings"] == []
    assert "slice_positions_mm" in m
    assert "Image(shape=(1, 128, 128)" in repr(img)


def test_single_slice_without_thickness_defaults_to_one(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.SliceThickness
    p = tmp_path / "slice.dcm"
    ds.save_as(p)
    img = mio.load(p)
    assert img.spacing[0] == 1.0
    assert img.meta["slice_spacing_source"] == "default 1.0"


@pytest.mark.filterwarnings("ignore:The pixel data is .* bytes long")
@pytest.mark.parametrize(
    "name",
    ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm",
     "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"],
)
def test_transfer_syntax_variants_match_uncompressed(name):
    """P1/P6: big-endian, implicit, RLE, J2K and JPEG-LS versions give the same voxels."""
    p = pydicom_file(name)
    ts = pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
    need_decoder(ts)
    ref = mio.load(pydicom_file("MR_small.dcm"))
    img = mio.load(p)
    assert img.array.dtype.isnative
    np.testing.assert_array_equal(img.array, ref.array)
    np.testing.assert_allclose(img.affine, ref.affine)
    assert img.spacing == ref.spacing


def test_signed_j2k_pixel_representation_mismatch():
    """P4: PR=1 with an unsigned J2K stream and BitsStored 13 comes back signed."""
    p = pydicom_file("J2K_pixelrep_mismatch.dcm")
    need_decoder(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    img = mio.load(p)
    assert img.dtype == np.int16 and img.array.min() < 0


def test_multiframe_rtdose_geometry_from_grid_offsets():
    p = pydicom_file("rtdose.dcm")
    ds = pydicom.dcmread(p)
    img = mio.load(p)
    assert img.shape == (int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    assert img.spacing[0] == pytest.approx(5.0)
    np.testing.assert_array_equal(img.array, ds.pixel_array)  # uint32 values fit int32
    assert img.dtype == np.int32


def test_seg_single_frame_per_frame_geometry():
    """Enhanced object with one frame: geometry from the functional groups."""
    p = pydicom_file("liver_1frame.dcm")
    ds = pydicom.dcmread(p)
    img = mio.load(p)
    assert img.shape == (1, 512, 512) and img.dtype == np.uint8
    ipp = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient
    np.testing.assert_allclose(img.affine[:3, 3], LPS_TO_RAS @ np.asarray(ipp, float))
    np.testing.assert_array_equal(img.array[0], ds.pixel_array)


def test_enhanced_mr_per_frame_rescale(tmp_path):
    """D7/P3: 176-frame Philips enhanced MR, per-frame geometry and rescale slope 2.1079."""
    src = nicom_file("philips_mprage.dcm.gz")
    p = tmp_path / "mprage.dcm"
    p.write_bytes(gzip.decompress(Path(src).read_bytes()))
    ds = pydicom.dcmread(p)
    img = mio.load(p)
    n = int(ds.NumberOfFrames)
    assert img.shape == (n, ds.Rows, ds.Columns)
    assert img.dtype == np.float32  # non-integral slope -> float32, never float64
    pf = ds.PerFrameFunctionalGroupsSequence
    iop = [float(v) for v in pf[0].PlaneOrientationSequence[0].ImageOrientationPatient]
    nrm = normal_of(iop)
    pos = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in pf])
    order = np.argsort(pos @ nrm, kind="stable")
    np.testing.assert_allclose(img.meta["slice_positions_mm"], np.sort(pos @ nrm))
    slope = float(pf[0].PixelValueTransformationSequence[0].RescaleSlope)
    raw = ds.pixel_array
    k = n // 2
    np.testing.assert_allclose(img.array[k], (raw[order[k]] * slope).astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(img.affine[:3, 3], LPS_TO_RAS @ pos[order[0]])
    assert img.spacing[1:] == (1.0, 1.0)


def test_decimal_rescale_integral_slope_stays_integer():
    """P3: slope 2, intercept -4096 -> an integer dtype with exact values."""
    p = nicom_file("decimal_rescale.dcm")
    ds = pydicom.dcmread(p)
    img = mio.load(p)
    assert img.dtype.kind == "i"
    expected = ds.pixel_array.astype(np.int64) * 2 - 4096
    np.testing.assert_array_equal(img.array[0], expected)


def test_nonintegral_rescale_gives_float32(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope = "3.774114"
    ds.RescaleIntercept = "0.000061"
    p = tmp_path / "mr2.dcm"
    ds.save_as(p)
    img = mio.load(p)
    assert img.dtype == np.float32
    expected = ds.pixel_array * 3.774114 + 0.000061
    np.testing.assert_allclose(img.array[0], expected, rtol=1e-6)


def test_rescale_range_needing_int32(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.RescaleSlope = "100"
    ds.RescaleIntercept = "0"
    p = tmp_path / "wide.dcm"
    ds.save_as(p)
    img = mio.load(p)
    assert img.dtype == np.int32
    np.testing.assert_array_equal(img.array[0], ds.pixel_array.astype(np.int32) * 100)


def test_empty_sop_class_uid_still_loads(tmp_path):
    """D8: TotalSegmentator's CT has an empty SOPClassUID."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.SOPClassUID = ""
    p = tmp_path / "nosop.dcm"
    ds.save_as(p)
    assert mio.load(p).shape == (1, 128, 128)


# --------------------------------------------------------------------------- refused content


def test_palette_colour_raises_invalid_image():
    with pytest.raises(InvalidImageError, match="PALETTE"):
        mio.load(pydicom_file("examples_palette.dcm"))


def test_rgb_raises_invalid_image():
    with pytest.raises(InvalidImageError, match="RGB"):
        mio.load(pydicom_file("SC_rgb_small_odd.dcm"))


def test_monochrome1_raises_invalid_image(tmp_path):
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    p = tmp_path / "m1.dcm"
    ds.save_as(p)
    with pytest.raises(InvalidImageError, match="MONOCHROME1"):
        mio.load(p)


def test_mosaic_is_refused():
    with pytest.raises(mio.UnsupportedMosaicError, match="MOSAIC"):
        mio.load(nicom_file("0.dcm"))


def test_non_image_dicom_raises_not_an_image():
    with pytest.raises(NotAnImageError, match="RT Plan"):
        mio.load(pydicom_file("rtplan.dcm"))


def test_truncated_inside_pixels_is_corrupt():
    p = pydicom_file("MR_truncated.dcm")
    with pytest.raises(CorruptFileError) as ei:
        mio.load(p)
    assert p in str(ei.value)


@pytest.mark.parametrize("keep", [600, 3000, 20000])
def test_truncated_copies_of_ct_small_are_corrupt(tmp_path, keep):
    """D11: truncated before the pixels (pydicom reads it silently) and inside them."""
    data = Path(pydicom_file("CT_small.dcm")).read_bytes()[:keep]
    p = tmp_path / f"cut{keep}.dcm"
    p.write_bytes(data)
    with pytest.raises(CorruptFileError) as ei:
        mio.load(p)
    assert str(p) in str(ei.value)


def test_truncated_encapsulated_stream_is_corrupt(tmp_path):
    src = pydicom_file("MR_small_jp2klossless.dcm")
    need_decoder(pydicom.uid.JPEG2000Lossless)
    data = Path(src).read_bytes()
    p = tmp_path / "j2k_cut.dcm"
    p.write_bytes(data[: len(data) - 3000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the missing delimiter
        with pytest.raises(CorruptFileError):
            mio.load(p)


def test_random_bytes_named_dcm(tmp_path):
    p = tmp_path / "junk.dcm"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(NotAnImageError):
        mio.load(p)


def test_empty_file_is_corrupt(tmp_path):
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        mio.load(p)


def _fake_compressed(tmp_path, ts_uid):
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = UID(ts_uid)
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 64 + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    p = tmp_path / "compressed.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p


def test_missing_decoder_names_syntax_and_extra(tmp_path):
    """P1: a syntax without an installed decoder -> UnsupportedTransferSyntaxError + the extra."""
    ts = pydicom.uid.JPEGLosslessSV1
    if decoder_available(ts):
        pytest.skip("a JPEG Lossless decoder is installed here")
    p = _fake_compressed(tmp_path, ts)
    with pytest.raises(UnsupportedTransferSyntaxError) as ei:
        mio.load(p)
    msg = str(ei.value)
    assert "JPEG Lossless" in msg and str(ts) in msg
    assert 'pip install "medseg-fast[dicom-codecs]"' in msg


def test_missing_decoder_via_monkeypatched_plugins(tmp_path, monkeypatch):
    """Same check for J2K by hiding the installed plugins."""
    from pydicom.pixels import get_decoder

    dec = get_decoder(pydicom.uid.JPEG2000Lossless)
    monkeypatch.setattr(dec, "_available", {})
    monkeypatch.setattr(dec, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(UnsupportedTransferSyntaxError, match=r"JPEG 2000.*dicom-codecs"):
        mio.load(pydicom_file("MR_small_jp2klossless.dcm"))


def test_transfer_syntax_without_any_decoder(tmp_path):
    p = _fake_compressed(tmp_path, "1.2.840.10008.1.2.4.100")  # MPEG2
    with pytest.raises(UnsupportedTransferSyntaxError, match="MPEG2"):
        mio.load(p)


def test_show_decoders(capsys):
    table = mio.show_decoders()
    out = capsys.readouterr().out
    assert "JPEG 2000 Image Compression (Lossless Only)" in table
    assert table["Explicit VR Little Endian"]["available"] is True
    assert "Explicit VR Little Endian" in out
    j2k = table["JPEG 2000 Image Compression (Lossless Only)"]
    assert j2k["available"] == decoder_available(pydicom.uid.JPEG2000Lossless)
    assert mio.show_decoders(file=False) == table


# --------------------------------------------------------------------------- series assembly


def test_series_sorted_by_position_not_names_or_instance(tmp_path):
    offsets = [0.0, 2.5, 5.0, 7.5, 10.0, 12.5]
    uid, paths = write_series(tmp_path, offsets)
    img = mio.load(tmp_path)
    assert img.shape == (6, 128, 128)
    assert img.meta["series_uid"] == uid
    # stored marker 1000 + k, intercept -1024
    np.testing.assert_array_equal(img.array[:, 0, 0], np.arange(6) + 1000 - 1024)
    assert img.spacing[0] == pytest.approx(2.5)  # from positions, not SliceThickness (7)
    assert img.meta["files"] == paths
    np.testing.assert_allclose(np.diff(img.meta["slice_positions_mm"]), 2.5, atol=1e-5)
    assert img.meta["warnings"] == []
    assert img.meta["uneven_spacing"] is False and img.meta["sheared"] is False


def test_series_descending_offsets_and_reversed_normal(tmp_path):
    """Positions given in decreasing order still come out increasing along the normal."""
    offsets = [10.0, 7.0, 4.0, 1.0]
    write_series(tmp_path, offsets, iop=(1, 0, 0, 0, -1, 0))
    img = mio.load(tmp_path)
    np.testing.assert_array_equal(img.array[:, 0, 0], np.array([3, 2, 1, 0]) + 1000 - 1024)
    assert img.spacing[0] == pytest.approx(3.0)
    assert np.all(np.diff(img.meta["slice_positions_mm"]) > 0)


def test_sagittal_series_sorted_along_normal(tmp_path):
    """D1: MONAI-style sorting on IPP[2] would fail here (z is constant)."""
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    offsets = [0.0, 3.0, 6.0, 9.0, 12.0]
    uid, paths = write_series(tmp_path, offsets, iop=iop, origin=(10.0, -20.0, 30.0))
    img = mio.load(tmp_path)
    np.testing.assert_array_equal(img.array[:, 0, 0], np.arange(5) + 1000 - 1024)
    assert img.spacing[0] == pytest.approx(3.0)
    lps = LPS_TO_RAS @ img.affine[:3, :3]
    np.testing.assert_allclose(lps[:, 0], 3.0 * normal_of(iop), atol=1e-6)
    np.testing.assert_allclose(lps[:, 1], np.array(iop[3:]) * img.spacing[1], atol=1e-6)
    np.testing.assert_allclose(lps[:, 2], np.array(iop[:3]) * img.spacing[2], atol=1e-6)
    assert img.meta["orientation_xyz"] == "PIR"  # +x toward P, +y toward I, stack toward R


def test_affine_maps_every_slice_to_its_ipp(tmp_path):
    offsets = [0.0, 1.25, 2.5, 3.75]
    _, paths = write_series(tmp_path, offsets, iop=(0.9, 0.1, 0.0, -0.1, 0.9, 0.3))
    img = mio.load(tmp_path)
    for k, p in enumerate(paths):
        ipp = np.asarray(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, float)
        np.testing.assert_allclose(img.affine @ [k, 0, 0, 1], np.r_[LPS_TO_RAS @ ipp, 1], atol=1e-4)
        # a voxel (k, r, c) lands at IPP + c*dc*rowcos + r*dr*colcos
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        rc = np.asarray(ds.ImageOrientationPatient[:3], float)
        cc = np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        world = ipp + 7 * dc * rc / np.linalg.norm(rc) + 5 * dr * cc / np.linalg.norm(cc)
        np.testing.assert_allclose(img.affine @ [k, 5, 7, 1], np.r_[LPS_TO_RAS @ world, 1], atol=1e-4)


def test_missing_slice_warns_and_strict_raises(tmp_path):
    offsets = [0.0, 2.0, 4.0, 8.0, 10.0]  # 6.0 missing
    write_series(tmp_path, offsets)
    with pytest.warns(MedsegWarning, match="uneven slice spacing.*1 slice"):
        img = mio.load(tmp_path)
    assert img.shape[0] == 5
    assert img.spacing[0] == pytest.approx(2.0)  # median gap
    assert img.meta["uneven_spacing"] is True
    assert img.meta["missing_slices_estimate"] == 1
    np.testing.assert_allclose(np.diff(img.meta["slice_positions_mm"]), [2, 2, 4, 2], atol=1e-5)
    assert any("uneven" in w for w in img.meta["warnings"])
    with pytest.raises(UnevenSpacingError):
        mio.load(tmp_path, strict=True)


def test_float_jitter_is_not_uneven(tmp_path):
    """D3: sub-tolerance jitter in positions gives no warning."""
    offsets = [0.0, 2.0004, 3.9997, 6.0002, 8.0]
    write_series(tmp_path, offsets)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        img = mio.load(tmp_path, strict=True)
    assert img.spacing[0] == pytest.approx(2.0, abs=1e-3)


def test_duplicate_positions_raise(tmp_path):
    write_series(tmp_path, [0.0, 2.0, 2.0, 4.0])
    with pytest.raises(DuplicatePositionError, match="share a position"):
        mio.load(tmp_path)


def test_all_positions_equal_raise_without_division_by_zero(tmp_path):
    write_series(tmp_path, [5.0, 5.0, 5.0])
    with pytest.raises(DuplicatePositionError):
        mio.load(tmp_path)


def test_duplicates_split_by_echo_number(tmp_path):
    """D5/D6: two echoes at the same positions become two sub-series."""
    uid, p1 = write_series(tmp_path, [0.0, 2.0, 4.0], seed=1, prefix="e1_")
    _, p2 = write_series(tmp_path, [0.0, 2.0, 4.0], series_uid=uid, seed=2, prefix="e2_", marker_base=2000)
    for p, echo in [(p, 1) for p in p1] + [(p, 2) for p in p2]:
        ds = pydicom.dcmread(p)
        ds.EchoNumbers = echo
        ds.save_as(p)
    series = mio.list_series(tmp_path)
    assert len(series) == 2
    assert {s["id"] for s in series} == {f"{uid}#1", f"{uid}#2"}
    assert all("EchoNumbers" in s["split_by"] for s in series)
    img = _quiet_load(tmp_path, series_uid=f"{uid}#2")
    assert img.shape[0] == 3
    assert set(img.array[:, 0, 0] + 1024) <= {1000, 1001, 1002, 2000, 2001, 2002}


def test_two_series_choose_largest_and_select_by_uid(tmp_path):
    big_uid, _ = write_series(tmp_path, [0, 2, 4, 6, 8], description="big", prefix="a")
    small_uid, _ = write_series(tmp_path, [0, 3, 6], description="small", prefix="b", marker_base=3000)
    with pytest.warns(MedsegWarning, match=small_uid):
        img = mio.load(tmp_path)
    assert img.shape[0] == 5 and img.meta["series_uid"] == big_uid
    assert img.meta["other_series"][0]["uid"] == small_uid
    small = mio.load(tmp_path, series_uid=small_uid)
    assert small.shape[0] == 3 and small.spacing[0] == pytest.approx(3.0)
    np.testing.assert_array_equal(small.array[:, 0, 0], np.arange(3) + 3000 - 1024)
    with pytest.raises(AmbiguousSeriesError) as ei:
        mio.load(tmp_path, series_uid="1.2.3.4.5")
    assert big_uid in str(ei.value) and small_uid in str(ei.value)


def test_junk_files_are_skipped_with_reasons(tmp_path):
    write_series(tmp_path, [0, 2, 4])
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "junk.dcm").write_bytes(np.random.default_rng(1).bytes(3000))  # fixed: reproducible
    (tmp_path / "empty.dcm").write_bytes(b"")
    shutil.copy(pydicom_file("rtplan.dcm"), tmp_path / "plan.dcm")
    (tmp_path / "sub").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        img = mio.load(tmp_path)
    assert img.shape[0] == 3
    skipped = {os.path.basename(k): v for k, v in img.meta["skipped_files"].items()}
    assert set(skipped) == {"notes.txt", "junk.dcm", "empty.dcm", "plan.dcm"}
    assert "not a DICOM" in skipped["notes.txt"] and "not a DICOM" in skipped["junk.dcm"]
    assert "empty" in skipped["empty.dcm"] and "RT Plan" in skipped["plan.dcm"]
    series = mio.list_series(tmp_path)
    assert len(series) == 1 and series[0]["n_slices"] == 3
    assert {os.path.basename(k) for k in series.skipped} == set(skipped)


def test_localizer_is_skipped(tmp_path):
    write_series(tmp_path, [0, 2, 4])
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(tmp_path / "scout.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        img = mio.load(tmp_path)
    assert img.shape[0] == 3
    assert "localizer" in img.meta["skipped_files"][str(tmp_path / "scout.dcm")]


def test_dicomdir_is_skipped(tmp_path):
    src = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "DICOMDIR"
    if not src.exists():
        pytest.skip("pydicom DICOMDIR test file not installed")
    write_series(tmp_path, [0, 2])
    shutil.copy(src, tmp_path / "DICOMDIR")
    img = mio.load(tmp_path)
    assert "DICOMDIR" in img.meta["skipped_files"][str(tmp_path / "DICOMDIR")]


def test_truncated_member_of_series_raises(tmp_path):
    _, paths = write_series(tmp_path, [0, 2, 4, 6])
    data = Path(paths[2]).read_bytes()
    Path(paths[2]).write_bytes(data[:-5000])
    with pytest.raises(CorruptFileError) as ei:
        mio.load(tmp_path)
    assert paths[2] in str(ei.value)


def test_missing_geometry_for_a_stack_raises(tmp_path):
    _, paths = write_series(tmp_path, [0, 2, 4])
    ds = pydicom.dcmread(paths[1])
    del ds.ImagePositionPatient
    ds.save_as(paths[1])
    with pytest.raises(MissingGeometryError, match="ImagePositionPatient"):
        mio.load(tmp_path)


def test_gantry_tilt_gives_sheared_affine(tmp_path):
    """D4: stack direction 20 degrees off the normal -> sheared affine + warning."""
    tilt = np.radians(20.0)
    direction = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # normal of axial IOP is +z
    offsets = [0.0, 2.0, 4.0, 6.0]  # along the tilted direction
    _, paths = write_series(tmp_path, offsets, stack_direction=direction)
    with pytest.warns(MedsegWarning, match="gantry tilt"):
        img = mio.load(tmp_path)
    assert img.meta["sheared"] is True
    assert img.meta["gantry_tilt_deg"] == pytest.approx(20.0, abs=1e-3)
    lps_stack = LPS_TO_RAS @ img.affine[:3, 0]
    np.testing.assert_allclose(lps_stack, 2.0 * direction, atol=1e-5)
    assert img.spacing[0] == pytest.approx(2.0 * np.cos(tilt), abs=1e-5)  # plane distance
    for k, p in enumerate(paths):
        ipp = np.asarray(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, float)
        np.testing.assert_allclose(img.affine @ [k, 0, 0, 1], np.r_[LPS_TO_RAS @ ipp, 1], atol=1e-4)


def test_series_matches_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    iop = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    write_series(tmp_path, [0.0, 1.5, 3.0, 4.5, 6.0, 7.5], iop=iop)
    img = mio.load(tmp_path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    ref = reader.Execute()
    ref_arr = sitk.GetArrayFromImage(ref)
    np.testing.assert_array_equal(img.array, ref_arr.astype(img.dtype))
    assert img.spacing == pytest.approx(tuple(reversed(ref.GetSpacing())), abs=1e-6)
    np.testing.assert_allclose(img.affine[:3, 3], LPS_TO_RAS @ np.asarray(ref.GetOrigin()), atol=1e-5)
    d = np.asarray(ref.GetDirection()).reshape(3, 3)  # columns: x, y, z index directions (LPS)
    ours = LPS_TO_RAS @ img.affine[:3, :3] / np.asarray(img.spacing)
    np.testing.assert_allclose(ours[:, ::-1], d, atol=1e-6)


def test_multiframe_folder_member(tmp_path):
    """A multi-frame file in a folder is one series of its frames."""
    shutil.copy(pydicom_file("rtdose.dcm"), tmp_path / "dose.dcm")
    img = mio.load(tmp_path)
    assert img.shape == (15, 10, 10)


# --------------------------------------------------------------------------- bytes entry point


def test_read_dicom_bytes_and_mutations():
    data = Path(pydicom_file("CT_small.dcm")).read_bytes()
    img = mio.read_dicom_bytes(data)
    np.testing.assert_array_equal(img.array, mio.load(pydicom_file("CT_small.dcm")).array)
    rng = np.random.default_rng(0)
    for _ in range(40):
        buf = bytearray(data)
        for pos in rng.integers(0, len(buf), 8):
            buf[pos] = int(rng.integers(0, 256))
        cut = int(rng.integers(100, len(buf) + 1))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mio.read_dicom_bytes(bytes(buf[:cut]))
        except (ImageIOError, InvalidImageError):
            pass


# --------------------------------------------------------------------------- real scans


@pytest.fixture(scope="module")
def ts_ct():
    folder = shared("totalsegmentator", "example_ct_dicom")
    need_decoder(pydicom.uid.JPEG2000Lossless)
    return mio.load(folder)


def test_totalsegmentator_dicom_series_geometry(ts_ct):
    img = ts_ct
    assert img.shape == (20, 512, 512)
    assert img.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert img.dtype == np.int16
    assert img.meta["modality"] == "CT"
    assert img.meta["uneven_spacing"] is False and img.meta["sheared"] is False
    assert img.array.min() >= -1024 and img.array.max() > 1000
    # InstanceNumber runs opposite to z; we sort by position (z increasing along +normal)
    z = [p[2] for p in img.meta["slice_ipp_lps_mm"]]
    assert z[0] == pytest.approx(-804.5) and z[-1] == pytest.approx(-766.5)
    assert img.meta["instance_numbers"][0] > img.meta["instance_numbers"][-1]


def test_totalsegmentator_dicom_matches_simpleitk(ts_ct):
    sitk = pytest.importorskip("SimpleITK")
    folder = shared("totalsegmentator", "example_ct_dicom")
    img = ts_ct
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_array_equal(img.array, sitk.GetArrayFromImage(ref).astype(np.int16))
    np.testing.assert_allclose(img.affine[:3, 3], LPS_TO_RAS @ np.asarray(ref.GetOrigin()), atol=1e-4)


# Labels in example_seg_dicom.nii.gz (TotalSegmentator v2 "total" numbering, which
# data/README.md documents for the sibling map: 30-33 vertebrae, 98-115 ribs). What the
# data shows on this 20-slice upper-abdomen slab (median HU in the aligned CT):
# 32/33 (vertebrae T12/T11) ~ +210..250, ribs 97-115 ~ +150..360, 5 (liver) ~ +93,
# 1 (spleen) ~ +80, 20 (colon, gas-filled here) ~ -680; no lung labels (10-14) in it.
VERTEBRAE = [32, 33]
RIBS = list(range(97, 116))
GAS = [20]
SOFT = [1, 5]


def _content_scores(ct, seg):
    def med(labels):
        v = ct[np.isin(seg, labels)]
        return float(np.median(v)) if v.size else np.nan

    return {"vertebrae": med(VERTEBRAE), "ribs": med(RIBS), "gas": med(GAS), "soft": med(SOFT)}


def test_totalsegmentator_dicom_and_seg_align_voxel_for_voxel(ts_ct):
    """W2: the DICOM series and TotalSegmentator's NIfTI of it describe the same grid."""
    ct = ts_ct
    seg = mio.load(shared("totalsegmentator", "example_seg_dicom.nii.gz"))
    assert ct.shape == seg.shape
    assert seg.meta["orientation_xyz"] == "LAS" and ct.meta["orientation_xyz"] == "LPS"
    # Same grid up to an exact axis flip: find it from the affines.
    seg_arr, seg_aff = seg.array, seg.affine.copy()
    for ax in range(3):
        if np.dot(seg_aff[:3, ax], ct.affine[:3, ax]) < 0:
            flip = np.eye(4)
            flip[ax, ax] = -1
            flip[ax, 3] = seg.shape[ax] - 1
            seg_aff = seg_aff @ flip
            seg_arr = np.flip(seg_arr, axis=ax)
    np.testing.assert_allclose(seg_aff, ct.affine, atol=1e-3)
    assert seg.orientation == "SAL"  # the flip was on the row axis only
    s = _content_scores(ct.array, seg_arr)
    assert s["vertebrae"] > 150 and s["ribs"] > 150
    assert s["gas"] < -500
    assert 20 < s["soft"] < 200
    assert np.median(ct.array[seg_arr == 0]) < -500  # mostly air around the body
    aligned = s["vertebrae"] + s["ribs"] - s["gas"]
    for shift in [(0, 3, 0), (0, -3, 0), (0, 0, 3), (0, 0, -3), (1, 0, 0), (-1, 0, 0)]:
        t = _content_scores(ct.array, np.roll(seg_arr, shift, axis=(0, 1, 2)))
        assert t["vertebrae"] + t["ribs"] - t["gas"] < aligned - 40, shift
    # without the flip the content check fails badly
    wrong = _content_scores(ct.array, seg.array)
    assert wrong["ribs"] < 0


def test_ge_gantry_tilt_and_uneven_spacing():
    folder = shared("dcm_qa_ct_ge")
    with pytest.warns(MedsegWarning) as rec:
        img = mio.load(folder)
    msgs = " ".join(str(w.message) for w in rec)
    assert "gantry tilt" in msgs and "uneven" in msgs
    assert img.shape == (28, 512, 512)
    assert img.meta["sheared"] is True
    assert img.meta["gantry_tilt_deg"] == pytest.approx(18.5, abs=0.05)
    assert img.meta["uneven_spacing"] is True
    gaps = np.diff(img.meta["slice_positions_mm"])
    assert gaps.min() == pytest.approx(1.08, abs=0.01) and gaps.max() == pytest.approx(6.99, abs=0.01)
    assert img.dtype == np.int16 and img.array.min() < 0  # signed pixels
    # the affine is not orthogonal: stack column vs in-plane columns
    a = img.affine[:3, :3]
    cos = np.dot(a[:, 0], a[:, 1]) / np.linalg.norm(a[:, 0]) / np.linalg.norm(a[:, 1])
    assert abs(cos) == pytest.approx(np.sin(np.radians(18.5)), abs=1e-3)
    assert img.spacing[1:] == pytest.approx((0.4882812, 0.4882812))
    # compare with dcm2niix's report
    import json

    ref = json.loads((folder / "reference_dcm2niix.json").read_text())
    np.testing.assert_allclose(img.meta["image_orientation_patient"], ref["ImageOrientationPatientDICOM"], atol=1e-5)
    assert img.meta["modality"] == ref["Modality"]
    assert img.meta["slice_thickness"] == ref["SliceThickness"]  # recorded, never used as spacing
    with pytest.raises(UnevenSpacingError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MedsegWarning)
            mio.load(folder, strict=True)


def test_truncated_before_rows_member_blocks_its_series(tmp_path):
    """A member cut so early that it has no Rows is still tied to its series by UID."""
    _, paths = write_series(tmp_path, [0, 2, 4, 6])
    data = Path(paths[1]).read_bytes()
    ds = pydicom.dcmread(paths[1], stop_before_pixels=True)
    cut = data.find(b"\x28\x00\x10\x00")  # (0028,0010) Rows, after the UIDs
    assert cut > 0 and ds.SeriesInstanceUID
    Path(paths[1]).write_bytes(data[:cut])
    series = mio.list_series(tmp_path)
    assert paths[1] in series[0]["corrupt_files"] and paths[1] in series.skipped
    with pytest.raises(CorruptFileError) as ei:
        mio.load(tmp_path)
    assert paths[1] in str(ei.value)


def test_pillow_only_j2k_decoder_warns(monkeypatch):
    """P2: pydicom does not recommend Pillow for J2K; say so when it is the only decoder."""
    from pydicom.pixels import get_decoder

    need_decoder(pydicom.uid.JPEG2000Lossless)
    dec = get_decoder(pydicom.uid.JPEG2000Lossless)
    if "pillow" not in dec.available_plugins:
        pytest.skip("Pillow's J2K plugin is not available")
    monkeypatch.setattr(dec, "_available", {"pillow": dec._available["pillow"]})
    with pytest.warns(MedsegWarning, match="Pillow"):
        img = mio.load(pydicom_file("MR_small_jp2klossless.dcm"))
    np.testing.assert_array_equal(img.array, mio.load(pydicom_file("MR_small.dcm")).array)


# --------------------------------------------------------------------------- audit regressions


def _multiframe(tmp_path, name, positions_mm, *, iops=None, temporal=None):
    """A multi-frame file built from CT_small: frame k has stored value 1000 + k at (0, 0),
    position (0, 0, positions_mm[k]) and, when given, orientation iops[k] and
    TemporalPositionIndex temporal[k] in its per-frame functional groups."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    base = ds.pixel_array.copy()
    n = len(positions_mm)
    frames = []
    for k in range(n):
        a = base.copy()
        a[0, 0] = 1000 + k
        frames.append(a)
    ds.NumberOfFrames = n
    ds.PixelData = np.stack(frames).tobytes()
    per_frame = []
    for k, z in enumerate(positions_mm):
        item = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [0.0, 0.0, float(z)]
        item.PlanePositionSequence = Sequence([pp])
        if iops is not None:
            po = Dataset()
            po.ImageOrientationPatient = list(iops[k])
            item.PlaneOrientationSequence = Sequence([po])
        if temporal is not None:
            fc = Dataset()
            fc.TemporalPositionIndex = temporal[k]
            item.FrameContentSequence = Sequence([fc])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    shared_group = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [0.5, 0.5]
    shared_group.PixelMeasuresSequence = Sequence([pm])
    if iops is None:
        po = Dataset()
        po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        shared_group.PlaneOrientationSequence = Sequence([po])
    ds.SharedFunctionalGroupsSequence = Sequence([shared_group])
    del ds.ImagePositionPatient
    del ds.ImageOrientationPatient
    p = tmp_path / name
    ds.save_as(p, enforce_file_format=True)
    return str(p), ds.SeriesInstanceUID


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_multiframe_file_with_mixed_orientations_is_split_like_a_folder(tmp_path):
    """Frames 0-2 axial and frame 3 sagittal in one file: two sub-volumes, not one wrong stack."""
    p, uid = _multiframe(tmp_path, "mixed.dcm", [0, 2, 4, 6], iops=[AXIAL] * 3 + [SAGITTAL])
    with pytest.warns(MedsegWarning, match=f"{uid}#2"):
        img = mio.load(p)
    assert img.shape == (3, 128, 128) and img.meta["series_id"] == f"{uid}#1"
    np.testing.assert_array_equal(img.array[:, 0, 0] + 1024, [1000, 1001, 1002])
    assert img.spacing[0] == pytest.approx(2.0) and img.meta["orientation"] == "SPL"
    assert img.meta["other_series"][0]["id"] == f"{uid}#2"
    assert any(f"{uid}#2" in w for w in img.meta["warnings"])
    sag = mio.load(p, series_uid=f"{uid}#2")
    assert sag.shape == (1, 128, 128) and sag.array[0, 0, 0] + 1024 == 1003
    np.testing.assert_allclose(sag.meta["image_orientation_patient"], SAGITTAL)
    # the same as the file in a folder
    folder = tmp_path / "folder"
    folder.mkdir()
    shutil.copy(p, folder / "mixed.dcm")
    via_folder = _quiet_load(folder)
    np.testing.assert_array_equal(via_folder.array, img.array)
    np.testing.assert_allclose(via_folder.affine, img.affine)


def test_series_uid_selects_a_time_point_of_a_multiframe_file(tmp_path):
    """2 time points x 3 positions in one file: series_uid= and list_series work on the file."""
    p, uid = _multiframe(tmp_path, "time.dcm", [0, 2, 4, 0, 2, 4], temporal=[1, 1, 1, 2, 2, 2])
    series = mio.list_series(p)
    assert [s["id"] for s in series] == [f"{uid}#1", f"{uid}#2"]
    assert all(s["n_slices"] == 3 and "temporal" in s["split_by"] for s in series)
    second = mio.load(p, series_uid=f"{uid}#2")
    assert second.shape == (3, 128, 128) and second.meta["frame_indices"] == [3, 4, 5]
    np.testing.assert_array_equal(second.array[:, 0, 0] + 1024, [1003, 1004, 1005])
    with pytest.warns(MedsegWarning, match=f"{uid}#2"):
        first = mio.load(p)
    assert first.meta["frame_indices"] == [0, 1, 2]
    # the SeriesInstanceUID alone picks the largest sub-volume, with a warning
    with pytest.warns(MedsegWarning, match="sub-volumes"):
        assert mio.load(p, series_uid=uid).meta["series_id"] == f"{uid}#1"
    with pytest.raises(AmbiguousSeriesError, match=f"{uid}#2"):
        mio.load(p, series_uid="1.2.3")
    assert mio.read_dicom_bytes(Path(p).read_bytes(), series_uid=f"{uid}#2").meta["frame_indices"] == [3, 4, 5]
    with pytest.raises(NotAnImageError):
        mio.list_series(nibabel_file("anatomical.nii"))


def test_list_series_of_a_single_file():
    series = mio.list_series(pydicom_file("CT_small.dcm"))
    assert len(series) == 1 and series[0]["n_slices"] == 1 and series.skipped == {}


def _cut_before_series_uid(path):
    """Cut a little-endian file at its (0020,000E) SeriesInstanceUID element."""
    data = Path(path).read_bytes()
    cut = data.find(b"\x20\x00\x0e\x00")
    assert cut > 0 and pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
    Path(path).write_bytes(data[:cut])


def test_member_cut_before_its_series_uid_is_corrupt_not_a_missing_slice(tmp_path):
    """D11: a file cut before SeriesInstanceUID (pydicom reads it silently) is refused, not dropped."""
    _, paths = write_series(tmp_path, [0, 2, 4, 6])
    _cut_before_series_uid(paths[1])
    with pytest.raises(CorruptFileError) as ei:
        mio.load(tmp_path)
    assert paths[1] in str(ei.value) and "SeriesInstanceUID" in str(ei.value)
    series = mio.list_series(tmp_path)
    assert paths[1] in series[0]["corrupt_files"] and paths[1] in series.skipped


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("keep", [140, 170, 300])
def test_member_cut_inside_its_file_meta_is_corrupt(tmp_path, keep):
    _, paths = write_series(tmp_path, [0, 2, 4, 6])
    Path(paths[2]).write_bytes(Path(paths[2]).read_bytes()[:keep])
    with pytest.raises(CorruptFileError) as ei:
        mio.load(tmp_path)
    assert paths[2] in str(ei.value)


def test_cut_file_of_another_series_does_not_block(tmp_path):
    """A truncated file whose surviving attributes contradict the series is only skipped."""
    uid, _ = write_series(tmp_path, [0, 2, 4], description="kept", prefix="a")
    _, others = write_series(tmp_path, [0, 3], description="other", prefix="b",
                             study_uid=pydicom.uid.generate_uid())
    Path(others[1]).unlink()
    _cut_before_series_uid(others[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        img = mio.load(tmp_path)
    assert img.shape[0] == 3 and img.meta["series_uid"] == uid
    assert "truncated" in img.meta["skipped_files"][others[0]]


def test_totalsegmentator_member_cut_to_900_bytes_is_corrupt(tmp_path):
    """The audit case: one file of the real CT series cut to its first 900 bytes."""
    src = shared("totalsegmentator", "example_ct_dicom")
    folder = tmp_path / "ct"
    shutil.copytree(src, folder)
    victim = sorted(folder.iterdir())[7]
    victim.write_bytes(victim.read_bytes()[:900])
    with pytest.raises(CorruptFileError) as ei:
        mio.load(folder)
    assert str(victim) in str(ei.value)


def test_missing_slices_give_the_grid_step_not_the_median_gap(tmp_path):
    """D2: positions 0, 2, 6, 10, 12 lie on a 2 mm grid with 2 slices missing (median gap 3)."""
    write_series(tmp_path, [0, 2, 6, 10, 12])
    with pytest.warns(MedsegWarning, match="uneven.*2 slice"):
        img = mio.load(tmp_path)
    assert img.spacing[0] == pytest.approx(2.0)
    assert img.meta["missing_slices_estimate"] == 2 and img.meta["uneven_spacing"]
    np.testing.assert_allclose(img.meta["slice_positions_mm"], np.array([0, 2, 6, 10, 12]) + img.meta[
        "slice_positions_mm"][0])


def test_irregular_gaps_without_a_grid_keep_the_median(tmp_path):
    write_series(tmp_path, [0, 2, 5, 7, 10, 12, 15])  # gaps 2, 3, 2, 3, ...: no believable grid
    with pytest.warns(MedsegWarning, match="uneven"):
        img = mio.load(tmp_path)
    assert img.spacing[0] == pytest.approx(2.5) and img.meta["missing_slices_estimate"] == 0


def test_gzipped_dicom_gives_a_clear_error():
    with pytest.raises(NotAnImageError, match="gzip-compressed DICOM"):
        mio.load(nicom_file("siemens_dwi_0.dcm.gz"))
