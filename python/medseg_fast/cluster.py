"""Clustering segmentation: k-means, fuzzy c-means, mean-shift and structured Ward, in 2D and 3D.

Clustering runs on voxel *features*: the intensity by default, several channels
(multi-sequence MR, RGB histology) when ``channel_axis`` is given, and
optionally the voxel position in mm (``position_weight`` times the position
scaled by ``spacing``).  Only voxels inside ``mask`` take part; the others get
label 0.  Clusters are numbered from 1 in increasing order of their mean
intensity (first channel; ties by the other features), so results are
reproducible and comparable between runs and backends.

Determinism: initial centres are drawn in Python with ``numpy.random.default_rng(random_state)``
and handed to the backend, and every kernel reduction is made over fixed
blocks combined in a fixed order: the same ``random_state`` gives the same
result on the cpu and numba backends and for any ``num_threads``.

Single-feature fast path ("histogram-exact"): with one intensity feature,
k-means, plain fuzzy c-means and feature-space mean-shift depend on the
voxels only through the distinct values and their counts.  Integer images
get an exact histogram over their value range (one parallel pass; ranges
wider than 2**24 values fall back to sorting); float images use the sorted
distinct values of the masked voxels (``np.unique``: one float copy and a
sort).  The iterations then run on that weighted histogram (float64), so
their cost does not grow with the number of voxels, and the result equals
the voxel-wise algorithm exactly (up to float64 summation order).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from . import _backend
from ._dispatch import family
from ._errors import EmptyImageError, InvalidImageError, InvalidParameterError, MedsegWarning
from ._validation import check_image, check_mask, check_threads, native_c, per_axis, unwrap_image

__all__ = ["kmeans", "fuzzy_cmeans", "mean_shift", "agglomerative", "CLI_METHODS"]

_SUPPORTED = ("cpu", "numba")
_EPS = np.finfo(np.float64).eps
_INT_RANGE_LIMIT = 1 << 24  # widest integer value range histogrammed exactly
_INIT_SAMPLE = 20000  # voxels sampled for k-means++ on several features


# ---------------------------------------------------------------- shared preparation


class _Data:
    """Validated input: spatial array(s), mask, features."""

    def __init__(self, image, mask, channel_axis, spacing, position_weight, backend, num_threads):
        image, spacing = unwrap_image(image, spacing)
        arr = np.asarray(image)
        if channel_axis is not None:
            if not isinstance(channel_axis, numbers.Integral) or isinstance(channel_axis, bool):
                raise InvalidParameterError(f"channel_axis must be an int or None, got {channel_axis!r}")
            if arr.ndim not in (3, 4):
                raise InvalidImageError(
                    f"with channel_axis the image must be 3D (2D + channels) or 4D (3D + channels), got shape {arr.shape}"
                )
            if not -arr.ndim <= channel_axis < arr.ndim:
                raise InvalidParameterError(f"channel_axis {channel_axis} is out of range for shape {arr.shape}")
            arr = check_image(arr, ndims=(3, 4))
            self.channels = [arr.take(i, axis=channel_axis) for i in range(arr.shape[channel_axis])]
        else:
            arr = check_image(arr)
            self.channels = [arr]
        self.shape = self.channels[0].shape
        self.ndim = len(self.shape)
        self.spacing = per_axis(spacing if spacing is not None else 1.0, self.ndim, "spacing")
        m = check_mask(mask, self.shape)
        if m is not None and not m.any():
            raise EmptyImageError("mask selects no voxel; pass a mask with at least one True voxel or mask=None")
        self.mask = m
        if not isinstance(position_weight, numbers.Real) or not np.isfinite(position_weight) or position_weight < 0:
            raise InvalidParameterError(f"position_weight must be a finite number >= 0, got {position_weight!r}")
        self.position_weight = float(position_weight)
        self.nt = check_threads(num_threads)
        self.backend = _backend.resolve(backend, arr, supported=_SUPPORTED)
        self.fam = family(self.backend, "cluster")

    @property
    def n_features(self):
        return len(self.channels) + (self.ndim if self.position_weight > 0 else 0)

    @property
    def single(self):
        return self.n_features == 1

    def n_voxels(self):
        return int(self.mask.sum()) if self.mask is not None else int(np.prod(self.shape))

    # single-feature kernel input: native C view (F order -> transposed view, no copy)
    def kernel_view(self):
        a = self.channels[0]
        a = a.view(np.uint8) if a.dtype == np.bool_ else a
        view, tr = native_c(a)
        mv = None
        if self.mask is not None:
            mv = np.ascontiguousarray(self.mask.T if tr else self.mask).view(np.uint8)
        return view, mv, tr

    def features(self):
        """(n, F) float32 feature matrix of the voxels in mask (C order of the user's array)."""
        m = self.mask
        n = self.n_voxels()
        X = np.empty((n, self.n_features), np.float32)
        for c, ch in enumerate(self.channels):
            X[:, c] = ch[m] if m is not None else ch.reshape(-1)
        if self.position_weight > 0:
            if m is not None:
                idx = np.nonzero(m)
            else:
                idx = np.unravel_index(np.arange(n), self.shape)
            for a in range(self.ndim):
                X[:, len(self.channels) + a] = idx[a] * (self.spacing[a] * self.position_weight)
        return X

    def scatter(self, values, dtype):
        """Full-shape array with `values` at the mask voxels and 0 elsewhere."""
        if self.mask is None:
            return np.ascontiguousarray(values, dtype=dtype).reshape(self.shape)
        out = np.zeros(self.shape, dtype)
        out[self.mask] = values
        return out


def _label_dtype(n):
    return np.dtype(np.uint8) if n <= 255 else np.dtype(np.int32)


def _check_n_clusters(n_clusters):
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise InvalidParameterError(f"n_clusters must be an integer, got {n_clusters!r}")
    if n_clusters < 2:
        raise InvalidParameterError(f"n_clusters must be >= 2, got {n_clusters}")
    return int(n_clusters)


def _check_int(value, name, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise InvalidParameterError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_pos(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0 or (
        value == 0 and not allow_zero
    ):
        raise InvalidParameterError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral)):
        raise InvalidParameterError(f"random_state must be None, an int or a numpy Generator, got {random_state!r}")
    return np.random.default_rng(random_state)


def _value_histogram(d: _Data, want_range=False):
    """Distinct values (float64, ascending) and their counts among the voxels in mask.

    With ``want_range``, also (lo, nbins) of the exact integer histogram's compact range
    (None for floats and very wide integer ranges)."""
    view, mv, _ = d.kernel_view()
    rng_out = None
    if view.dtype.kind in "iu" and view.dtype.itemsize <= 2:
        info = np.iinfo(view.dtype)  # 8/16-bit: histogram over the whole type range, no min/max pass
        counts = d.fam.int_histogram(view, mv, int(info.min), int(info.max) - int(info.min) + 1, d.nt)
        nz = np.flatnonzero(counts)
        if len(nz) == 0:
            raise EmptyImageError("no voxel takes part (empty mask)")
        v, w = (nz + int(info.min)).astype(np.float64), counts[nz]
        rng_out = (int(v[0]), int(v[-1] - v[0]) + 1)
    else:
        lo, hi, count = d.fam.minmax(view, mv, d.nt)
        if count == 0:
            raise EmptyImageError("no voxel takes part (empty mask)")
        if view.dtype.kind in "iu" and hi - lo + 1 <= _INT_RANGE_LIMIT:
            counts = d.fam.int_histogram(view, mv, int(lo), int(hi - lo + 1), d.nt)
            nz = np.flatnonzero(counts)
            v, w = (nz + lo).astype(np.float64), counts[nz]
            rng_out = (int(lo), int(hi - lo) + 1)
        else:
            vals = view[mv.view(bool)] if mv is not None else view.reshape(-1)
            v, c = np.unique(vals, return_counts=True)
            v, w = v.astype(np.float64), c.astype(np.int64)
    return (v, w, rng_out) if want_range else (v, w)


def _constant_result(d: _Data, value, what, mask=None):
    warnings.warn(f"{what}: every voxel in the mask has the value {value!r}; returning a single cluster",
                  MedsegWarning, stacklevel=3)
    if mask is not None:
        return mask.astype(np.uint8)
    return d.scatter(np.ones(d.n_voxels(), np.uint8), np.uint8)


def _sort_order(centers):
    """Order of clusters by first feature, ties by the next features, then index."""
    c = np.asarray(centers, np.float64).reshape(len(centers), -1)
    keys = [np.arange(len(c))] + [c[:, f] for f in range(c.shape[1] - 1, -1, -1)]
    return np.lexsort(keys)


def _label_1d(d: _Data, centers_sorted, n_labels):
    """Nearest-centre labels (1..k by ascending centre) of the single-feature image."""
    view, mv, tr = d.kernel_view()
    c = np.asarray(centers_sorted, np.float64)
    thr = np.ascontiguousarray((c[:-1] + c[1:]) / 2.0)
    out = np.empty(view.shape, _label_dtype(n_labels))
    d.fam.label_thresholds(view, mv, thr, out, d.nt)
    return out.T if tr else out


# ---------------------------------------------------------------- initialisation


def _kmeanspp(X, w, k, rng):
    """Greedy k-means++ (Arthur & Vassilvitskii 2007, scikit-learn's variant with
    2 + log k local trials) on weighted points X (n, F); returns (k, F)."""
    n = X.shape[0]
    p = w / w.sum()
    centers = np.empty((k, X.shape[1]))
    first = rng.choice(n, p=p)
    centers[0] = X[first]
    closest = ((X - X[first]) ** 2).sum(1)
    pot = closest @ w
    trials = 2 + int(np.log(k))
    for c in range(1, k):
        r = rng.uniform(size=trials) * pot
        cand = np.minimum(np.searchsorted(np.cumsum(w * closest), r), n - 1)
        dist = ((X[None, :, :] - X[cand][:, None, :]) ** 2).sum(2)
        np.minimum(closest, dist, out=dist)
        pots = dist @ w
        best = int(np.argmin(pots))
        pot = pots[best]
        closest = dist[best]
        centers[c] = X[cand[best]]
    return centers


def _initial_centers(init, X, w, k, rng, F):
    """Initial centres (k, F) from 'k-means++', 'random' or an array."""
    if isinstance(init, str):
        if init == "k-means++":
            return _kmeanspp(X, w, k, rng)
        if init == "random":
            nz = np.flatnonzero(w > 0)
            if len(nz) < k:
                raise InvalidParameterError(f"fewer than {k} distinct points to draw initial centres from")
            idx = rng.choice(nz, size=k, replace=False, p=w[nz] / w[nz].sum())
            return X[np.sort(idx)].astype(np.float64)
        raise InvalidParameterError(f"init must be 'k-means++', 'random' or an array of centres, got {init!r}")
    c = np.asarray(init, np.float64)
    if c.ndim == 1 and F == 1:
        c = c[:, None]
    if c.shape != (k, F):
        raise InvalidParameterError(f"init array must have shape ({k}, {F}) (n_clusters, n_features), got {c.shape}")
    if not np.isfinite(c).all():
        raise InvalidParameterError("init holds NaN or infinite values")
    return c.copy()


def _check_distinct_rows(X, P, k):
    """n_clusters must not exceed the number of distinct feature vectors (checked on the sample
    first, on all points only when the sample has fewer than k)."""
    if len(np.unique(P, axis=0)) >= k:
        return
    n = len(np.unique(X, axis=0))
    if n < k:
        raise InvalidParameterError(f"n_clusters={k} exceeds the {n} distinct feature vectors in the image")


def _init_points(d: _Data, X):
    """Points and weights the initialisation draws from (a subsample for large X)."""
    rng_sample = np.random.default_rng(0)  # fixed: the sample must not consume the user's stream
    if X.shape[0] > _INIT_SAMPLE:
        idx = np.sort(rng_sample.choice(X.shape[0], _INIT_SAMPLE, replace=False))
        P = X[idx].astype(np.float64)
    else:
        P = X.astype(np.float64)
    return P, np.ones(P.shape[0])


# ---------------------------------------------------------------- k-means


def _lloyd_hist(v, w, c, max_iter, tol):
    """Lloyd's algorithm on a weighted 1-D histogram (scikit-learn's loop and stopping rules)."""
    labels_old = np.full(len(v), -1)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        lab = np.argmin((v[:, None] - c[None, :]) ** 2, axis=1)
        cnt = np.bincount(lab, weights=w, minlength=len(c))
        sums = np.bincount(lab, weights=w * v, minlength=len(c))
        new = np.where(cnt > 0, sums / np.where(cnt > 0, cnt, 1), c)
        shift = ((new - c) ** 2).sum()
        c = new
        if np.array_equal(lab, labels_old):  # strict convergence
            break
        if shift <= tol:
            break
        labels_old = lab
    lab = np.argmin((v[:, None] - c[None, :]) ** 2, axis=1)
    inertia = float((w * (v - c[lab]) ** 2).sum())
    return c, inertia, n_iter


def _lloyd_features(fam, X, c, max_iter, tol, nt):
    labels = np.full(X.shape[0], -1, np.int32)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        sums, cnt, _, changed = fam.kmeans_assign(X, np.ascontiguousarray(c), labels, nt)
        new = np.where(cnt[:, None] > 0, sums / np.where(cnt > 0, cnt, 1)[:, None], c)
        shift = ((new - c) ** 2).sum()
        c = new
        if changed == 0 or shift <= tol:
            break
    _, _, inertia, _ = fam.kmeans_assign(X, np.ascontiguousarray(c), labels, nt)
    return c, float(inertia), labels, n_iter


def kmeans(image, n_clusters, mask=None, channel_axis=None, init="k-means++", n_init=1, max_iter=300, tol=1e-4,
           random_state=None, *, spacing=None, position_weight=0.0, return_inertia=False, backend="auto",
           num_threads=None):
    """K-means clustering of the voxels of a 2D or 3D image.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        Any integer, bool or float dtype; NaN/inf raise.  With ``channel_axis``
        one more axis holds the channels.
    n_clusters : int
        Number of clusters, >= 2 and at most the number of distinct values.
    mask : array of bool, optional
        Only voxels in the mask take part; the others get label 0.
    channel_axis : int, optional
        Axis of ``image`` holding channels (features), e.g. -1 for RGB.
    init : {'k-means++', 'random'} or array (n_clusters, n_features)
        Initial centres.  k-means++ is drawn on the exact histogram for one
        feature, and on a fixed sample of 20000 voxels for several features.
    n_init : int
        Runs from different initial centres; the lowest inertia wins.
    max_iter, tol : int, float
        scikit-learn's stopping rules: stop when the labels no longer change
        or the squared centre shift is <= ``tol`` times the mean feature variance.
    random_state : int, numpy Generator or None
        Seed of the initialisation; the same seed gives the same result on
        every backend and thread count.
    spacing : sequence of float, optional
        Voxel size in mm (for position features).
    position_weight : float
        When > 0, the voxel position in mm times this weight is added to the features.
    return_inertia : bool
        Also return the inertia (sum of squared distances to the nearest centre).
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional
        Threads (None: all cores); the result does not depend on it.

    Returns
    -------
    labels : ndarray of uint8 (int32 beyond 255 clusters)
        0 outside the mask, 1..n_clusters by increasing mean intensity.
    centers : ndarray (n_clusters,) for one feature, else (n_clusters, n_features)
        ``centers[i]`` is the centre of label ``i + 1``.
    inertia : float, only with ``return_inertia``

    Notes
    -----
    One feature: an exact histogram pass (integers) or ``np.unique`` (floats),
    then Lloyd's algorithm on the weighted histogram — the same centres as
    ``sklearn.cluster.KMeans(init=centres, n_init=1)`` on the voxels.  Several
    features: Lloyd iterations over a float32 feature matrix (one copy of the
    masked voxels) with OpenMP.  Empty clusters keep their previous centre.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.cluster import kmeans
    >>> img = np.array([[0, 1, 10, 11], [0, 1, 10, 12]], np.int16)
    >>> labels, centers = kmeans(img, 2, random_state=0)
    >>> labels
    array([[1, 1, 2, 2],
           [1, 1, 2, 2]], dtype=uint8)
    >>> centers
    array([ 0.5 , 10.75])
    """
    d = _Data(image, mask, channel_axis, spacing, position_weight, backend, num_threads)
    k = _check_n_clusters(n_clusters)
    n_init = _check_int(n_init, "n_init", 1)
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol = _check_pos(tol, "tol", allow_zero=True)
    rng = _rng(random_state)
    if not isinstance(init, str) and n_init != 1:
        n_init = 1  # an explicit init runs once (as scikit-learn, which warns)
    if d.single:
        v, w = _value_histogram(d)
        if len(v) == 1:
            out = _constant_result(d, v[0], "kmeans")
            return (out, v.copy(), 0.0) if return_inertia else (out, v.copy())
        if k > len(v):
            raise InvalidParameterError(f"n_clusters={k} exceeds the {len(v)} distinct values in the image")
        wf = w.astype(np.float64)
        mean = (wf @ v) / wf.sum()
        tol_abs = tol * float((wf @ (v - mean) ** 2) / wf.sum())
        best = None
        for _ in range(n_init):
            c0 = _initial_centers(init, v[:, None], wf, k, rng, 1)[:, 0]
            c, inertia, _ = _lloyd_hist(v, wf, c0, max_iter, tol_abs)
            if best is None or inertia < best[1]:
                best = (c, inertia)
        c, inertia = best
        c = np.sort(c)
        labels = _label_1d(d, c, k)
        return (labels, c, inertia) if return_inertia else (labels, c)
    X = d.features()
    if X.shape[0] < k:
        raise InvalidParameterError(f"n_clusters={k} exceeds the {X.shape[0]} voxels that take part")
    lo, hi = X.min(0), X.max(0)
    if np.all(lo == hi):
        out = _constant_result(d, tuple(lo.tolist()), "kmeans")
        return (out, lo[None].astype(np.float64), 0.0) if return_inertia else (out, lo[None].astype(np.float64))
    tol_abs = tol * float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    P, W = _init_points(d, X)
    _check_distinct_rows(X, P, k)
    best = None
    for _ in range(n_init):
        c0 = _initial_centers(init, P, W, k, rng, X.shape[1])
        c, inertia, lab, _ = _lloyd_features(d.fam, X, c0, max_iter, tol_abs, d.nt)
        if best is None or inertia < best[1]:
            best = (c, inertia, lab)
    c, inertia, lab = best
    order = _sort_order(c)
    lut = np.empty(k, np.int64)
    lut[order] = np.arange(1, k + 1)
    labels = d.scatter(lut[lab], _label_dtype(k))
    c = c[order]
    return (labels, c, inertia) if return_inertia else (labels, c)


# ---------------------------------------------------------------- fuzzy c-means


def _fcm_u_1d(v, c, m):
    d2 = np.maximum((v[:, None] - c[None, :]) ** 2, _EPS * _EPS)
    u = 1.0 / d2 if m == 2.0 else d2 ** (-1.0 / (m - 1.0))
    return u / u.sum(1, keepdims=True)


def _fcm_hist(v, w, c, m, max_iter, tol):
    """Plain FCM on a weighted histogram, following skfuzzy.cluster.cmeans step by step:
    centres from the previous memberships, then memberships from the centres; stop when the
    Frobenius norm of the membership change over all voxels is < tol."""
    u = _fcm_u_1d(v, c, m)
    it = 0
    while it < max_iter:
        u_old = u
        um = np.maximum(u_old, _EPS) ** m * w[:, None]
        c = (um * v[:, None]).sum(0) / um.sum(0)
        u = _fcm_u_1d(v, c, m)
        it += 1
        if np.sqrt((w[:, None] * (u - u_old) ** 2).sum()) < tol:
            break
    return c, it


def _box_mean(ch, mask, ndim):
    """Mean of each voxel's 3x3(x3) neighbourhood (voxels in mask and in the image): the
    mean-filtered term of FCM_S1.  Separable sums of values and of mask counts (float32)."""
    x = ch.astype(np.float32)
    w = np.ones(ch.shape, np.float32) if mask is None else mask.astype(np.float32)
    x *= w

    def box(a):
        for ax in range(ndim):
            s = a.copy()
            sl = [slice(None)] * ndim
            sl2 = [slice(None)] * ndim
            sl[ax], sl2[ax] = slice(1, None), slice(None, -1)
            s[tuple(sl)] += a[tuple(sl2)]
            s[tuple(sl2)] += a[tuple(sl)]
            a = s
        return a

    sx, sw = box(x), box(w)
    np.maximum(sw, 1.0, out=sw)
    sx /= sw
    return sx


def fuzzy_cmeans(image, n_clusters, m=2.0, mask=None, channel_axis=None, spatial_weight=0.0, max_iter=300, tol=1e-5,
                 random_state=None, *, init="k-means++", spacing=None, position_weight=0.0, backend="auto",
                 num_threads=None):
    """Fuzzy c-means (Bezdek 1981), optionally spatially regularised (FCM_S1), in 2D and 3D.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        Any integer, bool or float dtype; NaN/inf raise.
    n_clusters : int
        >= 2, at most the number of distinct values.
    m : float
        Fuzzifier, > 1 (2 is standard).
    mask, channel_axis, spacing, position_weight : see :func:`kmeans`.
    spatial_weight : float
        alpha of FCM_S1 (Chen & Zhang 2004): 0 gives standard FCM; > 0 adds
        alpha * sum u^m |xbar - v|^2, where xbar is the mean of each voxel's
        3x3 (3x3x3) neighbourhood within the mask.  Typical values 0.5-2 for
        noisy MR.
    max_iter : int
    tol : float
        Plain FCM on one feature: stop when the norm of the membership change
        over all voxels is < tol (scikit-fuzzy's rule, evaluated exactly on the
        histogram).  Otherwise: stop when no centre moves by more than
        ``tol`` times the feature range.
    random_state : int, Generator or None
        Seed of the initial centres (k-means++ as in :func:`kmeans`).
    init : {'k-means++', 'random'} or array (n_clusters, n_features)
        Initial centres.  The iteration starts with the memberships of these
        centres, which is scikit-fuzzy's ``init=`` partition.
    backend, num_threads : see :func:`kmeans`.

    Returns
    -------
    labels : ndarray of uint8
        argmax of the memberships, 1..n_clusters by increasing centre intensity, 0 outside mask.
    memberships : float32 array (n_clusters, *image.shape)
        ``memberships[i]`` belongs to label ``i + 1``; 0 outside the mask.
    centers : (n_clusters,) or (n_clusters, n_features) float64

    Notes
    -----
    Plain FCM on one feature runs on the exact value histogram (memberships
    depend on the value only): the same centres as ``skfuzzy.cluster.cmeans``
    given the same initial partition.  FCM_S1 (Chen S., Zhang D., "Robust image
    segmentation using FCM with spatial constraints based on new kernel-induced
    distance measure", IEEE TSMC-B 34(4), 2004) precomputes the mean-filtered
    image, so each iteration costs the same as plain FCM; we chose it over
    Ahmed et al. 2002 (FCM_S), whose neighbourhood term is recomputed in every
    iteration.  Memory: the memberships (4 * n_clusters bytes per voxel) plus
    a float32 copy of the masked features (twice for FCM_S1).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.cluster import fuzzy_cmeans
    >>> img = np.array([[0, 1, 10, 11], [0, 1, 10, 12]], np.uint8)
    >>> labels, u, centers = fuzzy_cmeans(img, 2, random_state=0)
    >>> labels.tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
    >>> u.shape, u.dtype, bool(np.allclose(u.sum(0), 1))
    ((2, 2, 4), dtype('float32'), True)
    """
    d = _Data(image, mask, channel_axis, spacing, position_weight, backend, num_threads)
    k = _check_n_clusters(n_clusters)
    if isinstance(m, bool) or not isinstance(m, numbers.Real) or not np.isfinite(m) or m <= 1:
        raise InvalidParameterError(f"the fuzzifier m must be a finite number > 1, got {m!r}")
    m = float(m)
    alpha = _check_pos(spatial_weight, "spatial_weight", allow_zero=True)
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol = _check_pos(tol, "tol", allow_zero=True)
    rng = _rng(random_state)
    F = d.n_features
    if d.single:
        v, w, vrange = _value_histogram(d, want_range=True)
        if len(v) == 1:
            out = _constant_result(d, v[0], "fuzzy_cmeans")
            return out, out[None].astype(np.float32), v.copy()
        if k > len(v):
            raise InvalidParameterError(f"n_clusters={k} exceeds the {len(v)} distinct values in the image")
        c0 = _initial_centers(init, v[:, None], w.astype(np.float64), k, rng, 1)
        if alpha == 0:
            c, _ = _fcm_hist(v, w.astype(np.float64), c0[:, 0], m, max_iter, tol)
            c = np.sort(c)
            if vrange is not None:
                # integer image: memberships depend on the value only -> one table per value, spread
                # over the image (no feature copy)
                lo, nbins = vrange
                lut = np.ascontiguousarray(_fcm_u_1d(lo + np.arange(nbins, dtype=np.float64), c, m).T, np.float32)
                view, mv, tr = d.kernel_view()
                memb = d.fam.gather_lut(view, mv, lo, lut, d.nt)
                if tr:
                    memb = memb.transpose((0,) + tuple(range(d.ndim, 0, -1)))
                return _label_1d(d, c, k), memb, c
            c0 = c[:, None]
            max_iter = 0  # float image: centres done, memberships below
    X = d.features()
    if not d.single:
        if X.shape[0] < k:
            raise InvalidParameterError(f"n_clusters={k} exceeds the {X.shape[0]} voxels that take part")
        if np.all(X.min(0) == X.max(0)):
            out = _constant_result(d, tuple(X[0].tolist()), "fuzzy_cmeans")
            return out, out[None].astype(np.float32), X[:1].astype(np.float64)
        P, W = _init_points(d, X)
        _check_distinct_rows(X, P, k)
        c0 = _initial_centers(init, P, W, k, rng, F)
    Xb = None
    if alpha > 0:
        Xb = np.empty_like(X)
        for ci, ch in enumerate(d.channels):
            bm = _box_mean(ch, d.mask, d.ndim)
            Xb[:, ci] = bm[d.mask] if d.mask is not None else bm.reshape(-1)
        if F > len(d.channels):
            Xb[:, len(d.channels):] = X[:, len(d.channels):]
    c = c0
    scale = float((X.max(0) - X.min(0)).max())
    for _ in range(max_iter):
        num, den, _ = d.fam.fcm_step(X, Xb, alpha, np.ascontiguousarray(c), m, d.nt)
        new = num / den[:, None]
        done = np.abs(new - c).max() <= tol * scale
        c = new
        if done:
            break
    c = c[_sort_order(c)]
    U, lab = d.fam.fcm_memberships(X, Xb, alpha, np.ascontiguousarray(c), m, d.nt)
    del X, Xb
    lab += 1
    labels = d.scatter(lab, _label_dtype(k))
    if d.mask is None:
        memberships = U.reshape((k,) + d.shape)
    else:
        memberships = np.zeros((k,) + d.shape, np.float32)
        memberships[:, d.mask] = U
    return labels, memberships, (c[:, 0].copy() if d.single else c)


# ---------------------------------------------------------------- mean-shift


def _merge_modes(modes, sizes, bandwidth):
    """scikit-learn's post-processing: sort by (size, mode) descending, drop modes within bandwidth
    of a bigger one."""
    modes = np.asarray(modes, np.float64)
    keep = sizes > 0
    modes, sizes = modes[keep], sizes[keep]
    if len(modes) == 0:
        raise InvalidParameterError("no voxel lies within bandwidth of any seed; increase bandwidth")
    table = {}
    for mo, s in zip(map(tuple, modes.tolist()), sizes.tolist()):
        table[mo] = s
    items = sorted(table.items(), key=lambda t: (t[1], t[0]), reverse=True)
    centers = np.array([t[0] for t in items])
    unique = np.ones(len(centers), bool)
    for i in range(len(centers)):
        if unique[i]:
            near = np.sqrt(((centers - centers[i]) ** 2).sum(1)) <= bandwidth
            unique[near] = False
            unique[i] = True
    return centers[unique]


def _mean_shift_hist(v, w, bandwidth, min_bin_freq, max_iter):
    """Flat-kernel mean-shift of weighted 1-D points from bin seeds (scikit-learn's MeanShift with
    bin_seeding=True), the window sums read from prefix sums of the histogram."""
    bins = np.round(v / bandwidth)
    ub, inv = np.unique(bins, return_inverse=True)
    freq = np.bincount(inv, weights=w)
    seeds = (ub[freq >= min_bin_freq].astype(np.float32) * np.float32(bandwidth)).astype(np.float64)
    if len(seeds) == w.sum():
        seeds = v.copy()
    cw = np.concatenate([[0.0], np.cumsum(w.astype(np.float64))])
    cwv = np.concatenate([[0.0], np.cumsum(w * v)])
    mean = seeds.copy()
    size = np.zeros(len(seeds))
    active = np.ones(len(seeds), bool)
    it = np.zeros(len(seeds), np.int64)
    stop = 1e-3 * bandwidth
    while active.any():
        a = np.flatnonzero(active)
        lo = np.searchsorted(v, mean[a] - bandwidth, "left")
        hi = np.searchsorted(v, mean[a] + bandwidth, "right")
        cnt = cw[hi] - cw[lo]
        empty = cnt == 0
        size[a] = cnt
        new = np.where(empty, mean[a], (cwv[hi] - cwv[lo]) / np.where(empty, 1.0, cnt))
        done = empty | (np.abs(new - mean[a]) <= stop) | (it[a] == max_iter)
        mean[a] = new
        it[a] += 1
        active[a[done]] = False
    return _merge_modes(mean[:, None], size, bandwidth)[:, 0]


def mean_shift(image, bandwidth, spatial_bandwidth=None, mask=None, channel_axis=None, *, spacing=None,
               min_bin_freq=1, max_iter=300, connectivity=1, backend="auto", num_threads=None):
    """Mean-shift clustering (feature space) or joint spatial-range mean-shift segmentation.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        NaN/inf raise.
    bandwidth : float
        Range (feature-space) radius of the flat kernel, in intensity units; > 0.
    spatial_bandwidth : float, optional
        None: mode seeking in feature space (scikit-learn's ``MeanShift(bandwidth,
        bin_seeding=True)``).  Given: joint spatial-range filtering and
        segmentation (Comaniciu & Meer 2002) with this spatial radius, in mm
        when ``spacing`` is given (voxels otherwise).
    mask, channel_axis, spacing : see :func:`kmeans`.
    min_bin_freq : int
        Feature space: bins with fewer voxels seed no mode (as scikit-learn).
    max_iter : int
        Iterations per seed (feature space) or per voxel (spatial-range).
    connectivity : int
        Spatial-range: neighbours (1..ndim) grouped when their modes are within
        ``bandwidth / 2``.
    backend, num_threads : see :func:`kmeans`.

    Returns
    -------
    labels : ndarray of uint8 or int32
        0 outside the mask; 1..K by increasing mode intensity.
    modes : ndarray (K,) for one feature, else (K, n_features)
        Feature space: the merged modes.  Spatial-range: the mean filtered
        value of each region.

    Notes
    -----
    Feature space, one feature: the distinct values and counts (exact
    histogram), seeds from bins of width ``bandwidth``, each mode found with
    prefix sums in O(log n) per step, modes closer than ``bandwidth`` merged
    (the bigger kept), voxels labelled by their nearest mode — scikit-learn's
    algorithm on the voxels.  Several features: the same with a brute-force
    window over the masked voxels, parallel over seeds.

    Spatial-range: every voxel climbs to the mean position (rounded to the grid,
    as ``cv2.pyrMeanShiftFiltering``) and mean features of the voxels within
    ``spatial_bandwidth`` mm (an ellipsoid in voxels) and ``bandwidth`` in range,
    until it stops moving (features by <= 1e-3 bandwidth) or ``max_iter`` steps;
    neighbours whose modes differ by <= ``bandwidth / 2`` are then joined
    (union-find).  Cost: voxels x window voxels x iterations; 3D with large
    spatial windows is slow.  Memory: two float32 copies of the features.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.cluster import mean_shift
    >>> img = np.array([[0, 1, 10, 11], [0, 1, 10, 12]], np.int16)
    >>> labels, modes = mean_shift(img, bandwidth=3)
    >>> labels.tolist(), modes.tolist()
    ([[1, 1, 2, 2], [1, 1, 2, 2]], [0.5, 10.75])
    """
    d = _Data(image, mask, channel_axis, spacing, 0.0, backend, num_threads)
    bw = _check_pos(bandwidth, "bandwidth")
    min_bin_freq = _check_int(min_bin_freq, "min_bin_freq", 1)
    max_iter = _check_int(max_iter, "max_iter", 0)
    if spatial_bandwidth is None:
        if d.single:
            v, w = _value_histogram(d)
            if len(v) == 1:
                return _constant_result(d, v[0], "mean_shift"), v.copy()
            modes = np.sort(_mean_shift_hist(v, w.astype(np.float64), bw, min_bin_freq, max_iter))
            return _label_1d(d, modes, len(modes)), modes
        X = d.features()
        bins = np.round(X.astype(np.float64) / bw)
        ub, cnt = np.unique(bins, axis=0, return_counts=True)
        seeds = ub[cnt >= min_bin_freq].astype(np.float32) * np.float32(bw)
        if len(seeds) == X.shape[0]:
            seeds = X
        modes, sizes = d.fam.mean_shift_seeds(X, np.ascontiguousarray(seeds, np.float64), bw, max_iter, d.nt)
        centers = _merge_modes(modes, sizes, bw)
        order = _sort_order(centers)
        centers = centers[order]
        labels = np.full(X.shape[0], -1, np.int32)
        d.fam.kmeans_assign(X, np.ascontiguousarray(centers), labels, d.nt)
        return d.scatter(labels + 1, _label_dtype(len(centers))), centers
    hs = _check_pos(spatial_bandwidth, "spatial_bandwidth")
    connectivity = _check_int(connectivity, "connectivity", 1)
    if connectivity > d.ndim:
        raise InvalidParameterError(f"connectivity must be 1..{d.ndim} for a {d.ndim}D image, got {connectivity}")
    F = len(d.channels)
    X = np.empty(d.shape + (F,), np.float32)
    for ci, ch in enumerate(d.channels):
        X[..., ci] = ch
    inside = X[d.mask] if d.mask is not None else X.reshape(-1, F)
    lo, hi = inside.min(0), inside.max(0)
    if np.all(lo == hi):
        return _constant_result(d, lo[0] if F == 1 else tuple(lo.tolist()), "mean_shift"), lo.astype(np.float64)
    del inside
    sp = d.spacing if d.ndim == 3 else (1.0,) + tuple(d.spacing)
    inv = [s / hs for s in sp]
    rad = [int(np.floor(hs / s + 1e-9)) for s in sp]
    if d.ndim == 2:
        inv[0], rad[0] = 0.0, 0
    mk = None if d.mask is None else np.ascontiguousarray(d.mask).view(np.uint8)
    integer_valued = all(ch.dtype.kind in "iub" and ch.dtype.itemsize <= 2 for ch in d.channels)
    Y = d.fam.ms_filter(X, mk, inv, rad, bw, max_iter, 1e-3 * bw, integer_valued, d.nt)
    del X
    lab, R = d.fam.ms_segment(Y, mk, bw / 2.0, connectivity)
    R = int(R)
    flat = lab.reshape(-1)
    cnt = np.bincount(flat, minlength=R + 1)[1:].astype(np.float64)
    modes = np.stack([np.bincount(flat, weights=Y[..., f].reshape(-1), minlength=R + 1)[1:] / cnt
                      for f in range(F)], axis=1)
    order = _sort_order(modes)
    lut = np.zeros(R + 1, np.int64)
    lut[order + 1] = np.arange(1, R + 1)
    labels = lut.astype(_label_dtype(R))[lab]
    modes = modes[order]
    return labels, (modes[:, 0].copy() if F == 1 else modes)


# ---------------------------------------------------------------- agglomerative


def agglomerative(image, n_clusters, linkage="ward", connectivity=1, mask=None, *, channel_axis=None, spacing=None,
                  position_weight=0.0, initial_labels=None, backend="auto", num_threads=None):
    """Hierarchical (Ward) clustering constrained to the voxel grid, 2D and 3D.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array or medseg_fast.io.Image
        NaN/inf raise.
    n_clusters : int
        >= 2 and at most the number of voxels (or initial regions).
    linkage : {'ward'}
        Only Ward's minimum-variance linkage.
    connectivity : int
        1..ndim: neighbours differing in at most that many coordinates (1 =
        faces, as ``sklearn.feature_extraction.image.grid_to_graph``).
    mask, channel_axis, spacing, position_weight : see :func:`kmeans`.
    initial_labels : array of int, 'grid' size tuple, or None
        Start from an over-segmentation instead of single voxels.  An integer
        array of the image's shape: each distinct label > 0 inside the mask is
        one initial region (superpixels such as SLIC or Felzenszwalb; label 0
        is ignored).  A tuple of ints (one per axis): a regular grid of
        supervoxels of that many voxels per axis.  Ward then merges regions with
        their exact sizes and feature sums, so the result is what Ward would
        give if each region were forced to stay together.  Use it for volumes
        beyond about a million voxels.
    backend : {'auto', 'cpu', 'numba'}
    num_threads : int, optional
        Unused by the (sequential) merging; accepted for a uniform signature.

    Returns
    -------
    labels : ndarray of uint8 (int32 beyond 255 clusters)
        0 outside the mask, 1..n_clusters by increasing mean intensity.

    Notes
    -----
    Same merges as ``sklearn.cluster.AgglomerativeClustering(linkage='ward',
    connectivity=grid_to_graph(...))``: a heap of Ward distances over the region
    adjacency edges, merged clusters numbered after the leaves, stale entries
    skipped; the tree is cut when ``n_clusters`` clusters remain.  Cost
    O(E log E) for E adjacency edges.  A mask with several disconnected parts
    cannot be merged below its number of parts (a MedsegWarning says so).
    Memory: about 100 bytes per voxel (per region with ``initial_labels``).

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.cluster import agglomerative
    >>> img = np.array([[0, 0, 5, 5], [0, 1, 5, 6]], np.uint8)
    >>> agglomerative(img, 2).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
    """
    d = _Data(image, mask, channel_axis, spacing, position_weight, backend, num_threads)
    k = _check_n_clusters(n_clusters)
    if linkage != "ward":
        raise InvalidParameterError(f"linkage must be 'ward' (the only grid-constrained linkage here), got {linkage!r}")
    connectivity = _check_int(connectivity, "connectivity", 1)
    if connectivity > d.ndim:
        raise InvalidParameterError(f"connectivity must be 1..{d.ndim} for a {d.ndim}D image, got {connectivity}")
    X = d.features().astype(np.float64)
    m = d.mask if d.mask is not None else np.ones(d.shape, bool)
    if initial_labels is None:
        R = X.shape[0]
        region = np.full(d.shape, -1, np.int32)
        region[m] = np.arange(R, dtype=np.int32)
        counts = np.ones(R)
        sums = X
    else:
        if isinstance(initial_labels, tuple):
            size = [_check_int(g, "grid size", 1) for g in initial_labels]
            if len(size) != d.ndim:
                raise InvalidParameterError(f"a grid initial_labels needs {d.ndim} sizes, got {initial_labels!r}")
            idx = np.indices(d.shape, sparse=True)
            nb = [-(-n // g) for n, g in zip(d.shape, size)]
            lab0 = np.zeros(d.shape, np.int64)
            for a in range(d.ndim):
                lab0 = lab0 * nb[a] + idx[a] // size[a]
            lab0 = lab0 + 1
        else:
            lab0 = np.asarray(initial_labels)
            if lab0.shape != d.shape:
                raise InvalidImageError(f"initial_labels has shape {lab0.shape}, the image {d.shape}")
            if lab0.dtype.kind not in "iub":
                raise InvalidImageError(f"initial_labels must be an integer label map, got dtype {lab0.dtype}")
        m = m & (lab0 != 0)
        if not m.any():
            raise EmptyImageError("initial_labels has no region (label > 0) inside the mask")
        if d.mask is not None or initial_labels is not None:
            keep = m[d.mask] if d.mask is not None else m.reshape(-1)
            X = X[keep]
        uniq, inv = np.unique(lab0[m], return_inverse=True)
        R = len(uniq)
        region = np.full(d.shape, -1, np.int32)
        region[m] = inv.astype(np.int32)
        counts = np.bincount(inv, minlength=R).astype(np.float64)
        sums = np.stack([np.bincount(inv, weights=X[:, f], minlength=R) for f in range(X.shape[1])], axis=1)
    if R == 1 or np.all(X.min(0) == X.max(0)):
        return _constant_result(d, tuple(X[0].tolist()) if X.shape[1] > 1 else X[0, 0], "agglomerative", m)
    if k > R:
        raise InvalidParameterError(f"n_clusters={k} exceeds the {R} voxels/regions that take part")
    assign, C = d.fam.ward(region, np.ascontiguousarray(counts), np.ascontiguousarray(sums), k, connectivity)
    C = int(C)
    if C > k:
        warnings.warn(f"agglomerative: the mask has disconnected parts, so {C} clusters remain instead of {k}",
                      MedsegWarning, stacklevel=2)
    ccount = np.bincount(assign, weights=counts, minlength=C)
    cmean = np.stack([np.bincount(assign, weights=sums[:, f], minlength=C) for f in range(sums.shape[1])], 1)
    cmean /= ccount[:, None]
    order = _sort_order(cmean)
    lut = np.empty(C, np.int64)
    lut[order] = np.arange(1, C + 1)
    full = np.zeros(R + 1, np.int64)
    full[1:] = lut[assign]
    return full.astype(_label_dtype(C))[region + 1]


# ---------------------------------------------------------------- CLI hook


def _cli_kmeans(image, spacing, n_clusters=3, random_state=0):
    return kmeans(image, n_clusters, random_state=random_state, spacing=spacing)[0]


def _cli_fcm(image, spacing, n_clusters=3, m=2.0, spatial_weight=0.0, random_state=0):
    return fuzzy_cmeans(image, n_clusters, m=m, spatial_weight=spatial_weight, random_state=random_state,
                        spacing=spacing)[0]


def _cli_mean_shift(image, spacing, bandwidth=50.0, spatial_bandwidth=0.0):
    return mean_shift(image, bandwidth, spatial_bandwidth=spatial_bandwidth or None, spacing=spacing)[0]


_CLI_MAX_NODES = 65536


def _cli_agglomerative(image, spacing, n_clusters=3, grid=-1):
    if grid < 0:  # auto: single voxels for small images, else cubic supervoxels (Ward is O(n log n) in nodes)
        n = int(np.size(image))
        grid = 0 if n <= _CLI_MAX_NODES else int(np.ceil((n / _CLI_MAX_NODES) ** (1.0 / np.ndim(image))))
    init = None if not grid else (int(grid),) * np.ndim(image)
    return agglomerative(image, n_clusters, spacing=spacing, initial_labels=init)


CLI_METHODS = {
    "kmeans": {
        "run": _cli_kmeans,
        "help": "k-means on intensity (histogram-exact); labels 1..n by mean intensity",
        "params": {"n_clusters": (int, 3, "number of clusters"), "random_state": (int, 0, "seed")},
    },
    "fcm": {
        "run": _cli_fcm,
        "help": "fuzzy c-means (spatial_weight > 0: FCM_S1, robust to noise); argmax labels",
        "params": {"n_clusters": (int, 3, "number of clusters"), "m": (float, 2.0, "fuzzifier > 1"),
                   "spatial_weight": (float, 0.0, "FCM_S1 alpha (0 = plain FCM)"),
                   "random_state": (int, 0, "seed")},
    },
    "mean-shift": {
        "run": _cli_mean_shift,
        "help": "mean-shift: intensity modes, or spatial-range segmentation with spatial_bandwidth (mm)",
        "params": {"bandwidth": (float, 50.0, "range bandwidth (intensity units)"),
                   "spatial_bandwidth": (float, 0.0, "spatial bandwidth in mm (0 = feature space only)")},
    },
    "agglomerative": {
        "run": _cli_agglomerative,
        "help": "grid-constrained Ward clustering (grid > 0: start from cubic supervoxels of that size)",
        "params": {"n_clusters": (int, 3, "number of clusters"),
                   "grid": (int, -1, "supervoxel edge in voxels (0 = single voxels, -1 = auto: "
                                     "supervoxels once the image exceeds 65,536 voxels)")},
    },
}
