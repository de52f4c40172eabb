"""Panoptic segmentation maps: every voxel gets a class, "thing" voxels an
instance id too, and panoptic quality (PQ = SQ x RQ) to judge them, 2D and 3D.

Encoding
--------
``panoptic = class_id * offset + instance_id`` with ``offset = OFFSET = 1000``
by default (the label divisor of Cityscapes / Panoptic-DeepLab): stuff
classes have instance id 0 (one segment per class), thing instances are
numbered 1, 2, ... within their class in raster order of their first voxel;
0 is unlabelled / void.  :func:`decode` inverts it.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._errors import InvalidImageError, InvalidParameterError
from ._validation import unwrap_image
from .instance import label, relabel_sequential

__all__ = ["OFFSET", "combine", "decode", "quality"]

OFFSET = 1000


def _int_map(x, name):
    x, _ = unwrap_image(x)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biu":
        raise InvalidImageError(f"{name} must be an integer map, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise InvalidImageError(f"{name} must be 2D or 3D, got shape {arr.shape}")
    if arr.size == 0:
        from ._errors import EmptyImageError

        raise EmptyImageError(f"{name} is empty")
    if arr.dtype.kind == "i" and int(arr.min()) < 0:
        raise InvalidImageError(f"{name} holds negative values")
    return arr


def _check_offset(offset):
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or offset < 2:
        raise InvalidParameterError(f"offset must be an integer >= 2, got {offset!r}")
    return int(offset)


def _out_dtype(max_value):
    return np.uint32 if max_value < 2**32 else np.uint64


def combine(semantic, instances=None, *, thing_classes=(), offset=OFFSET, connectivity=None, split=False,
            spacing=None, backend="auto", num_threads=None, **split_options):
    """Build a panoptic map from a semantic map (and optional instances).

    Parameters
    ----------
    semantic : integer array (0 = unlabelled), 2D or 3D
        Class of every voxel.
    instances : integer array of the same shape, optional
        Instance ids (any numbering; 0 = none).  A thing voxel keeps the
        instance it belongs to, renumbered per class.  Without it, the
        instances of each thing class are its connected components — or, with
        ``split=True``, the objects found by :func:`medseg_fast.instance.split`
        (touching objects separated).
    thing_classes : sequence of int
        Classes that are countable objects; every other class is stuff.
    offset : int
        The label divisor (default 1000); more instances in a class raise.
    connectivity : int, optional
        For the connected components (default 1).
    split : bool
        Use :func:`~medseg_fast.instance.split` instead of connected components.
    spacing : sequence of float, optional
        Passed to ``split``.
    backend, num_threads, **split_options : passed on.

    Returns
    -------
    ndarray of uint32 (uint64 when the codes need it)

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.panoptic import combine, decode
    >>> sem = np.array([[1, 1, 0, 2, 0, 2]])
    >>> combine(sem, thing_classes=[2])
    array([[1000, 1000,    0, 2001,    0, 2002]], dtype=uint32)
    >>> decode(combine(sem, thing_classes=[2]))[1]
    array([[0, 0, 0, 1, 0, 2]], dtype=uint32)
    """
    sem = _int_map(semantic, "semantic")
    offset = _check_offset(offset)
    things = sorted({int(c) for c in thing_classes})
    if any(c <= 0 for c in things):
        raise InvalidParameterError("thing_classes must be positive class ids")
    is_thing = np.isin(sem, things) if things else np.zeros(sem.shape, bool)
    if instances is not None:
        inst = _int_map(instances, "instances")
        if inst.shape != sem.shape:
            raise InvalidImageError(f"instances has shape {inst.shape}, semantic has {sem.shape}")
        # (class, instance) pairs of thing voxels: components of the pair map, merged per pair
        code = sem.astype(np.uint64) * np.uint64(int(inst.max()) + 1) + inst.astype(np.uint64)
        pair = np.where(is_thing & (inst != 0), code, np.uint64(0))
        seg, _ = relabel_sequential(pair, backend=backend, num_threads=num_threads)
        # renumber the segments in raster order of their first voxel
        flat = seg.ravel()
        nz = np.flatnonzero(flat)
        ids, first = np.unique(flat[nz], return_index=True)
        order = ids[np.argsort(first, kind="stable")]
        remap = np.zeros(int(seg.max()) + 1, np.int64)
        remap[order] = np.arange(1, len(order) + 1)
        comp = remap[seg]
        n = len(order)
    else:
        thing_map = np.where(is_thing, sem, 0)
        if split:
            from .instance import split as split_fn

            comp = np.zeros(sem.shape, np.int64)
            n = 0
            for c in things:
                objs = split_fn(thing_map == c, spacing=spacing, backend=backend, num_threads=num_threads,
                                **split_options).astype(np.int64)
                comp = np.where(objs > 0, objs + n, comp)
                n += int(objs.max(initial=0))
            # raster order of first voxel
            flat = comp.ravel()
            nz = np.flatnonzero(flat)
            ids, first = np.unique(flat[nz], return_index=True)
            order = ids[np.argsort(first, kind="stable")]
            remap = np.zeros(n + 1, np.int64)
            remap[order] = np.arange(1, len(order) + 1)
            comp = remap[comp]
            n = len(order)
        else:
            comp, n = label(thing_map, connectivity, return_num=True, backend=backend, num_threads=num_threads)
    # class of every component, then its rank within the class (components are in raster order)
    class_of = np.zeros(n + 1, np.int64)
    class_of[comp.ravel()] = sem.ravel()
    class_of[0] = 0
    inst_id = np.zeros(n + 1, np.int64)
    for c in np.unique(class_of[1:]):
        ids = np.flatnonzero(class_of == c)
        ids = ids[ids != 0]
        if len(ids) >= offset:
            raise InvalidParameterError(
                f"class {c} has {len(ids)} instances, which do not fit offset={offset}; use a larger offset"
            )
        inst_id[ids] = np.arange(1, len(ids) + 1)
    max_code = int(sem.max()) * offset + int(inst_id.max(initial=0))
    dt = _out_dtype(max_code)
    code = (class_of * offset + inst_id).astype(dt)
    out = sem.astype(dt) * dt(offset)
    np.copyto(out, code[comp], where=comp != 0)
    return out


def decode(panoptic, offset=OFFSET):
    """Split a panoptic map into (semantic, instance) maps.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.panoptic import decode
    >>> sem, inst = decode(np.array([[0, 1000, 2001, 2002]]))
    >>> sem.tolist(), inst.tolist()
    ([[0, 1, 2, 2]], [[0, 0, 1, 2]])
    """
    pan = _int_map(panoptic, "panoptic")
    offset = _check_offset(offset)
    return pan // offset, pan % offset


def quality(pred, truth, *, offset=OFFSET, thing_classes=None, void_label=0):
    """Panoptic quality of a predicted panoptic map against the truth (2D/3D).

    Segments (distinct panoptic codes other than ``void_label``) of the same
    class are matched when their IoU exceeds 0.5 (unique by construction,
    Kirillov et al., CVPR 2019).  As in the COCO panopticapi, voxels that are
    void in the truth are left out of the IoU's union, and an unmatched
    predicted segment lying mostly (> 50 %) in void is not a false positive.

    Parameters
    ----------
    pred, truth : panoptic maps (``class * offset + instance``), same shape
    offset : int
    thing_classes : sequence of int, optional
        When given, the result also has ``things`` and ``stuff`` averages.
    void_label : int
        Panoptic code of unlabelled voxels (default 0).

    Returns
    -------
    dict with ``per_class`` (dict of columns: class, pq, sq, rq, tp, fp, fn,
    iou_sum) and ``all`` (pq, sq, rq averaged over the classes present, and
    summed tp, fp, fn), plus ``things`` / ``stuff`` with ``thing_classes``.

    Examples
    --------
    >>> import numpy as np
    >>> from medseg_fast.panoptic import quality
    >>> t = np.array([[1001, 1001, 1002, 1002, 0]])
    >>> p = np.array([[1001, 1001, 1001, 1002, 0]])
    >>> r = quality(p, t)
    >>> r["per_class"]["tp"].tolist(), r["per_class"]["fp"].tolist(), r["per_class"]["fn"].tolist()
    ([1], [1], [1])
    >>> round(r["all"]["pq"], 4)
    0.3333
    """
    P = _int_map(pred, "pred")
    T = _int_map(truth, "truth")
    if P.shape != T.shape:
        raise InvalidImageError(f"pred and truth have different shapes: {P.shape} and {T.shape}")
    offset = _check_offset(offset)
    pv, pi = np.unique(P, return_inverse=True)
    tv, ti = np.unique(T, return_inverse=True)
    pi = pi.ravel().astype(np.int64)
    ti = ti.ravel().astype(np.int64)
    joint = np.bincount(pi * len(tv) + ti, minlength=len(pv) * len(tv)).reshape(len(pv), len(tv))
    area_p = joint.sum(axis=1)
    area_t = joint.sum(axis=0)
    void_t = np.flatnonzero(tv == void_label)
    void_p = np.flatnonzero(pv == void_label)
    void_inter = joint[:, void_t[0]] if len(void_t) else np.zeros(len(pv), np.int64)
    cls_p = pv // offset
    cls_t = tv // offset
    valid_p = np.ones(len(pv), bool)
    valid_t = np.ones(len(tv), bool)
    valid_p[void_p] = False
    valid_t[void_t] = False
    matched_p = np.zeros(len(pv), bool)
    matched_t = np.zeros(len(tv), bool)
    classes = sorted(set(cls_p[valid_p].tolist()) | set(cls_t[valid_t].tolist()))
    stats = {c: [0, 0, 0, 0.0] for c in classes}  # tp, fp, fn, iou_sum
    ip, it = np.nonzero(joint)
    for a, b in zip(ip, it):
        if not (valid_p[a] and valid_t[b]) or cls_p[a] != cls_t[b]:
            continue
        inter = joint[a, b]
        union = area_p[a] + area_t[b] - inter - void_inter[a]
        iou = inter / union if union > 0 else 0.0
        if iou > 0.5:
            matched_p[a] = matched_t[b] = True
            s = stats[int(cls_p[a])]
            s[0] += 1
            s[3] += iou
    for b in np.flatnonzero(valid_t & ~matched_t):
        stats[int(cls_t[b])][2] += 1
    for a in np.flatnonzero(valid_p & ~matched_p):
        if area_p[a] and void_inter[a] / area_p[a] > 0.5:
            continue
        stats[int(cls_p[a])][1] += 1
    per = {k: [] for k in ("class", "pq", "sq", "rq", "tp", "fp", "fn", "iou_sum")}
    for c in classes:
        tp, fp, fn, iou_sum = stats[c]
        den = tp + 0.5 * fp + 0.5 * fn
        per["class"].append(c)
        per["tp"].append(tp)
        per["fp"].append(fp)
        per["fn"].append(fn)
        per["iou_sum"].append(iou_sum)
        per["sq"].append(iou_sum / tp if tp else 0.0)
        per["rq"].append(tp / den if den else 0.0)
        per["pq"].append(iou_sum / den if den else 0.0)
    per_cols = {k: np.array(v, dtype=np.int64 if k in ("class", "tp", "fp", "fn") else np.float64)
                for k, v in per.items()}

    def summary(sel):
        idx = [i for i, c in enumerate(classes) if sel(c)]
        if not idx:
            return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "tp": 0, "fp": 0, "fn": 0, "n": 0}
        return {"pq": float(per_cols["pq"][idx].mean()), "sq": float(per_cols["sq"][idx].mean()),
                "rq": float(per_cols["rq"][idx].mean()), "tp": int(per_cols["tp"][idx].sum()),
                "fp": int(per_cols["fp"][idx].sum()), "fn": int(per_cols["fn"][idx].sum()), "n": len(idx)}

    out = {"per_class": per_cols, "all": summary(lambda c: True)}
    if thing_classes is not None:
        th = {int(c) for c in thing_classes}
        out["things"] = summary(lambda c: c in th)
        out["stuff"] = summary(lambda c: c not in th)
    return out
