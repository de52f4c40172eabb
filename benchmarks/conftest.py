"""Benchmark configuration: collection of bench_*.py, cached inputs, summary table.

Run from the repository root::

    pytest benchmarks/ --benchmark-only                 # every bench_*.py file
    pytest benchmarks/bench_edges.py --benchmark-only   # one family

Files are named ``bench_<family>.py`` so that the unit-test run (``pytest``,
testpaths = tests) never picks them up; the :func:`pytest_collect_file` hook
below collects them when pytest is pointed at this folder.

Inputs are deterministic CT-like phantoms (:func:`medseg_fast._bench.phantom`),
built once per session and only when a benchmark asks for them.  Their size is
chosen by the environment variable ``MEDSEG_BENCH_SIZE``: ``full`` (default,
the sizes of the project's targets: 256^3 volumes, 2048^2 images), ``small``
(128^3 / 1024^2) or ``tiny`` (32^3 / 128^2, a smoke test).

At the end of a run a Markdown table (medians, speedups, targets) is printed
for benchmarks/README.md.
"""

from __future__ import annotations

import functools
import os
import statistics

import numpy as np
import pytest

from medseg_fast import _bench

SIZE = os.environ.get("MEDSEG_BENCH_SIZE", "full")
if SIZE not in _bench.SIZES:
    raise pytest.UsageError(f"MEDSEG_BENCH_SIZE must be one of {', '.join(_bench.SIZES)}, got {SIZE!r}")
SHAPE_3D = _bench.SIZES[SIZE]["3d"]
SHAPE_2D = _bench.SIZES[SIZE]["2d"]
SHAPE_GPU = {"tiny": (64, 64, 64), "small": (256, 256, 256), "full": (512, 512, 512)}[SIZE]

# Bytes per array for the large-copy bandwidth measurement (src and dst each).
BANDWIDTH_BYTES = {"tiny": 16 << 20, "small": 128 << 20, "full": 256 << 20}[SIZE]


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py as test modules (files named on the command line are collected by pytest itself)."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


# ------------------------------------------------------------------------------------------------------------------
# Inputs (cached for the session; nothing is built unless a benchmark requests it)
# ------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _volume(dtype: str, shape: tuple) -> np.ndarray:
    arr = _bench.phantom(shape, np.dtype(dtype), seed=0)
    arr.flags.writeable = False  # a benchmark that writes into its input fails loudly
    return arr


@functools.lru_cache(maxsize=None)
def _image(dtype: str, shape: tuple) -> np.ndarray:
    arr = _bench.phantom(shape, np.dtype(dtype), seed=1)
    arr.flags.writeable = False
    return arr


@pytest.fixture(scope="session")
def volume_f32():
    """3D CT-like phantom, float32, HU (256^3 at full size)."""
    return _volume("float32", SHAPE_3D)


@pytest.fixture(scope="session")
def volume_i16():
    """The same phantom as int16 (rounded)."""
    return _volume("int16", SHAPE_3D)


@pytest.fixture(scope="session")
def image_f32():
    """2D CT-like phantom, float32 (2048^2 at full size)."""
    return _image("float32", SHAPE_2D)


@pytest.fixture(scope="session")
def volume_gpu_f32():
    """512^3 float32 phantom (host array) for GPU benchmarks; built on first use (about 0.5 GiB)."""
    return _volume("float32", SHAPE_GPU)


@pytest.fixture
def pool_off():
    """Turn the cpu backend's output buffer pool off for one benchmark (role
    ``medseg_fast-nopool``): every call then gets fresh pages, which the OS zeroes
    at their first write.  The summary prints those groups' "(pool off)" rows."""
    import medseg_fast

    old = medseg_fast.set_buffer_pool_limit(0)
    yield
    medseg_fast.set_buffer_pool_limit(old)


@pytest.fixture(scope="session")
def cache():
    """A session-wide memo: ``cache(key, build)`` returns ``build()``, computed once.

    Used to compute a slow reference result once for the correctness check of
    several benchmarks of a group."""
    store = {}

    def get(key, build):
        if key not in store:
            store[key] = build()
        return store[key]

    return get


@pytest.fixture(scope="session")
def bandwidth_bytes():
    """Bytes per array (source and destination each) of the large-copy bandwidth benchmark."""
    return BANDWIDTH_BYTES


# ------------------------------------------------------------------------------------------------------------------
# Summary: one Markdown row per (group, reference) with speedup and target
# ------------------------------------------------------------------------------------------------------------------
# group -> {reference role: (kind, bound)}: kind "speedup" means reference/ours >= bound,
# "floor" means ours/floor <= bound.  Roles are set by each benchmark in extra_info["role"].
TARGETS = {
    "sobel-3d": {"skimage": ("speedup", 30.0), "floor": ("floor", 3.0)},
    "sobel-3d-out": {"floor": ("floor", 3.0)},
    "sobel-2d": {"opencv": ("speedup", 1.0)},
    "canny-2d": {"skimage": ("speedup", 20.0)},
    "canny-3d": {"simpleitk": ("speedup", 30.0)},
    "hysteresis-3d": {"skimage": ("speedup", 10.0)},
    # issue 3 (thresholding)
    "otsu-3d-int16": {"skimage": ("speedup", 15.0), "read-floor": ("floor", 3.0)},
    "otsu-3d-float32": {"skimage": ("speedup", 15.0), "read-floor": ("floor", 3.0)},
    "multiotsu-3d-float32-4classes": {"skimage": ("speedup", 20.0)},
    "local-gaussian-3d-block51": {"skimage": ("speedup", 20.0)},
    "local-mean-3d-block51": {"skimage": ("speedup", 20.0)},
    "sauvola-3d-window51": {"skimage": ("speedup", 50.0)},
    "adaptive-mean-2d-block51": {"opencv": ("speedup", 1.0)},
    "adaptive-gaussian-2d-block51": {"opencv": ("speedup", 1.0)},
}


def _fmt(t):
    if t is None:
        return "-"
    if t >= 1:
        return f"{t:.2f} s"
    return f"{t * 1e3:.1f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} us"


def summary_rows(benchmarks):
    """Markdown rows from pytest-benchmark's results (medians; the floor uses the best copy time)."""
    groups: dict[str, dict[str, list]] = {}
    info: dict[str, str] = {}
    best_bw = 0.0
    for b in benchmarks:
        role = b.extra_info.get("role")
        if role is None or not b.stats:
            continue
        st = b.stats
        groups.setdefault(b.group, {}).setdefault(role, []).append(st)
        info.setdefault(b.group, b.extra_info.get("input", ""))
        if "bytes_moved" in b.extra_info:
            best_bw = max(best_bw, b.extra_info["bytes_moved"] / st.min)
    rows = []
    for group, roles in groups.items():
        if "medseg_fast" not in roles:
            continue
        refs = {r: statistics.median(s.median for s in v) for r, v in roles.items()
                if not r.startswith("medseg_fast") and not r.startswith("copy")}
        floor_bytes = [b.extra_info["floor_bytes"] for b in benchmarks
                       if b.group == group and b.extra_info.get("floor_bytes")]
        if floor_bytes and best_bw > 0:
            refs["floor"] = floor_bytes[0] / best_bw
        if "medseg_fast-local" in roles:
            # 2D adaptive: the target is local() itself (and local_mask, OpenCV's
            # counterpart), rows below; image > local(image) adds numpy's comparison and
            # its fresh bool array (~2.5 ms at 2048^2), given for information
            rows += _group_rows(group, info[group], roles, refs, "medseg_fast", " (local, then numpy img > t)",
                                info_only=True)
        else:
            rows += _group_rows(group, info[group], roles, refs, "medseg_fast", "")
        if "medseg_fast-nopool" in roles:  # the same call with fresh pages, for information
            rows += _group_rows(group, info[group], roles, refs, "medseg_fast-nopool", " (pool off)")
        if "medseg_fast-mask" in roles:  # the fused mask (local_mask), OpenCV's counterpart
            rows += _group_rows(group, info[group], roles, refs, "medseg_fast-mask", " (local_mask)")
        if "medseg_fast-local" in roles:  # local() alone: the threshold image, no comparison
            rows += _group_rows(group, info[group], roles, refs, "medseg_fast-local", " (local, threshold image)")
    return rows


def _group_rows(group, info, roles, refs, role, label, info_only=False):
    """One row per reference of a group, for medseg_fast's entry `role` (with
    `info_only`, the speed-up without the group's target)."""
    ours = statistics.median(s.median for s in roles[role])
    ours1 = (statistics.median(s.median for s in roles[role + "-1t"]) if role + "-1t" in roles else None)
    rows = []
    for ref, t in refs.items():
        kind, bound = (None, None) if info_only else TARGETS.get(group, {}).get(ref, (None, None))
        if kind == "floor":
            value = f"ours/floor {ours / t:.1f}"
            target, met = f"<= {bound:g}", ours / t <= bound
        else:
            value = f"{t / ours:.1f}x"
            target = f">= {bound:g}x" if bound else "info"
            met = (t / ours >= bound) if bound else None
        rows.append(f"| {group}{label} | {info} | {_fmt(ours)} | {_fmt(ours1)} | {ref} | {_fmt(t)} | {value} | "
                    f"{target} | {'-' if met is None else ('yes' if met else 'NO')} |")
    return rows


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)  # pytest-benchmark's session object
    if session is None or getattr(session, "disabled", False):
        return
    rows = summary_rows(getattr(session, "benchmarks", []))
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("-", f"medseg_fast vs references (medians, MEDSEG_BENCH_SIZE={SIZE})")
    tr.write_line(f"machine: {_bench.machine()}")
    tr.write_line("| group | input | medseg_fast (all cores) | medseg_fast (1 thread) | reference | reference median | "
                  "speedup | target | met |")
    tr.write_line("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tr.write_line(r)
