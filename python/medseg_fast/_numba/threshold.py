"""Numba versions of the kernels in cpp/include/medseg/threshold.hpp.

Same functions and arguments as ``_core.threshold`` and the same arithmetic
order (see the C++ header for the algorithms and citations): histograms and
class maps are identical, local statistics agree to the last bit of the
float32 output in practice.

To keep the number of compiled signatures small, images reach the kernels as
float64 chunks (scan, exact histograms, class maps: 1Mi voxels at a time, so
no full-size copy is made), as float32/float64 chunks for binned histograms
(numpy's arithmetic type), and as float32 (8/16-bit integers) or float64
(other types) volumes for the local statistics.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from ._util import CACHE, as3d, threads

_CHUNK = 1 << 20  # a multiple of the 64Ki scan chunk of the C++ kernel
_SCAN = 1 << 16


def _flat(a):
    a = np.ascontiguousarray(a)
    return a.reshape(-1)


def _mask_flat(mask, n):
    if mask is None:
        return np.zeros(0, np.uint8)
    m = _flat(mask)
    if m.size != n:
        raise ValueError("mask shape differs from image shape")
    if m.dtype == np.bool_:
        return m.view(np.uint8)
    return (m != 0).view(np.uint8)


def _chunks(n):
    for s in range(0, n, _CHUNK):
        yield s, min(n, s + _CHUNK)


# ----------------------------------------------------------------- scan


@njit(cache=CACHE, parallel=True)
def _scan(v, m, has_mask, lo_out, hi_out, cnt_out, nf_out, sum_out):
    # mirrors medseg::scan: eight partial sums per 64Ki chunk, the k-th selected
    # finite voxel in sum k % 8, combined as a fixed tree
    n = v.shape[0]
    nch = (n + _SCAN - 1) // _SCAN
    for c in prange(nch):
        i0 = c * _SCAN
        i1 = min(n, i0 + _SCAN)
        lo = np.inf
        hi = -np.inf
        s = np.zeros(8)
        cnt = 0
        nf = 0
        for i in range(i0, i1):
            if has_mask and m[i] == 0:
                continue
            d = v[i]
            if not np.isfinite(d):
                nf += 1
                continue
            lo = d if d < lo else lo
            hi = d if d > hi else hi
            s[cnt & 7] += d
            cnt += 1
        lo_out[c] = lo
        hi_out[c] = hi
        cnt_out[c] = cnt
        nf_out[c] = nf
        sum_out[c] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))


def scan(image, mask, num_threads, need_sum=True):
    a = _flat(image)
    if mask is None and not need_sum and a.dtype.kind == "f":
        # min/max only: numpy's SIMD reductions; with NaN/inf present they are
        # not finite, and the chunked kernel below counts and skips them
        lo, hi = float(a.min()), float(a.max())
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi, a.size, 0, 0.0
    m = _mask_flat(mask, a.size)
    lo, hi, cnt, nf, total = np.inf, -np.inf, 0, 0, 0.0
    with threads(num_threads):
        for s, e in _chunks(a.size):
            v = a[s:e].astype(np.float64)
            k = (e - s + _SCAN - 1) // _SCAN
            los, his, sums = np.empty(k), np.empty(k), np.empty(k)
            cnts, nfs = np.empty(k, np.int64), np.empty(k, np.int64)
            _scan(v, m[s:e] if m.size else m, m.size > 0, los, his, cnts, nfs, sums)
            for j in range(k):  # combine in chunk order, as the C++ kernel
                lo = min(lo, los[j])
                hi = max(hi, his[j])
                total += sums[j]
            cnt += int(cnts.sum())
            nf += int(nfs.sum())
    return float(lo), float(hi), cnt, nf, float(total)


@njit(cache=CACHE, parallel=True)
def _li_split(v, m, has_mask, lof, f, t, na_out, sa_out, nb_out, sb_out):
    # mirrors medseg::li_split: per 64Ki chunk, voxel i in lane (i - chunk start) % 8
    # of its side, lanes combined as a fixed tree
    n = v.shape[0]
    nch = (n + _SCAN - 1) // _SCAN
    for c in prange(nch):
        i0 = c * _SCAN
        i1 = min(n, i0 + _SCAN)
        sa = np.zeros(8)
        sb = np.zeros(8)
        na = 0
        nb = 0
        for i in range(i0, i1):
            d = v[i] * f - lof
            if not np.isfinite(d) or (has_mask and m[i] == 0):
                continue
            k = (i - i0) & 7
            if d > t:
                sa[k] += d
                na += 1
            else:
                sb[k] += d
                nb += 1
        na_out[c] = na
        nb_out[c] = nb
        sa_out[c] = ((sa[0] + sa[1]) + (sa[2] + sa[3])) + ((sa[4] + sa[5]) + (sa[6] + sa[7]))
        sb_out[c] = ((sb[0] + sb[1]) + (sb[2] + sb[3])) + ((sb[4] + sb[5]) + (sb[6] + sb[7]))


def li_split(image, mask, lo, f, t, num_threads):
    a = _flat(image)
    m = _mask_flat(mask, a.size)
    na, sa, nb, sb = 0, 0.0, 0, 0.0
    lof = float(lo) * float(f)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            k = (e - s + _SCAN - 1) // _SCAN
            nas, nbs = np.empty(k, np.int64), np.empty(k, np.int64)
            sas, sbs = np.empty(k), np.empty(k)
            _li_split(a[s:e].astype(np.float64), m[s:e] if m.size else m, m.size > 0, lof, float(f), float(t),
                      nas, sas, nbs, sbs)
            for j in range(k):  # chunk order, as the C++ kernel
                sa += sas[j]
                sb += sbs[j]
            na += int(nas.sum())
            nb += int(nbs.sum())
    return na, float(sa), nb, float(sb)


# ----------------------------------------------------------------- histograms


@njit(cache=CACHE, parallel=True)
def _hist_exact(v, m, has_mask, lo, nbins, nparts, out):
    n = v.shape[0]
    for t in prange(nparts):
        b = n * t // nparts
        e = n * (t + 1) // nparts
        for i in range(b, e):
            if has_mask and m[i] == 0:
                continue
            k = np.int64(v[i]) - lo
            if 0 <= k < nbins:
                out[t, k] += 1


def histogram_exact(image, mask, lo, nbins, num_threads):
    a = _flat(image)
    m = _mask_flat(mask, a.size)
    nparts = max(1, numba.get_num_threads() if num_threads is None or num_threads <= 0 else int(num_threads))
    parts = np.zeros((nparts, int(nbins)), np.int64)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _hist_exact(a[s:e].astype(np.float64), m[s:e] if m.size else m, m.size > 0, int(lo), int(nbins),
                        nparts, parts)
    return parts.sum(axis=0)


@njit(cache=CACHE, parallel=True)
def _hist_binned(v, m, has_mask, edges, nparts, out):
    n = v.shape[0]
    nbins = edges.shape[0] - 1
    first = edges[0]
    last = edges[nbins]
    norm = edges.dtype.type(nbins) / (last - first)
    for t in prange(nparts):
        b = n * t // nparts
        e = n * (t + 1) // nparts
        for i in range(b, e):
            if has_mask and m[i] == 0:
                continue
            x = v[i]
            if not (x >= first and x <= last):
                continue
            k = np.int64((x - first) * norm)
            if k >= nbins:
                k = nbins - 1
            if k < 0:
                k = 0
            if x < edges[k]:
                k -= 1
            elif x >= edges[k + 1] and k != nbins - 1:
                k += 1
            out[t, k] += 1


def histogram_binned(image, mask, edges, num_threads):
    a = _flat(image)
    m = _mask_flat(mask, a.size)
    et = np.float32 if a.dtype == np.float32 else np.float64
    if edges.dtype != et:
        raise TypeError(f"edges must have dtype {np.dtype(et).name}")
    edges = np.ascontiguousarray(edges)
    nparts = max(1, numba.get_num_threads() if num_threads is None or num_threads <= 0 else int(num_threads))
    parts = np.zeros((nparts, edges.size - 1), np.int64)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _hist_binned(a[s:e].astype(et), m[s:e] if m.size else m, m.size > 0, edges, nparts, parts)
    return parts.sum(axis=0)


# ----------------------------------------------------------------- multi-Otsu


@njit(cache=CACHE)
def _multiotsu(counts, centers, K):
    L = counts.shape[0]
    W = np.zeros(L + 1)
    S = np.zeros(L + 1)
    for i in range(L):
        W[i + 1] = W[i] + counts[i]
        S[i + 1] = S[i] + counts[i] * centers[i]
    G = np.full((K + 1, L + 1), -np.inf)
    for i in range(L):
        w = W[L] - W[i]
        s = S[L] - S[i]
        G[1, i] = s * s / w if w > 0 else 0.0
    for k in range(2, K + 1):
        for i in range(0, L - k + 1):
            best = -np.inf
            for j in range(i + 1, L - (k - 1) + 1):
                w = W[j] - W[i]
                s = S[j] - S[i]
                v = (s * s / w if w > 0 else 0.0) + G[k - 1, j]
                if v > best:
                    best = v
            G[k, i] = best
    idx = np.empty(K - 1, np.int64)
    i = 0
    for n, k in enumerate(range(K, 1, -1)):
        best = -np.inf
        arg = i + 1
        for j in range(i + 1, L - (k - 1) + 1):
            w = W[j] - W[i]
            s = S[j] - S[i]
            v = (s * s / w if w > 0 else 0.0) + G[k - 1, j]
            if v > best:
                best = v
                arg = j
        idx[n] = arg - 1
        i = arg
    return idx


def multiotsu(counts, centers, classes):
    c = np.ascontiguousarray(counts, dtype=np.float64)
    v = np.ascontiguousarray(centers, dtype=np.float64)
    if c.size != v.size:
        raise ValueError("counts and centers differ in length")
    if classes < 2 or c.size < classes:
        raise ValueError("need at least `classes` non-empty bins")
    return _multiotsu(c, v, int(classes))


@njit(cache=CACHE)
def _minimum_bin(h, max_iter):
    # mirrors medseg::minimum_threshold_bin (the same operations: float32 values,
    # each step ((a + b) + c) / 3 in double rounded to float32, as scipy's
    # uniform_filter1d on scikit-image's float32 histogram)
    n = h.shape[0]
    t = np.empty(n)
    mx = np.full(3, -1, np.int64)
    it = 0
    found = 0
    for i in range(n):
        h[i] = np.float64(np.float32(h[i]))
    while it < max_iter:
        it += 1
        for i in range(n):
            a = h[i - 1] if i > 0 else h[0]
            c = h[i + 1] if i + 1 < n else h[n - 1]
            t[i] = np.float64(np.float32(((a + h[i]) + c) / 3.0))
        h[:] = t
        found = 0
        direction = 1
        i = 0
        while i + 1 < n and found < 3:
            if direction > 0:
                if h[i + 1] < h[i]:
                    direction = -1
                    mx[found] = i
                    found += 1
            elif h[i + 1] > h[i]:
                direction = 1
            i += 1
        if found < 3:
            break
    if found != 2:
        return -1, it
    best = mx[0]
    for i in range(mx[0] + 1, mx[1] + 1):
        if h[i] < h[best]:
            best = i
    return best, it


def minimum_bin(counts, max_iter):
    h = np.array(counts, dtype=np.float64)  # a copy: the smoothing works in place
    if h.size == 0:
        raise ValueError("empty histogram")
    if max_iter < 1:
        raise ValueError("max_iter must be >= 1")
    b, it = _minimum_bin(h, int(max_iter))
    return int(b), int(it)


# ----------------------------------------------------------------- local statistics

_ZB = 128  # as kLocalZBlock: the task partition (and so every sum) is the C++ kernel's
_YB = 256  # rows per task when the rows are split, as kLocalYBand
_G = 4  # rows per group, as kLocalRows (only the grouping of rows, not the arithmetic)


@njit(cache=CACHE)
def _border_index(j, n, mode):
    if 0 <= j < n:
        return j
    if mode == 0:
        return 0 if j < 0 else n - 1
    if mode == 1:
        p = 2 * n
        m = ((j % p) + p) % p
        return m if m < n else p - 1 - m
    if mode == 2:
        if n == 1:
            return 0
        p = 2 * n - 2
        m = ((j % p) + p) % p
        return m if m < n else p - m
    if mode == 3:
        return ((j % n) + n) % n
    return -1


@njit(cache=CACHE)
def _table(n, r, mode):
    t = np.empty(n + 2 * r, np.int64)
    for j in range(-r, n + r):
        t[j + r] = _border_index(j, n, mode)
    return t


@njit(cache=CACHE)
def _x_prefix(t, row, p, pad):
    """Prefix sums of t[row] (the extended row, the tail zero) into p:
    p[0] = 0, p[j + 1] = t[row, 0] + ... + t[row, j], with exactly the additions
    of x_prefix in threshold.hpp, so that both backends give the same bits: the
    scan runs over `pad` zeros and then the row, by blocks of eight taken as two
    halves of four (Hillis & Steele's scan within a half, the upper half then
    offset by the lower half's total), then the carry."""
    p[0] = 0.0
    n = t.shape[1]
    carry = 0.0
    for k in range(0, pad + n, 8):
        j = k - pad  # row index of the block's first value
        a0 = _tv(t, row, j, n)
        a1 = _tv(t, row, j + 1, n)
        a2 = _tv(t, row, j + 2, n)
        a3 = _tv(t, row, j + 3, n)
        a4 = _tv(t, row, j + 4, n)
        a5 = _tv(t, row, j + 5, n)
        a6 = _tv(t, row, j + 6, n)
        a7 = _tv(t, row, j + 7, n)
        d0, d1, d2, d3 = _scan4(a0, a1, a2, a3)  # lower half
        d4, d5, d6, d7 = _scan4(a4, a5, a6, a7)  # upper half
        _put(p, j, n, (d0 + 0.0) + carry)
        _put(p, j + 1, n, (d1 + 0.0) + carry)
        _put(p, j + 2, n, (d2 + 0.0) + carry)
        _put(p, j + 3, n, (d3 + 0.0) + carry)
        _put(p, j + 4, n, (d4 + d3) + carry)
        _put(p, j + 5, n, (d5 + d3) + carry)
        _put(p, j + 6, n, (d6 + d3) + carry)
        _put(p, j + 7, n, (d7 + d3) + carry)
        carry = (d7 + d3) + carry


@njit(cache=CACHE, inline="always")
def _scan4(a0, a1, a2, a3):
    """Hillis & Steele's scan of four values, with the zeros the vector code adds."""
    b0 = a0 + 0.0
    b1 = a1 + a0
    b2 = a2 + a1
    b3 = a3 + a2
    return b0 + 0.0, b1 + 0.0, b2 + b0, b3 + b1


@njit(cache=CACHE, inline="always")
def _tv(t, row, j, n):
    return t[row, j] if 0 <= j < n else 0.0


@njit(cache=CACHE, inline="always")
def _put(p, j, n, v):
    if 0 <= j < n:
        p[j + 1] = v


@njit(cache=CACHE)
def _plane_rows(src1, src2, direct, lo, c1, c2, y0, y1, wy, wx, ty, tx, ccol1, ccol2, inv_n, sq, op, k, r, offset,
                t1, t2, r1, r2, vplane, out, mo, mask):
    """Rows y0..y1-1 of one plane (see plane_rows in threshold.hpp); returns
    whether the last row of y sums is finite.  Values are widened with
    np.float64(): numba's float() keeps a float32 a float32."""
    nx = vplane.shape[1]
    rx = wx // 2
    pad = (8 - rx % 8) % 8  # zeros before the extended row in the prefix scan (x_prefix)
    R = out.dtype.type
    inv_r = 1.0 / r  # sauvola: std * (1 / r), as the cpu kernel
    prev = 0
    for y in range(y0, y1):
        cur = (y - y0) % 2
        if y == y0:
            for x in range(nx):
                t1[cur, rx + x] = 0.0
                if sq:
                    t2[cur, rx + x] = 0.0
            for j in range(wy):
                row = ty[y0 + j]
                for x in range(nx):
                    if row < 0:
                        t1[cur, rx + x] += c1
                        if sq:
                            t2[cur, rx + x] += c2
                    elif direct:
                        v = np.float64(src1[row, x])
                        t1[cur, rx + x] += v
                        if sq:
                            t2[cur, rx + x] += v * v
                    else:
                        t1[cur, rx + x] += src1[row - lo, x]
                        if sq:
                            t2[cur, rx + x] += src2[row - lo, x]
        else:
            rin = ty[y + wy - 1]
            rout = ty[y - 1]
            for x in range(nx):
                if direct:
                    va = c1 if rin < 0 else np.float64(src1[rin, x])
                    vb = c1 if rout < 0 else np.float64(src1[rout, x])
                    t1[cur, rx + x] = t1[prev, rx + x] + (va - vb)
                    if sq:
                        t2[cur, rx + x] = t2[prev, rx + x] + (va * va - vb * vb)
                else:
                    va = c1 if rin < 0 else src1[rin - lo, x]
                    vb = c1 if rout < 0 else src1[rout - lo, x]
                    t1[cur, rx + x] = t1[prev, rx + x] + (va - vb)
                    if sq:
                        qa = c2 if rin < 0 else src2[rin - lo, x]
                        qb = c2 if rout < 0 else src2[rout - lo, x]
                        t2[cur, rx + x] = t2[prev, rx + x] + (qa - qb)
        prev = cur
        for j in range(rx):
            sl = tx[j]
            sr = tx[nx + rx + j]
            t1[cur, j] = ccol1 if sl < 0 else t1[cur, rx + sl]
            t1[cur, nx + rx + j] = ccol1 if sr < 0 else t1[cur, rx + sr]
            if sq:
                t2[cur, j] = ccol2 if sl < 0 else t2[cur, rx + sl]
                t2[cur, nx + rx + j] = ccol2 if sr < 0 else t2[cur, rx + sr]
        # the x window's sums as differences of prefix sums
        _x_prefix(t1, cur, r1, pad)
        if sq:
            _x_prefix(t2, cur, r2, pad)
        for c in range(nx):
            if op == 0:
                thr = (r1[c + wx] - r1[c]) * inv_n - offset
            else:
                m = (r1[c + wx] - r1[c]) * inv_n
                var = max(0.0, (r2[c + wx] - r2[c]) * inv_n - m * m)
                if op == 1:
                    thr = m - k * math.sqrt(var)
                else:
                    thr = m * (1.0 + k * (math.sqrt(var) * inv_r - 1.0))
            if mask:
                mo[y, c] = np.float64(vplane[y, c]) > np.float64(R(thr))
            else:
                out[y, c] = R(thr)
    ok = True
    for x in range(nx):
        if not np.isfinite(t1[prev, rx + x]):
            ok = False
    return ok


@njit(cache=CACHE, parallel=True)
def _local(img, out, mo, mask, wz, wy, wx, mode, cv, op, k, r, offset):
    nz, ny, nx = img.shape
    tz = _table(nz, wz // 2, mode)
    ty = _table(ny, wy // 2, mode)
    tx = _table(nx, wx // 2, mode)
    sq = op != 0
    cv2 = cv * cv
    inv_n = 1.0 / (float(wz) * float(wy) * float(wx))
    ccol1 = cv * float(wz * wy)
    ccol2 = cv2 * float(wz * wy)
    zsum = wz > 1
    nzb0 = 2 * ((nz + 2 * _ZB - 1) // (2 * _ZB))
    ZB = max(1, (nz + nzb0 - 1) // nzb0) if zsum else 1
    nzb = (nz + ZB - 1) // ZB
    YB = _YB if (not zsum or nzb < 4) else ny
    nyb = (ny + YB - 1) // YB
    W = (nx + 2 * (wx // 2) + 3) // 4 * 4  # extended rows, whole blocks of 4 (tail zero)
    finite = np.ones(nzb * nyb, np.bool_)
    for t in prange(nzb * nyb):
        zb = t // nyb
        yb = t % nyb
        z0 = zb * ZB
        z1 = min(nz, z0 + ZB)
        y0 = yb * YB
        y1 = min(ny, y0 + YB)
        t1 = np.zeros((2, W))
        t2 = np.zeros((2, W if sq else 0))
        r1 = np.empty(W + 1)
        r2 = np.empty(W + 1 if sq else 0)
        ok = True
        if not zsum:
            for z in range(z0, z1):
                ok &= _plane_rows(img[z], img[z], True, 0, cv, cv2, y0, y1, wy, wx, ty, tx, ccol1, ccol2, inv_n, sq,
                                  op, k, r, offset, t1, t2, r1, r2, img[z], out[z], mo[z], mask)
            finite[t] = ok
            continue
        lo = ny
        hi = 0
        for i in range(y0, y1 - 1 + wy):
            if ty[i] >= 0:
                lo = min(lo, ty[i])
                hi = max(hi, ty[i] + 1)
        s1 = np.zeros((hi - lo, nx))
        s2 = np.zeros((hi - lo if sq else 0, nx))
        for j in range(wz):
            zz = tz[z0 + j]
            for yy in range(hi - lo):
                for x in range(nx):
                    if zz < 0:
                        s1[yy, x] += cv
                        if sq:
                            s2[yy, x] += cv2
                    else:
                        v = np.float64(img[zz, lo + yy, x])
                        s1[yy, x] += v
                        if sq:
                            s2[yy, x] += v * v
        for z in range(z0, z1):
            if z > z0:
                zi = tz[z + wz - 1]
                zo = tz[z - 1]
                for yy in range(hi - lo):
                    for x in range(nx):
                        va = cv if zi < 0 else np.float64(img[zi, lo + yy, x])
                        vb = cv if zo < 0 else np.float64(img[zo, lo + yy, x])
                        s1[yy, x] = s1[yy, x] + (va - vb)
                        if sq:
                            s2[yy, x] = s2[yy, x] + (va * va - vb * vb)
            ok &= _plane_rows(s1, s2, False, lo, cv * float(wz), cv2 * float(wz), y0, y1, wy, wx, ty, tx, ccol1,
                              ccol2, inv_n, sq, op, k, r, offset, t1, t2, r1, r2, img[z], out[z], mo[z], mask)
        finite[t] = ok
    return finite.all()


def _local_input(image):
    """float32 for 8/16-bit integers and float32 (exact), float64 otherwise."""
    a = image.view(np.uint8) if image.dtype == np.bool_ else image
    if a.dtype == np.float64 or (a.dtype.kind in "iu" and a.dtype.itemsize >= 4):
        work = np.ascontiguousarray(a, dtype=np.float64)
    else:
        work = np.ascontiguousarray(a, dtype=np.float32)
    out_dt = np.float64 if image.dtype == np.float64 else np.float32
    return work, out_dt


def _run_local(image, window, mode, cval, op, k, r, offset, num_threads, mask, user_out=None):
    work, out_dt = _local_input(image)
    f, ndim = as3d(work)
    w = [int(v) for v in window]
    if any(v < 1 or v % 2 == 0 for v in w):
        raise ValueError("window sizes must be odd and >= 1")
    # the unused output is indexed per plane: it gets as many (empty) planes
    if user_out is not None and not mask:  # validated by the caller: C-contiguous, out_dt, the image's shape
        out = user_out.reshape(f.shape)
    else:
        out = np.empty((f.shape[0], 0, 0) if mask else f.shape, out_dt)
    mo = np.empty(f.shape if mask else (f.shape[0], 0, 0), np.bool_)
    with threads(num_threads):
        finite = _local(f, out, mo, bool(mask), w[0], w[1], w[2], int(mode), float(cval), int(op), float(k), float(r),
                        float(offset))
    res = mo if mask else out
    return res.reshape(image.shape), bool(finite)


def local_threshold(image, window, mode, cval, op, k, r, offset, num_threads, out=None):
    return _run_local(image, window, mode, cval, op, k, r, offset, num_threads, False, out)


def local_mask(image, window, mode, cval, op, k, r, offset, num_threads):
    return _run_local(image, window, mode, cval, op, k, r, offset, num_threads, True)


@njit(cache=CACHE, parallel=True)
def _median(img, out, wz, wy, wx, mode, cv, offset):
    nz, ny, nx = img.shape
    tz = _table(nz, wz // 2, mode)
    ty = _table(ny, wy // 2, mode)
    tx = _table(nx, wx // 2, mode)
    W = wz * wy * wx
    R = out.dtype.type
    for row in prange(nz * ny):
        z = row // ny
        y = row % ny
        buf = np.empty(W)
        for x in range(nx):
            n = 0
            for dz in range(wz):
                zz = tz[z + dz]
                for dy in range(wy):
                    yy = ty[y + dy]
                    for dx in range(wx):
                        xx = tx[x + dx]
                        if zz < 0 or yy < 0 or xx < 0:
                            buf[n] = cv
                        else:
                            buf[n] = float(img[zz, yy, xx])
                        n += 1
            med = np.partition(buf, W // 2)[W // 2]
            out[z, y, x] = R(med - offset)


@njit(cache=CACHE)
def _median_col(img, h, g, z, y, xx, d, wz, wy, tz, ty, lo, cbin, med):
    """Add (d = 1) or remove (d = -1) the window column at source column xx;
    returns the change of the count of values below bin med."""
    dlt = 0
    for dz in range(wz):
        zz = tz[z + dz]
        for dy in range(wy):
            yy = ty[y + dy]
            if zz < 0 or yy < 0 or xx < 0:
                v = cbin
            else:
                v = np.int64(img[zz, yy, xx]) - lo
            h[v] += d
            g[v >> 8] += d
            if v < med:
                dlt += d
    return dlt


@njit(cache=CACHE)
def _median_hist_rows(img, out, r0, r1, wz, wy, wx, tz, ty, tx, lo, cbin, offset, h, g):
    """Rows r0..r1-1 by the sliding histogram of median_rows_hist in
    threshold.hpp (same bins, same tracking of the middle rank; h and g come
    in zeroed and are left zeroed)."""
    nz, ny, nx = img.shape
    m = (wz * wy * wx) // 2
    R = out.dtype.type
    for row in range(r0, r1):
        z = row // ny
        y = row % ny
        med = 0
        lt = 0
        for dx in range(wx):
            lt += _median_col(img, h, g, z, y, tx[dx], 1, wz, wy, tz, ty, lo, cbin, med)
        for x in range(nx):
            if x > 0:
                lt += _median_col(img, h, g, z, y, tx[x + wx - 1], 1, wz, wy, tz, ty, lo, cbin, med)
                lt += _median_col(img, h, g, z, y, tx[x - 1], -1, wz, wy, tz, ty, lo, cbin, med)
            while lt > m:
                if (med & 255) == 0:
                    while med >= 256 and lt - g[(med >> 8) - 1] > m:
                        med -= 256
                        lt -= g[med >> 8]
                med -= 1
                lt -= h[med]
            while lt + h[med] <= m:
                lt += h[med]
                med += 1
                if (med & 255) == 0:
                    while lt + g[med >> 8] <= m:
                        lt += g[med >> 8]
                        med += 256
            out[z, y, x] = R(np.float64(med + lo) - offset)
        for dx in range(wx):  # empty the histogram for the next row
            _median_col(img, h, g, z, y, tx[nx - 1 + dx], -1, wz, wy, tz, ty, lo, cbin, med)


@njit(cache=CACHE, parallel=True)
def _median_hist(img, out, wz, wy, wx, mode, lo, nbins, cbin, offset, nparts):
    nz, ny, nx = img.shape
    tz = _table(nz, wz // 2, mode)
    ty = _table(ny, wy // 2, mode)
    tx = _table(nx, wx // 2, mode)
    nb = (nbins + 255) // 256 * 256
    rows = nz * ny
    for c in prange(nparts):
        h = np.zeros(nb, np.int64)
        g = np.zeros(nb // 256, np.int64)
        _median_hist_rows(img, out, rows * c // nparts, rows * (c + 1) // nparts, wz, wy, wx, tz, ty, tx, lo, cbin,
                          offset, h, g)


_MEDIAN_MAX_BINS = 1 << 20  # as kMedianMaxBins in threshold.hpp


@njit(cache=CACHE)
def _all_integral(v):
    """Whether every value is an integer (one pass, no floor() copy of the volume)."""
    for i in range(v.shape[0]):
        if v[i] != math.floor(v[i]):
            return False
    return True


def _median_hist_range(f, mode, cval, W):
    """(lo, nbins, cbin) when the cpu backend's rule allows the histogram median
    (integers up to 32 bits, or integer-valued floats, spanning < 2**20 values
    with an integral cval where the border is constant), else None."""
    if W <= 1 or f.size == 0:
        return None
    kind, size = f.dtype.kind, f.dtype.itemsize
    if not ((kind in "iu" and size <= 4) or kind == "f"):
        return None
    lo, hi = float(f.min()), float(f.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and hi - lo < _MEDIAN_MAX_BINS and abs(lo) < 9e15
            and abs(hi) < 9e15):
        return None
    if kind == "f" and not _all_integral(f.reshape(-1)):
        return None
    if mode == 4:  # constant
        if not (math.isfinite(cval) and cval == math.floor(cval) and abs(cval) < 9e15):
            return None
        lo, hi = min(lo, cval), max(hi, cval)
        if hi - lo >= _MEDIAN_MAX_BINS:
            return None
    ilo = int(lo)
    return ilo, int(hi) - ilo + 1, (int(cval) - ilo if mode == 4 else 0)


def local_median(image, window, mode, cval, offset, num_threads, out=None):
    w = [int(v) for v in window]
    # the histogram path reads the image in its own type (an integer image is
    # not converted: a float32 copy would cost 4 bytes per voxel, and its
    # integrality pass could not fail); the selection path takes _local_input
    f, ndim = as3d(image.view(np.uint8) if image.dtype == np.bool_ else image)
    rng = _median_hist_range(f, int(mode), float(cval), w[0] * w[1] * w[2])
    out_dt = np.float64 if image.dtype == np.float64 else np.float32
    if rng is None:
        work, out_dt = _local_input(image)
        f, ndim = as3d(work)
    out = np.empty(f.shape, out_dt) if out is None else out.reshape(f.shape)  # (validated by the caller)
    with threads(num_threads):
        if rng is not None:
            nparts = max(1, min(f.shape[0] * f.shape[1], numba.get_num_threads()))
            _median_hist(f, out, w[0], w[1], w[2], int(mode), rng[0], rng[1], rng[2], float(offset), nparts)
        else:
            _median(f, out, w[0], w[1], w[2], int(mode), float(cval), float(offset))
    return out.reshape(image.shape)


# ----------------------------------------------------------------- class maps


@njit(cache=CACHE, parallel=True)
def _classify(v, m, has_mask, thr, out):
    n = v.shape[0]
    nthr = thr.shape[0]
    for i in prange(n):
        if has_mask and m[i] == 0:
            out[i] = 0
            continue
        x = v[i]
        lo = 0
        hi = nthr
        while lo < hi:
            mid = (lo + hi) // 2
            if thr[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        out[i] = lo


def classify(image, mask, thresholds, num_threads):
    a = _flat(image.view(np.uint8) if image.dtype == np.bool_ else image)
    m = _mask_flat(mask, a.size)
    thr = np.ascontiguousarray(thresholds, dtype=np.float64)
    if thr.size >= 65536:
        raise ValueError("at most 65535 thresholds")
    out = np.empty(a.size, np.uint8 if thr.size < 256 else np.uint16)
    with threads(num_threads):
        for s, e in _chunks(a.size):
            _classify(a[s:e].astype(np.float64), m[s:e] if m.size else m, m.size > 0, thr, out[s:e])
    return out.reshape(image.shape)
