"""NIfTI-1 / NIfTI-2 reading and writing (``.nii`` and ``.nii.gz``).

Axis convention
---------------
Arrays are returned in **(z, y, x)** order, C-contiguous: nibabel's ``(i, j, k)``
array transposed (``np.asarray(img.dataobj).T`` is C-contiguous for nibabel's
Fortran-ordered data, so no copy is made). ``Image.spacing`` is ``(dz, dy, dx)``
in mm and ``Image.affine`` maps ``(z, y, x, 1)`` indices to RAS+ mm, i.e. it is
nibabel's affine with its first three columns reversed. :func:`save_nifti`
transposes back, so files written here open in every NIfTI tool with the usual
``(i, j, k)`` meaning.

What the reader guards against (HAZARDS N1-N8)
----------------------------------------------
* the header is parsed with nibabel, and ``prod(dim) x itemsize + vox_offset`` is
  checked against the file size **before** any voxel buffer is allocated (a lying
  header on a small ``.nii`` raises :class:`~medseg_fast.CorruptFileError` at
  once); for ``.nii.gz`` the declared size is checked against deflate's maximum
  ratio (1032:1), then the stream is decompressed into a buffer that grows only
  as the data arrives, so a header that lies about a compressed file never gets
  its declared size allocated: the short stream is a
  :class:`~medseg_fast.CorruptFileError`. Running out of memory for data that
  is really there is an :class:`~medseg_fast.ImageIOError` naming the size;
* the affine follows nibabel's rule (sform if its code > 0, else qform, else the
  pixdim default) and a :class:`~medseg_fast.MedsegWarning` is emitted when sform
  and qform are both set and disagree;
* ``scl_slope``/``scl_inter`` are applied with the package's one rescale policy:
  integer output when they are integral and the result fits int16/int32, float32
  otherwise, never float64; unscaled integer data keeps its dtype;
* big-endian data is byte-swapped in place to native order;
* 4D data needs ``volume=`` (a singleton 4th dimension is squeezed with a warning).

Writing (:func:`save_nifti`) never reuses a reference header's dtype or scaling
(HAZARDS W1): label maps are stored as the smallest fitting integer type with
``scl_slope=1``, ``scl_inter=0`` and ``intent_code = NIFTI_INTENT_LABEL``.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import secrets
import stat
import struct
import zlib
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.spatialimages import HeaderDataError

from .._errors import (
    CorruptFileError,
    EmptyImageError,
    ImageIOError,
    MedsegError,
    InvalidImageError,
    InvalidParameterError,
    MissingGeometryError,
    NotAnImageError,
)
from ._image import (
    Image,
    ijk_to_zyx_affine,
    is_orthogonal,
    spacing_from_affine,
    zyx_to_ijk_affine,
)
from ._util import WarningLog, apply_rescale, check_exists, rescaled_dtype

__all__ = ["load_nifti", "read_nifti_bytes", "save_nifti", "is_nifti_path"]

_GZIP_MAGIC = b"\x1f\x8b"
#: deflate cannot compress better than about 1032:1; a gzip stream of N bytes
#: never decompresses to more than this many times N (plus a little slack).
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 26  # 64 MiB per read call

_XYZ_UNITS = {0: "unknown", 1: "meter", 2: "mm", 3: "micron"}
_INTENT_LABEL = 1002  # NIFTI_INTENT_LABEL


def is_nifti_path(path: str) -> bool:
    """True for names ending in ``.nii`` or ``.nii.gz`` (any case)."""
    p = str(path).lower()
    return p.endswith(".nii") or p.endswith(".nii.gz")


# --------------------------------------------------------------------------- reading


def _parse_header(fobj, name: str):
    """Read a NIfTI-1/2 single-file header from *fobj*; classify failures."""
    head = fobj.read(4)
    if len(head) < 4:
        raise CorruptFileError(f"{name}: file too short to hold a NIfTI header ({len(head)} bytes)")
    sizes = {struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]}
    if 348 in sizes:
        klass = nib.Nifti1Header
    elif 540 in sizes:
        klass = nib.Nifti2Header
    else:
        raise NotAnImageError(
            f"{name}: not a NIfTI file (sizeof_hdr field is neither 348 nor 540)"
        )
    fobj.seek(0)
    try:
        hdr = klass.from_fileobj(fobj, check=False)
    except (EOFError, OSError, ValueError, struct.error, zlib.error) as exc:
        raise CorruptFileError(f"{name}: cannot read the NIfTI header: {exc}") from exc
    except Exception as exc:  # nibabel HeaderDataError and friends
        raise CorruptFileError(f"{name}: invalid NIfTI header: {exc}") from exc
    magic = bytes(hdr["magic"]).rstrip(b"\x00")
    if magic in (b"ni1", b"ni2"):
        raise NotAnImageError(
            f"{name}: this is the header of a NIfTI pair (.hdr/.img); only single-file "
            ".nii / .nii.gz images are supported"
        )
    if magic not in (b"n+1", b"n+2"):
        raise NotAnImageError(f"{name}: not a NIfTI file (magic {magic!r})")
    return hdr


def _read_exact(fobj, buf: np.ndarray, name: str, what: str) -> None:
    """Fill the uint8 buffer *buf* from *fobj* or raise CorruptFileError."""
    view = memoryview(buf).cast("B")
    total = len(view)
    got = 0
    try:
        while got < total:
            n = fobj.readinto(view[got : got + _CHUNK])
            if not n:
                break
            got += n
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFileError(
            f"{name}: the {what} is truncated or damaged after {got} of {total} bytes: {exc}"
        ) from exc
    if got < total:
        raise CorruptFileError(
            f"{name}: the header declares {total} bytes of {what} but the file ends after "
            f"{got}: truncated file or lying header"
        )


def _alloc(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 buffer (pages are committed as they are written)."""
    return np.empty(nbytes, dtype=np.uint8)


def _read_growing(fobj, total: int, name: str, what: str) -> np.ndarray:
    """Read *total* bytes from a decompressing stream into a buffer that grows as it fills.

    The size comes from a header that may lie; a compressed stream's real length
    is only known once it has been decompressed. Growing a ``bytearray`` (the
    allocator extends large blocks in place) means that memory is only taken for
    bytes that really arrive, and the data is decompressed once.
    """
    buf = bytearray()
    try:
        while len(buf) < total:
            chunk = fobj.read(min(_CHUNK, total - len(buf)))
            if not chunk:
                break
            buf += chunk
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFileError(
            f"{name}: the {what} is truncated or damaged after {len(buf)} of {total} bytes: {exc}"
        ) from exc
    if len(buf) < total:
        raise CorruptFileError(
            f"{name}: the header declares {total} bytes of {what} but the compressed stream "
            f"ends after {len(buf)}: truncated file or lying header"
        )
    return np.frombuffer(buf, dtype=np.uint8)


def _skip(fobj, nbytes: int, name: str) -> None:
    """Move forward by *nbytes* (seek on plain files, read-and-drop on gzip)."""
    try:
        fobj.seek(nbytes, io.SEEK_CUR)
    except (EOFError, OSError, zlib.error) as exc:
        raise CorruptFileError(f"{name}: truncated or damaged before the requested volume: {exc}") from exc


def _volume_layout(hdr, name: str, volume, log: WarningLog):
    """Return (shape3_ijk, volume index, n_volumes) after checking the dimensions."""
    shape = tuple(int(n) for n in hdr.get_data_shape())
    if any(n <= 0 for n in shape) or not shape:
        raise CorruptFileError(f"{name}: the header declares an empty shape {shape}")
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 4:
        raise InvalidImageError(
            f"{name}: {len(shape)}D image with shape {shape}; only 3D images and 4D "
            "series (with volume=) are supported"
        )
    if len(shape) < 3:
        shape = shape + (1,) * (3 - len(shape))
    n_vol = shape[3] if len(shape) == 4 else 1
    if volume is None:
        if n_vol > 1:
            raise InvalidImageError(
                f"{name}: 4D image with shape {shape} ({n_vol} volumes); pass "
                f"volume=<index in 0..{n_vol - 1}> to load one 3D volume"
            )
        if len(shape) == 4:
            log.warn(f"{name}: 4D image with a single volume (shape {shape}); squeezed to 3D")
        volume = 0
    else:
        try:
            v = int(volume)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"volume must be an integer, got {volume!r}") from None
        if v < 0:
            v += n_vol
        if not 0 <= v < n_vol:
            raise InvalidParameterError(
                f"{name}: volume={volume} is out of range for {n_vol} volume(s)"
            )
        volume = v
    return shape[:3], volume, n_vol


def _choose_affine(hdr, name: str, log: WarningLog):
    """nibabel's rule (sform > qform > pixdim), skipping non-finite or singular matrices."""
    s_code = int(hdr["sform_code"])
    q_code = int(hdr["qform_code"])

    def valid(a):
        return a is not None and np.all(np.isfinite(a)) and abs(np.linalg.det(a[:3, :3])) > 1e-12

    sform = hdr.get_sform() if s_code > 0 else None
    try:
        qform = hdr.get_qform() if q_code > 0 else None
    except Exception:  # a broken quaternion
        qform = None
    candidates = []
    if s_code > 0:
        candidates.append(("sform", sform))
    if q_code > 0:
        candidates.append(("qform", qform))
    chosen = None
    for label, a in candidates:
        if valid(a):
            chosen = (label, a)
            break
        log.warn(f"{name}: the {label} (code {s_code if label == 'sform' else q_code}) is not a "
                 "finite invertible matrix; ignored")
    if chosen is None:
        base = hdr.get_base_affine()
        if not valid(base):
            raise MissingGeometryError(
                f"{name}: neither the sform, the qform nor pixdim gives a valid affine"
            )
        if not candidates:
            log.warn(
                f"{name}: sform_code and qform_code are both 0; using nibabel's default "
                "affine from pixdim (the world position is unknown)"
            )
        chosen = ("pixdim", base)
    if chosen[0] == "sform" and valid(qform):
        diff = float(np.max(np.abs(sform - qform)))
        if diff > 1e-3:
            log.warn(
                f"{name}: sform (code {s_code}) and qform (code {q_code}) disagree by up to "
                f"{diff:.4g} mm; using the sform (nibabel's rule)"
            )
    return chosen[0], np.asarray(chosen[1], dtype=np.float64)


def _load(opener, size: int | None, name: str, *, volume, mmap: bool, path: str | None) -> Image:
    declared: dict = {}
    try:
        return _load_unchecked(opener, size, name, volume=volume, mmap=mmap, path=path, declared=declared)
    except MedsegError:
        raise
    except MemoryError as exc:
        if "bytes" in declared:
            what = (f"the {declared['bytes']} bytes ({declared['bytes'] / 2**30:.3g} GiB) of a "
                    f"{declared['shape']} {declared['dtype']} volume")
        else:
            what = "the image"
        raise ImageIOError(
            f"{name}: not enough memory to load {what} declared by the header (MemoryError); "
            "if the file is not that large, its header lies"
        ) from exc
    except (EOFError, OSError, zlib.error, struct.error, ValueError, HeaderDataError) as exc:
        raise CorruptFileError(f"{name}: unreadable NIfTI file: {type(exc).__name__}: {exc}") from exc


def _load_unchecked(opener, size, name, *, volume, mmap, path, declared) -> Image:
    log = WarningLog()
    mapped = False
    with opener() as f:
        compressed = isinstance(f, gzip.GzipFile)
        hdr = _parse_header(f, name)
        shape3, vol, n_vol = _volume_layout(hdr, name, volume, log)
        try:
            dtype = hdr.get_data_dtype()
        except Exception as exc:
            raise CorruptFileError(f"{name}: unknown NIfTI datatype code {int(hdr['datatype'])}") from exc
        if dtype.fields is not None or dtype.kind in ("c", "V", "b"):
            raise InvalidImageError(
                f"{name}: NIfTI datatype {dtype} (colour or complex) is not a grey-level image"
            )
        offset = int(hdr.get_data_offset())
        hdr_end = f.tell()
        if offset < hdr_end:
            offset = max(hdr_end, int(hdr["sizeof_hdr"]) + 4)
        vol_bytes = int(np.prod(shape3, dtype=np.int64)) * dtype.itemsize
        declared.update(bytes=vol_bytes, shape=shape3, dtype=str(dtype))
        total = vol_bytes * n_vol
        need = offset + total
        if size is not None:
            if not compressed and size < need:
                raise CorruptFileError(
                    f"{name}: the header declares {total} bytes of voxel data at offset {offset} "
                    f"(shape {hdr.get_data_shape()}, {dtype}) but the file holds {size} bytes: "
                    "truncated file or lying header"
                )
            if compressed and need > _MAX_DEFLATE_RATIO * size + (1 << 20):
                raise CorruptFileError(
                    f"{name}: the header declares {need} bytes but a {size}-byte gzip stream "
                    "cannot decompress to more than about "
                    f"{_MAX_DEFLATE_RATIO * size} bytes: lying header or truncated file"
                )
        slope, inter = hdr.get_slope_inter()
        scaled = slope is not None and (float(slope) != 1.0 or (inter is not None and float(inter) != 0.0))
        start = offset + vol * vol_bytes
        if mmap and path is not None and not compressed and not scaled and dtype.isnative:
            raw_ijk = np.memmap(path, dtype=dtype.newbyteorder("="), mode="c", offset=start,
                                shape=shape3, order="F")
            raw_ijk = raw_ijk.view(np.ndarray)
            mapped = True
        else:
            _skip(f, start - f.tell(), name)
            if compressed:  # the header's size is not verified yet: grow with the data
                buf = _read_growing(f, vol_bytes, name, "voxel data")
            else:  # the file size was checked above
                buf = _alloc(vol_bytes)  # committed page by page as it is filled
                _read_exact(f, buf, name, "voxel data")
            if compressed and vol == n_vol - 1:
                try:  # reach the end of the stream so that gzip verifies its CRC
                    f.read(1)
                except (EOFError, OSError, zlib.error) as exc:
                    raise CorruptFileError(f"{name}: damaged gzip stream: {exc}") from exc
            raw_ijk = buf.view(dtype).reshape(shape3, order="F")
            if not dtype.isnative:
                raw_ijk.byteswap(inplace=True)
            raw_ijk = raw_ijk.view(dtype.newbyteorder("="))
    raw = raw_ijk.T  # (z, y, x), C-contiguous
    stored_dtype = str(dtype)
    if scaled:
        s = float(slope)
        b = float(inter) if inter is not None else 0.0
        if raw.dtype.kind == "f":
            mn = mx = 0.0
        else:
            mn, mx = raw.min(), raw.max()
        out_dtype = rescaled_dtype(raw.dtype, [s], [b], [mn], [mx])
        array = apply_rescale(raw, [s], [b], out_dtype)
    else:
        array = raw

    source_of_affine, aff_ijk = _choose_affine(hdr, name, log)
    affine = ijk_to_zyx_affine(aff_ijk)
    spacing = spacing_from_affine(affine)
    pixdim = tuple(abs(float(z)) for z in hdr["pixdim"][1:4])[::-1]
    if not np.allclose(spacing, pixdim, rtol=1e-4, atol=1e-5):
        log.warn(
            f"{name}: pixdim {pixdim[::-1]} disagrees with the voxel size of the "
            f"{source_of_affine} {tuple(round(v, 6) for v in spacing[::-1])}; spacing is "
            "taken from the affine"
        )
    units = _XYZ_UNITS.get(int(hdr["xyzt_units"]) & 0x07, "unknown")
    if units in ("meter", "micron"):
        log.warn(f"{name}: spatial units are {units}s; spacing and affine are NOT converted to mm")

    meta: dict[str, Any] = {
        "source": path if path is not None else name,
        "format": "nifti",
        "modality": None,
        "series_uid": None,
        "warnings": log,
        "rescale": {
            "slope": float(slope) if scaled else 1.0,
            "intercept": float(inter or 0.0) if scaled else 0.0,
            "applied": bool(scaled),
            "stored_dtype": stored_dtype,
        },
        "affine_source": source_of_affine,
        "sform_code": int(hdr["sform_code"]),
        "qform_code": int(hdr["qform_code"]),
        "pixdim_zyx": pixdim,
        "xyz_units": units,
        "intent_code": int(hdr["intent_code"]),
        "volume": vol if n_vol > 1 else None,
        "n_volumes": n_vol,
        "nifti_version": 2 if isinstance(hdr, nib.Nifti2Header) else 1,
        "nifti_header": hdr.copy(),
        "memory_mapped": mapped,
    }
    image = Image(array, spacing=spacing, affine=affine, meta=meta)
    image.meta["warnings"] = list(log)
    return image


def load_nifti(path, *, volume: int | None = None, mmap: bool = False) -> Image:
    """Load a ``.nii`` / ``.nii.gz`` file as an :class:`~medseg_fast.io.Image`.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Compression is detected from the content, not the name.
    volume : int, optional
        Index of the 3D volume to read from a 4D file (negative counts from the
        end). Required when the 4th dimension is longer than 1.
    mmap : bool, default False
        Memory-map uncompressed, unscaled, native-endian data (copy-on-write)
        instead of reading it. Do not overwrite the file while the array lives.

    Returns
    -------
    Image
        ``array`` in (z, y, x) order; see the module docstring.

    Raises
    ------
    FileNotFoundError
        (as :class:`~medseg_fast.io.ImageFileNotFoundError`) no such file.
    NotAnImageError
        The file is not a single-file NIfTI image.
    CorruptFileError
        Truncated file, lying header (declared size larger than the file), bad gzip.
    InvalidImageError
        4D without ``volume=``, 5D, colour or complex data.

    Examples
    --------
    >>> import os, nibabel
    >>> from medseg_fast.io import load
    >>> p = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii")
    >>> img = load(p)                    # big-endian int16 on disk
    >>> img.shape, img.dtype, img.array.dtype.isnative
    ((25, 41, 33), dtype('int16'), True)
    """
    path = os.fspath(path)
    check_exists(path)
    if os.path.isdir(path):
        raise NotAnImageError(f"{path}: is a folder, not a NIfTI file")
    size = os.path.getsize(path)
    if size == 0:
        raise CorruptFileError(f"{path}: empty file (0 bytes)")
    with open(path, "rb") as f:
        gz = f.read(2) == _GZIP_MAGIC

    def opener():
        return gzip.open(path, "rb") if gz else open(path, "rb")

    return _load(opener, size, path, volume=volume, mmap=mmap, path=path)


def read_nifti_bytes(data: bytes, *, volume: int | None = None, name: str = "<bytes>") -> Image:
    """Parse a NIfTI image (``.nii`` or gzip-compressed) held in memory.

    Only :mod:`medseg_fast` exceptions are raised on bad input, which makes this
    the entry point for fuzzing.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.io import read_nifti_bytes
    >>> import nibabel as nib
    >>> blob = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)).to_bytes()
    >>> read_nifti_bytes(blob).shape    # (z, y, x) = (k, j, i)
    (4, 3, 2)
    """
    try:
        data = bytes(data)
    except MemoryError as exc:
        raise ImageIOError(f"{name}: not enough memory to copy the input (MemoryError)") from exc
    if not data:
        raise CorruptFileError(f"{name}: empty input (0 bytes)")
    gz = data[:2] == _GZIP_MAGIC

    def opener():
        bio = io.BytesIO(data)
        return gzip.GzipFile(fileobj=bio, mode="rb") if gz else bio

    try:
        return _load(opener, len(data), name, volume=volume, mmap=False, path=None)
    except MedsegError:
        raise
    except MemoryError as exc:
        raise ImageIOError(f"{name}: not enough memory to load the image (MemoryError)") from exc
    except (ValueError, TypeError, IndexError) as exc:  # defensive: fuzzing entry point
        raise CorruptFileError(f"{name}: {exc}") from exc


# --------------------------------------------------------------------------- writing

_GEOMETRY_FIELDS = (
    "pixdim", "xyzt_units", "qform_code", "sform_code", "quatern_b", "quatern_c",
    "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z",
    "dim_info", "slice_start", "slice_end", "slice_code", "slice_duration", "toffset",
)


def _storage_dtype(array: np.ndarray, label: bool) -> np.dtype:
    kind = array.dtype.kind
    if kind == "b":
        return np.dtype(np.uint8)
    if kind in "iu":
        if not label:  # keep the dtype (NIfTI has every integer type up to 64 bits)
            return array.dtype.newbyteorder("=")
        if array.size == 0:
            return np.dtype(np.uint8)
        lo, hi = int(array.min()), int(array.max())
        for t in (np.uint8, np.uint16, np.int16, np.int32, np.int64):
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                return np.dtype(t)
        raise InvalidImageError(f"integer values {lo}..{hi} do not fit any NIfTI integer type")
    if kind == "f":
        return np.dtype(np.float32)
    raise InvalidImageError(f"cannot save an array of dtype {array.dtype} as NIfTI")


def _header_matches(hdr, image: Image) -> bool:
    """True when a stored source header still describes *image*'s grid."""
    try:
        best = ijk_to_zyx_affine(hdr.get_best_affine())
        shape = tuple(int(n) for n in hdr.get_data_shape()[:3])
    except Exception:  # noqa: BLE001
        return False
    shape = shape + (1,) * (3 - len(shape))
    return shape[::-1] == tuple(image.shape) and np.allclose(best, image.affine, rtol=0, atol=1e-6)


def _nifti_class(ref_hdr, shape):
    if ref_hdr is not None and isinstance(ref_hdr, nib.Nifti2Header):
        return nib.Nifti2Image, nib.Nifti2Header
    if max(shape) > 32767:  # NIfTI-1 dims are int16
        return nib.Nifti2Image, nib.Nifti2Header
    return nib.Nifti1Image, nib.Nifti1Header


def save_nifti(
    array,
    path,
    reference: Image | None = None,
    *,
    spacing=None,
    affine=None,
    label: bool | None = None,
) -> str:
    """Write a (z, y, x) array as a NIfTI file (``.nii`` or ``.nii.gz``).

    Parameters
    ----------
    array : array_like or Image
        3D array in (z, y, x) order, or an :class:`Image` (its array is written,
        and its geometry is used when *reference* is not given).
    path : str or os.PathLike
        Output name ending in ``.nii`` or ``.nii.gz``. The file is written to a
        temporary name first and then renamed over *path*; it gets the usual
        permissions (``0o666`` less the umask), or keeps those of the file it
        replaces.
    reference : Image, optional
        Image whose grid the array lies on (shapes must match). A NIfTI-sourced
        reference gives its sform/qform, their codes, pixdim and units exactly; any
        other reference gives its affine as the sform (code 1, scanner) and also as
        the qform when the affine is orthogonal. A sheared affine (gantry tilt) goes
        to the sform only, with ``qform_code = 0``, and a MedsegWarning says so.
    spacing : sequence of 3 floats, optional
        (dz, dy, dx) in mm when there is no *reference* and no *affine*.
    affine : (4, 4) array_like, optional
        Array-order (z, y, x) -> RAS+ affine, instead of *reference*.
    label : bool, optional
        Store as a label map. Default: True for bool and integer arrays, except for
        an :class:`Image` loaded straight from a file (``meta['format']`` set), which
        is a label map only if it was one (bool, or NIfTI intent LABEL), so that a
        CT saved back keeps its dtype and no label intent. Label maps
        are written as the smallest of uint8, uint16, int16, int32, int64 holding
        the values, with ``scl_slope=1``, ``scl_inter=0`` and
        ``intent_code=NIFTI_INTENT_LABEL``. Float arrays are written as float32.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InvalidImageError
        *array* is not 3D, or its shape differs from the reference's
        (:class:`~medseg_fast.EmptyImageError` for an array with no voxels).
    InvalidParameterError
        Bad file name, or conflicting geometry arguments.
    ImageIOError
        The file cannot be written (missing folder, *path* is a folder, no
        permission, disk full); the message names *path*.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from medseg_fast.io import save, load
    >>> labels = np.zeros((3, 4, 5), np.int32); labels[1, 2, 3] = 300
    >>> p = os.path.join(tempfile.mkdtemp(), "labels.nii.gz")
    >>> _ = save(labels, p, spacing=(2.0, 1.0, 1.0))
    >>> back = load(p)
    >>> back.dtype, int(back.array[1, 2, 3]), back.spacing
    (dtype('uint16'), 300, (2.0, 1.0, 1.0))
    """
    path = os.fspath(path)
    if not is_nifti_path(path):
        raise InvalidParameterError(f"{path}: NIfTI output names must end in .nii or .nii.gz")
    log = WarningLog()
    loaded_scan = None
    if isinstance(array, Image):
        if reference is None and affine is None and spacing is None:
            reference = array
        if array.meta.get("format") in ("dicom", "nifti"):
            loaded_scan = array  # an image straight from a file, not a derived result
        array = array.array
    array = np.asarray(array)
    if array.ndim != 3:
        raise InvalidImageError(f"save needs a 3D (z, y, x) array, got shape {array.shape}")
    if array.size == 0:
        raise EmptyImageError(
            f"{path}: cannot save an empty array of shape {array.shape}: a NIfTI image needs at "
            "least one voxel along every axis"
        )
    if reference is not None and (spacing is not None or affine is not None):
        raise InvalidParameterError("give either reference= or spacing=/affine=, not both")
    if spacing is not None and affine is not None:
        raise InvalidParameterError("give either spacing= or affine=, not both")
    if reference is not None:
        if not isinstance(reference, Image):
            raise InvalidParameterError(f"reference must be a medseg_fast.io.Image, got {type(reference)}")
        if tuple(reference.shape) != tuple(array.shape):
            raise InvalidImageError(
                f"array shape {array.shape} does not match the reference shape {reference.shape}"
            )
        geom = Image(np.empty((1, 1, 1), np.uint8), spacing=reference.spacing, affine=reference.affine)
        ref_hdr = reference.meta.get("nifti_header")
        if ref_hdr is not None and not _header_matches(ref_hdr, reference):
            ref_hdr = None  # the Image was edited after loading: its affine wins
    else:
        geom = Image(np.empty((1, 1, 1), np.uint8), spacing=spacing, affine=affine)
        ref_hdr = None

    if label is None:
        if loaded_scan is not None:  # a CT saved back is not a label map
            label = array.dtype.kind == "b" or loaded_scan.meta.get("intent_code") == _INTENT_LABEL
        else:
            label = array.dtype.kind in "biu"
    out_dtype = _storage_dtype(array, label)
    img_class, hdr_class = _nifti_class(ref_hdr, array.shape)
    hdr = hdr_class()
    data_ijk = array.T
    hdr.set_data_shape(data_ijk.shape)
    hdr.set_data_dtype(out_dtype)
    if ref_hdr is not None:
        for field in _GEOMETRY_FIELDS:
            if field in ref_hdr.keys() and field in hdr.keys():
                hdr[field] = ref_hdr[field]
        pixdim = np.array(hdr["pixdim"])  # keep qfac, spatial zooms; clear unused ones
        pixdim[4:] = 1.0
        hdr["pixdim"] = pixdim
    else:
        aff_ijk = zyx_to_ijk_affine(geom.affine)
        hdr.set_sform(aff_ijk, code="scanner")
        if is_orthogonal(aff_ijk):
            hdr.set_qform(aff_ijk, code="scanner")
        else:
            hdr.set_qform(None, code="unknown")
            log.warn(
                f"{path}: the affine is sheared (e.g. CT gantry tilt); it is written to the "
                "sform only and qform_code is 0, because a qform cannot hold a shear. Tools "
                "that read only the qform will place this image on an orthogonal grid."
            )
        hdr.set_zooms(tuple(geom.spacing[::-1]))
        hdr.set_xyzt_units("mm")
    hdr.set_slope_inter(1.0, 0.0)
    hdr["intent_code"] = _INTENT_LABEL if label else 0
    hdr["intent_name"] = b"label" if label else b""
    hdr["cal_min"] = 0.0
    hdr["cal_max"] = 0.0
    hdr["descrip"] = b"medseg_fast"
    if data_ijk.dtype != out_dtype:
        data_ijk = data_ijk.astype(out_dtype)
    img = img_class(data_ijk, affine=None, header=hdr)
    # nibabel recomputes scaling only when the data dtype differs from the header's.
    _write_replacing(img, path)
    return path


def _io_error(path: str, exc: OSError, doing: str) -> ImageIOError:
    """An ImageIOError naming *path* (never the temporary name) for a failed write."""
    folder = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, FileNotFoundError) and not os.path.isdir(folder):
        why = f"folder {folder} does not exist"
    elif isinstance(exc, PermissionError):
        why = f"permission denied ({exc.strerror or exc})"
    elif isinstance(exc, IsADirectoryError):
        why = "is a folder"
    else:
        why = exc.strerror or str(exc) or type(exc).__name__
    err = ImageIOError(f"{path}: cannot {doing}: {why}")
    err.errno = exc.errno
    return err


def _write_replacing(img, path: str) -> None:
    """Write *img* to a temporary file beside *path*, then rename it over *path*.

    The temporary file is created with mode ``0o666`` less the umask (what a plain
    ``open(path, "w")`` gives) or, when *path* already exists, with that file's
    permission bits. Failures raise :class:`~medseg_fast.ImageIOError` naming
    *path*, and the temporary file is removed.
    """
    if os.path.isdir(path):
        raise ImageIOError(f"{path}: cannot save: is a folder; give a file name ending in .nii or .nii.gz")
    directory = os.path.dirname(os.path.abspath(path))
    suffix = ".nii.gz" if path.lower().endswith(".gz") else ".nii"
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None
    tmp = None
    try:
        for _ in range(100):
            name = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}{suffix}")
            try:  # O_EXCL: never reuse an existing name; the umask applies to 0o666
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            tmp = name
            break
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)
        if old_mode is not None:
            os.chmod(tmp, old_mode)
        img.to_filename(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _io_error(path, exc, "save the NIfTI file") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
