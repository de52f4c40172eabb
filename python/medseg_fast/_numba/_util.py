"""Helpers shared by the numba kernels."""

from __future__ import annotations

import contextlib
import os

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic


@contextlib.contextmanager
def threads(num_threads):
    """Run numba parallel regions with num_threads (<= 0: all) for this thread."""
    n = numba.config.NUMBA_NUM_THREADS if num_threads is None or num_threads <= 0 else min(
        int(num_threads), numba.config.NUMBA_NUM_THREADS
    )
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def as3d(a):
    """(view with 3 dims, ndim): a 2D array becomes one slice deep (no copy)."""
    a = np.ascontiguousarray(a)
    if a.ndim == 2:
        return a.reshape((1,) + a.shape), 2
    if a.ndim == 3:
        return a, 3
    raise ValueError(f"expected a 2D or 3D array, got ndim={a.ndim}")


def real_of(dtype):
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def to_real(a):
    """Native C-ordered copy/view of `a` in its compute type (ints -> float32)."""
    rt = real_of(a.dtype)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    return np.ascontiguousarray(a, dtype=rt)


CACHE = os.environ.get("MEDSEG_FAST_NUMBA_CACHE", "1") != "0"


# Union-find with path halving; the smaller index is the root, so the partition's
# representatives (and any numbering derived from them) are deterministic.
@numba.njit(cache=CACHE)
def uf_find(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=CACHE)
def uf_unite(parent, a, b):
    """Join the sets of a and b; returns the root of the union."""
    a = uf_find(parent, a)
    b = uf_find(parent, b)
    if a == b:
        return a
    if b < a:
        a, b = b, a
    parent[b] = a
    return a


@intrinsic
def fma32(typingctx, a, b, c):
    """float32 fused multiply-add a * b + c, rounded once (LLVM's llvm.fma): the
    std::fma the C++ kernels use, so both give the same bits."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen
