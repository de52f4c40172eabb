"""Instance segmentation: connected components, distance transform, splitting of
touching objects, per-instance properties and label-map utilities.

Every function works on 2D and 3D arrays, takes ``spacing`` where distances or
volumes are involved, releases the GIL and uses ``num_threads`` cores on the
cpu backend, and gives the same answer on every backend and for any thread
count.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import EmptyImageError, InvalidImageError, InvalidParameterError
from ._validation import check_threads, core_axes, native_c, per_axis, unwrap_image

__all__ = ["label", "distance_transform"]

_WIDE_VOXELS = 2**31 - 1


# ------------------------------------------------------------------ helpers


def _check_labels(labels, name="labels", *, allow_empty=False):
    """A bool or integer 2D/3D array (no copy)."""
    if hasattr(labels, "__cuda_array_interface__") and not isinstance(labels, np.ndarray):
        raise InvalidImageError(f"{name} is a GPU array; this function needs a numpy array")
    arr = np.asarray(labels)
    if arr.dtype.kind not in "biu":
        raise InvalidImageError(
            f"{name} must be a boolean mask or an integer label map, got dtype {arr.dtype}; "
            "threshold or round it first (e.g. image > t, or labels.astype(np.int32))"
        )
    if arr.ndim not in (2, 3):
        raise InvalidImageError(f"{name} must be 2D or 3D, got an array of shape {arr.shape} (ndim={arr.ndim})")
    if arr.size == 0 and not allow_empty:
        raise EmptyImageError(f"{name} is empty (shape {arr.shape})")
    return arr


def _unsigned_c(arr):
    """Native C-ordered view of a label array as unsigned of the same width.

    Only equality of values matters to the kernels, so signed maps are viewed as
    unsigned (no copy).  Fortran-ordered, big-endian and strided input is copied
    once to C order (label numbering follows the C raster order).
    """
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if np.little_endian else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "b":
        return arr.view(np.uint8)
    if arr.dtype.kind == "i":
        return arr.view(f"u{arr.dtype.itemsize}")
    return arr


def _check_connectivity(connectivity, ndim, default=1):
    if connectivity is None:
        return default
    if isinstance(connectivity, bool) or not isinstance(connectivity, numbers.Integral):
        raise InvalidParameterError(f"connectivity must be an integer in 1..{ndim}, got {connectivity!r}")
    c = int(connectivity)
    # accept the neighbour counts too (4/8 in 2D, 6/18/26 in 3D)
    counts = {2: {4: 1, 8: 2}, 3: {6: 1, 18: 2, 26: 3}}[ndim]
    if c in counts:
        c = counts[c]
    if not 1 <= c <= ndim:
        raise InvalidParameterError(
            f"connectivity must be 1..{ndim} (or {'/'.join(map(str, counts))} neighbours) for a {ndim}D image, "
            f"got {connectivity!r}"
        )
    return c


def _background_value(background, dtype):
    """The background value in the unsigned view of `dtype`."""
    if isinstance(background, bool) or not isinstance(background, numbers.Integral):
        raise InvalidParameterError(f"background must be an integer, got {background!r}")
    dt = np.dtype(dtype)
    if dt.kind == "b":
        if background not in (0, 1):
            raise InvalidParameterError(f"background must be 0 or 1 for a boolean mask, got {background}")
        return int(background)
    info = np.iinfo(dt)
    if not info.min <= background <= info.max:
        raise InvalidParameterError(f"background {background} is outside the range of the labels' dtype {dt}")
    return int(np.array(background, dt.newbyteorder("=")).view(f"u{dt.itemsize}"))


def _check_out_dtype(out_dtype, n_voxels):
    if out_dtype is None:
        return np.dtype(np.uint64 if n_voxels >= _WIDE_VOXELS else np.uint32)
    try:
        dt = np.dtype(out_dtype)
    except TypeError:
        raise InvalidParameterError(f"out_dtype must be a numpy integer dtype, got {out_dtype!r}")
    if dt.kind not in "iu":
        raise InvalidParameterError(f"out_dtype must be an integer dtype, got {dt}")
    return dt.newbyteorder("=")


# ------------------------------------------------------------------ label


def label(image, connectivity=None, *, background=0, return_num=False, out_dtype=None, backend="auto",
          num_threads=None):
    """Connected components of a mask or of each label of a label map (2D/3D).

    Parameters
    ----------
    image : (M, N) or (P, M, N) array of bool or integers
        A boolean mask, or a label map (any integer dtype): voxels connect when
        they hold the same value, so the components of every label are numbered
        separately (one shared numbering).  Float arrays raise (threshold first).
    connectivity : int, optional
        Neighbours differ in at most this many coordinates: 1 (faces: 4 in 2D,
        6 in 3D, the default, as ``scipy.ndimage.label``), 2 (8 in 2D, 18 in
        3D) or 3 (26 in 3D).  The neighbour counts 4/8 and 6/18/26 are accepted
        too.
    background : int
        The value that is not labelled (default 0).
    return_num : bool
        Also return the number of components.
    out_dtype : numpy integer dtype, optional
        Default uint32, or uint64 for images of 2**31 voxels or more.  A
        narrower dtype is accepted when the component count fits it, otherwise
        :class:`InvalidParameterError` is raised (never a silent wrap).
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional
        Threads (None: all cores).  The result does not depend on it.

    Returns
    -------
    labels : ndarray of ``out_dtype``
        0 for background, 1..n for the components, numbered in raster (C)
        order of their first voxel — for a boolean mask exactly the output of
        ``scipy.ndimage.label(mask, generate_binary_structure(ndim,
        connectivity))``.
    n : int
        Only with ``return_num``.

    Notes
    -----
    Two-pass union-find labelling, parallel over blocks of rows with a merge
    across block borders (cpp/include/medseg/labeling.hpp).  Memory: the output
    plus a table of at most one entry per foreground run.  Fortran-ordered,
    strided or big-endian input is copied once to C order (the numbering is
    defined in C raster order); signed label maps are viewed as unsigned, not
    copied.  An empty array gives an empty label array and n = 0.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import label
    >>> mask = np.array([[1, 1, 0, 0],
    ...                  [0, 0, 1, 0],
    ...                  [1, 0, 0, 1]], bool)
    >>> label(mask)
    array([[1, 1, 0, 0],
           [0, 0, 2, 0],
           [3, 0, 0, 4]], dtype=uint32)
    >>> label(mask, connectivity=2, return_num=True)[1]
    2
    >>> label(np.array([[1, 1, 2, 2, 0, 1]]))  # a label map: each label apart
    array([[1, 1, 2, 2, 0, 3]], dtype=uint32)
    """
    image, _ = unwrap_image(image)
    arr = _check_labels(image, "image", allow_empty=True)
    conn = _check_connectivity(connectivity, arr.ndim)
    bg = _background_value(background, arr.dtype)
    odt = _check_out_dtype(out_dtype, arr.size)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    if arr.size == 0:
        out = np.zeros(arr.shape, odt)
        return (out, 0) if return_num else out
    wide = arr.size >= 2**32 - 1 or odt.itemsize > 4
    out, n = family(name, "instance").label(_unsigned_c(arr), conn, bg, bool(wide), nt)
    n = int(n)
    if out.dtype != odt:
        if n > np.iinfo(odt).max:
            raise InvalidParameterError(
                f"out_dtype {odt} cannot hold {n} components; use uint32 or a wider integer dtype"
            )
        out = out.astype(odt)
    return (out, n) if return_num else out


# ------------------------------------------------------------------ distance transform


def _mask_u8(arr):
    """A native C-ordered (or transposed F-ordered) uint8 view/copy of a mask: (view, transposed)."""
    if arr.dtype == np.bool_:
        return native_c(arr.view(np.uint8))
    if arr.dtype == np.uint8 and arr.max(initial=0) <= 1:
        return native_c(arr)
    return native_c((arr != 0).view(np.uint8))


def _spacing(spacing, ndim):
    if spacing is None:
        return (1.0,) * ndim
    return per_axis(spacing, ndim, "spacing")


def distance_transform(mask, spacing=None, *, signed=False, backend="auto", num_threads=None):
    """Exact Euclidean distance transform in mm, 2D or 3D, anisotropic.

    Parameters
    ----------
    mask : (M, N) or (P, M, N) array of bool or integers, or medseg_fast.io.Image
        Non-zero voxels are inside.
    spacing : float or sequence of float, optional
        Voxel size per axis (mm); default 1 (distances in voxels).  An Image
        brings its own spacing.
    signed : bool
        If True, inside voxels get minus their distance to the nearest outside
        voxel and outside voxels plus their distance to the nearest inside
        voxel (so neither side has zeros).  If False (default) outside voxels
        are 0, as in scipy.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    ndarray of float32
        For ``signed=False`` equal to ``scipy.ndimage.distance_transform_edt(
        mask, sampling=spacing)`` to float32 rounding (relative 1e-6).  When
        there is no outside voxel at all the distances are +inf (scipy returns
        distances to a virtual voxel before the array's origin instead); with
        ``signed`` an empty mask gives +inf everywhere.

    Notes
    -----
    Felzenszwalb & Huttenlocher's separable lower-envelope algorithm, exact,
    O(voxels), parallel over lines (cpp/include/medseg/distance.hpp).
    Memory: the float32 output (two with ``signed``); Fortran-ordered input is
    processed as its transpose without a copy; integer masks other than 0/1
    uint8 are converted to one byte per voxel first.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import distance_transform
    >>> m = np.zeros((1, 7), bool); m[0, 1:6] = True
    >>> distance_transform(m)
    array([[0., 1., 2., 3., 2., 1., 0.]], dtype=float32)
    >>> distance_transform(m, spacing=(1.0, 0.5))[0, 3]
    np.float32(1.5)
    >>> distance_transform(m, signed=True)[0, [0, 3]]
    array([ 1., -3.], dtype=float32)
    """
    mask, spacing = unwrap_image(mask, spacing)
    arr = _check_labels(mask, "mask")
    sp = _spacing(spacing, arr.ndim)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    view, transposed = _mask_u8(arr)
    out = family(name, "instance").distance_transform(view, core_axes(sp, arr.ndim, transposed, fill=1.0),
                                                       bool(signed), nt)
    return out.T if transposed else out
