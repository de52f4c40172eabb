"""NIfTI loading: axis order, affine rule, scaling, 4D, byte order, lying and truncated files."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medseg_fast.io as mio
from medseg_fast._errors import (
    CorruptFileError,
    ImageIOError,
    InvalidImageError,
    InvalidParameterError,
    MedsegWarning,
    NotAnImageError,
)

from _io_helpers import REVERSE, nibabel_file, shared


def _write(tmp_path, data, affine=None, name="img.nii", **hdr_fields):
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for k, v in hdr_fields.items():
        img.header[k] = v
    p = tmp_path / name
    img.to_filename(p)
    return p


def test_big_endian_anatomical_matches_nibabel():
    """N5/N6: >i2 on disk -> native int16, (z, y, x) C-contiguous, same values."""
    p = nibabel_file("anatomical.nii")
    ref = nib.load(p)
    raw = np.asarray(ref.dataobj)
    assert raw.dtype.byteorder == ">"
    img = mio.load(p)
    assert img.dtype == np.int16 and img.array.dtype.isnative
    assert img.array.flags.c_contiguous
    np.testing.assert_array_equal(img.array, raw.T)
    np.testing.assert_array_equal(img.affine, ref.affine[:, REVERSE])
    assert img.spacing == tuple(float(z) for z in ref.header.get_zooms()[::-1])
    m = img.meta
    assert m["format"] == "nifti" and m["source"] == p and m["modality"] is None
    assert m["orientation"] == "".join(nib.aff2axcodes(ref.affine))[::-1]
    assert m["orientation_xyz"] == "".join(nib.aff2axcodes(ref.affine))
    assert m["rescale"]["applied"] is False and m["warnings"] == []


def test_index_to_world_matches_nibabel():
    p = nibabel_file("reoriented_anat_moved.nii")
    ref = nib.load(p)
    img = mio.load(p)
    ijk = np.array([3, 5, 7, 1.0])
    np.testing.assert_allclose(img.affine @ ijk[[2, 1, 0, 3]], ref.affine @ ijk)
    assert img.array[7, 5, 3] == np.asarray(ref.dataobj)[3, 5, 7]


def test_4d_needs_volume():
    """N3: example4d (128x96x24x2) refuses a silent choice."""
    p = nibabel_file("example4d.nii.gz")
    with pytest.raises(InvalidImageError, match="volume="):
        mio.load(p)
    ref = nib.load(p)
    for v in (0, 1, -1):
        img = mio.load(p, volume=v)
        expected = np.asarray(ref.dataobj[..., v]).T
        np.testing.assert_array_equal(img.array, expected.astype(img.dtype))
        assert img.shape == (24, 96, 128)
    with pytest.raises(InvalidParameterError):
        mio.load(p, volume=2)


def test_nifti2_volume():
    p = nibabel_file("example_nifti2.nii.gz")
    ref = nib.load(p)
    img = mio.load(p, volume=1)
    np.testing.assert_array_equal(img.array, np.asarray(ref.dataobj[..., 1]).T)
    np.testing.assert_allclose(img.affine, ref.affine[:, REVERSE])
    assert img.meta["nifti_version"] == 2


def test_singleton_4d_squeezed_with_warning(tmp_path):
    p = _write(tmp_path, np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1))
    with pytest.warns(MedsegWarning, match="single volume"):
        img = mio.load(p)
    assert img.shape == (4, 3, 2)


def test_2d_nifti_becomes_one_slice(tmp_path):
    p = _write(tmp_path, np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert mio.load(p).shape == (1, 4, 3)


def test_scaling_applied_in_float32(tmp_path):
    """N2: scl_slope/scl_inter -> float32, never float64."""
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10.25)
    p = tmp_path / "scaled.nii"
    img.to_filename(p)
    out = mio.load(p)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.array, (data * 0.5 + 10.25).T)
    assert out.meta["rescale"] == {"slope": 0.5, "intercept": 10.25, "applied": True, "stored_dtype": "int16"}


def test_integral_scaling_on_uint8_stays_integer(tmp_path):
    data = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    img = nib.Nifti1Image(data, np.eye(4))
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(2.0, -100.0)
    p = tmp_path / "scaled_u8.nii.gz"
    img.to_filename(p)
    out = mio.load(p)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out.array, (data.astype(np.int32) * 2 - 100).T)


def test_unscaled_integer_keeps_dtype(tmp_path):
    for dt in (np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64):
        data = (np.arange(24) % 7).astype(dt).reshape(2, 3, 4)
        img = nib.Nifti1Image(data, np.eye(4))
        img.set_data_dtype(dt)
        img.header.set_slope_inter(1.0, 0.0)
        p = tmp_path / f"{np.dtype(dt).name}.nii"
        img.to_filename(p)
        out = mio.load(p)
        assert out.dtype == dt
        np.testing.assert_array_equal(out.array, data.T)


def test_nan_and_inf_preserved(tmp_path):
    """N4: the loader keeps NaN/inf as they are."""
    data = np.zeros((2, 3, 4), np.float32)
    data[0, 0, 0], data[1, 2, 3] = np.nan, np.inf
    out = mio.load(_write(tmp_path, data))
    assert np.isnan(out.array[0, 0, 0]) and np.isinf(out.array[3, 2, 1])


@pytest.mark.filterwarnings("ignore:.*pixdim.*disagrees")
def test_sform_preferred_and_disagreement_warns(tmp_path):
    """N1: both codes set and different -> sform used, MedsegWarning."""
    data = np.zeros((2, 3, 4), np.int16)
    img = nib.Nifti1Image(data, None)
    q = np.diag([1.0, 1.0, 1.0, 1])
    s = np.diag([2.0, 2.0, 2.0, 1])
    s[:3, 3] = [10, 20, 30]
    img.header.set_qform(q, code=1)
    img.header.set_sform(s, code=2)
    p = tmp_path / "qs.nii"
    img.to_filename(p)
    with pytest.warns(MedsegWarning, match="sform.*qform.*disagree"):
        out = mio.load(p)
    np.testing.assert_allclose(out.affine, s[:, REVERSE])
    assert out.meta["affine_source"] == "sform"
    assert out.spacing == (2.0, 2.0, 2.0)


def test_qform_only(tmp_path):
    data = np.zeros((2, 3, 4), np.int16)
    img = nib.Nifti1Image(data, None)
    q = np.diag([1.5, 2.5, 3.5, 1])
    q[:3, 3] = [-5, 6, 7]
    img.header.set_qform(q, code=1)
    img.header.set_sform(np.eye(4), code=0)
    p = tmp_path / "q.nii"
    img.to_filename(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MedsegWarning)
        out = mio.load(p)
    np.testing.assert_allclose(out.affine, q[:, REVERSE], atol=1e-6)
    assert out.meta["affine_source"] == "qform"
    assert out.spacing == pytest.approx((3.5, 2.5, 1.5))


def test_no_codes_warns_and_uses_pixdim(tmp_path):
    data = np.zeros((2, 3, 4), np.int16)
    img = nib.Nifti1Image(data, None)
    img.header.set_qform(None, code=0)
    img.header.set_sform(None, code=0)
    img.header.set_zooms((1.0, 2.0, 3.0))
    p = tmp_path / "nocodes.nii"
    img.to_filename(p)
    with pytest.warns(MedsegWarning, match="both 0"):
        out = mio.load(p)
    assert out.spacing == (3.0, 2.0, 1.0)
    np.testing.assert_allclose(out.affine, img.header.get_best_affine()[:, REVERSE])


def test_mmap_option(tmp_path):
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    p = _write(tmp_path, data)
    out = mio.load(p, mmap=True)
    assert out.meta["memory_mapped"] is True
    np.testing.assert_array_equal(out.array, data.T)
    assert mio.load(p).meta["memory_mapped"] is False


# --------------------------------------------------------------------------- bad files


def _patch_dims(path, dims):
    """Overwrite dim[1:4] of a NIfTI-1 header in place (little-endian file)."""
    raw = bytearray(Path(path).read_bytes())
    struct.pack_into("<hhh", raw, 42, *dims)
    Path(path).write_bytes(bytes(raw))


def test_lying_header_nii_raises_before_allocating(tmp_path):
    """N7: a 4096^3 int16 header on a small body -> CorruptFileError at once."""
    p = _write(tmp_path, np.zeros((8, 8, 8), np.int16), name="lie.nii")
    _patch_dims(p, (4096, 4096, 4096))
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with pytest.raises(CorruptFileError, match="lying header|truncated"):
            mio.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t < 2.0
    assert peak < 32 * 2**20  # nowhere near the 128 GiB the header asks for


def test_lying_header_nii_gz_raises_before_allocating(tmp_path):
    p = _write(tmp_path, np.zeros((8, 8, 8), np.int16), name="lie.nii")
    _patch_dims(p, (4096, 4096, 4096))
    gz = tmp_path / "lie.nii.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError):
            mio.load(gz)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


def test_moderately_lying_gz_header_reads_only_what_exists(tmp_path):
    """A header 100x too large but under deflate's 1032:1 bound: short stream -> corrupt."""
    p = _write(tmp_path, np.random.default_rng(0).integers(0, 100, (16, 16, 16)).astype(np.int16), name="m.nii")
    _patch_dims(p, (160, 160, 16))
    gz = tmp_path / "m.nii.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(CorruptFileError, match="truncated|lying"):
        mio.load(gz)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_nifti(tmp_path, suffix):
    data = np.random.default_rng(0).integers(0, 1000, (20, 20, 20)).astype(np.int16)
    p = _write(tmp_path, data, name="full" + suffix)
    raw = p.read_bytes()
    cut = tmp_path / ("cut" + suffix)
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptFileError) as ei:
        mio.load(cut)
    assert str(cut) in str(ei.value)


def test_truncated_inside_header(tmp_path):
    p = _write(tmp_path, np.zeros((2, 2, 2), np.int16))
    cut = tmp_path / "hdr.nii"
    cut.write_bytes(p.read_bytes()[:200])
    with pytest.raises(CorruptFileError):
        mio.load(cut)


def test_text_file_named_nii(tmp_path):
    p = tmp_path / "notes.nii"
    p.write_text("this is not a NIfTI image, just some text long enough " * 20)
    with pytest.raises(NotAnImageError):
        mio.load(p)


def test_random_bytes_named_nii_gz(tmp_path):
    p = tmp_path / "junk.nii.gz"
    p.write_bytes(np.random.default_rng(2).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises((NotAnImageError, CorruptFileError)):
        mio.load(p)


def test_gzip_of_junk_named_nii_gz(tmp_path):
    p = tmp_path / "junk2.nii.gz"
    p.write_bytes(gzip.compress(b"hello world" * 100))
    with pytest.raises(NotAnImageError):
        mio.load(p)


def test_empty_nii(tmp_path):
    p = tmp_path / "empty.nii.gz"
    p.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        mio.load(p)


def test_read_nifti_bytes_matches_file_and_survives_mutations(tmp_path):
    data = np.random.default_rng(3).integers(0, 300, (6, 7, 8)).astype(np.int16)
    p = _write(tmp_path, data, name="b.nii.gz")
    blob = p.read_bytes()
    img = mio.read_nifti_bytes(blob)
    np.testing.assert_array_equal(img.array, data.T)
    plain = gzip.decompress(blob)
    rng = np.random.default_rng(0)
    for k in range(60):
        buf = bytearray(plain)
        for pos in rng.integers(0, 352, 4):  # damage the header
            buf[pos] = int(rng.integers(0, 256))
        cut = int(rng.integers(1, len(buf) + 1))
        blob2 = bytes(buf[:cut]) if k % 2 else gzip.compress(bytes(buf[:cut]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mio.read_nifti_bytes(blob2)
        except (ImageIOError, InvalidImageError, InvalidParameterError):
            pass


# --------------------------------------------------------------------------- real scans


def test_totalsegmentator_nifti_geometry():
    p = shared("totalsegmentator", "example_ct_sm.nii.gz")
    ref = nib.load(p)
    img = mio.load(p)
    assert img.shape == (30, 101, 122) and img.dtype == np.int16
    assert img.spacing == (3.0, 3.0, 3.0)
    np.testing.assert_array_equal(img.affine, ref.affine[:, REVERSE])
    assert img.meta["sform_code"] == 2 and img.meta["qform_code"] == 0
    mr = mio.load(shared("totalsegmentator", "example_mr_sm.nii.gz"))
    assert mr.meta["orientation_xyz"] == "LPS" and img.meta["orientation_xyz"] == "RAS"


# --------------------------------------------------------------------------- audit regressions


def test_lying_gz_header_padded_past_the_ratio_check_never_allocates(tmp_path):
    """N7: a 2048x2048x3600 int16 header (30 GB) gzipped and padded to 30 MiB passes the
    1032:1 bound; the stream must be found short before the declared size is allocated."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape((2048, 2048, 3600))
    hdr["vox_offset"] = 352
    p = tmp_path / "huge_lie.nii.gz"
    with open(p, "wb") as f:
        f.write(gzip.compress(hdr.binaryblock + b"\0" * 4))
        f.truncate(30 * 2**20)  # zero padding (sparse where the file system allows)
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match="lying header|truncated") as ei:
            mio.load(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(p) in str(ei.value)
    assert peak < 256 * 2**20  # nowhere near the 30 GB the header asks for


def test_gz_volume_is_read_once_and_exactly(tmp_path):
    data = np.random.default_rng(5).integers(-1000, 1000, (33, 17, 9)).astype(np.int16)
    p = _write(tmp_path, data, name="ok.nii.gz")
    img = mio.load(p)
    np.testing.assert_array_equal(img.array, data.T)
    assert img.array.flags.writeable and img.array.dtype.isnative


def test_memory_error_becomes_an_image_io_error_naming_file_and_size(tmp_path, monkeypatch):
    from medseg_fast.io import nifti

    p = _write(tmp_path, np.zeros((8, 8, 8), np.int16), name="m.nii")

    def no_memory(nbytes):
        raise MemoryError

    monkeypatch.setattr(nifti, "_alloc", no_memory)
    with pytest.raises(ImageIOError, match="not enough memory") as ei:
        mio.load(p)
    assert str(p) in str(ei.value) and "1024 bytes" in str(ei.value)
    assert not isinstance(ei.value, MemoryError)


def test_memory_error_in_read_nifti_bytes(tmp_path, monkeypatch):
    from medseg_fast.io import nifti

    blob = _write(tmp_path, np.zeros((8, 8, 8), np.int16), name="m.nii.gz").read_bytes()

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(nifti, "_read_growing", no_memory)
    with pytest.raises(ImageIOError, match="<bytes>.*not enough memory"):
        mio.read_nifti_bytes(blob)
