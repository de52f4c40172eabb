"""Shared fixtures: backends, real data locations, small phantoms.

Every kernel test takes the ``backend`` fixture, which runs it once per backend
available here (cpu, numba, and cuda where a GPU and the _cuda extension exist).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import medseg_fast

ROOT = pathlib.Path(__file__).resolve().parents[1]
# ../shared/data beside the checkout (developers and CI have it; users do not)
SHARED_DATA = pathlib.Path(os.environ.get("MEDSEG_FAST_SHARED_DATA", ROOT.parent / "shared" / "data"))

CPU_BACKENDS = [b for b in ("cpu", "numba") if b in medseg_fast.available_backends()]


@pytest.fixture(params=CPU_BACKENDS)
def backend(request):
    """Each host backend (cpu, numba) available here."""
    return request.param


@pytest.fixture
def shared_data():
    """Path to ../shared/data; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def pydicom_file(name: str) -> str:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return path


def nibabel_file(*parts: str) -> str:
    import nibabel

    path = pathlib.Path(nibabel.__file__).parent.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"nibabel test file {path} not available")
    return str(path)


@pytest.fixture(scope="session")
def ct_small():
    """pydicom's CT_small.dcm pixels (128x128 int16, stored values)."""
    import pydicom

    return pydicom.dcmread(pydicom_file("CT_small.dcm")).pixel_array.copy()


@pytest.fixture(scope="session")
def mr_small():
    """pydicom's MR_small.dcm pixels (64x64 int16)."""
    import pydicom

    return pydicom.dcmread(pydicom_file("MR_small.dcm")).pixel_array.copy()


@pytest.fixture(scope="module")
def cuda_mod():
    """medseg_fast._cuda (imports without a GPU); skips where it is not built."""
    return pytest.importorskip("medseg_fast._cuda", reason="the _cuda extension is not built (MEDSEG_CUDA=OFF)")


@pytest.fixture(scope="module")
def core():
    return pytest.importorskip("medseg_fast._core")


def random_array(shape, dtype, seed=0):
    """Random values over the dtype's range (normal, sd 300, for floats; coin flips for bool)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return rng.random(shape) > 0.5
    if dt.kind == "f":
        return rng.normal(0, 300, shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, int(info.max) + 1, shape, dtype=np.int64).astype(dt)


def ellipsoid_phantom(shape=(40, 48, 56), seed=0, noise=0.0, dtype=np.float32):
    """A 3D (or 2D, for a 2-tuple shape) phantom: background 0, a body ellipsoid
    of value 100 holding two inner ellipsoids of 200 and 300.  Returns (image, labels)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r_body = sum((g / 0.8) ** 2 for g in grids)
    labels = np.zeros(shape, np.uint8)
    labels[r_body <= 1] = 1
    c1 = sum(((g - 0.25) / 0.3) ** 2 for g in grids)
    c2 = sum(((g + 0.3) / 0.22) ** 2 for g in grids)
    labels[c1 <= 1] = 2
    labels[c2 <= 1] = 3
    image = np.choose(labels, [0.0, 100.0, 200.0, 300.0])
    if noise:
        image = image + rng.normal(0, noise, shape)
    return image.astype(dtype), labels


def layouts(a):
    """The same data as C-order, Fortran-order, non-contiguous and big-endian arrays."""
    out = {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a)}
    big = np.empty(tuple(2 * n for n in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    out["strided"] = big[tuple(slice(None, None, 2) for _ in a.shape)]
    if a.dtype.itemsize > 1 and a.dtype.kind != "b":
        out["big-endian"] = a.astype(a.dtype.newbyteorder(">"))
    return out


def run_isa_variants(script, tmp_path):
    """Run `script` (which saves an .npz to sys.argv[1], with key ``isa`` =
    ``_core.simd_isa()``) once per run-time ISA cap (MEDSEG_FAST_ISA), each in
    its own process since the ISA is chosen once per process.  Returns
    {isa reached: loaded npz}, one entry per distinct ISA the CPU gave (a cap
    above what the CPU has runs the best it has: that run is dropped rather
    than compared with itself); asserts that the baseline run really was
    baseline."""
    import os
    import subprocess
    import sys

    results = {}
    for isa in ("baseline", "avx2", "avx512"):
        out = tmp_path / f"{isa}.npz"
        env = dict(os.environ, MEDSEG_FAST_ISA=isa)
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        r = np.load(out)
        results.setdefault(str(r["isa"]), r)
    assert "baseline" in results
    return results
