"""Edge family: medseg_fast.edges / filters.gaussian against their references.

Each pytest-benchmark group holds medseg_fast (all cores, num_threads=None),
medseg_fast on one thread (the scaling column) and the reference(s), all on the
same cached input; every benchmark checks its result against the other side
of the group (the reference result is computed once, outside the timed calls).
Slow references (seconds per call) run ``REF_ROUNDS`` rounds with
``benchmark.pedantic``.  Targets (issue 2) are in benchmarks/README.md and in
the summary table printed at the end of the run.

    pytest benchmarks/bench_edges.py --benchmark-only
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from medseg_fast import _bench, edges, filters

SIGMA = _bench.CANNY_SIGMA
CANNY_2D = _bench.CANNY_2D
CANNY_3D = _bench.CANNY_3D
HYST = _bench.HYSTERESIS_HU


# Rounds for references that take seconds per call at full size (skimage on 256^3, SimpleITK's Canny).
REF_ROUNDS = int(os.environ.get("MEDSEG_BENCH_REF_ROUNDS", "3"))
# one untimed call first: a reference's first call in a process can be several times slower
# (skimage threshold_otsu on int16: 642 ms, then 62 ms), which would flatter the ratio
REF_WARMUP = int(os.environ.get("MEDSEG_BENCH_REF_WARMUP", "1"))


def describe(arr) -> str:
    return "x".join(str(n) for n in arr.shape) + " " + arr.dtype.name


def _tag(benchmark, role, arr, **extra):
    benchmark.extra_info.update(role=role, input=describe(arr), **extra)


def _slow(benchmark, fn, *args):
    """A reference taking seconds per call: REF_ROUNDS rounds, one call each, no calibration."""
    return benchmark.pedantic(fn, args=args, rounds=REF_ROUNDS, iterations=1, warmup_rounds=REF_WARMUP)


def assert_close(a, b, rtol=1e-4):
    """Equal to float32 rounding relative to the largest magnitude."""
    assert a.shape == b.shape
    scale = float(np.abs(b).max())
    err = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    assert err <= rtol * scale, f"max abs difference {err} > {rtol} x {scale}"


# ------------------------------------------------------------------------------------------------------------------
# sobel-3d: 256^3 float32 — >= 30x skimage, <= 3x the memory-bandwidth floor
# ------------------------------------------------------------------------------------------------------------------
def _sk_sobel(cache, arr, key):
    sk = pytest.importorskip("skimage.filters")
    return cache(key, lambda: sk.sobel(arr))


@pytest.mark.benchmark(group="sobel-3d")
@pytest.mark.parametrize("threads", [None, 1, "nopool"], ids=["all-cores", "1-thread", "all-cores-pool-off"])
def test_sobel3d_medseg(benchmark, request, volume_f32, cache, threads):
    if threads == "nopool":  # fresh output pages on every call (the buffer pool off)
        request.getfixturevalue("pool_off")
        _tag(benchmark, "medseg_fast-nopool", volume_f32)
        threads = None
    else:
        _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_f32)
    out = benchmark(edges.sobel, volume_f32, num_threads=threads)
    assert out.dtype == np.float32
    assert_close(out, _sk_sobel(cache, volume_f32, "sobel-3d"))


@pytest.mark.benchmark(group="sobel-3d-out")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_sobel3d_medseg_out(benchmark, volume_f32, cache, threads):
    """The same call writing into the caller's output (out=): like the copy floor and like a buffer the
    pool reused, no fresh pages for the OS to zero (the pool-off entry of sobel-3d pays that)."""
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_f32,
         floor_bytes=2 * volume_f32.nbytes)
    buf = np.ones_like(volume_f32)  # prefaulted
    out = benchmark(edges.sobel, volume_f32, out=buf, num_threads=threads)
    assert out is buf
    assert_close(out, _sk_sobel(cache, volume_f32, "sobel-3d"))


@pytest.mark.benchmark(group="sobel-3d")
def test_sobel3d_skimage(benchmark, volume_f32, cache):
    sk = pytest.importorskip("skimage.filters")
    _tag(benchmark, "skimage", volume_f32)
    ref = _slow(benchmark, sk.sobel, volume_f32)
    cache("sobel-3d", lambda: ref)
    assert_close(edges.sobel(volume_f32), ref)


@pytest.mark.benchmark(group="sobel-3d")
@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
def test_sobel3d_copy_floor(benchmark, volume_f32, threads):
    """The floor itself: read the volume once, write a same-size float32 array once."""
    dst = np.ones_like(volume_f32)  # prefaulted
    src_parts = np.array_split(volume_f32.reshape(-1), threads)
    dst_parts = np.array_split(dst.reshape(-1), threads)
    nbytes = volume_f32.nbytes + dst.nbytes
    _tag(benchmark, f"copy-{threads}t", volume_f32, bytes_moved=nbytes, floor_bytes=nbytes)
    benchmark(_copy, dst_parts, src_parts)
    assert np.array_equal(dst, volume_f32)
    if benchmark.stats:
        benchmark.extra_info["GB_per_s_best"] = nbytes / benchmark.stats.stats.min / 1e9


def _copy(dst_parts, src_parts):
    if len(dst_parts) == 1:
        np.copyto(dst_parts[0], src_parts[0])
        return
    # numpy releases the GIL while copying, so the parts stream concurrently
    workers = [threading.Thread(target=np.copyto, args=(d, s)) for d, s in zip(dst_parts[1:], src_parts[1:])]
    for w in workers:
        w.start()
    np.copyto(dst_parts[0], src_parts[0])
    for w in workers:
        w.join()


@pytest.mark.benchmark(group="memory-bandwidth")
@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
def test_copy_bandwidth_large(benchmark, bandwidth_bytes, threads):
    """np.copyto between two large prefaulted arrays: the machine's streaming bandwidth
    (the sobel-3d floor in the summary uses the best bandwidth of this group and the copy above)."""
    n = bandwidth_bytes // 4
    src = np.arange(n, dtype=np.float32)
    dst = np.zeros(n, np.float32)
    src_parts = np.array_split(src, threads)
    dst_parts = np.array_split(dst, threads)
    benchmark.extra_info.update(role=f"copy-{threads}t", input=f"{bandwidth_bytes >> 20} MiB",
                                bytes_moved=src.nbytes + dst.nbytes)
    benchmark(_copy, dst_parts, src_parts)
    assert np.array_equal(dst, src)
    if benchmark.stats:
        benchmark.extra_info["GB_per_s_best"] = (src.nbytes + dst.nbytes) / benchmark.stats.stats.min / 1e9


@pytest.mark.benchmark(group="sobel-3d-int16")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_sobel3d_int16_medseg(benchmark, volume_i16, cache, threads):
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_i16)
    out = benchmark(edges.sobel, volume_i16, num_threads=threads)
    assert out.dtype == np.float32  # no float64 blow-up of an int16 volume
    assert_close(out, _sk_sobel(cache, volume_i16, "sobel-3d-int16"))


@pytest.mark.benchmark(group="sobel-3d-int16")
def test_sobel3d_int16_skimage(benchmark, volume_i16, cache):
    sk = pytest.importorskip("skimage.filters")
    _tag(benchmark, "skimage", volume_i16)
    ref = _slow(benchmark, sk.sobel, volume_i16)
    cache("sobel-3d-int16", lambda: ref)
    assert_close(edges.sobel(volume_i16), ref)


# ------------------------------------------------------------------------------------------------------------------
# sobel-2d: 2048^2 float32 — at least as fast as OpenCV
# ------------------------------------------------------------------------------------------------------------------
def _cv2_sobel(img):
    import cv2

    return cv2.magnitude(cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3))


def _check_vs_cv2(ours, ref):
    # OpenCV: unnormalised kernels, plain Euclidean norm, reflect-101 border; ours
    # (= skimage): kernels / 4, magnitude / sqrt(2), replicate border -> compare inside.
    assert_close(ours[1:-1, 1:-1] * np.float32(4 * np.sqrt(2)), ref[1:-1, 1:-1])


@pytest.mark.benchmark(group="sobel-2d")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_sobel2d_medseg(benchmark, image_f32, cache, threads):
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", image_f32)
    out = benchmark(edges.sobel, image_f32, num_threads=threads)
    assert_close(out, _sk_sobel(cache, image_f32, "sobel-2d"))


@pytest.mark.benchmark(group="sobel-2d")
def test_sobel2d_opencv(benchmark, image_f32):
    pytest.importorskip("cv2")
    _tag(benchmark, "opencv", image_f32)
    ref = benchmark(_cv2_sobel, image_f32)
    _check_vs_cv2(edges.sobel(image_f32), ref)


@pytest.mark.benchmark(group="sobel-2d")
def test_sobel2d_skimage(benchmark, image_f32, cache):
    sk = pytest.importorskip("skimage.filters")
    _tag(benchmark, "skimage", image_f32)
    ref = benchmark(sk.sobel, image_f32)
    cache("sobel-2d", lambda: ref)
    assert_close(edges.sobel(image_f32), ref)


# ------------------------------------------------------------------------------------------------------------------
# canny-2d: 2048^2 float32, sigma 2 — >= 20x skimage.feature.canny
# ------------------------------------------------------------------------------------------------------------------
def _sk_canny(img):
    from skimage.feature import canny

    return canny(img, SIGMA, *CANNY_2D)


def _assert_same_edges(ours, ref, tol=1e-3):
    """Same edge map up to float32 ties: at most tol x the edge count differ."""
    diff = int(np.count_nonzero(ours != ref))
    assert ref.any() and diff <= tol * max(int(ref.sum()), 1), f"{diff} of {int(ref.sum())} edge pixels differ"


@pytest.mark.benchmark(group="canny-2d")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_canny2d_medseg(benchmark, image_f32, cache, threads):
    pytest.importorskip("skimage.feature")
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", image_f32, sigma=SIGMA,
         thresholds=CANNY_2D)
    out = benchmark(edges.canny, image_f32, SIGMA, *CANNY_2D, num_threads=threads)
    _assert_same_edges(out, cache("canny-2d", lambda: _sk_canny(image_f32)))


@pytest.mark.benchmark(group="canny-2d")
def test_canny2d_skimage(benchmark, image_f32, cache):
    pytest.importorskip("skimage.feature")
    _tag(benchmark, "skimage", image_f32, sigma=SIGMA, thresholds=CANNY_2D)
    ref = _slow(benchmark, _sk_canny, image_f32)
    cache("canny-2d", lambda: ref)
    _assert_same_edges(edges.canny(image_f32, SIGMA, *CANNY_2D), ref)


# ------------------------------------------------------------------------------------------------------------------
# canny-3d: 256^3 float32 — >= 30x SimpleITK CannyEdgeDetection; peak memory <= 4x the input
# ------------------------------------------------------------------------------------------------------------------
def _sitk_canny(vol):
    # SimpleITK: variance = sigma^2; its gradient is (f[x+1]-f[x-1])/2 while ours is
    # the unnormalised 3D Sobel (32x), so the same edges need thresholds / 32.
    return _bench._sitk_canny(vol, *CANNY_3D, SIGMA)


def _assert_near_edges(ours, ref):
    """Two different Canny algorithms (ITK: zero crossings of the 2nd derivative;
    ours: interpolated non-maximum suppression): >= 95% of each map's voxels lie
    within one voxel of the other map."""
    a, b = _bench._fraction_near(ours, ref), _bench._fraction_near(ref, ours)
    assert ours.any() and ref.any() and a >= 0.95 and b >= 0.95, (a, b)


@pytest.mark.benchmark(group="canny-3d")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_canny3d_medseg(benchmark, volume_f32, cache, threads):
    pytest.importorskip("SimpleITK")
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_f32, sigma=SIGMA,
         thresholds=CANNY_3D)
    # 15 rounds: on a shared 2-core VM single rounds of this ~0.1 s call ranged 84-129 ms,
    # and a median of 5 moved by a third between runs
    out = benchmark.pedantic(edges.canny, args=(volume_f32, SIGMA, *CANNY_3D), kwargs={"num_threads": threads},
                             rounds=15, iterations=1, warmup_rounds=1)
    _assert_near_edges(out, cache("canny-3d", lambda: _sitk_canny(volume_f32)))


@pytest.mark.benchmark(group="canny-3d")
def test_canny3d_simpleitk(benchmark, volume_f32, cache):
    sitk = pytest.importorskip("SimpleITK")
    _tag(benchmark, "simpleitk", volume_f32, sigma=SIGMA, thresholds=CANNY_3D,
         itk_threads=sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    ref = _slow(benchmark, _sitk_canny, volume_f32)
    cache("canny-3d", lambda: ref)
    _assert_near_edges(edges.canny(volume_f32, SIGMA, *CANNY_3D), ref)


_PEAK_SCRIPT = r"""
import json, sys, tracemalloc
import numpy as np
from medseg_fast import edges

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return None

vol = np.load(sys.argv[1])
sigma, low, high = (float(v) for v in sys.argv[2:5])
edges.canny(vol[:16, :16, :16], sigma, low, high)   # load the extension, start the thread pool
base = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as fh:   # reset the peak (VmHWM) to the current RSS
        fh.write("5")
    reset = True
except OSError:
    reset = False
out = edges.canny(vol, sigma, low, high)
peak = status("VmHWM")
del out
tracemalloc.start()
out = edges.canny(vol, sigma, low, high)
traced = tracemalloc.get_traced_memory()[1]
print(json.dumps({"input": vol.nbytes, "rss_extra": (peak - base) if reset and peak and base else None,
                  "traced_peak": traced}))
"""


@pytest.mark.benchmark(group="canny-3d-memory")
def test_canny3d_peak_memory(benchmark, volume_f32, tmp_path):
    """Peak memory of canny 3D beyond its input, in a fresh subprocess: resident set
    (VmHWM after resetting it, Linux) and numpy allocations seen by tracemalloc.
    The time of this benchmark is that of the subprocess, not of interest."""
    if volume_f32.nbytes < (16 << 20):
        pytest.skip("input too small for a meaningful resident-set measurement (use MEDSEG_BENCH_SIZE=full)")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux /proc")
    path = tmp_path / "vol.npy"
    np.save(path, volume_f32)

    def measure():
        res = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path), str(SIGMA), *map(str, CANNY_3D)],
                             capture_output=True, text=True, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    m = benchmark.pedantic(measure, rounds=1, iterations=1)
    ratios = {k: m[k] / m["input"] for k in ("rss_extra", "traced_peak") if m[k] is not None}
    benchmark.extra_info.update(input=describe(volume_f32), **{f"{k}_x_input": round(v, 3) for k, v in ratios.items()})
    # the target: at most 4x the input's bytes beyond the input itself (output included)
    assert ratios and all(v <= 4.0 for v in ratios.values()), ratios


# ------------------------------------------------------------------------------------------------------------------
# hysteresis-3d: 256^3 int16 (HU thresholds) — >= 10x skimage
# ------------------------------------------------------------------------------------------------------------------
def _sk_hyst(vol):
    from skimage.filters import apply_hysteresis_threshold

    return apply_hysteresis_threshold(vol, *HYST)


@pytest.mark.benchmark(group="hysteresis-3d")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_hysteresis3d_medseg(benchmark, volume_i16, cache, threads):
    pytest.importorskip("skimage.filters")
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_i16, thresholds=HYST)
    out = benchmark(edges.hysteresis_threshold, volume_i16, *HYST, num_threads=threads)
    ref = cache("hysteresis-3d", lambda: _sk_hyst(volume_i16))
    assert ref.any() and np.array_equal(out, ref)


@pytest.mark.benchmark(group="hysteresis-3d")
def test_hysteresis3d_skimage(benchmark, volume_i16, cache):
    pytest.importorskip("skimage.filters")
    _tag(benchmark, "skimage", volume_i16, thresholds=HYST)
    ref = _slow(benchmark, _sk_hyst, volume_i16)
    cache("hysteresis-3d", lambda: ref)
    assert np.array_equal(edges.hysteresis_threshold(volume_i16, *HYST), ref)


# ------------------------------------------------------------------------------------------------------------------
# gaussian-3d: 256^3 float32, sigma 2 — informational, vs scipy.ndimage.gaussian_filter in float32
# ------------------------------------------------------------------------------------------------------------------
def _scipy_gauss(vol):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(vol, SIGMA, mode="nearest")  # float32 in, float32 out


@pytest.mark.benchmark(group="gaussian-3d")
@pytest.mark.parametrize("threads", [None, 1], ids=["all-cores", "1-thread"])
def test_gaussian3d_medseg(benchmark, volume_f32, cache, threads):
    pytest.importorskip("scipy.ndimage")
    _tag(benchmark, "medseg_fast" if threads is None else "medseg_fast-1t", volume_f32, sigma=SIGMA)
    out = benchmark(filters.gaussian, volume_f32, SIGMA, num_threads=threads)
    assert_close(out, cache("gaussian-3d", lambda: _scipy_gauss(volume_f32)), rtol=1e-5)


@pytest.mark.benchmark(group="gaussian-3d")
def test_gaussian3d_scipy(benchmark, volume_f32, cache):
    pytest.importorskip("scipy.ndimage")
    _tag(benchmark, "scipy", volume_f32, sigma=SIGMA)
    ref = _slow(benchmark, _scipy_gauss, volume_f32)
    cache("gaussian-3d", lambda: ref)
    assert_close(filters.gaussian(volume_f32, SIGMA), ref, rtol=1e-5)
