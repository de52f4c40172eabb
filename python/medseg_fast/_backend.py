"""The one backend registry.

Backends
--------
``"cpu"``   the compiled C++/OpenMP extension ``medseg_fast._core``;
``"cuda"``  the compiled CUDA extension ``medseg_fast._cuda`` working on CuPy
            arrays (any object exposing ``__cuda_array_interface__`` is accepted
            without a host copy);
``"numba"`` pure-Python kernels compiled by numba on first use.

Choosing a backend, most specific first: the ``backend=`` argument of a call
(anything but ``"auto"``), then the innermost :func:`use_backend` context, then
the ``MEDSEG_FAST_BACKEND`` environment variable, then ``"auto"``: an array on
the GPU runs on cuda, anything else on cpu; if ``_core`` cannot be imported,
auto falls back to numba with one :class:`MedsegWarning`.

Nothing here is imported or initialised at ``import medseg_fast`` time: the
extensions, numba and CuPy are loaded the first time a call needs them.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import warnings

from ._errors import BackendUnavailableError, InvalidParameterError, MedsegWarning

__all__ = ["available_backends", "use_backend", "resolve", "core", "cuda_ext", "numba_module", "is_gpu_array"]

BACKENDS = ("cpu", "cuda", "numba")
ENV_VAR = "MEDSEG_FAST_BACKEND"

_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("medseg_fast_backend", default=None)
_lock = threading.Lock()
_cache: dict[str, object] = {}
_errors: dict[str, str] = {}
_warned_fallback = False


def _check_name(name: str, allow_auto: bool = True) -> str:
    if not isinstance(name, str):
        raise InvalidParameterError(f"backend must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    valid = BACKENDS + (("auto",) if allow_auto else ())
    if key not in valid:
        raise InvalidParameterError(f"unknown backend {name!r}; choose one of {', '.join(valid)}")
    return key


def _load(name: str):
    """Import (once) what a backend needs; return the module or None."""
    with _lock:
        if name in _cache:
            return _cache[name]
        mod = None
        try:
            if name == "cpu":
                mod = importlib.import_module("medseg_fast._core")
            elif name == "cuda":
                ext = importlib.import_module("medseg_fast._cuda")
                cupy = importlib.import_module("cupy")
                n = cupy.cuda.runtime.getDeviceCount()
                if n < 1:
                    raise RuntimeError("no CUDA device visible")
                if hasattr(ext, "device_count") and ext.device_count() < 1:
                    raise RuntimeError("the _cuda extension's CUDA runtime sees no device (driver too old?)")
                mod = ext
            elif name == "numba":
                importlib.import_module("numba")
                mod = importlib.import_module("medseg_fast._numba")
        except Exception as exc:  # ImportError, CUDA driver errors, ...
            _errors[name] = f"{type(exc).__name__}: {exc}"
            mod = None
        _cache[name] = mod
        return mod


def core():
    """The ``_core`` extension module, or raise BackendUnavailableError."""
    mod = _load("cpu")
    if mod is None:
        raise BackendUnavailableError(
            f"the cpu backend (medseg_fast._core) could not be imported ({_errors.get('cpu')}); "
            "reinstall medseg-fast from a wheel or with a C++17 compiler, or use backend='numba'"
        )
    return mod


def cuda_ext():
    mod = _load("cuda")
    if mod is None:
        raise BackendUnavailableError(
            f"the cuda backend is unavailable ({_errors.get('cuda')}); it needs medseg_fast built with "
            "a CUDA compiler (MEDSEG_CUDA=ON), CuPy and a CUDA GPU"
        )
    return mod


def numba_module():
    mod = _load("numba")
    if mod is None:
        raise BackendUnavailableError(f"the numba backend is unavailable ({_errors.get('numba')}); pip install numba")
    return mod


def available_backends() -> list[str]:
    """Names of the backends that can run here, in order of preference.

    Examples
    --------
    >>> import medseg_fast
    >>> "numba" in medseg_fast.available_backends() or "cpu" in medseg_fast.available_backends()
    True
    """
    return [b for b in BACKENDS if _load(b) is not None]


def backend_errors() -> dict[str, str]:
    """Why each unavailable backend failed to load (after a load was tried)."""
    for b in BACKENDS:
        _load(b)
    return dict(_errors)


@contextlib.contextmanager
def use_backend(name: str):
    """Context manager selecting the backend for calls that pass ``backend="auto"``.

    Examples
    --------
    >>> import numpy as np, medseg_fast
    >>> with medseg_fast.use_backend("numba"):
    ...     edges = medseg_fast.edges.sobel(np.zeros((8, 8), np.float32))
    >>> edges.dtype
    dtype('float32')
    """
    key = _check_name(name)
    if key != "auto" and _load(key) is None:
        raise BackendUnavailableError(f"backend {key!r} is unavailable: {_errors.get(key)}")
    token = _context.set(None if key == "auto" else key)
    try:
        yield key
    finally:
        _context.reset(token)


def is_gpu_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__")


def resolve(backend: str, *arrays, supported=BACKENDS) -> str:
    """Decide which backend runs a call (see the module docstring).

    ``supported`` lists the backends that implement the function.  Raises
    InvalidParameterError for unknown names and BackendUnavailableError for a
    backend that cannot run here or does not implement the function.
    """
    global _warned_fallback
    key = _check_name(backend)
    source = "argument"
    if key == "auto":
        ctx = _context.get()
        env = os.environ.get(ENV_VAR, "").strip()
        if ctx is not None:
            key, source = ctx, "use_backend()"
        elif env and env.lower() != "auto":
            key, source = _check_name(env, allow_auto=False), f"${ENV_VAR}"
    if key == "auto":
        if any(is_gpu_array(a) for a in arrays if a is not None) and "cuda" in supported:
            key = "cuda"
        elif _load("cpu") is not None and "cpu" in supported:
            key = "cpu"
        else:
            if not _warned_fallback and "cpu" in supported:
                warnings.warn(
                    f"medseg_fast._core could not be imported ({_errors.get('cpu')}); falling back to the "
                    "numba backend, which is slower on first use",
                    MedsegWarning,
                    stacklevel=3,
                )
                _warned_fallback = True
            key = "numba"
        source = "auto"
    if key not in supported:
        raise BackendUnavailableError(
            f"backend {key!r} (from {source}) does not implement this function; it runs on {', '.join(supported)}"
        )
    if _load(key) is None:
        raise BackendUnavailableError(f"backend {key!r} (from {source}) is unavailable here: {_errors.get(key)}")
    return key
