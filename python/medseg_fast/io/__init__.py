"""Loading DICOM and NIfTI images, and writing masks back as NIfTI.

Axis convention
---------------
Every array handed out by :func:`load` is in **(z, y, x) = (slice, row, column)**
order, C-contiguous when possible -- the SimpleITK ``GetArrayFromImage`` /
scikit-image (plane, row, col) convention.

* NIfTI: nibabel's ``(i, j, k)`` array transposed (a free view for nibabel's
  Fortran-ordered data).
* DICOM: slices stacked along axis 0 in increasing position along the slice
  normal (row cosines x column cosines), each slice being pydicom's
  ``(rows, columns)`` array; one single-frame file gives ``(1, rows, columns)``.

``Image.spacing`` is ``(dz, dy, dx)`` in mm in that same order (``dz`` is the
distance between slice planes). ``Image.affine`` is a 4x4 float64 matrix mapping
``(z, y, x, 1)`` -- indices in the array's axis order -- to RAS+ world mm (the
NIfTI / nibabel world; DICOM LPS is converted by negating the first two world
rows). Its columns are nibabel's affine columns in reverse order. A gantry-tilted
DICOM stack gets a sheared affine. ``Image.meta['orientation']`` is the axis code
of the array axes in (z, y, x) order (e.g. ``'SPL'`` for an axial DICOM series:
slices toward Superior, rows toward Posterior, columns toward patient Left);
``meta['orientation_xyz']`` is the reversed code that nibabel reports for the
saved NIfTI (``'LPS'`` there).

Public API
----------
:class:`Image`, :func:`load`, :func:`save`, :func:`list_series`,
:func:`show_decoders`, :func:`read_dicom_bytes`, :func:`read_nifti_bytes`, and the
errors :class:`ImageFileNotFoundError` (also a ``FileNotFoundError``) and
:class:`UnsupportedMosaicError`; all other errors come from
:mod:`medseg_fast._errors`.

Examples
--------
>>> import pydicom.data
>>> from medseg_fast.io import load
>>> img = load(pydicom.data.get_testdata_file("MR_small.dcm"))
>>> img  # doctest: +ELLIPSIS
Image(shape=(1, 64, 64), dtype=int16, spacing=(0.8, 0.3125, 0.3125) mm, orientation='SPL', ...)
"""

from ._api import load, save
from ._image import Image
from ._util import ImageFileNotFoundError, UnsupportedMosaicError
from .dicom import list_series, read_dicom_bytes, show_decoders
from .nifti import read_nifti_bytes

__all__ = [
    "Image",
    "load",
    "save",
    "list_series",
    "show_decoders",
    "read_dicom_bytes",
    "read_nifti_bytes",
    "ImageFileNotFoundError",
    "UnsupportedMosaicError",
]
