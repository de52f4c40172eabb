"""The C++ kernels are header-only templates meant to be usable without the
bindings (cpp/include/medseg): each header must compile on its own, with no
other header included first.  A system header pulled in inside a namespace, or
a missing standard include, shows up here rather than in someone's project.

Needs a C++17 compiler (``CXX`` or c++/g++/clang++ on PATH) and the source tree;
skipped otherwise (e.g. when testing an installed wheel without the sources).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INCLUDE = Path(__file__).resolve().parents[1] / "cpp" / "include"
HEADERS = sorted(p.relative_to(INCLUDE).as_posix() for p in INCLUDE.glob("medseg/**/*.hpp"))


def _compiler():
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(not HEADERS, reason="C++ sources not present")
@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_alone(header, tmp_path):
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler on PATH")
    src = tmp_path / "one.cpp"
    src.write_text(f'#include "{header}"\nint main() {{ return 0; }}\n')
    # with OpenMP, as the build uses it where the compiler has it
    cmd = [cxx, "-std=c++17", "-fopenmp", "-fsyntax-only", "-Wall", "-Wextra", f"-I{INCLUDE}", str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode != 0 and ("fopenmp" in res.stderr or "omp.h" in res.stderr):
        cmd.remove("-fopenmp")  # a compiler without OpenMP (or its headers): the kernels fall back to serial loops
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{header} does not compile on its own:\n{res.stderr[-3000:]}"
    assert "warning" not in res.stderr, f"{header} compiles with warnings:\n{res.stderr[-3000:]}"
