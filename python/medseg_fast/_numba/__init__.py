"""Numba fallback kernels, one module per family, with the signatures of the
matching ``medseg_fast._core`` submodules (so the Python wrappers call
``mod.edges.sobel(...)`` whichever backend ``mod`` is).

They mirror the C++ kernels operation for operation so that both backends give
identical masks and labels and float32-identical intensities.  Compilation
happens on first use (cached on disk by numba when the package directory is
writable).
"""

from . import edges  # noqa: F401
