"""Segmentation metrics: overlap (Dice, Jaccard, precision, recall, volume
similarity) and surface distances (Hausdorff, percentile Hausdorff, average
symmetric surface distance, surface Dice), 2D and 3D, in mm.

Surface definition
------------------
The surface of a mask is the set of its foreground voxels that have at least
one face neighbour (4 in 2D, 6 in 3D) in the background or outside the array,
i.e. the mask minus its erosion by the cross-shaped element with a background
border — the definition of MedPy (``medpy.metric.binary.__surface_distances``).
Distances are Euclidean, in mm (``spacing``), between voxel centres: the
directed distances from A to B are, for every surface voxel of A, the distance
to the nearest surface voxel of B.

* ``hausdorff`` = max over both directed lists (equals MedPy's ``hd``);
  with ``percentile=p`` it is ``max(percentile(d_AB, p), percentile(d_BA, p))``
  (numpy's linear interpolation) — the convention of DeepMind's
  ``compute_robust_hausdorff`` and MONAI; MedPy's ``hd95`` instead pools both
  lists before taking the percentile.
* ``average_surface_distance`` (ASSD) = mean of both directed lists pooled,
  (sum(d_AB) + sum(d_BA)) / (|dA| + |dB|), as MedPy's ``assd`` (>= 0.4); older
  MedPy releases and DeepMind average the two directed means instead.
* ``surface_dice`` at tolerance t = (#{d_AB <= t} + #{d_BA <= t}) / (|dA| + |dB|),
  counting surface voxels.

DeepMind's ``surface-distance`` package places its surface elements on voxel
corners (a half-voxel shift) and weights them by area: its distances differ
from ours by at most one voxel diagonal, ``sqrt(sum(spacing**2))``, and its
surface Dice at tolerance t lies between ours at t - diagonal and t + diagonal
(up to the area weighting).  The tests check exactly these bounds.

Empty masks
-----------
Overlap metrics whose denominator is zero: 1.0 when both masks are empty
(perfect agreement), NaN otherwise (e.g. precision of an empty prediction
against a non-empty truth).  Distances: NaN when both are empty, +inf when
exactly one is.  Surface Dice: 1.0 when both are empty, 0.0 when one is.
``evaluate`` adds the flags ``pred_empty`` and ``truth_empty``.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import InvalidImageError, InvalidParameterError
from ._validation import check_label_array, check_threads, core_axes, native_c, per_axis, unwrap_image

__all__ = ["dice", "jaccard", "precision", "recall", "volume_similarity", "hausdorff", "average_surface_distance",
           "surface_dice", "evaluate"]


# ------------------------------------------------------------------ helpers


def _as_mask(a, name):
    return check_label_array(a, name, what="a boolean or integer mask (non-zero = foreground)",
                             hint="threshold probabilities first (e.g. prob > 0.5)")


def _pair(a, b, spacing):
    """Validate two masks; return (ua, ub, core spacing) as uint8 views in a common layout."""
    a, sa = unwrap_image(a, spacing)
    b, sb = unwrap_image(b, None)
    spacing = sa if sa is not None else sb
    A = _as_mask(a, "a")
    B = _as_mask(b, "b")
    if A.shape != B.shape:
        raise InvalidImageError(f"the masks have different shapes: {A.shape} and {B.shape}")
    sp = (1.0,) * A.ndim if spacing is None else per_axis(spacing, A.ndim, "spacing")

    def u8(m):
        if m.dtype == np.bool_:
            return m.view(np.uint8)
        if m.dtype == np.uint8 and m.max(initial=0) <= 1:
            return m
        return (m != 0).view(np.uint8)

    ua, ub = u8(A), u8(B)
    if ua.flags.f_contiguous and ub.flags.f_contiguous and not (ua.flags.c_contiguous and ub.flags.c_contiguous):
        va, ta = native_c(ua)
        vb, tb = native_c(ub)
    else:
        va, ta = np.ascontiguousarray(ua), False
        vb, tb = np.ascontiguousarray(ub), False
    return va, vb, core_axes(sp, A.ndim, ta, fill=1.0)


def _counts(a, b, backend, num_threads):
    va, vb, _ = _pair(a, b, None)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, va, supported=("cpu", "numba"))
    return family(name, "metrics").overlap(va, vb, nt)


def _ratio(num, den, both_empty):
    if den == 0:
        return 1.0 if both_empty else float("nan")
    return float(num) / float(den)


# ------------------------------------------------------------------ overlap metrics


def dice(a, b, *, backend="auto", num_threads=None):
    """Dice coefficient 2|A∩B| / (|A| + |B|) of two masks (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import dice
    >>> a = np.array([[1, 1, 0, 0]], bool); b = np.array([[0, 1, 1, 0]], bool)
    >>> dice(a, b)
    0.5
    """
    na, nb, nab = _counts(a, b, backend, num_threads)
    return _ratio(2 * nab, na + nb, True)


def jaccard(a, b, *, backend="auto", num_threads=None):
    """Jaccard index |A∩B| / |A∪B| (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import jaccard
    >>> jaccard(np.array([[1, 1, 0, 0]], bool), np.array([[0, 1, 1, 0]], bool))
    0.3333333333333333
    """
    na, nb, nab = _counts(a, b, backend, num_threads)
    return _ratio(nab, na + nb - nab, True)


def precision(pred, truth, *, backend="auto", num_threads=None):
    """|P∩T| / |P|: 1.0 when both are empty, NaN for an empty prediction only.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import precision
    >>> precision(np.array([[1, 1, 1, 0]], bool), np.array([[0, 1, 1, 1]], bool))
    0.6666666666666666
    """
    na, nb, nab = _counts(pred, truth, backend, num_threads)
    return _ratio(nab, na, nb == 0)


def recall(pred, truth, *, backend="auto", num_threads=None):
    """|P∩T| / |T| (sensitivity): 1.0 when both are empty, NaN for an empty truth only.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import recall
    >>> recall(np.array([[1, 1, 0, 0]], bool), np.array([[0, 1, 1, 1]], bool))
    0.3333333333333333
    """
    na, nb, nab = _counts(pred, truth, backend, num_threads)
    return _ratio(nab, nb, na == 0)


def volume_similarity(a, b, *, backend="auto", num_threads=None):
    """1 - ||A| - |B|| / (|A| + |B|) (1.0 when both are empty).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import volume_similarity
    >>> volume_similarity(np.array([[1, 1, 1, 0]], bool), np.array([[1, 0, 0, 0]], bool))
    0.5
    """
    na, nb, _ = _counts(a, b, backend, num_threads)
    if na + nb == 0:
        return 1.0
    return 1.0 - abs(na - nb) / float(na + nb)


# ------------------------------------------------------------------ surface metrics


def _directed(a, b, spacing, backend, num_threads):
    va, vb, sp = _pair(a, b, spacing)
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, va, supported=("cpu", "numba"))
    d_ab, d_ba = family(name, "metrics").surface_distances(va, vb, sp, nt)
    # sorted lists: every statistic below is then independent of the voxel order
    return np.sort(d_ab), np.sort(d_ba)


def _check_percentile(percentile):
    if percentile is None:
        return None
    if isinstance(percentile, bool) or not isinstance(percentile, numbers.Real) or not 0 <= percentile <= 100:
        raise InvalidParameterError(f"percentile must be a number in [0, 100] or None, got {percentile!r}")
    return float(percentile)


def _hd_from(d_ab, d_ba, percentile):
    if d_ab.size == 0 and d_ba.size == 0:
        return float("nan")
    if d_ab.size == 0 or d_ba.size == 0:
        return float("inf")
    if percentile is None:
        return float(max(d_ab[-1], d_ba[-1]))
    return float(max(np.percentile(d_ab, percentile), np.percentile(d_ba, percentile)))


def _assd_from(d_ab, d_ba):
    if d_ab.size == 0 and d_ba.size == 0:
        return float("nan")
    if d_ab.size == 0 or d_ba.size == 0:
        return float("inf")
    return float((d_ab.astype(np.float64).sum() + d_ba.astype(np.float64).sum()) / (d_ab.size + d_ba.size))


def _sdice_from(d_ab, d_ba, tolerance):
    n = d_ab.size + d_ba.size
    if n == 0:
        return 1.0
    k = np.searchsorted(d_ab, tolerance, side="right") + np.searchsorted(d_ba, tolerance, side="right")
    return float(k) / float(n)


def hausdorff(a, b, percentile=None, spacing=None, *, backend="auto", num_threads=None):
    """Hausdorff distance (mm) between the surfaces of two masks, or its percentile.

    Parameters
    ----------
    a, b : arrays of bool or integers (non-zero = foreground), same shape, 2D or 3D
    percentile : float, optional
        None: the maximum.  p in [0, 100]: ``max(percentile(d_AB, p),
        percentile(d_BA, p))`` (e.g. 95 for HD95).
    spacing : float or sequence of float, optional
        Voxel size per axis (mm); default 1.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    float — NaN when both masks are empty, inf when only one is.

    Notes
    -----
    See the module docstring for the surface definition and how it relates to
    MedPy and DeepMind's surface-distance.  Work is restricted to the union
    bounding box of the masks; two exact EDTs of that box.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import hausdorff
    >>> a = np.zeros((8, 8), bool); a[2:5, 2:5] = True
    >>> b = np.zeros((8, 8), bool); b[2:5, 3:6] = True
    >>> hausdorff(a, b), hausdorff(a, b, spacing=(1.0, 2.0))
    (1.0, 2.0)
    """
    pct = _check_percentile(percentile)
    d_ab, d_ba = _directed(a, b, spacing, backend, num_threads)
    return _hd_from(d_ab, d_ba, pct)


def average_surface_distance(a, b, spacing=None, *, backend="auto", num_threads=None):
    """Average symmetric surface distance (mm): the mean of both directed distance lists pooled.

    NaN when both masks are empty, inf when only one is (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import average_surface_distance
    >>> a = np.zeros((8, 8), bool); a[2:5, 2:5] = True
    >>> average_surface_distance(a, a)
    0.0
    """
    d_ab, d_ba = _directed(a, b, spacing, backend, num_threads)
    return _assd_from(d_ab, d_ba)


def surface_dice(a, b, tolerance_mm, spacing=None, *, backend="auto", num_threads=None):
    """Surface Dice (normalised surface distance) at a tolerance in mm.

    The fraction of surface voxels of both masks lying within ``tolerance_mm``
    of the other surface; 1.0 when both are empty, 0.0 when one is.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import surface_dice
    >>> a = np.zeros((8, 8), bool); a[2:5, 2:5] = True
    >>> b = np.zeros((8, 8), bool); b[2:5, 3:6] = True
    >>> surface_dice(a, b, 1.0)
    1.0
    >>> surface_dice(a, b, 0.5)
    0.5
    """
    if isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, numbers.Real) or not tolerance_mm >= 0:
        raise InvalidParameterError(f"tolerance_mm must be a number >= 0, got {tolerance_mm!r}")
    d_ab, d_ba = _directed(a, b, spacing, backend, num_threads)
    return _sdice_from(d_ab, d_ba, float(tolerance_mm))


# ------------------------------------------------------------------ evaluate


def _label_map(x, name):
    arr = check_label_array(x, name, what="an integer label map", allow_empty=True)
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise InvalidImageError(f"{name} holds negative labels")
    if arr.dtype.byteorder not in ("=", "|") and arr.dtype.byteorder != ("<" if np.little_endian else ">"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _pool_size(backend_name, nt, njobs):
    if backend_name != "cpu" or njobs < 2:
        return 1
    cores = _backend.core().max_threads() if nt == 0 else nt
    return max(1, min(int(cores), njobs))


def evaluate(pred, truth, labels=None, spacing=None, *, percentile=95.0, tolerance_mm=1.0, backend="auto",
             num_threads=None):
    """All metrics for all labels of two label maps, in one call.

    Parameters
    ----------
    pred, truth : integer label maps of the same shape (0 = background), 2D or 3D
    labels : sequence of int, optional
        Labels to evaluate; default every non-zero label present in either map.
    spacing : float or sequence of float, optional
        Voxel size (mm).
    percentile : float or None
        Percentile of the ``hausdorff_percentile`` column (default 95; None
        makes it the maximum, like ``hausdorff``).
    tolerance_mm : float
        Tolerance of the ``surface_dice`` column.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional

    Returns
    -------
    dict of numpy arrays (columns), one row per label:
    ``label``, ``dice``, ``jaccard``, ``precision``, ``recall``,
    ``volume_similarity``, ``hausdorff``, ``hausdorff_percentile``,
    ``assd``, ``surface_dice``, ``volume_pred_mm3``, ``volume_truth_mm3``,
    ``pred_empty``, ``truth_empty`` — with the conventions of the single
    metrics (see the module docstring).

    Notes
    -----
    One pass over each map gives every label's voxel count and bounding box
    (:func:`medseg_fast.instance.properties` kernel), one more the per-label
    intersections; then each label's surfaces and distance transforms are
    computed only inside the union of its two boxes plus a one-voxel margin,
    so the cost follows the organs, not the volume.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.metrics import evaluate
    >>> t = np.zeros((6, 6), np.uint8); t[1:3, 1:3] = 1; t[4:6, 4:6] = 2
    >>> p = t.copy(); p[4, 3] = 2
    >>> table = evaluate(p, t)
    >>> table["label"].tolist(), table["dice"].round(3).tolist()
    ([1, 2], [1.0, 0.889])
    """
    pred, sp_in = unwrap_image(pred, spacing)
    truth, sp_t = unwrap_image(truth, None)
    spacing = sp_in if sp_in is not None else sp_t
    P = _label_map(pred, "pred")
    T = _label_map(truth, "truth")
    if P.shape != T.shape:
        raise InvalidImageError(f"pred and truth have different shapes: {P.shape} and {T.shape}")
    if P.size == 0:
        from ._errors import EmptyImageError

        raise EmptyImageError("pred and truth are empty")
    sp = (1.0,) * P.ndim if spacing is None else per_axis(spacing, P.ndim, "spacing")
    pct = _check_percentile(percentile)
    if isinstance(tolerance_mm, bool) or not isinstance(tolerance_mm, numbers.Real) or not tolerance_mm >= 0:
        raise InvalidParameterError(f"tolerance_mm must be a number >= 0, got {tolerance_mm!r}")
    nt = check_threads(num_threads)
    name = _backend.resolve(backend, P, supported=("cpu", "numba"))
    # a common unsigned dtype for both maps (label values compared across maps)
    width = max(P.dtype.itemsize, T.dtype.itemsize, 1)
    udt = np.dtype(f"u{width}")
    mx = max(int(P.max()), int(T.max()))
    if mx >= 1 << 26:
        raise InvalidParameterError(
            f"label values up to {mx}: evaluate indexes dense tables by label; relabel first "
            "(medseg_fast.instance.relabel_sequential on the stacked maps)"
        )
    Pu = P.astype(udt, copy=False) if P.dtype != udt else P
    Tu = T.astype(udt, copy=False) if T.dtype != udt else T
    if Pu.dtype.kind == "b":
        Pu = Pu.view(np.uint8)
    if Tu.dtype.kind == "b":
        Tu = Tu.view(np.uint8)
    Pc, Tc = np.ascontiguousarray(Pu), np.ascontiguousarray(Tu)
    nlab = mx + 1
    fam_i = family(name, "instance")
    props_p = fam_i.properties(Pc, None, nlab, nt)
    props_t = fam_i.properties(Tc, None, nlab, nt)
    inter = fam_i.matching_counts(Pc, Tc, nlab, nt)
    cnt_p, cnt_t = props_p["count"], props_t["count"]
    if labels is None:
        lab_list = [int(v) for v in np.flatnonzero((cnt_p > 0) | (cnt_t > 0)) if v != 0]
    else:
        lab_list = []
        for v in labels:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
                raise InvalidParameterError(f"labels must be positive integers, got {v!r}")
            lab_list.append(int(v))
    fam_m = family(name, "metrics")
    core_sp = core_axes(sp, P.ndim, False, fill=1.0)
    vox = float(np.prod(sp))
    nd = P.ndim
    cols = {k: [] for k in ("label", "dice", "jaccard", "precision", "recall", "volume_similarity", "hausdorff",
                            "hausdorff_percentile", "assd", "surface_dice", "volume_pred_mm3", "volume_truth_mm3",
                            "pred_empty", "truth_empty")}
    shape3 = (1,) * (3 - nd) + P.shape
    def distances(v, na, nb, threads):
        if na + nb == 0:
            return np.empty(0, np.float32), np.empty(0, np.float32)
        lo = np.full(3, np.iinfo(np.int64).max)
        hi = np.full(3, -1)
        for props, n in ((props_p, na), (props_t, nb)):
            if n:
                lo = np.minimum(lo, props["lo"][v])
                hi = np.maximum(hi, props["hi"][v])
        # one voxel of margin so that surface detection inside the crop is exact
        lo = np.maximum(lo - 1, 0)
        hi = np.minimum(hi + 2, shape3)
        sl = tuple(slice(int(lo[k]), int(hi[k])) for k in range(3 - nd, 3))
        a = (Pc[sl] == v).view(np.uint8)
        b = (Tc[sl] == v).view(np.uint8)
        d_ab, d_ba = fam_m.surface_distances(a, b, core_sp, threads)
        return np.sort(d_ab), np.sort(d_ba)

    def count_of(arr, v):
        return int(arr[v]) if v < nlab else 0

    jobs = [(v, count_of(cnt_p, v), count_of(cnt_t, v)) for v in lab_list]
    pool_size = _pool_size(name, nt, len(jobs))
    if pool_size > 1:
        # labels in parallel (the kernels release the GIL), one thread each: many
        # small crops parallelise better across labels than inside each crop
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(pool_size) as ex:
            dists = list(ex.map(lambda j: distances(j[0], j[1], j[2], 1), jobs))
    else:
        dists = [distances(v, na, nb, nt) for v, na, nb in jobs]
    for (v, na, nb), (d_ab, d_ba) in zip(jobs, dists):
        nab = count_of(inter, v)
        cols["label"].append(v)
        cols["dice"].append(_ratio(2 * nab, na + nb, True))
        cols["jaccard"].append(_ratio(nab, na + nb - nab, True))
        cols["precision"].append(_ratio(nab, na, nb == 0))
        cols["recall"].append(_ratio(nab, nb, na == 0))
        cols["volume_similarity"].append(1.0 if na + nb == 0 else 1.0 - abs(na - nb) / float(na + nb))
        cols["volume_pred_mm3"].append(na * vox)
        cols["volume_truth_mm3"].append(nb * vox)
        cols["pred_empty"].append(na == 0)
        cols["truth_empty"].append(nb == 0)
        cols["hausdorff"].append(_hd_from(d_ab, d_ba, None))
        cols["hausdorff_percentile"].append(_hd_from(d_ab, d_ba, pct))
        cols["assd"].append(_assd_from(d_ab, d_ba))
        cols["surface_dice"].append(_sdice_from(d_ab, d_ba, float(tolerance_mm)))
    out = {}
    for k, vals in cols.items():
        if k == "label":
            out[k] = np.array(vals, dtype=np.int64)
        elif k.endswith("_empty"):
            out[k] = np.array(vals, dtype=bool)
        else:
            out[k] = np.array(vals, dtype=np.float64)
    return out
