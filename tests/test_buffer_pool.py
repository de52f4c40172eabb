"""The cpu backend's output buffer pool (cpp/bindings/register_pool.cpp).

Large outputs reuse the buffers of outputs Python has freed.  What must hold:
a buffer is reused only once nothing reaches it (views included), every kernel
writes all of its output (tested by poisoning buffers as they return to the
pool, so a kernel that relied on fresh, zeroed pages would return garbage),
the limit is obeyed, and results never depend on where the buffer came from.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import medseg_fast
from medseg_fast import cluster, edges, filters, instance, region, semantic
from medseg_fast import threshold as T

core = pytest.importorskip("medseg_fast._core") if "cpu" in medseg_fast.available_backends() else None
pytestmark = pytest.mark.skipif(core is None, reason="cpu backend not built")


@pytest.fixture
def pool():
    """The pool with every output pooled, emptied before and restored after."""
    info = core.pool.info()
    core.pool.free_all()
    core.pool.configure(limit_bytes=256 << 20, min_bytes=1)
    yield core.pool
    core.pool.configure(limit_bytes=info["limit_bytes"], min_bytes=info["min_bytes"], poison=False)
    core.pool.free_all()


def _phantom(shape=(12, 40, 48), seed=0):
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    c = [s / 2 for s in shape]
    r = np.sqrt(((z - c[0]) / shape[0]) ** 2 + ((y - c[1]) / shape[1]) ** 2 + ((x - c[2]) / shape[2]) ** 2)
    img = np.where(r < 0.3, 200.0, np.where(r < 0.45, 40.0, -1000.0)).astype(np.float32)
    return img + rng.normal(0, 10, shape).astype(np.float32)


def test_freed_output_is_reused_and_results_agree(pool):
    img = _phantom()
    ref = T.local(img, 7, "mean", backend="cpu")
    addr = ref.ctypes.data
    expect = ref.copy()
    assert not ref.flags.owndata and ref.flags.writeable and ref.flags.c_contiguous and ref.flags.aligned
    del ref
    gc.collect()
    hits = pool.info()["hits"]
    again = T.local(img, 7, "mean", backend="cpu")
    assert again.ctypes.data == addr
    assert pool.info()["hits"] == hits + 1
    np.testing.assert_array_equal(again, expect)


def test_live_arrays_and_views_are_never_handed_out(pool):
    img = _phantom()
    a = filters.gaussian(img, 1.0, backend="cpu")
    a_copy = a.copy()
    b = filters.gaussian(img, 2.0, backend="cpu")  # a is alive: b gets another buffer
    assert b.ctypes.data != a.ctypes.data
    view = a[3:]
    view_copy = view.copy()
    addr = a.ctypes.data
    del a
    gc.collect()
    c = filters.gaussian(img, 3.0, backend="cpu")  # the view keeps a's buffer alive
    assert c.ctypes.data != addr
    np.testing.assert_array_equal(view, view_copy)
    np.testing.assert_array_equal(view, a_copy[3:])
    del view
    gc.collect()
    d = filters.gaussian(img, 1.0, backend="cpu")  # now it may be reused
    np.testing.assert_array_equal(d, a_copy)


def _cases(img):
    mask = img > 0
    seeds = np.zeros(img.shape, np.int32)
    seeds[6, 20, 24] = 1
    seeds[1, 2, 2] = 2
    mag = edges.sobel(img, backend="cpu")
    hu = img.astype(np.int16)
    return {
        "gaussian": lambda: filters.gaussian(img, 1.5, backend="cpu"),
        "sobel": lambda: edges.sobel(img, backend="cpu"),
        "sobel-axis": lambda: edges.sobel(img, axis=0, backend="cpu"),
        "canny-3d": lambda: edges.canny(img, 1.0, backend="cpu"),
        "canny-2d": lambda: edges.canny(img[6], 1.0, backend="cpu"),
        "hysteresis": lambda: edges.hysteresis_threshold(mag, 50.0, 200.0, backend="cpu"),
        "local-gaussian": lambda: T.local(img, 7, "gaussian", backend="cpu"),
        "local-mean": lambda: T.local(img, 7, "mean", backend="cpu"),
        "local-median": lambda: T.local(img, 5, "median", backend="cpu"),
        "local-mask": lambda: T.local_mask(img, 7, backend="cpu"),
        "niblack": lambda: T.niblack(img, 7, backend="cpu"),
        "sauvola": lambda: T.sauvola(img, 7, backend="cpu"),
        "classify": lambda: semantic.classify(img, [-500.0, 100.0], backend="cpu"),
        "ct-tissues": lambda: semantic.ct_tissues(hu, backend="cpu"),
        "watershed": lambda: region.watershed(mag, seeds, backend="cpu"),
        "grow": lambda: region.grow(img, seeds > 0, tolerance=50.0, backend="cpu"),
        "felzenszwalb": lambda: region.felzenszwalb(img[6], 50.0, backend="cpu"),
        "split-merge": lambda: region.split_merge(img[6], 30.0, backend="cpu"),
        "label": lambda: instance.label(mask, backend="cpu"),
        "distance": lambda: instance.distance_transform(mask, backend="cpu"),
        "distance-signed": lambda: instance.distance_transform(mask, signed=True, backend="cpu"),
        "split": lambda: instance.split(mask, backend="cpu"),
        "kmeans": lambda: cluster.kmeans(img, 3, random_state=0, backend="cpu"),
        "mean-shift-spatial": lambda: cluster.mean_shift(img[6], 50.0, spatial_bandwidth=3.0, backend="cpu"),
    }


def test_poison_reaches_the_next_array(pool):
    """The poisoning the next test relies on: a returned buffer comes back as 0xA5 bytes."""
    pool.configure(poison=True)
    a = pool.empty((64, 64), np.float32)
    a[:] = 0.0
    addr = a.ctypes.data
    del a
    gc.collect()
    b = pool.empty((64, 64), np.float32)
    assert b.ctypes.data == addr
    assert (b.view(np.uint8) == 0xA5).all()


@pytest.mark.parametrize("name", list(_cases(_phantom())))
def test_every_kernel_writes_all_of_a_poisoned_buffer(pool, name):
    """Run each kernel on a buffer that came back poisoned (0xA5 bytes); its
    result must equal the pool-off result (numpy's own allocation)."""
    img = _phantom()
    f = _cases(img)[name]
    pool.configure(limit_bytes=0)
    fresh = f()
    fresh = tuple(np.array(r, copy=True) for r in fresh) if isinstance(fresh, tuple) else np.array(fresh, copy=True)
    pool.configure(limit_bytes=256 << 20, poison=True)
    for _ in range(3):  # the later calls get buffers the earlier ones returned, poisoned
        out = f()
        if isinstance(fresh, tuple):
            for a, b in zip(out, fresh):
                np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_array_equal(out, fresh)
        del out
        gc.collect()
    assert pool.info()["hits"] > 0


def test_limit_and_free(pool):
    img = _phantom()
    nbytes = img.nbytes  # one float32 output; pooled buffers are whole 2 MiB blocks
    pool.configure(limit_bytes=2 << 20)
    outs = [filters.gaussian(img, s, backend="cpu") for s in (1.0, 2.0, 3.0)]
    del outs
    gc.collect()
    info = pool.info()
    assert info["held_bytes"] <= 2 << 20 and info["held_buffers"] == 1
    assert medseg_fast.free_buffer_pool() == 2 << 20
    assert pool.info()["held_bytes"] == 0
    old = medseg_fast.set_buffer_pool_limit(0)
    assert old == 2 << 20
    a = filters.gaussian(img, 1.0, backend="cpu")
    assert a.flags.owndata  # pool off: numpy's allocation
    del a
    gc.collect()
    assert pool.info()["held_bytes"] == 0
    with pytest.raises(ValueError):
        medseg_fast.set_buffer_pool_limit(-1)
    with pytest.raises(TypeError):
        medseg_fast.set_buffer_pool_limit(1.5)
    assert nbytes < 2 << 20


def test_min_bytes_default_keeps_small_outputs_with_numpy(pool):
    pool.configure(min_bytes=4 << 20)
    small = filters.gaussian(_phantom(), 1.0, backend="cpu")
    assert small.flags.owndata
    big = filters.gaussian(np.zeros((16, 256, 256), np.float32), 1.0, backend="cpu")  # 4 MiB
    assert not big.flags.owndata


def test_tracemalloc_sees_pooled_outputs(pool):
    img = _phantom()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = filters.gaussian(img, 1.0, backend="cpu")
        held = tracemalloc.get_traced_memory()[0] - base
        del out
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held >= img.nbytes
    assert after < img.nbytes


def test_threads_share_the_pool_safely(pool):
    img = _phantom()
    expect = T.local(img, 5, "mean", backend="cpu").copy()
    errors = []

    def work():
        try:
            for _ in range(20):
                out = T.local(img, 5, "mean", backend="cpu", num_threads=1)
                if not np.array_equal(out, expect):
                    errors.append("mismatch")
                del out
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pool.info()["hits"] > 0


@pytest.mark.parametrize("value, limit", [("0", 0), ("off", 0), ("64M", 64 << 20), ("1g", 1 << 30),
                                          ("12345", 12345)])
def test_environment_variable(value, limit):
    code = "import medseg_fast; print(medseg_fast.buffer_pool_info()['limit_bytes'])"
    env = dict(os.environ, MEDSEG_FAST_BUFFER_POOL=value)
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(res.stdout.strip()) == limit


def test_environment_variable_invalid_warns():
    code = ("import warnings, medseg_fast\nwarnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    info = medseg_fast.buffer_pool_info()\n"
            "print(info['limit_bytes'] > 0, any('MEDSEG_FAST_BUFFER_POOL' in str(x.message) for x in w))")
    env = dict(os.environ, MEDSEG_FAST_BUFFER_POOL="lots")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["True", "True"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_can_allocate(pool):
    """The pool's mutex is held across fork (pthread_atfork), so the child can
    allocate.  The child uses the pool directly: OpenMP in a forked child is not
    something to test here."""
    a = pool.empty((1000,), np.float32)
    del a
    with warnings.catch_warnings():  # Python 3.12+: fork of a multi-threaded process (OpenMP) warns
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        ok = False
        try:
            b = pool.empty((1000,), np.float32)
            b[:] = 1.0
            ok = float(b.sum()) == 1000.0
            del b
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["mean", "sauvola"])
def test_local_statistics_streamed_into_mapped_outputs(dtype, method):
    """Outputs over 32 MiB whose pages are already mapped (the caller's out=, a
    reused pool buffer) are written with streaming stores; the values must be
    those of a fresh output.  The rows are 257 wide so that row starts are not
    16-byte aligned (the copy's head and tail)."""
    rng = np.random.default_rng(3)
    shape = (32 << 20) // (128 * 257 * np.dtype(dtype).itemsize) + 2, 128, 257
    img = rng.normal(0, 100, shape).astype(dtype)
    assert img.nbytes > 32 << 20
    f = (lambda **kw: T.local(img, 15, "mean", backend="cpu", **kw)) if method == "mean" else \
        (lambda **kw: T.sauvola(img, 15, backend="cpu", **kw))
    old = medseg_fast.set_buffer_pool_limit(0)
    try:
        fresh = f()
        out = np.full_like(fresh, np.nan)
        r = f(out=out)
        assert r is out or np.shares_memory(r, out)
        np.testing.assert_array_equal(out, fresh)
        medseg_fast.set_buffer_pool_limit(1 << 30)
        core.pool.configure(poison=True)
        first = f()
        del first
        gc.collect()
        hits = core.pool.info()["hits"]
        reused = f()
        assert core.pool.info()["hits"] == hits + 1
        np.testing.assert_array_equal(reused, fresh)
    finally:
        core.pool.configure(poison=False)
        medseg_fast.set_buffer_pool_limit(old)
        core.pool.free_all()


def test_info_while_the_garbage_collector_frees_pooled_arrays():
    """pool.info() allocates a Python dict; when that allocation triggers the
    garbage collector and it frees a cycle holding a pooled array, the capsule's
    destructor returns the buffer inside info().  It must not wait for a lock
    info() holds: that deadlocked before (the subprocess's timeout turns it into a
    failure; reproduced with the old code)."""
    code = """
import gc, numpy as np, medseg_fast._core as C
C.pool.configure(min_bytes=1)
class Cycle: pass
T = 1000
gc.set_threshold(T)
for _ in range(20):
    gc.collect()
    c = Cycle(); c.me = c; c.arr = C.pool.empty((256,), np.float32)
    del c  # garbage: the next collection frees the array, whose capsule returns the buffer
    keep = [{} for _ in range(200)]  # empty the dict free list, so info()'s dict is a tracked allocation
    while gc.get_count()[0] < T:  # one allocation short of a collection
        keep.append([])
    C.pool.info()  # its dict triggers the collection
print("ok")
"""
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("pool.info() deadlocked with a capsule destructor run by the garbage collector")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
