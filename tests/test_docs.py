"""The Examples sections of the public docstrings run and give what they show
(numpydoc examples are part of the API: a wrong one misleads every reader)."""

import doctest
import importlib
import pkgutil

import pytest

import medseg_fast

MODULES = ["medseg_fast"] + sorted(
    m.name for m in pkgutil.walk_packages(medseg_fast.__path__, "medseg_fast.")
    if not m.name.startswith(("medseg_fast._core", "medseg_fast._cuda"))
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        mod = importlib.import_module(name)
    except ImportError as e:  # an optional dependency (e.g. numba) missing
        pytest.skip(f"{name}: {e}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
