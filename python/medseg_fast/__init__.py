"""medseg_fast — fast, trustworthy segmentation of medical images in 2D and 3D.

Subpackages are imported on first use, and importing medseg_fast never loads
the compiled extensions, CUDA or numba.

>>> import medseg_fast
>>> sorted(medseg_fast.__all__)[:3]
['MedsegError', 'MedsegWarning', '__version__']
"""

from __future__ import annotations

import importlib

from ._backend import available_backends, use_backend
from ._errors import MedsegError, MedsegWarning

try:
    from importlib.metadata import version as _version

    __version__ = _version("medseg-fast")
except Exception:  # running from a source tree
    __version__ = "0.1.0"

_SUBMODULES = ("edges", "filters", "io", "threshold", "semantic", "region", "instance", "panoptic", "metrics",
               "cluster", "cli")

__all__ = ["__version__", "available_backends", "use_backend", "show_config", "show_decoders", "MedsegError",
           "MedsegWarning", *_SUBMODULES]


def show_decoders(file=None):
    """Which DICOM pixel decoders (pydicom plugins) are installed; see medseg_fast.io.show_decoders."""
    from .io import show_decoders as _show

    return _show(file=file)


def __getattr__(name):
    if name in _SUBMODULES:
        mod = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = mod
        return mod
    raise AttributeError(f"module 'medseg_fast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


def show_config(file=None) -> dict:
    """Print and return the build and runtime configuration.

    Reports the version, which backends are compiled and usable (with the
    reason when one is not), OpenMP and its default thread count, CUDA devices
    and the numba version.

    Examples
    --------
    >>> import io, medseg_fast
    >>> cfg = medseg_fast.show_config(file=io.StringIO())
    >>> "version" in cfg and "backends" in cfg
    True
    """
    import sys

    from . import _backend

    cfg: dict = {"version": __version__, "python": sys.version.split()[0]}
    errs = _backend.backend_errors()
    cfg["backends"] = available_backends()
    cfg["unavailable"] = errs
    core = _backend._load("cpu")
    if core is not None:
        cfg["openmp"] = bool(core.have_openmp())
        cfg["cpu_threads"] = int(core.max_threads())
        cfg["compiler"] = str(core.compiler)
        cfg["simd"] = str(core.simd_isa()) if hasattr(core, "simd_isa") else "baseline"
    try:
        import numba

        cfg["numba"] = numba.__version__
    except Exception as exc:
        cfg["numba"] = f"unavailable ({exc})"
    cuda = _backend._load("cuda")
    if cuda is not None:
        import cupy

        devices = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            devices.append(props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]))
        cfg["cuda_devices"] = devices
    else:
        cfg["cuda_devices"] = []
    try:
        importlib.import_module(f"{__name__}._cuda")
        cfg["cuda_extension"] = "built"
    except Exception as exc:
        cfg["cuda_extension"] = f"not available ({type(exc).__name__})"
    out = file if file is not None else sys.stdout
    for k, v in cfg.items():
        print(f"{k:>16}: {v}", file=out)
    return cfg
