"""Benchmarks of the cuda backend (all skipped without CuPy and a GPU).

Groups (each pairs medseg_fast with the references on the same device input):

* ``cuda-sobel3d-512``: Sobel magnitude of a 512^3 float32 volume: medseg_fast
  (one fused kernel), ``cucim.skimage.filters.sobel``, ``cupyx.scipy.ndimage.sobel``
  for each single axis (one derivative per call), medseg_fast's single axis, and a
  device-to-device copy of the volume (the memory-bandwidth floor: the same bytes
  read and written once).  Target (issue 2): >= 10x cuCIM, faster than one
  cupyx axis.
* ``cuda-gaussian-512``: Gaussian sigma 2 of the same volume, medseg_fast vs
  ``cupyx.scipy.ndimage.gaussian_filter``.

* ``cuda-canny3d-256``: 3D Canny (sigma 2) of a 256^3 float32 volume: medseg_fast
  on the device against medseg_fast on the cpu (no reference library has a 3D
  Canny); the edges must be identical.
* ``cuda-canny2d-2048``: 2D Canny (sigma 2) of a 2048^2 float32 image: medseg_fast
  against ``cucim.skimage.feature.canny`` (edges compared away from float32 ties).
* ``cuda-hysteresis3d-256``: hysteresis of a 256^3 float32 volume: medseg_fast against
  ``cucim.skimage.filters.apply_hysteresis_threshold`` (identical sets).

* ``test_sobel3d_kernel_events``: no CuPy needed: the kernel alone timed with CUDA
  events through ``medseg_fast._cuda._device_check.time_sobel``, next to a
  device-to-device copy of as many bytes (the bandwidth floor); prints both.

Every timed call synchronises the stream, so the timings are device times plus
launch overhead.  Correctness is asserted after timing: medseg_fast against the
cpu backend on a sub-volume that touches the volume's low borders, the
references against medseg_fast.

Run:  pytest benchmarks/bench_cuda.py --benchmark-only --benchmark-group-by=group
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import medseg_fast
from medseg_fast import edges, filters

try:
    import cupy as cp
except ImportError:  # the kernel-only timing below still runs on a GPU without CuPy
    cp = None

needs_cupy = pytest.mark.skipif(cp is None or "cuda" not in medseg_fast.available_backends(),
                                reason="needs CuPy and the cuda backend (a GPU)")

SHAPE = (512, 512, 512)
SUB = (40, 70, 90)  # CPU check region, at the volume's low corner


@functools.lru_cache(maxsize=None)
def volume_host():
    """A smooth-plus-noise float32 volume (not zeros: they hide indexing errors)."""
    rng = np.random.default_rng(0)
    z, y, x = (np.linspace(-1, 1, n, dtype=np.float32) for n in SHAPE)
    vol = rng.normal(0.0, 20.0, SHAPE).astype(np.float32)
    vol += (300.0 * (z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2 < 0.5)).astype(np.float32)
    return vol


@functools.lru_cache(maxsize=None)
def volume_dev():
    return cp.asarray(volume_host())


@functools.lru_cache(maxsize=None)
def cpu_sobel_sub(axis=None):
    sub = np.ascontiguousarray(volume_host()[: SUB[0], : SUB[1], : SUB[2]])
    return edges.sobel(sub, axis=axis, backend="cpu")


@functools.lru_cache(maxsize=None)
def cpu_gaussian_sub():
    # sigma 2, truncate 4: radius 8; compare where the sub-volume's far borders are out of reach
    sub = np.ascontiguousarray(volume_host()[: SUB[0] + 9, : SUB[1] + 9, : SUB[2] + 9])
    return filters.gaussian(sub, 2.0, backend="cpu")[: SUB[0], : SUB[1], : SUB[2]]


def _check_sub(got_dev, want, far_border=1):
    """Compare the device result with the CPU one on the sub-volume, away from its far borders."""
    s = tuple(slice(0, n - far_border) for n in SUB)
    got = cp.asnumpy(got_dev[s])
    ref = want[s]
    np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6 * float(np.abs(ref).max()))


def _synced(fn):
    def run():
        out = fn()
        cp.cuda.get_current_stream().synchronize()
        return out

    return run


def _bench(benchmark, fn):
    fn()  # warm-up (module load, CuPy kernel compilation, pool)
    return benchmark.pedantic(_synced(fn), rounds=15, iterations=1, warmup_rounds=2)


@needs_cupy
@pytest.mark.benchmark(group="cuda-sobel3d-512")
def test_sobel3d_medseg(benchmark):
    d = volume_dev()
    out = _bench(benchmark, lambda: edges.sobel(d))
    assert isinstance(out, cp.ndarray) and out.dtype == cp.float32
    _check_sub(out, cpu_sobel_sub())


@needs_cupy
@pytest.mark.benchmark(group="cuda-sobel3d-512")
def test_sobel3d_medseg_single_axis(benchmark):
    d = volume_dev()
    out = _bench(benchmark, lambda: edges.sobel(d, axis=0))
    _check_sub(out, cpu_sobel_sub(0))


@needs_cupy
@pytest.mark.benchmark(group="cuda-sobel3d-512")
def test_sobel3d_cucim(benchmark):
    cucim_filters = pytest.importorskip("cucim.skimage.filters")
    d = volume_dev()
    out = _bench(benchmark, lambda: cucim_filters.sobel(d))
    ours = edges.sobel(d)
    np.testing.assert_allclose(cp.asnumpy(out[:64]), cp.asnumpy(ours[:64]), rtol=1e-4, atol=1e-3)


@needs_cupy
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.benchmark(group="cuda-sobel3d-512")
def test_sobel3d_cupyx_one_axis(benchmark, axis):
    ndi = pytest.importorskip("cupyx.scipy.ndimage")
    d = volume_dev()
    out = _bench(benchmark, lambda: ndi.sobel(d, axis=axis))
    # scipy's Sobel is unnormalised: ours (1/16 smoothing weights in 3D) times 16
    ours = edges.sobel(d, axis=axis)
    np.testing.assert_allclose(cp.asnumpy(out[:64]), 16.0 * cp.asnumpy(ours[:64]), rtol=1e-5, atol=1e-2)


@needs_cupy
@pytest.mark.benchmark(group="cuda-sobel3d-512")
def test_sobel3d_copy_floor(benchmark):
    d = volume_dev()
    out = _bench(benchmark, lambda: d.copy())
    assert out.shape == d.shape


@needs_cupy
@pytest.mark.benchmark(group="cuda-gaussian-512")
def test_gaussian3d_medseg(benchmark):
    d = volume_dev()
    out = _bench(benchmark, lambda: filters.gaussian(d, 2.0))
    _check_sub(out, cpu_gaussian_sub(), far_border=0)


@needs_cupy
@pytest.mark.benchmark(group="cuda-gaussian-512")
def test_gaussian3d_cupyx(benchmark):
    ndi = pytest.importorskip("cupyx.scipy.ndimage")
    d = volume_dev()
    out = _bench(benchmark, lambda: ndi.gaussian_filter(d, 2.0, mode="nearest", truncate=4.0))
    ours = filters.gaussian(d, 2.0)
    np.testing.assert_allclose(cp.asnumpy(out[:32]), cp.asnumpy(ours[:32]), rtol=1e-4, atol=1e-3)


def test_sobel3d_kernel_events():
    """Kernel-only time of the 512^3 float32 Sobel magnitude (CUDA events), against the
    copy floor; runs without CuPy.  Correctness of the same kernel on a sub-volume."""
    cuda_mod = pytest.importorskip("medseg_fast._cuda")
    if cuda_mod.device_count() < 1:
        pytest.skip("no GPU visible to medseg_fast._cuda")
    core = pytest.importorskip("medseg_fast._core")
    vol = volume_host()
    coef = [1.0 / 16.0] * 3
    post = float(1.0 / np.sqrt(3.0))
    res = cuda_mod._device_check.time_sobel(vol, [True, True, True], coef, True, post, 20)
    print(f"\nsobel 512^3 float32 kernel {res['kernel_ms']:.3f} ms ({res['kernel_GBps']:.0f} GB/s), "
          f"copy floor {res['copy_floor_ms']:.3f} ms, ratio {res['kernel_ms'] / res['copy_floor_ms']:.2f}")
    assert res["kernel_ms"] > 0 and res["copy_floor_ms"] > 0
    sub = np.ascontiguousarray(vol[: SUB[0], : SUB[1], : SUB[2]])
    np.testing.assert_array_equal(cuda_mod._device_check.sobel(sub, [True, True, True], coef, True, post),
                                  core.edges.sobel(sub, [True, True, True], coef, True, post, 1))


CANNY_SHAPE = (256, 256, 256)


@functools.lru_cache(maxsize=None)
def canny_volume_host():
    return np.ascontiguousarray(volume_host()[: CANNY_SHAPE[0], : CANNY_SHAPE[1], : CANNY_SHAPE[2]])


@functools.lru_cache(maxsize=None)
def canny_image_host():
    """2048^2 float32: the 512^3 volume's planes tiled, scaled to [0, 1] (scikit-image's range)."""
    v = volume_host()
    img = np.block([[v[32 * (4 * i + j)] for j in range(4)] for i in range(4)]).astype(np.float32)
    return (img - img.min()) / (img.max() - img.min())


@needs_cupy
@pytest.mark.benchmark(group="cuda-canny3d-256")
def test_canny3d_medseg_cuda(benchmark):
    d = cp.asarray(canny_volume_host())
    out = _bench(benchmark, lambda: edges.canny(d, sigma=2.0, low_threshold=20.0, high_threshold=40.0))
    want = edges.canny(canny_volume_host(), sigma=2.0, low_threshold=20.0, high_threshold=40.0, backend="cpu")
    np.testing.assert_array_equal(cp.asnumpy(out), want)


@needs_cupy
@pytest.mark.benchmark(group="cuda-canny3d-256")
def test_canny3d_medseg_cpu(benchmark):
    host = canny_volume_host()
    out = benchmark.pedantic(lambda: edges.canny(host, sigma=2.0, low_threshold=20.0, high_threshold=40.0,
                                                 backend="cpu"), rounds=5, iterations=1, warmup_rounds=1)
    assert out.any()


@needs_cupy
@pytest.mark.benchmark(group="cuda-canny2d-2048")
def test_canny2d_medseg_cuda(benchmark):
    d = cp.asarray(canny_image_host())
    out = _bench(benchmark, lambda: edges.canny(d, sigma=2.0))
    np.testing.assert_array_equal(cp.asnumpy(out), edges.canny(canny_image_host(), sigma=2.0, backend="cpu"))


@needs_cupy
@pytest.mark.benchmark(group="cuda-canny2d-2048")
def test_canny2d_cucim(benchmark):
    feature = pytest.importorskip("cucim.skimage.feature")
    d = cp.asarray(canny_image_host())
    out = _bench(benchmark, lambda: feature.canny(d, sigma=2.0))
    ours = edges.canny(d, sigma=2.0)
    # cuCIM's float32 smoothing rounds differently: ties can flip a few edge pixels
    assert float(cp.count_nonzero(out != ours)) <= 1e-3 * float(cp.count_nonzero(ours)) + 10


@needs_cupy
@pytest.mark.benchmark(group="cuda-hysteresis3d-256")
def test_hysteresis3d_medseg_cuda(benchmark):
    d = cp.asarray(canny_volume_host())
    out = _bench(benchmark, lambda: edges.hysteresis_threshold(d, 150.0, 250.0))
    np.testing.assert_array_equal(cp.asnumpy(out),
                                  edges.hysteresis_threshold(canny_volume_host(), 150.0, 250.0, backend="cpu"))


@needs_cupy
@pytest.mark.benchmark(group="cuda-hysteresis3d-256")
def test_hysteresis3d_cucim(benchmark):
    filt = pytest.importorskip("cucim.skimage.filters")
    d = cp.asarray(canny_volume_host())
    out = _bench(benchmark, lambda: filt.apply_hysteresis_threshold(d, 150.0, 250.0))
    np.testing.assert_array_equal(cp.asnumpy(out), cp.asnumpy(edges.hysteresis_threshold(d, 150.0, 250.0)))
