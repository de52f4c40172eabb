"""``load`` and ``save``: the format-independent entry points."""

from __future__ import annotations

import gzip
import os
import zlib

from .._errors import CorruptFileError, InvalidParameterError, NotAnImageError
from ._image import Image
from ._util import check_exists
from .dicom import load_dicom
from .nifti import is_nifti_path, load_nifti, save_nifti

__all__ = ["load", "save"]


def _gzipped_dicom(path: str) -> bool:
    """True when *path* is gzip-compressed and its content starts like a DICOM file."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(132)
    except (OSError, EOFError, zlib.error):
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sniff(path: str) -> str | None:
    """'nifti', 'dicom', 'dicom.gz' or None from the first bytes of a file."""
    with open(path, "rb") as f:
        head = f.read(352)
    if head[:2] == b"\x1f\x8b":
        # gzip: .nii.gz under another name, or a gzipped DICOM file
        return "dicom.gz" if _gzipped_dicom(path) else "nifti"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(head) >= 8 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "nifti"
    return None


def load(path, series_uid: str | None = None, *, volume: int | None = None,
         strict: bool = False, recursive: bool = False, mmap: bool = False) -> Image:
    """Load a NIfTI file, a DICOM file or a DICOM series folder as an :class:`Image`.

    Every array is returned in **(z, y, x)** = (slice, row, column) order,
    C-contiguous when possible; ``spacing`` is (dz, dy, dx) in mm and ``affine``
    maps (z, y, x, 1) indices to RAS+ mm. See :mod:`medseg_fast.io`.

    Parameters
    ----------
    path : str or os.PathLike
        ``.nii`` / ``.nii.gz`` file, a DICOM file (multi-frame too), or a folder of
        DICOM files. Files with other names are recognised by their content.
    series_uid : str, optional
        DICOM only: which series to load (SeriesInstanceUID, or the ``id`` from
        :func:`list_series`, which also describes the sub-volumes of one
        multi-frame file). Default: the series with most slices, with a warning
        naming the others.
    volume : int, optional
        NIfTI only: index of the volume to read from a 4D file.
    strict : bool, default False
        DICOM only: raise :class:`~medseg_fast.UnevenSpacingError` for uneven gaps or
        missing slices instead of warning.
    recursive : bool, default False
        DICOM folder only: scan subfolders too.
    mmap : bool, default False
        NIfTI only: memory-map uncompressed, unscaled, native-endian data.

    ``strict`` and ``mmap`` are ignored where they do not apply; ``series_uid``,
    ``volume`` and ``recursive`` given for the wrong kind of input (``series_uid``
    for NIfTI, ``volume`` for DICOM, ``recursive`` for a file) raise
    :class:`~medseg_fast.InvalidParameterError`.

    Returns
    -------
    Image
        ``meta`` holds at least ``source``, ``format`` ('dicom'/'nifti'),
        ``modality``, ``series_uid``, ``warnings`` (every MedsegWarning emitted while
        loading), ``orientation`` (array-order axis code, e.g. 'SPL'),
        ``orientation_xyz``, ``rescale``, ``shape`` and ``dtype``; DICOM adds
        ``slice_positions_mm`` and more.

    Raises
    ------
    FileNotFoundError
        (as :class:`~medseg_fast.io.ImageFileNotFoundError`, an ImageIOError) no such path.
    medseg_fast.ImageIOError
        Its subclasses: NotAnImageError, CorruptFileError,
        UnsupportedTransferSyntaxError, MissingGeometryError, AmbiguousSeriesError,
        DuplicatePositionError, UnevenSpacingError.
    medseg_fast.InvalidImageError
        Colour/palette/MONOCHROME1 DICOM, 4D NIfTI without ``volume=``.

    Examples
    --------
    >>> import os, nibabel, pydicom.data
    >>> from medseg_fast.io import load
    >>> ct = load(pydicom.data.get_testdata_file("CT_small.dcm"))
    >>> ct.shape, ct.meta["format"], ct.meta["orientation"]
    ((1, 128, 128), 'dicom', 'SPL')
    >>> p = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "example4d.nii.gz")
    >>> load(p, volume=0).shape
    (24, 96, 128)
    """
    path = os.fspath(path)
    check_exists(path)
    if os.path.isdir(path):
        _refuse(volume=volume, what="a DICOM folder")
        return load_dicom(path, series_uid, strict=strict, recursive=recursive)
    if os.path.getsize(path) == 0:
        raise CorruptFileError(f"{path}: empty file (0 bytes)")
    kind = "nifti" if is_nifti_path(path) else _sniff(path)
    if kind == "nifti":
        _refuse(series_uid=series_uid, recursive=recursive, what="a NIfTI file")
        return load_nifti(path, volume=volume, mmap=mmap)
    if kind == "dicom.gz":
        raise NotAnImageError(
            f"{path}: a gzip-compressed DICOM file; gzipped DICOM is not supported: "
            "decompress it first (e.g. gunzip -k FILE)"
        )
    _refuse(volume=volume, recursive=recursive, what="a DICOM file")
    if kind == "dicom" or path.lower().endswith((".dcm", ".dicom", ".ima")):
        return load_dicom(path, series_uid, strict=strict)
    # No DICM prefix and no known name: let the DICOM reader say what it is.
    try:
        return load_dicom(path, series_uid, strict=strict)
    except NotAnImageError as exc:
        raise NotAnImageError(
            f"{path}: not a NIfTI (.nii/.nii.gz) or DICOM file ({exc})"
        ) from exc


def _refuse(what: str, **options) -> None:
    """Options that do not apply to this kind of input are errors, not silently ignored."""
    given = [k for k, v in options.items() if v is not None and v is not False]
    if given:
        raise InvalidParameterError(f"{', '.join(given)}= does not apply when loading {what}")


def save(array, path, reference: Image | None = None, *, spacing=None, affine=None,
         label: bool | None = None) -> str:
    """Write a (z, y, x) array or an :class:`Image` as NIfTI (``.nii`` / ``.nii.gz``).

    See :func:`medseg_fast.io.nifti.save_nifti` for every detail. With
    ``reference=`` the file gets exactly the reference's geometry (a NIfTI
    reference's sform/qform and codes; a DICOM reference's affine as sform code 1
    and, unless sheared, qform code 1). Integer and bool arrays are written as label
    maps (smallest fitting integer type, ``scl_slope=1``, ``scl_inter=0``,
    ``intent_code=NIFTI_INTENT_LABEL``); floats as float32.

    Examples
    --------
    >>> import os, tempfile, pydicom.data
    >>> from medseg_fast.io import load, save
    >>> ct = load(pydicom.data.get_testdata_file("CT_small.dcm"))
    >>> mask = ct.array > 0
    >>> p = save(mask, os.path.join(tempfile.mkdtemp(), "mask.nii.gz"), reference=ct)
    >>> back = load(p)
    >>> back.dtype, bool((back.array == mask).all()), bool(abs(back.affine - ct.affine).max() < 1e-4)
    (dtype('uint8'), True, True)
    """
    return save_nifti(array, path, reference, spacing=spacing, affine=affine, label=label)
