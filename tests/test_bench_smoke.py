"""Smoke tests of the benchmark harness: medseg_fast._bench (behind `medseg-fast bench`)
and the pytest-benchmark files in benchmarks/.  No timing is asserted."""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from medseg_fast import _bench

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def tiny_rows():
    out = io.StringIO()
    rows = _bench.run(size="tiny", repeat=1, out=out)
    return rows, out.getvalue()


def test_run_tiny_rows(tiny_rows):
    rows, _ = tiny_rows
    names = {r["case"] for r in rows}
    assert {"sobel-3d", "sobel-2d", "canny-2d", "canny-3d", "hysteresis-3d", "gaussian-3d"} <= names
    for r in rows:
        assert {"case", "input", "reference", "ours_s", "reference_s", "ratio", "check", "target"} <= set(r)
        assert r["ours_s"] is not None and r["ours_s"] > 0, r
        if r["reference_s"] is None:  # reference not installed: reported, not compared
            assert r["ratio"] is None and r["check"] is None and r["note"], r
        else:
            assert r["ratio"] == pytest.approx(r["reference_s"] / r["ours_s"])


def test_run_tiny_results_agree(tiny_rows):
    rows, _ = tiny_rows
    compared = [r for r in rows if r["check"] is not None]
    assert compared, "no reference installed: install the bench extra"
    bad = [(r["case"], r["reference"]) for r in compared if r["check"] is not True]
    assert not bad, f"medseg_fast and the reference disagree: {bad}"


def test_run_prints_table(tiny_rows):
    rows, text = tiny_rows
    lines = text.splitlines()
    assert "speedup" in lines[2] and "check" in lines[2]
    assert len(lines) == 4 + len(rows)
    assert all(r["case"] in text for r in rows)


def test_run_missing_reference_is_skipped(monkeypatch):
    case = _bench.Case("fake", "a library that is not installed", ("no_such_module_medseg_fast",),
                       setup=lambda d: (d.image(),), ours=lambda img, num_threads=None: img.sum(),
                       ref=lambda img: 1 / 0, check=lambda o, r, img: True)
    monkeypatch.setattr(_bench, "CASES", [case])
    monkeypatch.setattr(_bench, "_discover", lambda: [])  # not the modules' BENCH_CASES
    rows = _bench.run(size="tiny", repeat=1, out=None)
    assert len(rows) == 1 and rows[0]["reference_s"] is None and "not installed" in rows[0]["note"]


def test_run_detects_disagreement(monkeypatch):
    case = _bench.Case("wrong", "a reference that differs", (),
                       setup=lambda d: (d.volume(np.int16),),
                       ours=lambda v, num_threads=None: _bench._edges().sobel(v, num_threads=num_threads),
                       ref=lambda v: _bench._edges().sobel(v) + 1.0,
                       check=lambda o, r, v: _bench._close(o, r))
    monkeypatch.setattr(_bench, "CASES", [case])
    monkeypatch.setattr(_bench, "_discover", lambda: [])  # not the modules' BENCH_CASES
    rows = _bench.run(size="tiny", repeat=1, out=None, threads_scaling=True)
    assert rows[0]["check"] is False and rows[0]["ours_1t_s"] > 0


def test_run_bad_arguments():
    from medseg_fast._errors import InvalidParameterError

    for size in ("huge", 3, 2.5, True):
        with pytest.raises(InvalidParameterError, match="size"):
            _bench.run(size=size, out=None)
    for repeat in (0, -1, 1.5):
        with pytest.raises(InvalidParameterError, match="repeat"):
            _bench.run(size="tiny", repeat=repeat, out=None)
    with pytest.raises(InvalidParameterError, match="unknown case"):
        _bench.run(size="tiny", out=None, cases=["no-such-case"])
    with pytest.raises(InvalidParameterError, match="backend"):
        _bench.run(size="tiny", out=None, backend="opencl")


def test_run_integer_size_backend_and_threads():
    """What `medseg-fast bench --size 16 --backend numba --threads 1` passes."""
    out = io.StringIO()
    rows = _bench.run(size=16, repeat=1, out=out, backend="numba", num_threads=1, cases=["hysteresis-3d"])
    assert rows[0]["input"] == "16x16x16 int16" and rows[0]["check"] is True
    assert "backend=numba" in out.getvalue()


def test_phantom_deterministic_with_edges():
    a = _bench.phantom((24, 28, 32), np.int16, seed=3)
    b = _bench.phantom((24, 28, 32), np.int16, seed=3)
    assert a.dtype == np.int16 and np.array_equal(a, b)
    assert not np.array_equal(a, _bench.phantom((24, 28, 32), np.int16, seed=4))
    img = _bench.phantom((64, 80))
    assert img.shape == (64, 80) and img.dtype == np.float32
    # air, lungs, soft tissue and bone are all present: strong edges exist
    assert (img < -900).any() and (np.abs(img + 850) < 60).any() and (img > 600).any()


def test_near_edges_helper():
    a = np.zeros((10, 10), bool)
    a[5, 2:8] = True
    assert _bench._near_edges(a, np.roll(a, 1, axis=0))
    assert not _bench._near_edges(a, np.roll(a, 3, axis=0))
    assert not _bench._near_edges(a, np.zeros_like(a))


def test_no_reference_imported_at_module_import():
    code = ("import sys, medseg_fast._bench; "
            "bad = [m for m in ('skimage', 'cv2', 'SimpleITK', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _import_path(path):
    spec = importlib.util.spec_from_file_location(f"_medseg_bench_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", sorted(BENCH_DIR.glob("bench_*.py")), ids=lambda p: p.name)
def test_benchmark_file_imports(path):
    mod = _import_path(path)
    assert [n for n in dir(mod) if n.startswith("test_")]


def test_benchmark_files_run_tiny():
    """Every benchmark in benchmarks/ runs once on tiny inputs with its correctness asserts."""
    pytest.importorskip("pytest_benchmark")
    env = dict(os.environ, MEDSEG_BENCH_SIZE="tiny")
    res = subprocess.run([sys.executable, "-m", "pytest", str(BENCH_DIR), "--benchmark-disable", "-q",
                          "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout


def test_run_per_core_restores_reference_threads():
    cv2 = pytest.importorskip("cv2")
    before = cv2.getNumThreads()
    rows = _bench.run(size="tiny", repeat=1, out=None, cases=["sobel-2d"], per_core=True)
    assert cv2.getNumThreads() == before
    assert rows and all(r["ours_s"] > 0 for r in rows)
    assert all(r["check"] is True for r in rows if r["reference_s"] is not None)


def test_threshold_cases_are_discovered():
    # medseg-fast bench covers the thresholding targets through threshold.BENCH_CASES
    names = {c.name for c in _bench._discover()}
    # built on access only: importing medseg_fast.threshold does not import the benchmark module
    code = "import sys, medseg_fast.threshold; print('medseg_fast._bench' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
    assert {"otsu-3d-int16", "otsu-3d-float32", "multiotsu-3d", "local-mean-3d", "local-gauss-3d",
            "sauvola-3d", "median-2d"} <= names
