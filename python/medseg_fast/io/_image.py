"""The :class:`Image` container returned by :func:`medseg_fast.io.load`.

Conventions (the same for DICOM and NIfTI sources)
--------------------------------------------------
* ``Image.array`` is indexed ``(z, y, x)`` = (slice, row, column), C-contiguous
  when possible: the SimpleITK ``GetArrayFromImage`` / scikit-image
  (plane, row, col) order. For NIfTI it is nibabel's ``(i, j, k)`` array
  transposed; for DICOM the slices are stacked along axis 0 in increasing position
  along the slice normal, each slice being pydicom's ``(rows, columns)`` array.
* ``Image.spacing`` is ``(dz, dy, dx)`` in millimetres, in that same axis order.
  ``dy`` and ``dx`` are the lengths of the affine's row and column steps; ``dz`` is
  the distance between neighbouring slice *planes*. For an orthogonal grid these
  are simply the lengths of the three affine columns; for a sheared grid (gantry
  tilt) ``dz`` is smaller than the length of the stack vector.
* ``Image.affine`` is a 4x4 float64 matrix mapping ``(a0, a1, a2, 1)`` -- voxel
  indices *in the array's axis order*, i.e. ``(z, y, x)`` = (k, j, i) -- to RAS+
  world millimetres (the NIfTI / nibabel world convention: +x = Right, +y =
  Anterior, +z = Superior). Its columns are therefore nibabel's affine columns in
  reverse order: ``affine == nibabel_affine[:, [2, 1, 0, 3]]``. DICOM (LPS+)
  coordinates are converted by negating the first two world rows.
* ``Image.meta['orientation']`` is the 3-letter code (nibabel ``aff2axcodes``
  letters, each naming the RAS+ direction toward which that index *increases*) of
  the array axes **in array order (z, y, x)**; e.g. ``'SPL'`` for a standard axial
  DICOM series. ``Image.meta['orientation_xyz']`` is the same code reversed, i.e.
  for the (x, y, z) = (i, j, k) axes, which is what ``nibabel.aff2axcodes`` reports
  for the NIfTI file written by :func:`medseg_fast.io.save` (``'LPS'`` for that
  axial series).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nibabel.orientations import aff2axcodes

from .._errors import InvalidImageError, InvalidParameterError

__all__ = ["Image"]

# Swaps the index order (i, j, k) <-> (k, j, i); its own inverse.
_REVERSE = np.array(
    [[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64
)


def ijk_to_zyx_affine(affine_ijk: np.ndarray) -> np.ndarray:
    """nibabel affine (indices i, j, k) -> our affine (indices z, y, x)."""
    return np.asarray(affine_ijk, dtype=np.float64) @ _REVERSE


def zyx_to_ijk_affine(affine_zyx: np.ndarray) -> np.ndarray:
    """Our affine (indices z, y, x) -> nibabel affine (indices i, j, k)."""
    return np.asarray(affine_zyx, dtype=np.float64) @ _REVERSE


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """(dz, dy, dx) of an array-order affine: in-plane step lengths and plane distance."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    a0, a1, a2 = m[:, 0], m[:, 1], m[:, 2]
    dy = float(np.linalg.norm(a1))
    dx = float(np.linalg.norm(a2))
    dz = float(np.linalg.norm(a0))
    normal = np.cross(a1, a2)
    area = float(np.linalg.norm(normal))
    if area > 0 and dz > 0 and abs(float(np.dot(a0, normal))) < (1 - 1e-9) * dz * area:
        dz = abs(float(np.dot(a0, normal))) / area  # sheared: distance between planes
    return (dz, dy, dx)


def is_orthogonal(affine: np.ndarray, tol: float = 1e-4) -> bool:
    """True when the three columns of the 3x3 part are mutually orthogonal (cosine < tol)."""
    m = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if np.any(norms == 0):
        return False
    u = m / norms
    g = u.T @ u
    return bool(np.all(np.abs(g - np.diag(np.diag(g))) < tol))


def orientation_code(affine: np.ndarray) -> str:
    """nibabel axis code of an affine's index axes, as one string (``'SPL'``)."""
    return "".join(c if c is not None else "?" for c in aff2axcodes(affine))


def _check_affine(affine) -> np.ndarray:
    a = np.array(affine, dtype=np.float64, copy=True)
    if a.shape != (4, 4):
        raise InvalidParameterError(f"affine must be a 4x4 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidParameterError("affine holds NaN or infinite values")
    if abs(np.linalg.det(a[:3, :3])) < 1e-12:
        raise InvalidParameterError("affine is singular (its 3x3 part has no inverse)")
    return a


def _check_spacing(spacing) -> tuple[float, float, float]:
    try:
        sp = tuple(float(s) for s in spacing)
    except TypeError:
        raise InvalidParameterError(f"spacing must be 3 numbers (dz, dy, dx), got {spacing!r}") from None
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InvalidParameterError(
            f"spacing must be 3 positive finite numbers (dz, dy, dx) in mm, got {spacing!r}"
        )
    return sp


class Image:
    """A 3D image with its geometry: ``array`` (z, y, x), ``spacing``, ``affine``, ``meta``.

    Parameters
    ----------
    array : array_like
        3D voxel array in (z, y, x) = (slice, row, column) order.
    spacing : sequence of 3 floats, optional
        (dz, dy, dx) in mm. Derived from *affine* when omitted (1 mm when both are).
    affine : (4, 4) array_like, optional
        Maps (z, y, x, 1) indices to RAS+ mm. Defaults to the axis-aligned grid with
        x toward +x (Right), y toward +y (Anterior), z toward +z (Superior) and the
        origin at 0, i.e. nibabel's ``diag(dx, dy, dz, 1)``.
    meta : dict, optional
        Free-form metadata; ``'shape'``, ``'dtype'``, ``'orientation'``,
        ``'orientation_xyz'`` and ``'warnings'`` are filled in.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.io import Image
    >>> img = Image(np.zeros((4, 5, 6), np.int16), spacing=(2.0, 0.5, 0.5))
    >>> img.shape, img.spacing
    ((4, 5, 6), (2.0, 0.5, 0.5))
    >>> img.affine[:3, 3].tolist(), img.orientation
    ([0.0, 0.0, 0.0], 'SAR')
    """

    __slots__ = ("array", "spacing", "affine", "meta")

    def __init__(self, array, spacing=None, affine=None, meta: dict[str, Any] | None = None):
        array = np.asarray(array)
        if array.ndim != 3:
            raise InvalidImageError(
                f"Image needs a 3D (z, y, x) array, got {array.ndim}D with shape {array.shape}"
            )
        if affine is None:  # x -> +x (R), y -> +y (A), z -> +z (S), origin 0
            sp = _check_spacing(spacing) if spacing is not None else (1.0, 1.0, 1.0)
            affine = ijk_to_zyx_affine(np.diag([sp[2], sp[1], sp[0], 1.0]))
        affine = _check_affine(affine)
        if spacing is None:
            spacing = spacing_from_affine(affine)
        self.array = array
        self.spacing = _check_spacing(spacing)
        self.affine = affine
        meta = dict(meta) if meta else {}
        meta.setdefault("warnings", [])
        meta["shape"] = tuple(int(n) for n in array.shape)
        meta["dtype"] = str(array.dtype)
        meta["orientation"] = orientation_code(affine)
        meta["orientation_xyz"] = meta["orientation"][::-1]
        self.meta = meta

    @property
    def ndim(self) -> int:
        """Number of array dimensions (always 3)."""
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        """Array shape (nz, ny, nx)."""
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """Array dtype."""
        return self.array.dtype

    @property
    def orientation(self) -> str:
        """Axis code of the array axes in (z, y, x) order, e.g. ``'SPL'``."""
        return orientation_code(self.affine)

    def with_array(self, array) -> "Image":
        """A new Image on the same grid holding *array* (same shape required).

        The geometry and most metadata are kept (``meta['derived_from']`` names the
        source); ``format``, ``source``, ``rescale`` and ``warnings`` are dropped,
        since they described the original voxels. Saving the result writes the
        same grid as the original (for a NIfTI source, its sform/qform exactly).

        >>> import numpy as np
        >>> from medseg_fast.io import Image
        >>> ct = Image(np.zeros((2, 3, 4), np.int16), spacing=(3, 1, 1))
        >>> mask = ct.with_array(ct.array > 0)
        >>> mask.spacing, mask.dtype
        ((3.0, 1.0, 1.0), dtype('bool'))
        """
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InvalidImageError(
                f"array shape {array.shape} does not match the image shape {self.array.shape}"
            )
        meta = {k: v for k, v in self.meta.items() if k not in ("warnings", "rescale", "format", "source")}
        meta["derived_from"] = self.meta.get("source")
        return Image(array, spacing=self.spacing, affine=self.affine, meta=meta)

    def __array__(self, dtype=None, copy=None):
        a = self.array
        if dtype is not None and a.dtype != dtype:
            return a.astype(dtype)
        if copy:
            return a.copy()
        return a

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        origin = ", ".join(f"{v:.4g}" for v in self.affine[:3, 3])
        src = self.meta.get("source")
        fmt = self.meta.get("format")
        extra = f", format={fmt!r}" if fmt else ""
        extra += f", source={src!r}" if src else ""
        return (
            f"Image(shape={self.shape}, dtype={self.array.dtype}, spacing=({sp}) mm, "
            f"orientation={self.orientation!r}, origin=({origin}){extra})"
        )
