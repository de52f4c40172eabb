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
from ._errors import InvalidImageError, InvalidParameterError
from ._validation import check_label_array, check_threads, core_axes, native_c, per_axis, unwrap_image

__all__ = ["label", "distance_transform", "split", "properties", "remove_small", "keep_largest", "relabel_sequential",
           "CLI_METHODS"]

_WIDE_VOXELS = 2**31 - 1


# ------------------------------------------------------------------ helpers


def _check_labels(labels, name="labels", *, allow_empty=False):
    """A bool or integer 2D/3D array (no copy, except one for big-endian input)."""
    arr = check_label_array(labels, name, allow_empty=allow_empty)
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if np.little_endian else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="))  # big-endian: one native copy
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


# ------------------------------------------------------------------ properties and label-map utilities

_DENSE_LIMIT = 1 << 26  # label values above this go through np.unique first


def _nonnegative_labels(arr, name="labels"):
    """Check that an integer label map has no negative values; return (max, arr viewed unsigned)."""
    if arr.dtype.kind == "b":
        return (1 if arr.any() else 0), arr.view(np.uint8)
    mx = int(arr.max()) if arr.size else 0
    if arr.dtype.kind == "i":
        if arr.size and int(arr.min()) < 0:
            raise InvalidImageError(f"{name} holds negative values; instance labels must be >= 0 (0 = background)")
        arr = arr.view(f"u{arr.dtype.itemsize}")
    return mx, arr


def _dense(u, mx):
    """A label map whose values index a dense table: (map, values or None)."""
    if mx + 1 <= _DENSE_LIMIT:
        return u, None
    values, inverse = np.unique(u, return_inverse=True)
    dt = np.uint32 if len(values) < 2**32 else np.uint64
    return inverse.reshape(u.shape).astype(dt), values


def properties(labels, image=None, spacing=None, *, backend="auto", num_threads=None):
    """Per-instance measurements in one pass over a label map (2D/3D).

    Parameters
    ----------
    labels : (M, N) or (P, M, N) array of non-negative integers (or bool)
        0 is background; every other value is one instance.
    image : array of the same shape, optional
        Intensities (any supported dtype) for the mean / min / max columns.
    spacing : float or sequence of float, optional
        Voxel size (mm) for ``volume_mm3`` and ``centroid_mm``; default 1.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    dict of numpy arrays (columns), one row per label present, in increasing
    label order:
    ``label``, ``voxel_count``, ``volume_mm3``, ``bbox`` (n, 2*ndim: the first
    voxel index and one past the last per axis, as ``skimage.measure.regionprops``),
    ``centroid`` (n, ndim, in voxels), ``centroid_mm`` (n, ndim, ``centroid *
    spacing``, relative to the array origin) and, with ``image``,
    ``mean_intensity``, ``min_intensity``, ``max_intensity`` (float64).

    Notes
    -----
    One parallel pass with per-chunk dense tables indexed by label value
    (labels above 2**26 are first compacted with ``np.unique``); coordinate
    sums are exact integers and float sums are merged in a fixed order, so the
    result is identical for any thread count and on both backends.  No pandas
    needed: ``pandas.DataFrame({k: list(v) ...})`` turns it into a table.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import properties
    >>> lab = np.array([[1, 1, 0], [0, 2, 2], [0, 2, 0]])
    >>> p = properties(lab, spacing=(2.0, 1.0))
    >>> p["label"].tolist(), p["voxel_count"].tolist(), p["volume_mm3"].tolist()
    ([1, 2], [2, 3], [4.0, 6.0])
    >>> p["bbox"].tolist()
    [[0, 0, 1, 2], [1, 1, 3, 3]]
    """
    labels, spacing = unwrap_image(labels, spacing)
    arr = _check_labels(labels, "labels")
    sp = np.array(_spacing(spacing, arr.ndim))
    img = None
    if image is not None:
        image, _ = unwrap_image(image)
        from ._validation import check_image

        img = check_image(image, "image")
        if img.shape != arr.shape:
            raise InvalidImageError(f"image has shape {img.shape}, but labels have shape {arr.shape}")
        if img.dtype == np.bool_:
            img = img.view(np.uint8)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    mx, u = _nonnegative_labels(arr)
    u, values = _dense(u, mx)
    nlab = (int(u.max()) + 1) if values is not None else mx + 1
    view, transposed = native_c(u)
    iview = None
    if img is not None:
        iview = img.T if transposed else img
        iview = np.ascontiguousarray(iview) if not iview.flags.c_contiguous else iview
        if iview.dtype.byteorder not in ("=", "|"):
            iview = iview.astype(iview.dtype.newbyteorder("="))
    raw = family(name, "instance").properties(view, iview, int(nlab), nt)
    count = raw["count"]
    present = np.flatnonzero(count)
    present = present[present != 0]
    nd = arr.ndim
    axes = list(range(3 - nd, 3))  # core axes of the user's dims, in core order
    lo = raw["lo"][present][:, axes]
    hi = raw["hi"][present][:, axes] + 1
    csum = raw["csum"][present][:, axes].astype(np.float64)
    if transposed:
        lo, hi, csum = lo[:, ::-1], hi[:, ::-1], csum[:, ::-1]
    n = count[present]
    centroid = csum / n[:, None]
    lab_ids = present if values is None else values[present]
    out = {
        "label": np.asarray(lab_ids).astype(arr.dtype if arr.dtype.kind != "b" else np.uint8),
        "voxel_count": n.astype(np.int64),
        "volume_mm3": n * float(np.prod(sp)),
        "bbox": np.concatenate([lo, hi], axis=1).astype(np.int64),
        "centroid": centroid,
        "centroid_mm": centroid * sp[None, :],
    }
    if img is not None:
        out["mean_intensity"] = raw["isum"][present] / n
        out["min_intensity"] = raw["imin"][present].astype(np.float64)
        out["max_intensity"] = raw["imax"][present].astype(np.float64)
    return out


def _counts_by_value(arr, backend, nt):
    """Voxel count per label value (dense, index = value) of a non-negative label map."""
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    mx, u = _nonnegative_labels(arr)
    u, values = _dense(u, mx)
    nlab = (int(u.max()) + 1) if values is not None else mx + 1
    view, _ = native_c(u)
    count = family(name, "instance").properties(view, None, int(nlab), nt)["count"]
    return count, values, u


def remove_small(labels, min_size, *, spacing=None, connectivity=None, backend="auto", num_threads=None):
    """Remove instances smaller than ``min_size`` (2D/3D).

    Parameters
    ----------
    labels : array of bool or non-negative integers
        A boolean mask: its connected components (``connectivity``) are the
        instances and a boolean mask is returned.  A label map: every value is
        one instance, small ones are set to 0, the dtype is kept.
    min_size : float
        Minimum size in voxels, or in mm³ when ``spacing`` is given.  Instances
        with a smaller size are removed (a size equal to ``min_size`` is kept).
    spacing : sequence of float, optional
    connectivity : int, optional
        For boolean masks (see :func:`label`); default 1.
    backend, num_threads : see :func:`label`.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import remove_small
    >>> m = np.array([[1, 1, 1, 0, 1]], bool)
    >>> remove_small(m, 2).astype(int)
    array([[1, 1, 1, 0, 0]])
    >>> remove_small(np.array([[3, 3, 0, 5]]), 2)
    array([[3, 3, 0, 0]])
    """
    labels, spacing = unwrap_image(labels, spacing)
    arr = _check_labels(labels, "labels")
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Real) or not np.isfinite(min_size) \
            or min_size < 0:
        raise InvalidParameterError(f"min_size must be a finite number >= 0, got {min_size!r}")
    vox = float(np.prod(_spacing(spacing, arr.ndim))) if spacing is not None else 1.0
    nt = check_threads(num_threads)
    if arr.dtype == np.bool_:
        lab = label(arr, connectivity, backend=backend, num_threads=nt)
        count, _, _ = _counts_by_value(lab, backend, nt)
        keep = count * vox >= min_size
        keep[0] = False
        return keep[lab]
    count, values, u = _counts_by_value(arr, backend, nt)
    keep = count * vox >= min_size
    keep[0] = False
    if values is None:
        lut = np.where(keep, np.arange(len(count)), 0).astype(arr.dtype)
        uu = arr.view(f"u{arr.dtype.itemsize}") if arr.dtype.kind == "i" else arr
        return lut[uu]
    return np.where(keep[u], arr, 0).astype(arr.dtype)


def keep_largest(mask, n=1, *, connectivity=None, backend="auto", num_threads=None):
    """Keep the ``n`` largest connected components of a mask (2D/3D).

    Parameters
    ----------
    mask : array of bool or integers (non-zero = foreground)
    n : int
        Number of components to keep (>= 1).  Ties in size are broken in favour
        of the component whose first voxel comes first in raster order.
    connectivity : int, optional
        See :func:`label` (default 1).
    backend, num_threads : see :func:`label`.

    Returns
    -------
    ndarray of bool

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import keep_largest
    >>> keep_largest(np.array([[1, 0, 1, 1, 0, 1]], bool)).astype(int)
    array([[0, 0, 1, 1, 0, 0]])
    """
    mask, _ = unwrap_image(mask)
    arr = _check_labels(mask, "mask")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise InvalidParameterError(f"n must be an integer >= 1, got {n!r}")
    nt = check_threads(num_threads)
    m = arr if arr.dtype == np.bool_ else arr != 0
    lab = label(m, connectivity, backend=backend, num_threads=nt)
    count, _, _ = _counts_by_value(lab, backend, nt)
    count[0] = 0
    order = np.argsort(-count, kind="stable")[:n]
    keep = np.zeros(len(count), bool)
    keep[order[count[order] > 0]] = True
    return keep[lab]


def relabel_sequential(labels, *, backend="auto", num_threads=None):
    """Renumber the non-zero labels to 1..k, keeping their order (2D/3D).

    Parameters
    ----------
    labels : array of non-negative integers

    Returns
    -------
    relabelled : ndarray of the input dtype
        Value ``values[i]`` becomes ``i + 1``; 0 stays 0.
    values : ndarray
        The original label of each new label (``values[new - 1] == old``).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import relabel_sequential
    >>> out, values = relabel_sequential(np.array([[0, 7, 7, 3], [40, 0, 3, 3]], np.uint8))
    >>> out
    array([[0, 2, 2, 1],
           [3, 0, 1, 1]], dtype=uint8)
    >>> values.tolist()
    [3, 7, 40]
    """
    labels, _ = unwrap_image(labels)
    arr = _check_labels(labels, "labels")
    nt = check_threads(num_threads)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8), np.array([1] if arr.any() else [], np.uint8)
    count, values, u = _counts_by_value(arr, backend, nt)
    count[0] = 0
    present = np.flatnonzero(count)
    if values is None:
        lut = np.zeros(len(count), arr.dtype)
        lut[present] = np.arange(1, len(present) + 1)
        uu = arr.view(f"u{arr.dtype.itemsize}") if arr.dtype.kind == "i" else arr
        return lut[uu], present.astype(arr.dtype)
    lut = np.zeros(len(values), arr.dtype)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[u], values[present].astype(arr.dtype)


# ------------------------------------------------------------------ split


def split(mask, spacing=None, *, min_distance=None, min_radius=0.0, connectivity=1, compactness=0.0,
          backend="auto", num_threads=None):
    """Separate touching objects of a mask (2D/3D): distance transform, one
    marker per object at its distance maxima, watershed within the mask.

    Parameters
    ----------
    mask : array of bool or integers (non-zero = foreground), or medseg_fast.io.Image
    spacing : float or sequence of float, optional
        Voxel size (mm); distances and ``min_distance`` are physical.
    min_distance : float, optional
        Minimum distance (mm) between two object centres: a voxel is a marker
        when its distance to the background is the maximum within a box of
        half-width ``min_distance`` (rounded to voxels per axis).  Default:
        3 voxels of the finest axis.  Roughly the radius of the smallest
        object to separate.
    min_radius : float
        Markers need a distance to the background above this (mm); removes
        markers in thin protrusions.
    connectivity : int
        Of the watershed (1..ndim); markers on a plateau are merged with full
        connectivity.
    compactness : float
        Compact watershed (see :func:`medseg_fast.region.watershed`).
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    ndarray of uint32 labels (0 outside the mask), objects numbered in raster
    order of their marker.

    Notes
    -----
    Markers: the exact EDT (:func:`distance_transform`), a separable box
    maximum filter and the connected components of the plateaus of maxima
    (:func:`label`); the flooding is the marker watershed of
    :func:`medseg_fast.region.watershed` on the negated distance, restricted to
    the mask.  Every connected component of the mask that receives no marker
    (smaller than ``min_radius``) keeps one label of its own, so no foreground
    is lost.  When the region module has no numba kernel the watershed step
    runs on the cpu backend.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.instance import split
    >>> yy, xx = np.mgrid[:20, :40]
    >>> two = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64) | ((yy - 10) ** 2 + (xx - 26) ** 2 < 64)
    >>> lab = split(two, min_distance=4)
    >>> int(lab.max()), lab[10, 12] != lab[10, 26]
    (2, np.True_)
    """
    mask, spacing = unwrap_image(mask, spacing)
    arr = _check_labels(mask, "mask")
    ndim = arr.ndim
    sp = _spacing(spacing, ndim)
    if min_distance is None:
        min_distance = 3.0 * min(sp)
    if isinstance(min_distance, bool) or not isinstance(min_distance, numbers.Real) or not np.isfinite(min_distance) \
            or min_distance <= 0:
        raise InvalidParameterError(f"min_distance must be a positive number (mm), got {min_distance!r}")
    if isinstance(min_radius, bool) or not isinstance(min_radius, numbers.Real) or not min_radius >= 0:
        raise InvalidParameterError(f"min_radius must be a number >= 0 (mm), got {min_radius!r}")
    conn = _check_connectivity(connectivity, ndim)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    try:
        from . import region
    except ImportError as exc:  # the region module is another branch's work
        raise _backend.BackendUnavailableError(
            f"split needs medseg_fast.region.watershed, which is not available here ({exc})"
        ) from None
    m = arr if arr.dtype == np.bool_ else arr != 0
    dist = distance_transform(m, sp, backend=name, num_threads=nt)
    radius = [int(round(min_distance / s)) for s in sp]
    view, transposed = native_c(dist)
    rad_core = core_axes(radius, ndim, transposed, fill=0)
    pk = family(name, "instance").peaks(view, [int(r) for r in rad_core], float(min_radius), nt)
    if transposed:
        pk = pk.T
    markers = label(pk, ndim, backend=name, num_threads=nt)
    # components of the mask without any marker get one (their first voxel's component)
    comp, ncomp = label(m, conn, return_num=True, backend=name, num_threads=nt)
    has = np.zeros(ncomp + 1, bool)
    has[comp[markers > 0]] = True
    if not has[1:].all():
        orphan = ~has[comp] & m
        extra = label(orphan, conn, backend=name, num_threads=nt)
        nmark = int(markers.max(initial=0))
        markers = np.where(extra > 0, extra + np.uint32(nmark), markers)
    neg = np.negative(dist)
    try:
        out = region.watershed(neg, markers, mask=m, connectivity=conn, compactness=compactness, spacing=sp,
                               backend=name, num_threads=nt)
    except (ImportError, _backend.BackendUnavailableError, AttributeError):
        out = region.watershed(neg, markers, mask=m, connectivity=conn, compactness=compactness, spacing=sp,
                               backend="cpu", num_threads=nt)
    return out.astype(np.uint32, copy=False)


# ------------------------------------------------------------------ CLI hook


def _cli_components(image, spacing, threshold=0.5, connectivity=1, min_size=0.0):
    mask = np.asarray(image) > threshold
    lab = label(mask, connectivity)
    if min_size > 0:
        lab = remove_small(lab, min_size, spacing=spacing)
        lab = relabel_sequential(lab)[0]
    return lab


def _cli_split(image, spacing, threshold=0.5, min_distance=0.0, min_radius=0.0):
    mask = np.asarray(image) > threshold
    return split(mask, spacing, min_distance=min_distance if min_distance > 0 else None, min_radius=min_radius)


CLI_METHODS = {
    "components": {
        "run": _cli_components,
        "help": "connected components of image > threshold (a label map, raster-order numbering)",
        "params": {
            "threshold": (float, 0.5, "voxels above this are foreground (e.g. 0.5 for a mask, HU for a CT)"),
            "connectivity": (int, 1, "1 = faces (6 in 3D), 2 = faces+edges (18), 3 = all 26 neighbours"),
            "min_size": (float, 0.0, "remove components smaller than this (mm^3)"),
        },
    },
    "split": {
        "run": _cli_split,
        "help": "separate touching objects of image > threshold (distance maxima + watershed)",
        "params": {
            "threshold": (float, 0.5, "voxels above this are foreground"),
            "min_distance": (float, 0.0, "minimum distance between object centres in mm (0 = 3 voxels)"),
            "min_radius": (float, 0.0, "ignore maxima closer than this to the background (mm)"),
        },
    },
}
