"""Timing harness behind ``medseg-fast bench``: medseg_fast against the
reference implementations installed here, on the same inputs.

Each benchmark is a :class:`Case`: how to build its inputs from a shared,
cached set (a CT-like phantom volume and image, generated deterministically),
how to call medseg_fast, how to call the reference, and how to check that both
agree.  :data:`CASES` holds the edge-family cases; other modules append theirs
with :func:`register`, or define a module-level ``BENCH_CASES`` list that
:func:`run` discovers in the public submodules at run time.

Timing: ``time.perf_counter``, one warm-up call, then the median of ``repeat``
calls.  A reference slower than 2 s per call is timed at most 3 times in all,
its warm-up counting as the first.  The
reference libraries (scikit-image, OpenCV, SimpleITK, scipy) are optional and
imported only inside :func:`run`; a case whose reference is missing is still
timed for medseg_fast and reported as "not installed".

Examples
--------
>>> import io
>>> from medseg_fast import _bench
>>> rows = _bench.run(size="tiny", repeat=1, out=io.StringIO(), cases=["hysteresis-3d"])
>>> rows[0]["case"], rows[0]["check"] in (True, None)
('hysteresis-3d', True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np

__all__ = ["Case", "CASES", "SIZES", "Inputs", "register", "run", "phantom", "machine"]

#: Input shapes per size: ``"3d"`` volumes and ``"2d"`` images.
SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "tiny": {"3d": (32, 32, 32), "2d": (128, 128)},
    "small": {"3d": (128, 128, 128), "2d": (1024, 1024)},
    "full": {"3d": (256, 256, 256), "2d": (2048, 2048)},
}

# Reference calls slower than this (seconds, measured on the warm-up) are timed
# at most _SLOW_REPEAT times, so that `bench --size full` stays within minutes.
_SLOW_S = 2.0
_SLOW_REPEAT = 3


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------
def phantom(shape, dtype=np.float32, *, seed: int = 0, noise: float = 15.0) -> np.ndarray:
    """A deterministic CT-like phantom in Hounsfield units, 2D or 3D.

    Air (-1000) around a soft-tissue body ellipsoid (40), two lungs (-850), a
    bone rod (700) and 16 random small lesions (60..300), plus Gaussian noise
    of standard deviation ``noise``.  Every structure has sharp borders, so
    Sobel and Canny find edges at several contrasts.  Integer dtypes are
    rounded.  Memory: the result plus one bounding-box temporary per structure.

    Examples
    --------
    >>> from medseg_fast._bench import phantom
    >>> v = phantom((16, 20, 24), seed=1)
    >>> v.shape, v.dtype, bool(v.min() < -900 and v.max() > 600)
    ((16, 20, 24), dtype('float32'), True)
    >>> bool((phantom((16, 20, 24), seed=1) == v).all())
    True
    """
    shape = tuple(int(n) for n in shape)
    nd = len(shape)
    if nd not in (2, 3):
        raise ValueError(f"phantom shape must be 2D or 3D, got {shape}")
    rng = np.random.default_rng(seed)
    img = np.full(shape, -1000.0, np.float32)
    coords = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]

    def ellipsoid(center, radii, value):
        sl, cs = [], []
        for c, r, n, co in zip(center, radii, shape, coords):
            lo = max(0, int(np.floor((c - r + 1.0) / 2.0 * (n - 1))))
            hi = min(n, int(np.ceil((c + r + 1.0) / 2.0 * (n - 1))) + 1)
            sl.append(slice(lo, hi))
            cs.append(co[lo:hi])
        r2 = np.zeros([s.stop - s.start for s in sl], np.float32)
        for i, (c, r, co) in enumerate(zip(center, radii, cs)):
            axis_shape = [1] * nd
            axis_shape[i] = -1
            r2 += (((co - np.float32(c)) / np.float32(r)) ** 2).reshape(axis_shape)
        img[tuple(sl)][r2 <= 1.0] = value

    ellipsoid([0.0] * nd, [0.9, 0.8, 0.85][-nd:], 40.0)              # body
    ellipsoid([0.0, -0.05, -0.4][-nd:], [0.6, 0.5, 0.3][-nd:], -850.0)  # lungs
    ellipsoid([0.0, -0.05, 0.4][-nd:], [0.6, 0.5, 0.3][-nd:], -850.0)
    ellipsoid([0.0, 0.55, 0.0][-nd:], [0.85, 0.12, 0.12][-nd:], 700.0)  # bone
    for _ in range(16):                                                   # lesions
        ellipsoid(rng.uniform(-0.5, 0.5, nd), rng.uniform(0.04, 0.15, nd), float(rng.uniform(60.0, 300.0)))
    if noise:
        img += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(img), info.min, info.max).astype(dtype)
    return img.astype(dtype, copy=False)


def _shapes(size) -> dict[str, tuple[int, ...]]:
    """Shapes for a size name (see :data:`SIZES`) or an int n: n^3 volumes and (8n)^2 images."""
    from ._errors import InvalidParameterError

    if isinstance(size, str) and size in SIZES:
        return SIZES[size]
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and 8 <= size <= 1024:
        n = int(size)
        return {"3d": (n, n, n), "2d": (8 * n, 8 * n)}
    raise InvalidParameterError(f"size must be one of {', '.join(SIZES)} or an integer n in 8..1024 "
                                f"(n^3 volumes, (8n)^2 images), got {size!r}")


class Inputs:
    """Lazily built, cached inputs of one size, shared by all cases of a run.

    ``volume(dtype)`` is the 3D phantom, ``image(dtype)`` the 2D one (an
    independent phantom, not a slice), ``extra(key, build)`` caches anything
    else a case needs (``build()`` is called once).
    """

    def __init__(self, size="small"):
        shapes = _shapes(size)
        self.size = size
        self.shape3d = shapes["3d"]
        self.shape2d = shapes["2d"]
        self._cache: dict[Any, Any] = {}

    def extra(self, key, build: Callable[[], Any]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def volume(self, dtype=np.float32) -> np.ndarray:
        dt = np.dtype(dtype)
        return self.extra(("volume", dt.str), lambda: phantom(self.shape3d, dt, seed=0))

    def image(self, dtype=np.float32) -> np.ndarray:
        dt = np.dtype(dtype)
        return self.extra(("image", dt.str), lambda: phantom(self.shape2d, dt, seed=1))


# ----------------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark: medseg_fast and one reference on the same inputs.

    Attributes
    ----------
    name : str
        Short id, e.g. ``"sobel-3d"``; several cases may share a name when they
        compare with different references.
    reference : str
        What the reference is, as printed (``"skimage.filters.sobel"``).
    requires : tuple of str
        Modules the reference needs; the reference is skipped when one is missing.
    setup : callable(Inputs) -> tuple
        Builds the arguments shared by ``ours`` and ``ref`` (use the cache).
    ours : callable(*args, num_threads=None) -> result
    ref : callable(*args) -> result
        Imports what it needs inside (never at module import time).
    check : callable(ours_result, ref_result, *args) -> bool, optional
        Whether the results agree (None: nothing to compare, e.g. a memory floor).
    target : str
        The speed target from the project's issues, for the table (``">= 30x"``).
    min_speedup : float, optional
        Numeric form of the target: reference time / ours time must reach it.
    """

    name: str
    reference: str
    requires: tuple[str, ...]
    setup: Callable[[Inputs], tuple]
    ours: Callable[..., Any]
    ref: Callable[..., Any]
    check: Callable[..., bool] | None = None
    target: str = ""
    min_speedup: float | None = None


CASES: list[Case] = []


def register(case: Case) -> Case:
    """Append a case to :data:`CASES` (returns it, so it can decorate-style be reused)."""
    if not isinstance(case, Case):
        raise TypeError(f"register expects a medseg_fast._bench.Case, got {type(case).__name__}")
    CASES.append(case)
    return case


# -- checks ----------------------------------------------------------------------------------------------------------
def _close(a, b, rtol=1e-4) -> bool:
    """Equal to float32 rounding, relative to the largest magnitude."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(np.abs(b).max()) if b.size else 0.0, 1e-30)
    return bool(np.abs(a - b).max() <= rtol * scale) if a.size else True


def _interior(a):
    return a[tuple(slice(1, -1) for _ in range(a.ndim))]


def _same_edges(a, b, tol=1e-3) -> bool:
    """Boolean maps equal up to a fraction ``tol`` of the edge voxels (float32 ties)."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if a.shape != b.shape:
        return False
    n = max(int(a.sum()), int(b.sum()), 1)
    return int(np.count_nonzero(a != b)) <= tol * n


def _near_edges(a, b, min_fraction=0.95) -> bool:
    """Edges of two different Canny implementations: each map lies, for at
    least ``min_fraction`` of its voxels, within one voxel (full connectivity)
    of the other, and neither is empty."""
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    if a.shape != b.shape or not a.any() or not b.any():
        return False
    return _fraction_near(a, b) >= min_fraction and _fraction_near(b, a) >= min_fraction


def _dilate_full(m):
    """Binary dilation by the full 3^ndim cube with plain numpy (scipy is not a runtime dependency)."""
    out = m.copy()
    for ax in range(m.ndim):
        src = out.copy()
        lo = [slice(None)] * m.ndim
        hi = [slice(None)] * m.ndim
        lo[ax] = slice(1, None)
        hi[ax] = slice(None, -1)
        out[tuple(hi)] |= src[tuple(lo)]
        out[tuple(lo)] |= src[tuple(hi)]
    return out


def _fraction_near(a, b):
    return float(np.count_nonzero(a & _dilate_full(b))) / max(int(a.sum()), 1)


# -- the edge family -------------------------------------------------------------------------------------------------
def _edges():
    from . import edges

    return edges


def _filters():
    from . import filters

    return filters


def _sk_sobel(img):
    from skimage.filters import sobel

    return sobel(img)


def _cv2_sobel(img):
    import cv2

    dx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(dx, dy)


def _check_cv2_sobel(ours, ref, img):
    # cv2: unnormalised [1,2,1]x[-1,0,1] kernels and a plain Euclidean norm; ours
    # follows skimage (kernels / 4, magnitude / sqrt(2)); OpenCV's default border
    # (reflect-101) differs from skimage's on the outermost row, so compare inside.
    return _close(_interior(ours) * np.float32(4.0 * np.sqrt(2.0)), _interior(ref))


def _copy_floor(img, dst):
    """Read the input once and write an output of the same size once (the memory floor of a stencil)."""
    np.copyto(dst, img)
    return dst


# Canny thresholds on the phantom's unnormalised Sobel magnitude (HU x 8 in 2D,
# HU x 32 in 3D per voxel of gradient): above the smoothed noise, below the
# lung/body and bone borders, around the lesion contrasts.
CANNY_SIGMA = 2.0
CANNY_2D = (40.0, 100.0)
CANNY_3D = (160.0, 400.0)
HYSTERESIS_HU = (150, 500)


def _sitk_canny(vol, low, high, sigma):
    import SimpleITK as sitk

    # SimpleITK's gradient is the central difference (f[x+1] - f[x-1]) / 2, ours
    # the unnormalised 3D Sobel (32 x that), so its thresholds are ours / 32; its
    # Gaussian takes the variance sigma**2.
    out = sitk.CannyEdgeDetection(sitk.GetImageFromArray(vol), low / 32.0, high / 32.0, [sigma * sigma] * 3)
    return sitk.GetArrayViewFromImage(out) > 0


def _edge_cases():
    e = _edges
    f = _filters
    return [
        Case("sobel-3d", "skimage.filters.sobel", ("skimage",),
             setup=lambda d: (d.volume(np.float32),),
             ours=lambda v, num_threads=None: e().sobel(v, num_threads=num_threads),
             ref=_sk_sobel, check=lambda o, r, v: _close(o, r), target=">= 30x", min_speedup=30.0),
        Case("sobel-3d", "memory floor (np.copyto, read+write once)", (),
             setup=lambda d: (d.volume(np.float32), d.extra("copy-dst", lambda: np.ones_like(d.volume()))),
             ours=lambda v, dst, num_threads=None: e().sobel(v, num_threads=num_threads),
             ref=_copy_floor, check=None, target=">= 0.33x (ours <= 3x floor)", min_speedup=1.0 / 3.0),
        Case("sobel-3d int16", "skimage.filters.sobel", ("skimage",),
             setup=lambda d: (d.volume(np.int16),),
             ours=lambda v, num_threads=None: e().sobel(v, num_threads=num_threads),
             ref=_sk_sobel, check=lambda o, r, v: _close(o, r), target="(info)"),
        Case("sobel-2d", "cv2.Sobel x,y + cv2.magnitude", ("cv2",),
             setup=lambda d: (d.image(np.float32),),
             ours=lambda v, num_threads=None: e().sobel(v, num_threads=num_threads),
             ref=_cv2_sobel, check=_check_cv2_sobel, target=">= 1x", min_speedup=1.0),
        Case("sobel-2d", "skimage.filters.sobel", ("skimage",),
             setup=lambda d: (d.image(np.float32),),
             ours=lambda v, num_threads=None: e().sobel(v, num_threads=num_threads),
             ref=_sk_sobel, check=lambda o, r, v: _close(o, r), target="(info)"),
        Case("canny-2d", "skimage.feature.canny", ("skimage",),
             setup=lambda d: (d.image(np.float32),),
             ours=lambda v, num_threads=None: e().canny(v, CANNY_SIGMA, *CANNY_2D, num_threads=num_threads),
             ref=lambda v: __import__("skimage.feature", fromlist=["canny"]).canny(v, CANNY_SIGMA, *CANNY_2D),
             check=lambda o, r, v: _same_edges(o, r), target=">= 20x", min_speedup=20.0),
        Case("canny-3d", "SimpleITK.CannyEdgeDetection", ("SimpleITK",),
             setup=lambda d: (d.volume(np.float32),),
             ours=lambda v, num_threads=None: e().canny(v, CANNY_SIGMA, *CANNY_3D, num_threads=num_threads),
             ref=lambda v: _sitk_canny(v, *CANNY_3D, CANNY_SIGMA),
             check=lambda o, r, v: _near_edges(o, r), target=">= 30x", min_speedup=30.0),
        Case("hysteresis-3d", "skimage.filters.apply_hysteresis_threshold", ("skimage",),
             setup=lambda d: (d.volume(np.int16),),
             ours=lambda v, num_threads=None: e().hysteresis_threshold(v, *HYSTERESIS_HU, num_threads=num_threads),
             ref=lambda v: __import__("skimage.filters", fromlist=["x"]).apply_hysteresis_threshold(
                 v, *HYSTERESIS_HU),
             check=lambda o, r, v: bool(np.array_equal(o, r)), target=">= 10x", min_speedup=10.0),
        Case("gaussian-3d", "scipy.ndimage.gaussian_filter (float32)", ("scipy",),
             setup=lambda d: (d.volume(np.float32),),
             ours=lambda v, num_threads=None: f().gaussian(v, CANNY_SIGMA, num_threads=num_threads),
             ref=lambda v: __import__("scipy.ndimage", fromlist=["x"]).gaussian_filter(v, CANNY_SIGMA,
                                                                                        mode="nearest"),
             check=lambda o, r, v: _close(o, r, rtol=1e-5), target="(info)"),
    ]


CASES.extend(_edge_cases())

# Public submodules searched for a BENCH_CASES list at run time (edges are above).
_DISCOVER = ("filters", "threshold", "semantic", "region", "instance", "panoptic", "metrics", "cluster")


def _discover() -> list[Case]:
    found = []
    for name in _DISCOVER:
        full = f"{__package__}.{name}"
        try:
            if importlib.util.find_spec(full) is None:
                continue
            mod = importlib.import_module(full)
        except Exception:  # a module being written may not import yet: not our business here
            continue
        for case in getattr(mod, "BENCH_CASES", ()) or ():
            if isinstance(case, Case) and case not in CASES and case not in found:
                found.append(case)
    return found


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------
def _time(fn, args, repeat, kwargs=None, slow_s=None, clock=time.perf_counter):
    """(median seconds, last result): one warm-up call, then ``repeat`` timed calls."""
    kwargs = kwargs or {}
    t0 = clock()
    result = fn(*args, **kwargs)
    warm = clock() - t0
    times = []
    n = repeat
    if slow_s is not None and warm > slow_s:
        # seconds per call: the warm-up counts as the first sample (no cold-start effect is left
        # at that scale), and at most _SLOW_REPEAT calls in all
        times.append(warm)
        n = min(repeat, _SLOW_REPEAT) - 1
    for _ in range(n):
        t0 = clock()
        result = fn(*args, **kwargs)
        times.append(clock() - t0)
    return statistics.median(times), result


@contextlib.contextmanager
def _references_single_threaded():
    """Limit the multi-threaded references (OpenCV, SimpleITK) to one thread, restoring them after."""
    restore = []
    try:
        if _available("cv2"):
            import cv2

            n = cv2.getNumThreads()
            cv2.setNumThreads(1)
            restore.append(lambda: cv2.setNumThreads(n))
        if _available("SimpleITK"):
            import SimpleITK as sitk

            n = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
            restore.append(lambda: sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n))
        yield
    finally:
        for undo in reversed(restore):
            undo()


def machine() -> str:
    """One line describing this machine: CPU model, logical cores, threads medseg_fast uses."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = "?"
    try:
        from . import _backend

        core = _backend._load("cpu")
        if core is not None:
            threads = str(int(core.max_threads()))
    except Exception:
        pass
    return f"{model}, {os.cpu_count()} logical cores, medseg_fast cpu threads: {threads}"


def _available(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _fmt_s(t):
    if t is None:
        return "-"
    if t >= 1.0:
        return f"{t:.2f} s"
    if t >= 1e-3:
        return f"{t * 1e3:.1f} ms"
    return f"{t * 1e6:.0f} us"


_COLUMNS = (("case", 15), ("input", 20), ("medseg_fast", 11), ("1 thread", 9), ("reference", 44),
            ("ref median", 10), ("speedup", 8), ("target", 9), ("check", 5))


def _line(values, scaling):
    cols = [(v, w) for v, (name, w) in zip(values, _COLUMNS) if scaling or name != "1 thread"]
    return "  ".join(str(v)[:w].ljust(w) for v, w in cols).rstrip()


def run(size="small", repeat: int = 5, out=sys.stdout, *, backend: str = "auto", num_threads=None, cases=None,
        threads_scaling: bool = False, per_core: bool = False) -> list[dict]:
    """Time medseg_fast against the installed references and print a table.

    Parameters
    ----------
    size : {'tiny', 'small', 'full'} or int
        Input sizes (see :data:`SIZES`): tiny 32^3 / 128^2 (a smoke test),
        small 128^3 / 1024^2, full 256^3 / 2048^2 (the sizes of the project's
        speed targets); an int n gives n^3 volumes and (8n)^2 images.
    repeat : int
        Timed calls per implementation after one warm-up; the median is kept.
    out : file-like or None
        Where the table goes (None: print nothing).
    backend : {'auto', 'cpu', 'numba', 'cuda'}
        Backend of the medseg_fast calls (through :func:`medseg_fast.use_backend`).
    num_threads : int, optional
        Threads of the medseg_fast calls (None or 0: all cores).
    cases : sequence of str, optional
        Only the cases with these names.
    threads_scaling : bool
        Also time medseg_fast with ``num_threads=1`` (column ``ours_1t_s``).
    per_core : bool
        Compare work per core instead of wall time: medseg_fast runs with
        ``num_threads=1``, OpenCV and SimpleITK are limited to one thread, and
        each call is timed by the CPU time of the calling thread
        (``time.thread_time``), which other processes competing for the cores
        do not inflate.  Use it on shared, busy machines.

    Returns
    -------
    list of dict, one per (case, reference): ``case``, ``input`` (shape and
    dtype), ``reference``, ``ours_s`` and ``reference_s`` (medians in seconds;
    ``reference_s`` None when the reference is not installed or failed),
    ``ratio`` (reference_s / ours_s, the speedup), ``check`` (True/False when
    the results were compared, None when not), ``target``, ``target_met``
    (True/False/None), ``ours_1t_s`` (None unless ``threads_scaling``) and
    ``note``.
    """
    from ._backend import use_backend
    from ._errors import InvalidParameterError

    _shapes(size)
    if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)) or repeat < 1:
        raise InvalidParameterError(f"repeat must be an integer >= 1, got {repeat!r}")
    repeat = int(repeat)
    selected = list(CASES) + _discover()
    if cases is not None:
        wanted = {cases} if isinstance(cases, str) else set(cases)
        unknown = wanted - {c.name for c in selected}
        if unknown:
            raise InvalidParameterError(f"unknown case(s) {sorted(unknown)}; "
                                        f"known: {sorted({c.name for c in selected})}")
        selected = [c for c in selected if c.name in wanted]

    def emit(text=""):
        if out is not None:
            print(text, file=out, flush=True)

    emit(f"medseg_fast bench, size={size}, repeat={repeat}, backend={backend}, num_threads={num_threads}: "
         f"{machine()}")
    if per_core:
        emit("per core: CPU time of one thread, medseg_fast num_threads=1, OpenCV/SimpleITK on one thread")
    emit("speedup = reference median / medseg_fast median (higher is better); check = results agree")
    emit(_line([c for c, _ in _COLUMNS], threads_scaling))
    emit(_line(["-" * w for _, w in _COLUMNS], threads_scaling))

    data = Inputs(size)
    rows = []
    clock = time.thread_time if per_core else time.perf_counter
    ours_kw = {"num_threads": 1 if per_core else num_threads}
    with use_backend(backend), _references_single_threaded() if per_core else contextlib.nullcontext():
        for case in selected:
            rows.append(_run_case(case, data, repeat, clock, ours_kw, threads_scaling, emit))
    return rows


def _run_case(case, data, repeat, clock, ours_kw, threads_scaling, emit):
    """Time one case; print and return its row."""
    args = case.setup(data)
    desc = " ".join([("x".join(str(n) for n in a.shape) + " " + a.dtype.name) for a in args[:1]
                     if isinstance(a, np.ndarray)])
    row = {"case": case.name, "input": desc, "reference": case.reference, "ours_s": None, "reference_s": None,
           "ratio": None, "check": None, "target": case.target, "target_met": None, "ours_1t_s": None,
           "note": ""}
    try:
        row["ours_s"], ours_res = _time(case.ours, args, repeat, ours_kw, clock=clock)
        if threads_scaling:
            row["ours_1t_s"], _ = _time(case.ours, args, repeat, {"num_threads": 1}, clock=clock)
    except Exception as exc:  # report and carry on with the next case
        row["note"] = f"medseg_fast failed: {type(exc).__name__}: {exc}"
        emit(_line([case.name, desc, "FAILED", "-", case.reference, "-", "-", case.target, "-"], threads_scaling))
        return row
    missing = [m for m in case.requires if not _available(m)]
    if missing:
        row["note"] = f"{', '.join(missing)} not installed"
    else:
        try:
            row["reference_s"], ref_res = _time(case.ref, args, repeat, slow_s=_SLOW_S, clock=clock)
            row["ratio"] = row["reference_s"] / row["ours_s"] if row["ours_s"] > 0 else float("inf")
            if case.check is not None:
                row["check"] = bool(case.check(ours_res, ref_res, *args))
            if case.min_speedup is not None:
                row["target_met"] = bool(row["ratio"] >= case.min_speedup)
        except Exception as exc:
            row["note"] = f"reference failed: {type(exc).__name__}: {exc}"
    ref_txt = case.reference if not row["note"] else f"{case.reference} ({row['note']})"
    ratio_txt = "-" if row["ratio"] is None else f"{row['ratio']:.1f}x"
    check_txt = {True: "yes", False: "NO", None: "-"}[row["check"]]
    emit(_line([case.name, desc, _fmt_s(row["ours_s"]), _fmt_s(row["ours_1t_s"]), ref_txt,
                _fmt_s(row["reference_s"]), ratio_txt, case.target, check_txt], threads_scaling))
    return row
