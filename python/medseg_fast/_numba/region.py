"""Numba versions of the kernels in cpp/include/medseg/{watershed,region,felzenszwalb}.hpp.

Each function takes the arguments of the ``_core.region`` function of the same
name and follows the C++ algorithm step for step (see the headers for the
algorithms and citations), so labels agree exactly.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._util import CACHE, as3d
from ._util import uf_find as _find

# ------------------------------------------------------------------ watershed


@njit(cache=CACHE)
def _ordered_offsets(ndim, connectivity, reverse_axes):
    """Neighbour offsets in scikit-image's order, in core (z, y, x) coordinates."""
    zr = 1 if ndim == 3 else 0
    n = 0
    offs = np.zeros((26, 3), np.int64)
    for k in range(1, 4):  # stable sort by length == generate by length, raster order inside
        for dz in range(-zr, zr + 1):
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    c = abs(dz) + abs(dy) + abs(dx)
                    if c != k or c > connectivity:
                        continue
                    offs[n, 0] = dz
                    offs[n, 1] = dy
                    offs[n, 2] = dx
                    n += 1
    out = offs[:n].copy()
    if reverse_axes:
        for i in range(n):
            if ndim == 3:
                out[i, 0] = offs[i, 2]
                out[i, 2] = offs[i, 0]
            else:
                out[i, 0] = 0
                out[i, 1] = offs[i, 2]
                out[i, 2] = offs[i, 1]
    return out


@njit(cache=CACHE, inline="always")
def _smaller(hk, ha, a, b):
    if hk[a] != hk[b]:
        return hk[a] < hk[b]
    return ha[a] < ha[b]


@njit(cache=CACHE, inline="always")
def _swap(hk, ha, hi, hs, a, b):
    hk[a], hk[b] = hk[b], hk[a]
    ha[a], ha[b] = ha[b], ha[a]
    hi[a], hi[b] = hi[b], hi[a]
    hs[a], hs[b] = hs[b], hs[a]


@njit(cache=CACHE, inline="always")
def _heap_push(hk, ha, hi, hs, size, cap, key, age, idx, src):
    """Push (key, age) -> (idx, src) on the binary min-heap held in four parallel
    arrays, doubling them when full; returns the (possibly new) arrays, size, cap."""
    if size == cap:
        cap *= 2
        hk2 = np.empty(cap, np.float64); hk2[:size] = hk[:size]; hk = hk2
        ha2 = np.empty(cap, np.int64); ha2[:size] = ha[:size]; ha = ha2
        hi2 = np.empty(cap, np.int64); hi2[:size] = hi[:size]; hi = hi2
        hs2 = np.empty(cap, np.int64); hs2[:size] = hs[:size]; hs = hs2
    child = size
    hk[child] = key
    ha[child] = age
    hi[child] = idx
    hs[child] = src
    size += 1
    while child > 0:
        parent = (child + 1) // 2 - 1
        if _smaller(hk, ha, child, parent):
            _swap(hk, ha, hi, hs, child, parent)
            child = parent
        else:
            break
    return hk, ha, hi, hs, size, cap


@njit(cache=CACHE, inline="always")
def _stack_push(stack, sp, cap, v):
    """Push v on a growable int64 stack; returns (stack, sp, cap)."""
    if sp == cap:
        cap *= 2
        st2 = np.empty(cap, np.int64)
        st2[:sp] = stack[:sp]
        stack = st2
    stack[sp] = v
    return stack, sp + 1, cap


@njit(cache=CACHE)
def _flood(img, labels, wmask, use_mask, connectivity, compactness, line, spacing, reverse_axes, bucket_rule, ndim):
    nz, ny, nx = img.shape
    plane = ny * nx
    n = nz * plane
    im = img.ravel()
    lab = labels.ravel()
    mk = wmask.ravel()
    offs = _ordered_offsets(ndim, connectivity, reverse_axes)
    nn = offs.shape[0]
    delta = np.empty(nn, np.int64)
    for k in range(nn):
        delta[k] = offs[k, 0] * plane + offs[k, 1] * nx + offs[k, 2]
    zr = 1 if ndim == 3 else 0
    compact = compactness > 0.0
    line = line and not compact
    simple = not compact and not line

    # markers in the caller's raster order
    nm = 0
    for i in range(n):
        if lab[i] != 0:
            nm += 1
    markers = np.empty(nm, np.int64)
    m = 0
    if not reverse_axes:
        for i in range(n):
            if lab[i] != 0:
                markers[m] = i
                m += 1
    else:
        for x in range(nx):
            for y in range(ny):
                for z in range(nz):
                    i = (z * ny + y) * nx + x
                    if lab[i] != 0:
                        markers[m] = i
                        m += 1

    cap = max(16, 2 * nm)
    hk = np.empty(cap, np.float64)
    ha = np.empty(cap, np.int64)
    hi = np.empty(cap, np.int64)
    hs = np.empty(cap, np.int64)
    size = 0
    age = 1
    if bucket_rule:
        age = nm  # markers carry ages 0..nm-1: equal values pop in raster order (the C++ bucket queue)

    nb = np.empty(26, np.int64)
    # push markers
    for mi in range(nm):
        i = markers[mi]
        hk, ha, hi, hs, size, cap = _heap_push(hk, ha, hi, hs, size, cap, float(im[i]),
                                               mi if bucket_rule else 0, i, i)

    while size > 0:
        key = hk[0]
        i = hi[0]
        src = hs[0]
        size -= 1
        if size > 0:
            _swap(hk, ha, hi, hs, 0, size)
            p = 0
            while True:
                l = 2 * p + 1
                r = 2 * p + 2
                smallest = p
                if l >= size:
                    break
                if _smaller(hk, ha, l, p):
                    smallest = l
                if r < size and _smaller(hk, ha, r, smallest):
                    smallest = r
                if smallest == p:
                    break
                _swap(hk, ha, hi, hs, p, smallest)
                p = smallest

        # neighbours of i (in bounds, in mask)
        z = i // plane
        rr = i - z * plane
        y = rr // nx
        x = rr - y * nx
        interior = z >= zr and z < nz - zr and y >= 1 and y < ny - 1 and x >= 1 and x < nx - 1
        cnt = 0
        for k in range(nn):
            if not interior:
                zz = z + offs[k, 0]
                yy = y + offs[k, 1]
                xx = x + offs[k, 2]
                if zz < 0 or zz >= nz or yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    continue
            j = i + delta[k]
            if use_mask and mk[j] == 0:
                continue
            nb[cnt] = j
            cnt += 1

        if not simple:
            if lab[i] != 0 and i != src:
                continue
            if line and mk[i] == 0:
                continue  # already a line voxel: its neighbours were pushed at that pop (see watershed.hpp)
            set_label = True
            if not compact:
                label = lab[src]
                if mk[i] == 0:
                    set_label = False
                else:
                    for t in range(cnt):
                        lj = lab[nb[t]]
                        if lj != 0 and lj != label:
                            mk[i] = 0
                            set_label = False
                            break
            if set_label:
                lab[i] = lab[src]
        li = lab[i]
        for t in range(cnt):
            j = nb[t]
            if lab[j] != 0:
                continue
            age += 1
            v = float(im[j])
            if compact:
                zb = src // plane
                rb = src - zb * plane
                yb = rb // nx
                xb = rb - yb * nx
                zj = j // plane
                rj = j - zj * plane
                yj = rj // nx
                xj = rj - yj * nx
                d0 = float(zj - zb) * spacing[0]
                d1 = float(yj - yb) * spacing[1]
                d2 = float(xj - xb) * spacing[2]
                acc = 0.0
                if not reverse_axes:
                    if ndim == 3:
                        acc += d0 * d0
                    acc += d1 * d1
                    acc += d2 * d2
                else:
                    acc += d2 * d2
                    acc += d1 * d1
                    if ndim == 3:
                        acc += d0 * d0
                v += compactness * np.sqrt(acc)
            elif simple:
                lab[j] = li
            if v < key:
                v = key
            hk, ha, hi, hs, size, cap = _heap_push(hk, ha, hi, hs, size, cap, v, age, j, src)


def _compute_view(a):
    """Integer images of <= 16 bits become float32, 32-bit ints float64 (exact, 2 compiled signatures)."""
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a
    if a.dtype.itemsize <= 2:
        return a.astype(np.float32)
    return a.astype(np.float64)


def watershed(image, markers, mask, connectivity, compactness, line, spacing, reverse_axes, num_threads):
    img3, ndim = as3d(image)
    if markers.shape != image.shape:
        raise ValueError("markers shape differs from image shape")
    # labels handled as int64 (one compiled signature); bit patterns are kept
    out = np.ascontiguousarray(markers).astype(markers.dtype.newbyteorder("=")).astype(np.uint64).view(np.int64)
    if mask is not None:
        if mask.shape != image.shape:
            raise ValueError("mask shape differs from image shape")
        wmask = np.ascontiguousarray(mask, dtype=np.uint8).copy()
        out[wmask == 0] = 0
    else:
        wmask = np.ones(image.shape, np.uint8)
    bucket_rule = True  # markers carry ages 0..K-1 in raster order on every path (see watershed.hpp)
    out3, _ = as3d(out)
    wm3, _ = as3d(wmask)
    _flood(_compute_view(img3), out3, wm3, True, int(connectivity), float(compactness), bool(line),
           np.asarray(spacing, np.float64), bool(reverse_axes), bool(bucket_rule), ndim)
    return out.view(np.uint64).astype(markers.dtype.newbyteorder("="))


# ------------------------------------------------------------------ region growing


@njit(cache=CACHE, inline="always")
def _in(im, o, j, lo, hi, bit):
    w = float(im[j])
    return w >= lo and w <= hi and (o[j] & bit) == 0


@njit(cache=CACHE)
def _flood_range(img, out, bit, ndim, seeds, lo, hi, connectivity, force_seeds):
    nz, ny, nx = img.shape
    im = img.ravel()
    o = out.ravel()
    zr = 1 if ndim == 3 else 0
    rows = np.zeros((8, 3), np.int64)
    nr = 0
    for dz in range(-zr, zr + 1):
        for dy in range(-1, 2):
            k = abs(dz) + abs(dy)
            if k == 0 or k > connectivity:
                continue
            rows[nr, 0] = dz
            rows[nr, 1] = dy
            rows[nr, 2] = 1 if k + 1 <= connectivity else 0
            nr += 1
    cap = 1024
    stack = np.empty(cap, np.int64)
    sp = 0
    ns = seeds.shape[0]
    k = 0
    while True:
        # next voxel whose run is to be filled: forced seeds first, in order, then the stack
        if k < ns:
            i = seeds[k]
            k += 1
            if force_seeds:
                if (o[i] & bit) != 0:
                    continue
            else:
                if _in(im, o, i, lo, hi, bit):
                    stack, sp, cap = _stack_push(stack, sp, cap, i)
                continue
        elif sp > 0:
            sp -= 1
            i = stack[sp]
            if not _in(im, o, i, lo, hi, bit):
                continue
        else:
            break
        row = i // nx
        x = i - row * nx
        base = row * nx
        x0 = x
        x1 = x
        while x0 > 0 and _in(im, o, base + x0 - 1, lo, hi, bit):
            x0 -= 1
        while x1 < nx - 1 and _in(im, o, base + x1 + 1, lo, hi, bit):
            x1 += 1
        for xx in range(x0, x1 + 1):
            o[base + xx] |= bit
        z = row // ny
        y = row - z * ny
        for r in range(nr):
            zz = z + rows[r, 0]
            yy = y + rows[r, 1]
            if zz < 0 or zz >= nz or yy < 0 or yy >= ny:
                continue
            b2 = (zz * ny + yy) * nx
            a = max(0, x0 - rows[r, 2])
            e = min(nx - 1, x1 + rows[r, 2])
            prev = False
            for xx in range(a, e + 1):
                j = b2 + xx
                cur = _in(im, o, j, lo, hi, bit)
                if cur and not prev:
                    stack, sp, cap = _stack_push(stack, sp, cap, j)
                prev = cur


def _grow_view(a):
    # exact in float64 for every intensity dtype; float32 stays (one more signature)
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a
    return a.astype(np.float64) if a.dtype.itemsize >= 4 else a.astype(np.float32)


def grow(image, seeds, lo, hi, connectivity, num_threads):
    img3, ndim = as3d(image)
    img3 = _grow_view(img3)
    out = np.zeros(img3.shape, np.uint8)
    seeds = np.asarray(seeds, np.int64)
    lo = np.asarray(lo, np.float64)
    hi = np.asarray(hi, np.float64)
    if seeds.size and (seeds.min() < 0 or seeds.max() >= img3.size):
        raise ValueError("seed index outside the image")
    keys = sorted(set(zip(lo.tolist(), hi.tolist())))
    if len(keys) == 1:
        _flood_range(img3, out, 1, ndim, seeds, keys[0][0], keys[0][1], int(connectivity), False)
    else:
        for a, b in keys:
            sel = seeds[(lo == a) & (hi == b)]
            _flood_range(img3, out, 2, ndim, sel, a, b, int(connectivity), False)
            out = (out | (out >> 1)) & 1
    return out.reshape(image.shape).view(np.bool_)


def _cast_threshold(v, dtype):
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = min(max(v, float(info.min)), float(info.max))
        return float(np.trunc(v))
    if dt == np.float32:
        return float(np.float32(v))
    return float(v)


@njit(cache=CACHE)
def _masked_moments(img, out):
    im = img.ravel()
    o = out.ravel()
    n = im.shape[0]
    chunk = 1 << 16
    s1 = 0.0
    s2 = 0.0
    cnt = 0
    for b in range(0, n, chunk):
        e = min(n, b + chunk)
        a1 = 0.0
        a2 = 0.0
        for i in range(b, e):
            if o[i] != 0:
                v = float(im[i])
                a1 += v
                a2 += v * v
                cnt += 1
        s1 += a1
        s2 += a2
    return s1, s2, cnt


@njit(cache=CACHE)
def _seed_stats(img, seeds, radius, ndim):
    nz, ny, nx = img.shape
    im = img.ravel()
    zr = radius if ndim == 3 else 0
    a1 = 0.0
    a2 = 0.0
    cnt = 0
    for k in range(seeds.shape[0]):
        i = seeds[k]
        z = i // (ny * nx)
        rem = i - z * ny * nx
        y = rem // nx
        x = rem - y * nx
        for dz in range(-zr, zr + 1):
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    zz = min(max(z + dz, 0), nz - 1)
                    yy = min(max(y + dy, 0), ny - 1)
                    xx = min(max(x + dx, 0), nx - 1)
                    v = float(im[(zz * ny + yy) * nx + xx])
                    a1 += v
                    a2 += v * v
                    cnt += 1
    return a1, a2, cnt


def grow_confidence(image, seeds, multiplier, iterations, radius, connectivity, num_threads):
    img3, ndim = as3d(image)
    dtype = image.dtype
    img3 = _grow_view(img3)
    seeds = np.asarray(seeds, np.int64)
    if seeds.size and (seeds.min() < 0 or seeds.max() >= img3.size):
        raise ValueError("seed index outside the image")
    out = np.zeros(img3.shape, np.uint8)
    a1, a2, cnt = _seed_stats(img3, seeds, int(radius), ndim)
    mean = a1 / cnt if cnt else 0.0
    var = (a2 - a1 * a1 / cnt) / (cnt - 1.0) if cnt > 1 else 0.0

    svals = img3.ravel()[seeds].astype(np.float64)
    smin, smax = float(svals.min()), float(svals.max())

    def interval():
        sd = np.sqrt(max(var, 0.0))
        return (_cast_threshold(min(mean - multiplier * sd, smin), dtype),
                _cast_threshold(max(mean + multiplier * sd, smax), dtype))

    lo, hi = interval()
    _flood_range(img3, out, 1, ndim, seeds, lo, hi, int(connectivity), True)
    for _ in range(iterations):
        a1, a2, cnt = _masked_moments(img3, out)
        if cnt == 0:
            break
        mean = a1 / cnt
        var = (a2 - a1 * a1 / cnt) / (cnt - 1.0) if cnt > 1 else 0.0
        if var == 0.0:
            break
        lo, hi = interval()
        out[...] = 0
        _flood_range(img3, out, 1, ndim, seeds, lo, hi, int(connectivity), True)
    return out.reshape(image.shape).view(np.bool_), lo, hi


# ------------------------------------------------------------------ Felzenszwalb


@njit(cache=CACHE)
def _fh_keys(sm, nch, ndim, vscale):
    """Edge keys (float32 weight bits << 32 | voxel * ndir + direction), as the C++ kernel."""
    _, nz, ny, nx = sm.shape
    n = nz * ny * nx
    plane = ny * nx
    if ndim == 2:
        dirs = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 1, -1]], np.int64)
    else:
        dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.int64)
    ndir = dirs.shape[0]
    flat = sm.reshape(nch, n)
    keys = np.empty(n * ndir, np.uint64)
    w32 = np.empty(1, np.float32)
    bits = w32.view(np.uint32)
    m = 0
    for i in range(n):
        z = i // plane
        r = i - z * plane
        y = r // nx
        x = r - y * nx
        for d in range(ndir):
            zz = z + dirs[d, 0]
            yy = y + dirs[d, 1]
            xx = x + dirs[d, 2]
            if zz >= nz or yy >= ny or xx < 0 or xx >= nx:
                continue
            j = i + dirs[d, 0] * plane + dirs[d, 1] * nx + dirs[d, 2]
            if nch == 1:
                acc = abs(flat[0, j] - flat[0, i])
            else:
                s2 = flat[0, j] - flat[0, j]
                for c in range(nch):
                    df = flat[c, j] - flat[c, i]
                    s2 += df * df
                acc = np.sqrt(s2)
            w32[0] = acc * vscale
            keys[m] = (np.uint64(bits[0]) << np.uint64(32)) | np.uint64(i * ndir + d)
            m += 1
    return keys[:m], ndir


@njit(cache=CACHE)
def _fh_merge(keys, n, ndir, nx, plane, ndim, k, min_size, labels):
    if ndim == 2:
        dirs = np.array([[0, 1, 0], [0, 0, 1], [0, 1, 1], [0, 1, -1]], np.int64)
    else:
        dirs = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.int64)
    delta = np.empty(ndir, np.int64)
    for d in range(ndir):
        delta[d] = dirs[d, 0] * plane + dirs[d, 1] * nx + dirs[d, 2]
    parent = np.arange(n)
    size = np.ones(n, np.uint32)
    cint = np.zeros(n, np.float32)
    b32 = np.empty(1, np.uint32)
    wv = b32.view(np.float32)
    mask32 = np.uint64(0xFFFFFFFF)
    for e in range(keys.shape[0]):
        slot = np.int64(keys[e] & mask32)
        a = slot // ndir
        b = a + delta[slot - a * ndir]
        a = _find(parent, a)
        b = _find(parent, b)
        if a == b:
            continue
        b32[0] = np.uint32(keys[e] >> np.uint64(32))
        w = wv[0]
        ta = np.float32(float(cint[a]) + k / float(size[a]))
        tb = np.float32(float(cint[b]) + k / float(size[b]))
        if w < min(ta, tb):
            r = min(a, b)
            parent[max(a, b)] = r
            size[r] = size[a] + size[b]
            cint[r] = w
    if min_size > 1:
        for e in range(keys.shape[0]):
            slot = np.int64(keys[e] & mask32)
            a = slot // ndir
            b = a + delta[slot - a * ndir]
            a = _find(parent, a)
            b = _find(parent, b)
            if a == b:
                continue
            if size[a] < min_size or size[b] < min_size:
                r = min(a, b)
                parent[max(a, b)] = r
                size[r] = size[a] + size[b]
    nxt = 0
    for i in range(n):
        r = _find(parent, i)
        if r == i:
            labels[i] = nxt
            nxt += 1
        else:
            labels[i] = labels[r]
    return nxt


def felzenszwalb(image, channels, weights, scale, vscale, min_size, mode, num_threads):
    from .edges import gaussian

    if not scale > 0:
        raise ValueError("scale must be > 0")
    arr = image if channels else image[None]
    nch = arr.shape[0]
    spatial = arr.shape[1:]
    ndim = len(spatial)
    sm = np.stack([gaussian(np.ascontiguousarray(arr[c]), weights, int(mode), 0.0, False, False, num_threads)
                   for c in range(nch)])
    sm = sm.reshape((nch,) + ((1,) + spatial if ndim == 2 else spatial))
    rt = sm.dtype.type
    keys, ndir = _fh_keys(sm, nch, ndim, rt(vscale))
    keys.sort()
    _, nz, ny, nx = sm.shape
    n = nz * ny * nx
    labels = np.empty(n, np.int64)
    _fh_merge(keys, n, ndir, nx, ny * nx, ndim, float(scale) / 255.0, int(min_size), labels)
    return labels.reshape(spatial)


# ------------------------------------------------------------------ split and merge


@njit(cache=CACHE)
def _block_stats(im, ny, nx, b):
    s1 = 0.0
    s2 = 0.0
    mn = np.inf
    mx = -np.inf
    for z in range(b[0], b[3]):
        for y in range(b[1], b[4]):
            base = (z * ny + y) * nx
            for x in range(b[2], b[5]):
                v = float(im[base + x])
                s1 += v
                s2 += v * v
                mn = min(mn, v)
                mx = max(mx, v)
    return s1, s2, mn, mx, (b[3] - b[0]) * (b[4] - b[1]) * (b[5] - b[2])


@njit(cache=CACHE, inline="always")
def _homog(s1, s2, mn, mx, cnt, criterion, threshold):
    if criterion == 1:
        return mx - mn <= threshold
    mean = s1 / float(cnt)
    var = max(0.0, s2 / float(cnt) - mean * mean)
    return np.sqrt(var) <= threshold


@njit(cache=CACHE)
def _split_merge(img, threshold, min_side, criterion, labels):
    nz, ny, nx = img.shape
    im = img.ravel()
    lab = labels.ravel()
    level = np.array([[0, 0, 0, nz, ny, nx]], np.int64)
    leaves = np.empty((16, 6), np.int64)
    lstats = np.empty((16, 4), np.float64)
    lcount = np.empty(16, np.int64)
    nl = 0
    while level.shape[0] > 0:
        m = level.shape[0]
        nxt = np.empty((m * 8, 6), np.int64)
        nn = 0
        for k in range(m):
            b = level[k]
            s1, s2, mn, mx, cnt = _block_stats(im, ny, nx, b)
            split = False
            if not _homog(s1, s2, mn, mx, cnt, criterion, threshold):
                for a in range(3):
                    if b[a + 3] - b[a] >= 2 * min_side:
                        split = True
            if not split:
                if nl == leaves.shape[0]:
                    l2 = np.empty((2 * nl, 6), np.int64); l2[:nl] = leaves; leaves = l2
                    s2a = np.empty((2 * nl, 4), np.float64); s2a[:nl] = lstats; lstats = s2a
                    c2 = np.empty(2 * nl, np.int64); c2[:nl] = lcount; lcount = c2
                leaves[nl] = b
                lstats[nl, 0] = s1
                lstats[nl, 1] = s2
                lstats[nl, 2] = mn
                lstats[nl, 3] = mx
                lcount[nl] = cnt
                nl += 1
                continue
            cuts = np.zeros((3, 3), np.int64)
            parts = np.ones(3, np.int64)
            for a in range(3):
                ext = b[a + 3] - b[a]
                cuts[a, 0] = b[a]
                if ext >= 2 * min_side:
                    parts[a] = 2
                    cuts[a, 1] = b[a] + ext // 2
                    cuts[a, 2] = b[a + 3]
                else:
                    cuts[a, 1] = b[a + 3]
            for iz in range(parts[0]):
                for iy in range(parts[1]):
                    for ix in range(parts[2]):
                        nxt[nn, 0] = cuts[0, iz]
                        nxt[nn, 1] = cuts[1, iy]
                        nxt[nn, 2] = cuts[2, ix]
                        nxt[nn, 3] = cuts[0, iz + 1]
                        nxt[nn, 4] = cuts[1, iy + 1]
                        nxt[nn, 5] = cuts[2, ix + 1]
                        nn += 1
        level = nxt[:nn].copy()
    for k in range(nl):
        b = leaves[k]
        for z in range(b[0], b[3]):
            for y in range(b[1], b[4]):
                base = (z * ny + y) * nx
                for x in range(b[2], b[5]):
                    lab[base + x] = k
    # adjacency pairs encoded as a * nl + b (a < b)
    cap = 1024
    pairs = np.empty(cap, np.int64)
    npairs = 0
    plane = ny * nx
    for r in range(nz * ny):
        z = r // ny
        y = r - z * ny
        for x in range(nx):
            i = r * nx + x
            a = lab[i]
            for d in range(3):
                if d == 0:
                    if x + 1 >= nx:
                        continue
                    j = i + 1
                elif d == 1:
                    if y + 1 >= ny:
                        continue
                    j = i + nx
                else:
                    if z + 1 >= nz:
                        continue
                    j = i + plane
                bb = lab[j]
                if a == bb:
                    continue
                code = min(a, bb) * nl + max(a, bb)
                pairs, npairs, cap = _stack_push(pairs, npairs, cap, code)
    codes = np.unique(pairs[:npairs])
    ne = codes.shape[0]
    w = np.empty(ne, np.float64)
    for e in range(ne):
        a = codes[e] // nl
        bb = codes[e] - a * nl
        w[e] = abs(lstats[a, 0] / float(lcount[a]) - lstats[bb, 0] / float(lcount[bb]))
    order = np.argsort(w, kind="mergesort")
    parent = np.arange(nl)
    st = lstats[:nl].copy()
    cn = lcount[:nl].copy()
    for t in range(ne):
        e = order[t]
        a = codes[e] // nl
        bb = codes[e] - a * nl
        a = _find(parent, a)
        bb = _find(parent, bb)
        if a == bb:
            continue
        u0 = st[a, 0] + st[bb, 0]
        u1 = st[a, 1] + st[bb, 1]
        u2 = min(st[a, 2], st[bb, 2])
        u3 = max(st[a, 3], st[bb, 3])
        uc = cn[a] + cn[bb]
        if not _homog(u0, u1, u2, u3, uc, criterion, threshold):
            continue
        r = min(a, bb)
        parent[max(a, bb)] = r
        st[r, 0] = u0
        st[r, 1] = u1
        st[r, 2] = u2
        st[r, 3] = u3
        cn[r] = uc
    remap = np.full(nl, -1, np.int64)
    nxt_label = 0
    for i in range(nz * ny * nx):
        r = _find(parent, lab[i])
        if remap[r] < 0:
            remap[r] = nxt_label
            nxt_label += 1
        lab[i] = remap[r]
    return nxt_label


def split_merge(image, threshold, min_side, criterion, num_threads):
    if not threshold >= 0:
        raise ValueError("threshold must be >= 0")
    img3, _ = as3d(image)
    if img3.dtype != np.float32 and img3.dtype != np.float64:
        img3 = img3.astype(np.float64 if img3.dtype.itemsize >= 4 else np.float32)
    labels = np.empty(img3.shape, np.int64)
    _split_merge(img3, float(threshold), int(min_side), int(criterion), labels)
    return labels.reshape(image.shape)
