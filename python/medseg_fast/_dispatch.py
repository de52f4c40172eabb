"""Glue between the public wrappers and the backends: picks the backend module
and runs a family function on it with the per-call thread count."""

from __future__ import annotations

from . import _backend


def family(backend_name: str, name: str):
    """The kernel submodule `name` (e.g. "edges") of the chosen backend."""
    if backend_name == "cpu":
        return getattr(_backend.core(), name)
    if backend_name == "numba":
        import importlib

        return importlib.import_module(f"medseg_fast._numba.{name}")
    if backend_name == "cuda":
        return getattr(_backend.cuda_ext(), name)
    raise ValueError(backend_name)
