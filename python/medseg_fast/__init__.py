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
           "MedsegWarning", "buffer_pool_info", "set_buffer_pool_limit", "free_buffer_pool", *_SUBMODULES]


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


def buffer_pool_info() -> dict:
    """State of the cpu backend's output buffer pool.

    Outputs of the cpu backend of 4 MiB or more are taken from a pool of buffers
    that earlier outputs left when Python freed them, so that their pages are
    not zeroed by the operating system again (on a 2-core Zen 4 machine that
    saves ~3 ms per 64 MiB output, a sixth of a 256^3 local mean).  A buffer
    returns to the pool only when its array and every view of it are gone, and
    the pool holds at most ``limit_bytes`` (default: 1/16 of physical memory, at
    most 1 GiB; the environment variable ``MEDSEG_FAST_BUFFER_POOL`` sets it when
    the cpu backend loads, e.g. ``2G``, ``512M`` or ``0`` to turn the pool off).
    Pooled outputs are ordinary writeable numpy arrays whose ``base`` is the
    buffer's owner (``flags.owndata`` is False); tracemalloc counts them as
    numpy allocations.

    Returns
    -------
    dict
        ``limit_bytes``, ``held_bytes`` and ``held_buffers`` (free buffers kept),
        ``min_bytes`` (smallest pooled output), ``hits`` and ``misses`` (pooled
        outputs served from the pool or newly allocated).  Empty when the cpu
        backend is unavailable.

    See Also
    --------
    set_buffer_pool_limit, free_buffer_pool

    Examples
    --------
    >>> import medseg_fast
    >>> info = medseg_fast.buffer_pool_info()
    >>> info == {} or info["held_bytes"] <= info["limit_bytes"]
    True
    """
    from . import _backend

    core = _backend._load("cpu")
    return dict(core.pool.info()) if core is not None else {}


def set_buffer_pool_limit(limit_bytes: int) -> int:
    """Set the most bytes the output buffer pool may hold; return the old limit.

    ``0`` turns the pool off (every output is then a fresh numpy allocation).
    Buffers beyond a lower limit are freed at once, oldest first.  See
    :func:`buffer_pool_info`.

    Examples
    --------
    >>> import medseg_fast
    >>> old = medseg_fast.set_buffer_pool_limit(0)       # off
    >>> _ = medseg_fast.set_buffer_pool_limit(old)        # back on
    """
    import operator

    from . import _backend

    limit = operator.index(limit_bytes)
    if limit < 0:
        raise ValueError(f"limit_bytes must be >= 0, got {limit}")
    core = _backend.core()
    old = int(core.pool.info()["limit_bytes"])
    core.pool.configure(limit_bytes=limit)
    return old


def free_buffer_pool() -> int:
    """Free every buffer the output buffer pool holds; return the bytes freed.

    Arrays still in use are not affected.  See :func:`buffer_pool_info`.

    Examples
    --------
    >>> import medseg_fast
    >>> medseg_fast.free_buffer_pool() >= 0
    True
    """
    from . import _backend

    core = _backend._load("cpu")
    return int(core.pool.free_all()) if core is not None else 0


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
        info = core.pool.info()
        cfg["buffer_pool"] = (f"limit {info['limit_bytes'] / 2**20:.0f} MiB, holds {info['held_bytes'] / 2**20:.0f} MiB "
                              f"in {info['held_buffers']} buffers (outputs >= {info['min_bytes'] / 2**20:g} MiB)")
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
