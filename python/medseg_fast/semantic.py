"""Semantic class maps: every voxel gets a class label.

:func:`classify` turns sorted thresholds into a class map, :func:`multiotsu_classes`
does it with multi-Otsu thresholds, and :func:`ct_tissues` labels CT tissues
from Hounsfield ranges inside the patient's body.  Class maps are uint8
(uint16 past 255 classes) and save with ``medseg_fast.io.save`` as label maps.
"""

from __future__ import annotations

import numbers
import reprlib

import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import EmptyImageError, InvalidParameterError
from ._validation import check_image, check_mask, check_threads, native_c, unwrap_image
from .threshold import multiotsu

__all__ = ["classify", "multiotsu_classes", "ct_tissues", "body_mask", "DEFAULT_CT_RANGES", "CT_OTHER"]


def _classify(arr, thresholds, m, name, nt):
    view, transposed = native_c(arr.view(np.uint8) if arr.dtype == np.bool_ else arr)
    mview = None
    if m is not None:
        mview = np.ascontiguousarray(m.T if transposed else m)  # the image's memory order
    out = family(name, "threshold").classify(view, mview, np.ascontiguousarray(thresholds, np.float64), nt)
    return out.T if transposed else out


_MAX_CLASSES = 65536  # uint16 class maps


def _check_thresholds(thresholds, masked=False):
    try:
        t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidParameterError("thresholds must be a number or a sequence of numbers, got "
                                    f"{reprlib.repr(thresholds)}") from None
    if t.size == 0:
        raise InvalidParameterError("thresholds is empty; give at least one threshold")
    if not np.all(np.isfinite(t)):
        raise InvalidParameterError(f"thresholds must be finite, got {thresholds!r}")
    if np.any(np.diff(t) < 0):
        raise InvalidParameterError(f"thresholds must be sorted in increasing order, got {thresholds!r}")
    top = _MAX_CLASSES - 1 - masked  # n thresholds make n + 1 classes, plus class 0 outside a mask
    if t.size > top:
        raise InvalidParameterError(f"at most {top} thresholds are supported{' with a mask' if masked else ''} "
                                    f"(a uint16 class map holds {_MAX_CLASSES} labels), got {t.size}")
    return t


def classify(image, thresholds, *, mask=None, backend="auto", num_threads=None):
    """Class map from sorted thresholds: class i holds t[i-1] < value <= t[i].

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        Any supported dtype; NaN/inf raise.
    thresholds : float or sequence of float
        Sorted (non-decreasing) finite thresholds t[0] <= ... <= t[n-1]; at
        most 65535 (65534 with a mask).
    mask : array of bool, optional
        Voxels outside the mask get 0 and voxels inside get 1..n+1.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    ndarray of uint8, or uint16 when the largest class does not fit (more
    than 255 thresholds, or more than 254 with a mask)
        Without a mask, the number of thresholds strictly below each value
        (0..n): a voxel equal to a threshold stays in the lower class, the
        ``image > threshold`` rule of every threshold function.  Note that
        ``np.digitize(image, thresholds)``, which scikit-image's multi-Otsu
        example uses, puts it in the upper class.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.semantic import classify
    >>> classify(np.array([[0, 10, 11, 50]], np.int16), [10, 40]).tolist()
    [[0, 0, 1, 2]]
    """
    image, _ = unwrap_image(image)
    arr = check_image(image)
    t = _check_thresholds(thresholds, mask is not None)
    m = check_mask(mask, arr.shape)
    if m is not None:
        t = np.concatenate(([-np.inf], t))
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    return _classify(arr, t, m, name, nt)


def multiotsu_classes(image, classes=3, *, mask=None, nbins=None, backend="auto", num_threads=None):
    """Multi-Otsu class map: ``classes`` intensity classes from one histogram.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
    classes : int
        2..5.
    mask : array of bool, optional
        Thresholds come from the voxels inside the mask only; voxels outside
        get 0 and voxels inside 1..classes.
    nbins : int, optional
        See :func:`medseg_fast.threshold.histogram`.
    backend, num_threads
        As in :func:`classify`.

    Returns
    -------
    ndarray of uint8: 0..classes-1 (no mask) or 0 outside / 1..classes inside.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.semantic import multiotsu_classes
    >>> img = np.array([[0, 1, 0, 50, 51, 50, 100, 99, 100]], np.uint8)
    >>> multiotsu_classes(img, 3).tolist()
    [[0, 0, 0, 1, 1, 1, 2, 2, 2]]
    """
    t = multiotsu(image, classes, mask=mask, nbins=nbins, backend=backend, num_threads=num_threads)
    return classify(image, t, mask=mask, backend=backend, num_threads=num_threads)


# ---------------------------------------------------------------- CT tissues

#: Default Hounsfield ranges of :func:`ct_tissues`, class = position + 1, each
#: ``lo <= HU < hi``.  Sources: fat -190..-30 and skeletal muscle / soft tissue
#: -29..150 HU (Mitsiopoulos et al. 1998, J. Appl. Physiol. 85(1):115-122, the
#: ranges of body-composition CT); lung parenchyma -950..-500 HU with air/gas
#: below -950 HU (-950 HU is the emphysema/air cut of Gevenois et al. 1996,
#: Am. J. Respir. Crit. Care Med. 154(1):187-192; -500 HU the lung/soft-tissue cut
#: of Hu, Hoffman & Reinhardt 2001, IEEE TMI 20(6):490-498); bone >= 150 HU
#: (above the soft-tissue range; contrast-filled vessels fall here too).
DEFAULT_CT_RANGES = {
    "air": (-np.inf, -950.0),
    "lung": (-950.0, -500.0),
    "fat": (-190.0, -29.0),
    "soft_tissue": (-29.0, 150.0),
    "bone": (150.0, np.inf),
}
#: Name of the extra class for body voxels in no range (with the defaults, the
#: -500..-190 HU partial-volume band at lung and bowel borders).
CT_OTHER = "other"


def _check_ranges(ranges):
    if ranges is None:
        ranges = DEFAULT_CT_RANGES
    if isinstance(ranges, dict):
        items = list(ranges.items())
    else:
        try:
            items = [(str(n), (lo, hi)) for n, lo, hi in ranges]
        except (TypeError, ValueError):
            raise InvalidParameterError("ranges must be a dict {name: (lo, hi)} or a sequence of (name, lo, hi)")
    if not items:
        raise InvalidParameterError("ranges is empty")
    if len(items) > 254:
        raise InvalidParameterError("at most 254 ranges are supported")
    out = []
    for name, r in items:
        try:
            lo, hi = (float(v) for v in r)
        except (TypeError, ValueError):
            raise InvalidParameterError(f"range {name!r} must be a pair (lo, hi), got {r!r}")
        if np.isnan(lo) or np.isnan(hi) or not lo < hi:
            raise InvalidParameterError(f"range {name!r} needs lo < hi, got ({lo}, {hi})")
        out.append((str(name), lo, hi))
    srt = sorted(out, key=lambda x: x[1])
    for a, b in zip(srt, srt[1:]):
        if b[1] < a[2]:
            raise InvalidParameterError(f"ranges {a[0]!r} and {b[0]!r} overlap")
    return out


def body_mask(hu, *, air_threshold=-500.0, fill_holes="slices", connectivity=1, backend="auto",
              num_threads=None):
    """The patient's body in a CT: the largest connected component of voxels
    above ``air_threshold`` with its holes (lungs, airways, bowel gas) filled.

    Parameters
    ----------
    hu : (M, N) or (P, M, N) array or medseg_fast.io.Image
        CT in Hounsfield units, axial slices along axis 0 for 3D.
    air_threshold : float
        Voxels above it are tissue (default -500 HU, Hu et al. 2001).
    fill_holes : {'slices', '3d', None}
        'slices': fill holes in each axial slice (axis 0), which closes the
        lungs even when the trachea leaves the volume at its top; '3d': one 3D
        fill (gas connected to the volume's border stays outside); None: no fill.
    connectivity : int
        Connectivity of the component search (1..ndim).
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    ndarray of bool

    Notes
    -----
    Hole filling is a flood of the non-tissue voxels from the border of each
    slice (or of the volume), face-connected, using the hysteresis flood of
    :mod:`medseg_fast.edges`; whatever it does not reach is a hole.  The
    component search uses :func:`medseg_fast.instance.label`.  The patient
    table and other objects apart from the body are dropped.  Memory: two
    bytes per voxel plus the uint32 labels.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.semantic import body_mask
    >>> hu = np.full((9, 9), -1000, np.int16); hu[1:8, 1:8] = 40; hu[3:6, 3:6] = -800
    >>> hu[0, 0] = 40  # a speck outside the body
    >>> m = body_mask(hu); bool(m[4, 4]), bool(m[0, 0]), int(m.sum())
    (True, False, 49)
    """
    from .instance import label

    hu, _ = unwrap_image(hu)
    arr = check_image(hu)
    thr = float(air_threshold) if isinstance(air_threshold, numbers.Real) else np.nan
    if not np.isfinite(thr):
        raise InvalidParameterError(f"air_threshold must be a finite number, got {air_threshold!r}")
    if fill_holes not in ("slices", "3d", None):
        raise InvalidParameterError(f"fill_holes must be 'slices', '3d' or None, got {fill_holes!r}")
    if not isinstance(connectivity, numbers.Integral) or not 1 <= connectivity <= arr.ndim:
        raise InvalidParameterError(f"connectivity must be an integer in 1..{arr.ndim}, got {connectivity!r}")
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    tissue = np.greater(arr, thr, order="C")
    if fill_holes is not None:
        # states: 0 tissue, 1 non-tissue, 2 non-tissue on the border (flood seeds)
        state = np.logical_not(tissue).view(np.uint8)  # fresh C-ordered array
        if fill_holes == "slices" and arr.ndim == 3:
            # slices stacked as one 2D image of (P*M, N) rows: the first and last
            # row of every slice are seeds, so floods never cross between slices
            flat = state.reshape(-1, arr.shape[-1])
            sl = state.reshape(arr.shape[0], arr.shape[1], arr.shape[2])
            sl[:, 0, :] *= 2
            sl[:, -1, :] *= 2
            sl[:, 1:-1, 0] *= 2
            sl[:, 1:-1, -1] *= 2
        else:
            flat = state if arr.ndim == 2 else state
            for ax in range(arr.ndim):
                idx = [slice(None)] * arr.ndim
                for end in (0, -1):
                    idx[ax] = end
                    v = state[tuple(idx)]
                    v[v == 1] = 2
        outside = family(name, "edges").hysteresis(flat, 0.5, 1.5, 1, nt).reshape(arr.shape)
        np.logical_not(outside, out=tissue)
        del state, outside, flat
    labels, n = label(tissue, connectivity, return_num=True, backend=backend, num_threads=num_threads)
    if n == 0:
        raise EmptyImageError(f"no voxel is above air_threshold={thr}; is the image in Hounsfield units?")
    # component sizes by the label-properties kernel (np.bincount would first
    # copy the uint32 labels to int64: 8 bytes per voxel)
    sizes = family(name, "instance").properties(labels, None, n + 1, nt)["count"]
    sizes[0] = 0
    keep = int(np.argmax(sizes))
    return np.equal(labels, keep, out=tissue)


def ct_tissues(hu, ranges=None, *, body=None, air_threshold=-500.0, fill_holes="slices", gas_by_component=True,
               backend="auto", num_threads=None):
    """CT tissue class map from Hounsfield ranges, inside the patient's body.

    Parameters
    ----------
    hu : (M, N) or (P, M, N) array or medseg_fast.io.Image
        CT in Hounsfield units (apply the rescale slope/intercept first;
        ``medseg_fast.io.load`` does); axial slices along axis 0.
    ranges : dict {name: (lo, hi)} or sequence of (name, lo, hi), optional
        Classes 1..n in the given order, each ``lo <= HU < hi``; ranges must
        not overlap.  Default :data:`DEFAULT_CT_RANGES`: 1 air (< -950),
        2 lung (-950..-500), 3 fat (-190..-29), 4 soft tissue (-29..150),
        5 bone (>= 150), with the published sources listed there.
    body : array of bool, optional
        The body mask; default :func:`body_mask` (largest component of
        voxels above ``air_threshold``, holes filled per slice).
    air_threshold, fill_holes
        Passed to :func:`body_mask`.
    gas_by_component : bool
        When the ranges hold classes named "air" and "lung": each connected
        region (full connectivity) of air-or-lung voxels becomes entirely the
        class most of its voxels have.  Bowel and airway gas (mostly below
        -950 HU) then keeps its partial-volume rim (-950..-500 HU) out of
        "lung", and low-density holes in the lung stay "lung".
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    ndarray of uint8
        0 outside the body, 1..n for the ranges, n + 1 (:data:`CT_OTHER`) for
        body voxels in no range.

    Notes
    -----
    Air outside the patient is background, never "lung".  Gas inside the body
    (trachea, bowel gas) is told from lung by HU and, with
    ``gas_by_component``, by the majority class of its connected region; small
    gas pockets made mostly of partial-volume voxels (-950..-500 HU) can still
    be called lung (a limitation of any HU rule).  On TotalSegmentator's
    abdominal example CT (3 mm voxels, lung bases only) the lung class reaches
    a Dice of 0.86 against the lung-lobe labels 10-14, where a bare
    -950..-500 HU threshold reaches 0.20 (see tests/test_semantic.py).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.semantic import ct_tissues
    >>> hu = np.full((9, 9), -1000, np.int16); hu[1:8, 1:8] = 40; hu[3:6, 3:6] = -800
    >>> hu[2, 2] = -100; hu[6, 6] = 700
    >>> ct_tissues(hu)[[0, 4, 2, 1, 6], [0, 4, 2, 1, 6]].tolist()
    [0, 2, 3, 4, 5]
    """
    hu, _ = unwrap_image(hu)
    arr = check_image(hu)
    items = _check_ranges(ranges)
    if body is None:
        body = body_mask(arr, air_threshold=air_threshold, fill_holes=fill_holes, backend=backend,
                         num_threads=num_threads)
    else:
        body = check_mask(body, arr.shape, "body")
    if not body.any():
        raise EmptyImageError("the body mask is empty")
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, arr, supported=("cpu", "numba"))
    # Interval boundaries; "b <= v" equals "nextafter(b, -inf) < v" for the
    # float64 comparison classify makes, so half-open [lo, hi) ranges map onto
    # its "t < v" rule.
    bounds = sorted({b for _, lo, hi in items for b in (lo, hi) if np.isfinite(b)})
    thr = np.nextafter(np.array(bounds, np.float64), -np.inf)
    idx = _classify(arr, np.concatenate(([-np.inf], thr)), body, name, nt)  # 0 outside, 1.. interval
    del body  # (only the caller's reference, if it passed one, stays)
    other = len(items) + 1
    lut = np.full(len(bounds) + 2, other, np.uint8)
    lut[0] = 0
    edges = np.concatenate(([-np.inf], bounds, [np.inf]))
    for i in range(len(edges) - 1):
        mid_lo, mid_hi = edges[i], edges[i + 1]
        for c, (_, lo, hi) in enumerate(items, start=1):
            if lo <= mid_lo and mid_hi <= hi:
                lut[i + 1] = c
    out = lut[idx]
    del idx
    names = [n for n, _, _ in items]
    if gas_by_component and "air" in names and "lung" in names:
        from .instance import label

        air_c, lung_c = names.index("air") + 1, names.index("lung") + 1
        gas = (out == air_c) | (out == lung_c)
        lab, n = label(gas, arr.ndim, return_num=True, backend=backend, num_threads=num_threads)
        if n:
            # per component, lung voxels against all, by the label-properties
            # kernel with the lung mask as its image (np.bincount would copy
            # the labels to int64, and a weighted one the mask to float64)
            props = family(name, "instance").properties(lab, (out == lung_c).view(np.uint8), n + 1, nt)
            comp = np.where(2 * props["isum"] > props["count"], lung_c, air_c).astype(np.uint8)
            del props
            # in slabs along axis 0 (views in any memory order): indexing
            # converts the uint32 labels to intp first, 8 bytes per voxel
            step = max(1, (1 << 22) // max(1, out.size // out.shape[0]))
            for b in range(0, out.shape[0], step):
                np.copyto(out[b:b + step], comp[lab[b:b + step]], where=gas[b:b + step])
    return out


def _cli_ct_tissues(image, spacing, air_threshold=-500.0):
    return ct_tissues(image, air_threshold=float(air_threshold))


CLI_METHODS = {
    "ct-tissues": {"run": _cli_ct_tissues,
                   "help": "CT tissue classes in the body: 1 air, 2 lung, 3 fat, 4 soft tissue, 5 bone, 6 other",
                   "params": {"air_threshold": (float, -500.0, "HU above which a voxel is tissue (body search)")}},
}
