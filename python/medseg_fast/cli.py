"""The ``medseg-fast`` command line (also ``python -m medseg_fast``).

Subcommands
-----------
``info PATH``
    Modality, shape, spacing, orientation, dtype, value range, series UID and
    load warnings of a NIfTI file, DICOM file or DICOM series folder.
``segment PATH --method NAME [--param name=value ...] -o OUT.nii.gz [--preview OUT.png]``
    Runs one method and writes its result with ``medseg_fast.io.save(result, OUT,
    reference=image)``, so that it lies on the input's grid voxel for voxel.
    ``--method list`` (or ``--list-methods``) prints the methods and their parameters.
``demo [--out DIR]``
    Runs every method on pydicom's CT_small.dcm and on a generated 3D CT-like
    phantom, writes the results and one PNG overview, and reports timings.
``bench``
    Delegates to ``medseg_fast._bench.run`` when that module is installed.

Methods come from ``CLI_METHODS`` dictionaries in the modules
medseg_fast.edges, threshold, semantic, region, cluster and instance (each
imported only when methods are needed; a module that does not exist is
skipped, one that fails to import is reported), merged over the edge methods
defined here (:data:`EDGE_CLI_METHODS`; a module's entry wins on a name clash).
An entry is ``{"run": f(image_array, spacing, **params) -> ndarray, "help": str,
"params": {name: (type, default, help)}}``; ``run`` returns a bool/integer mask
or label map, or a float map, of the image's shape.  A single-slice image (shape
``(1, ny, nx)``, e.g. one DICOM file) is handed to ``run`` as a 2D ``(ny, nx)``
array with 2-element spacing; the result is stored as ``(1, ny, nx)`` again.
If ``run`` accepts ``backend`` / ``num_threads`` keywords, ``--backend`` and
``--threads`` are passed on; ``--backend`` also applies through
:func:`medseg_fast.use_backend` to everything the method calls.

Exit codes: 0 success; 1 the data or a computation failed (unreadable or
corrupt file, a method raised); 2 the command line is wrong (unknown
subcommand, method or parameter, bad value, missing input path, bad output
name).  Errors are one line on stderr; ``--debug`` shows the traceback.

Examples
--------
>>> from medseg_fast.cli import main
>>> main(["segment", "--method", "nonexistent"])  # doctest: +SKIP
2
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["main", "discover_methods", "parse_params", "run_method", "render_preview", "EDGE_CLI_METHODS",
           "METHOD_MODULES", "CLIError"]

PROG = "medseg-fast"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
METHOD_MODULES = ("edges", "threshold", "semantic", "region", "cluster", "instance")


class CLIError(Exception):
    """An error to report as one line, with the exit code to return."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- edge methods

def _run_canny(image, spacing, *, sigma=1.0, low_threshold=0.8, high_threshold=0.9, use_quantiles=True,
               backend="auto", num_threads=None):
    from .edges import canny

    return canny(image, sigma=sigma, low_threshold=low_threshold, high_threshold=high_threshold,
                 use_quantiles=use_quantiles, spacing=spacing, backend=backend, num_threads=num_threads)


def _run_sobel(image, spacing, *, backend="auto", num_threads=None):
    from .edges import sobel

    return sobel(image, spacing=spacing, backend=backend, num_threads=num_threads)


#: Edge methods offered even before medseg_fast.edges defines its own CLI_METHODS.
EDGE_CLI_METHODS = {
    "canny": {
        "run": _run_canny,
        "help": "Canny edges (2D on a single slice, 3D suppression along the 3D gradient on volumes); bool mask",
        "params": {
            "sigma": (float, 1.0, "Gaussian smoothing sigma in mm (uses the image's spacing)"),
            "low_threshold": (float, 0.8, "low hysteresis threshold: a quantile (0..1) of the gradient "
                                          "magnitude if use_quantiles, else in image units per mm"),
            "high_threshold": (float, 0.9, "high hysteresis threshold, same units as low_threshold"),
            "use_quantiles": (bool, True, "thresholds are quantiles of the gradient magnitude"),
        },
    },
    "sobel": {
        "run": _run_sobel,
        "help": "Sobel gradient magnitude in image units per mm (a float32 map, saved as float32 NIfTI)",
        "params": {},
    },
}


# --------------------------------------------------------------------------- discovery

def _normalise_param_spec(spec):
    if isinstance(spec, dict):
        return spec.get("type", str), spec.get("default"), str(spec.get("help", ""))
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 3):
        ptype, default = spec[0], spec[1]
        return ptype, default, str(spec[2]) if len(spec) == 3 else ""
    raise TypeError(f"a parameter spec must be (type, default, help), got {spec!r}")


def _check_entry(name, entry):
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise TypeError(f"method names must be non-empty strings without spaces, got {name!r}")
    if not isinstance(entry, dict) or not callable(entry.get("run")):
        raise TypeError("an entry must be a dict with a callable 'run'")
    params = entry.get("params") or {}
    if not isinstance(params, dict):
        raise TypeError("'params' must be a dict {name: (type, default, help)}")
    norm = {str(p): _normalise_param_spec(s) for p, s in params.items()}
    return {"run": entry["run"], "help": str(entry.get("help", "")), "params": norm}


def discover_methods():
    """All segmentation methods the CLI can run, and the problems met while looking.

    Returns
    -------
    methods : dict
        ``name -> {"run", "help", "params": {p: (type, default, help)}, "module"}``,
        sorted by name.
    problems : dict
        ``"module" or "module:method" -> one-line reason`` for modules that
        failed to import (other than not existing) and malformed entries.

    Examples
    --------
    >>> from medseg_fast.cli import discover_methods
    >>> methods, problems = discover_methods()
    >>> {"canny", "sobel"} <= set(methods)
    True
    """
    methods = {}
    problems = {}
    for name, entry in EDGE_CLI_METHODS.items():
        methods[name] = dict(_check_entry(name, entry), module=__name__)
    for short in METHOD_MODULES:
        full = f"{__package__}.{short}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name == full:
                continue  # not written yet / not part of this installation
            problems[full] = f"{type(exc).__name__}: {exc}"
            continue
        except Exception as exc:  # report, keep the other modules usable
            problems[full] = f"{type(exc).__name__}: {exc}"
            continue
        table = getattr(mod, "CLI_METHODS", None)
        if table is None:
            continue
        if not isinstance(table, dict):
            problems[full] = f"CLI_METHODS must be a dict, got {type(table).__name__}"
            continue
        for name, entry in table.items():
            try:
                methods[name] = dict(_check_entry(name, entry), module=full)
            except Exception as exc:
                problems[f"{full}:{name}"] = f"malformed CLI_METHODS entry: {exc}"
    return dict(sorted(methods.items())), problems


def _type_name(ptype) -> str:
    if isinstance(ptype, (tuple, list)):
        return "{" + ",".join(str(c) for c in ptype) + "}"
    return getattr(ptype, "__name__", str(ptype))


def _format_methods(methods, problems) -> str:
    lines = ["methods (use: segment PATH --method NAME [--param name=value ...] -o OUT.nii.gz):"]
    width = max((len(n) for n in methods), default=4)
    for name, m in methods.items():
        lines.append(f"  {name:<{width}}  {m['help']}  [{m['module']}]")
        for p, (ptype, default, phelp) in m["params"].items():
            lines.append(f"  {'':<{width}}    {p} ({_type_name(ptype)}, default {default!r}): {phelp}")
    if problems:
        lines.append("not available:")
        for where, why in problems.items():
            lines.append(f"  {where}: {why}")
    return "\n".join(lines)


def _unavailable_note(problems) -> str:
    if not problems:
        return ""
    return " (modules that failed to import: " + "; ".join(f"{k}: {v}" for k, v in problems.items()) + ")"


# --------------------------------------------------------------------------- parameters

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _parse_value(name, text, ptype, default):
    t = text.strip()
    if t.lower() in ("none", "null") and (default is None or ptype is type(None)):
        return None
    if isinstance(ptype, (tuple, list)):  # a choice among values
        for choice in ptype:
            if str(choice) == t:
                return choice
        raise ValueError(f"expected one of {', '.join(str(c) for c in ptype)}")
    if ptype is bool:
        if t.lower() in _TRUE:
            return True
        if t.lower() in _FALSE:
            return False
        raise ValueError("expected a boolean (true/false, yes/no, 1/0)")
    if ptype is int:
        return int(t)
    if ptype is float:
        return float(t)
    if ptype is str:
        return t
    if ptype in (tuple, list):  # a comma-separated list of numbers, e.g. a per-axis sigma
        items = [s for s in t.replace(" ", "").strip("()[]").split(",") if s]
        if not items:
            raise ValueError("expected a comma-separated list of numbers")
        vals = [int(s) if s.lstrip("+-").isdigit() else float(s) for s in items]
        return ptype(vals)
    return ptype(t)


def parse_params(method: str, spec: dict, assignments) -> dict:
    """Parse ``--param name=value`` strings against a method's declared parameters.

    Values are converted with the declared type (bool accepts true/false,
    yes/no, 1/0; ``none`` is accepted where the default is None; tuple/list
    types take comma-separated numbers).  Raises :class:`CLIError` (exit code 2)
    for a malformed assignment, an unknown name or a value of the wrong type.

    Examples
    --------
    >>> from medseg_fast.cli import parse_params, EDGE_CLI_METHODS
    >>> from medseg_fast.cli import _check_entry
    >>> spec = _check_entry("canny", EDGE_CLI_METHODS["canny"])["params"]
    >>> parse_params("canny", spec, ["sigma=2", "use_quantiles=no"])
    {'sigma': 2.0, 'use_quantiles': False}
    """
    out = {}
    valid = ", ".join(spec) if spec else "none"
    for item in assignments or ():
        if "=" not in item:
            raise CLIError(f"--param {item!r}: expected name=value (parameters of {method}: {valid})")
        name, text = item.split("=", 1)
        name = name.strip()
        if name not in spec:
            raise CLIError(f"unknown parameter {name!r} for method {method}; valid parameters: {valid}")
        ptype, default, _ = spec[name]
        try:
            out[name] = _parse_value(name, text, ptype, default)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"--param {name}={text}: {exc if str(exc) else 'bad value'} "
                           f"(expected {_type_name(ptype)})") from None
    return out


# --------------------------------------------------------------------------- running

def _accepts(func, name) -> bool:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def run_method(entry: dict, array, spacing, params: dict, *, backend=None, num_threads=None, name="method"):
    """Run one discovered method on a (z, y, x) array and check what it returns.

    A ``(1, ny, nx)`` array is passed as 2D ``(ny, nx)`` with ``spacing[1:]``.
    Returns the result as a numpy array of the input's shape (host memory).
    Raises :class:`CLIError` with exit code 1 for a result of the wrong kind.
    """
    arr = np.asarray(array) if not hasattr(array, "__cuda_array_interface__") else array
    sp = tuple(float(s) for s in spacing)
    squeeze = arr.ndim == 3 and arr.shape[0] == 1
    if squeeze:
        arr, sp = arr[0], sp[1:]
    kwargs = dict(params)
    run = entry["run"]
    if backend is not None and _accepts(run, "backend"):
        kwargs["backend"] = backend
    if num_threads is not None and _accepts(run, "num_threads"):
        kwargs["num_threads"] = num_threads
    if backend is not None:
        from ._backend import use_backend

        ctx = use_backend(backend)
    else:
        ctx = contextlib.nullcontext()
    with ctx:
        result = run(arr, sp, **kwargs)
    if hasattr(result, "__cuda_array_interface__") and not isinstance(result, np.ndarray):
        result = result.get()  # CuPy array -> host
    if not isinstance(result, np.ndarray):
        raise CLIError(f"method {name} returned {type(result).__name__}, not an array", EXIT_FAIL)
    if result.shape != arr.shape:
        raise CLIError(f"method {name} returned shape {result.shape}, expected the image's {arr.shape}",
                       EXIT_FAIL)
    if result.dtype.kind not in "biuf":
        raise CLIError(f"method {name} returned dtype {result.dtype}; expected bool, integer or float",
                       EXIT_FAIL)
    return result[None] if squeeze else result


def _distinct_labels(result, slab_voxels=1 << 22):
    """Sorted non-zero values of an integer array, slab by slab (no full-volume sort or copy)."""
    flat = result.reshape(result.shape[0], -1) if result.ndim > 1 else result.reshape(1, -1)
    step = max(1, slab_voxels // max(1, flat.shape[1]))
    found = np.empty(0, result.dtype)
    for i in range(0, flat.shape[0], step):
        found = np.union1d(found, np.unique(flat[i:i + step]))
    return found[found != 0]


def _summary(result) -> str:
    if result.dtype == np.bool_:
        n = int(np.count_nonzero(result))
        return f"mask: {n} voxels ({100.0 * n / max(1, result.size):.2f} %)"
    if result.dtype.kind in "iu":
        labels = _distinct_labels(result)
        if labels.size == 0 or (labels.size == 1 and labels[0] == 1):
            n = int(np.count_nonzero(result))
            return f"mask: {n} voxels ({100.0 * n / max(1, result.size):.2f} %)"
        return f"labels: {labels.size} (values {int(labels.min())}..{int(labels.max())})"
    lo, hi = float(np.min(result)), float(np.max(result))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite = result[np.isfinite(result)]
        if finite.size == 0:
            return f"{result.dtype} map, no finite values"
        lo, hi = float(finite.min()), float(finite.max())
    return f"{result.dtype} map, range {lo:.4g}..{hi:.4g}"


# --------------------------------------------------------------------------- preview rendering

_PLANE_NAMES = {2: "axial", 1: "coronal", 0: "sagittal"}


def _world_component(affine, axis) -> int:
    return int(np.argmax(np.abs(np.asarray(affine)[:3, axis])))


def _display_plane(vol, axis, index, affine):
    """2D slice of *vol* perpendicular to *axis*, oriented for display.

    Rows run toward inferior (or posterior, for axial planes) and columns toward
    patient left (or posterior, for sagittal planes): the radiological convention.
    Returns the (view) slice and the array axes of its rows and columns.
    """
    other = [a for a in range(3) if a != axis]
    sl = np.take(vol, index, axis=axis)
    comps = [_world_component(affine, a) for a in other]
    if comps[1] > comps[0]:  # the vertical axis is the one closer to S (then A, then R)
        sl, other, comps = sl.T, other[::-1], comps[::-1]
    affine = np.asarray(affine)
    if affine[comps[0], other[0]] > 0:
        sl = sl[::-1]
    if affine[comps[1], other[1]] > 0:
        sl = sl[:, ::-1]
    return sl, other


def parse_window(text):
    """'auto', 'ct', 'percentile' or a (level, width) pair from ``--window``; CLIError otherwise.

    >>> parse_window("40,400"), parse_window("CT")
    ((40.0, 400.0), 'ct')
    """
    w = (text or "auto").strip().lower()
    if w in ("auto", "ct", "percentile"):
        return w
    try:
        level, width = (float(v) for v in w.split(","))
        if not (math.isfinite(level) and math.isfinite(width) and width > 0):
            raise ValueError
    except ValueError:
        raise CLIError(f"--window {text!r}: expected auto, ct, percentile or LEVEL,WIDTH (width > 0)") from None
    return level, width


class _Renderer:
    """Draws image slices with a result overlaid; computes the intensity window and heat scale once."""

    def __init__(self, array, spacing, affine, *, modality=None, window="auto", panel_size=256):
        from . import _png

        self.png = _png
        self.array = array
        self.spacing = tuple(float(s) for s in spacing)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.panel_size = int(panel_size)
        self.low, self.high = self._window(window, modality)

    def _window(self, window, modality):
        w = parse_window(window)
        if w == "auto":
            w = "ct" if str(modality or "").upper() == "CT" else "percentile"
        if w == "ct":
            return self.png.ct_window()
        if w == "percentile":
            return self.png.percentile_range(self.array)
        return self.png.ct_window(*w)

    @staticmethod
    def heat_scale(result) -> float:
        flat = result.reshape(-1)
        sample = flat[:: max(1, flat.size // 1_000_000)].astype(np.float32, copy=False)
        sample = sample[np.isfinite(sample) & (sample > 0)]
        return float(np.percentile(sample, 99.5)) if sample.size else 1.0

    def plane_name(self, axis) -> str:
        return _PLANE_NAMES[_world_component(self.affine, axis)]

    def axial_axis(self) -> int:
        for a in range(3):
            if _world_component(self.affine, a) == 2:
                return a
        return 0

    def panel(self, axis, index, result=None, *, vmax=None):
        png = self.png
        sl, (ra, ca) = _display_plane(self.array, axis, index, self.affine)
        rgb = png.to_rgb(png.window(sl, self.low, self.high))
        if result is not None:
            rs, _ = _display_plane(result, axis, index, self.affine)
            if result.dtype.kind == "f":
                rgb = png.overlay_heat(rgb, rs, vmax if vmax is not None else self.heat_scale(result))
            else:
                rgb = png.overlay_labels(rgb, rs)
        h_mm, w_mm = sl.shape[0] * self.spacing[ra], sl.shape[1] * self.spacing[ca]
        target = max(self.panel_size, min(512, max(sl.shape)))
        mm_per_px = max(h_mm, w_mm) / target
        out_h = max(1, int(round(h_mm / mm_per_px)))
        out_w = max(1, int(round(w_mm / mm_per_px)))
        return png.resize_nearest(rgb, out_h, out_w)


def _extent(result, axis):
    other = tuple(a for a in range(3) if a != axis)
    hit = np.flatnonzero(np.any(result != 0, axis=other))
    if hit.size == 0:
        return 0, result.shape[axis] - 1
    return int(hit[0]), int(hit[-1])


def render_preview(array, result, spacing, affine, *, modality=None, window="auto", name="", panel_size=256):
    """An RGB overview of *result* over *array*: representative slices, titled.

    3D: three slices of the axial-most axis at 25/50/75 % of the result's
    extent, plus one slice across each other axis through the middle of that
    extent.  Single slice: the image and the overlay side by side.  Masks and
    label maps are drawn as coloured fills with opaque contours, float maps
    (e.g. a gradient magnitude) as a heat overlay.  CT is shown with a
    soft-tissue window (L40/W400) unless *window* says otherwise; other
    modalities with their 1-99 % percentile range.

    Returns an (H, W, 3) uint8 array (write it with :func:`medseg_fast._png.write_png`).
    """
    from . import _png

    r = _Renderer(array, spacing, affine, modality=modality, window=window, panel_size=panel_size)
    label = name.upper() + " " if name else ""
    vmax = r.heat_scale(result) if result.dtype.kind == "f" else None
    panels, titles = [], []
    if array.shape[0] == 1:
        panels += [r.panel(0, 0), r.panel(0, 0, result, vmax=vmax)]
        titles += ["IMAGE", f"{label}{r.plane_name(0)}"]
    else:
        ax = r.axial_axis()
        lo, hi = _extent(result, ax)
        for frac in (0.25, 0.5, 0.75):
            k = int(round(lo + frac * (hi - lo)))
            panels.append(r.panel(ax, k, result, vmax=vmax))
            titles.append(f"{label}{r.plane_name(ax)} {'zyx'[ax]}={k}")
        for other in (a for a in range(3) if a != ax):
            lo, hi = _extent(result, other)
            k = (lo + hi) // 2
            panels.append(r.panel(other, k, result, vmax=vmax))
            titles.append(f"{label}{r.plane_name(other)} {'zyx'[other]}={k}")
    return _png.tile(panels, titles, ncols=3 if len(panels) > 2 else len(panels))


# --------------------------------------------------------------------------- progress

class _Progress:
    """One stderr line per step: ``[i/n] label ... 0.12 s``.

    A warning raised during a step (see :func:`_show_warning`) ends the open
    line first, and the step's time then goes on a line of its own.
    """

    active = None  # the progress whose line is open, for _show_warning

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled, self.i = total, enabled, 0
        self.stream = stream if stream is not None else sys.stderr
        self.line_open = False

    def break_line(self):
        if self.line_open:
            print(file=self.stream, flush=True)
            self.line_open = False

    @contextlib.contextmanager
    def step(self, label: str):
        self.i += 1
        t0 = time.perf_counter()
        if self.enabled:
            print(f"[{self.i}/{self.total}] {label} ...", end="", file=self.stream, flush=True)
            self.line_open = True
            _Progress.active = self
        ok = False
        try:
            yield
            ok = True
        finally:
            if self.enabled:
                dt = time.perf_counter() - t0
                lead = " " if self.line_open else f"[{self.i}/{self.total}] done: "
                print(f"{lead}{dt:.2f} s" if ok else f"{lead}failed", file=self.stream, flush=True)
                self.line_open = False
                _Progress.active = None


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as ``medseg-fast: warning: ...`` lines (no source location) on stderr."""
    if _Progress.active is not None:
        _Progress.active.break_line()
    name = "" if issubclass(category, UserWarning) and category.__name__ == "MedsegWarning" else \
        f"{category.__name__}: "
    print(f"{PROG}: warning: {name}{message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- helpers

def _load(path, *, series_uid=None, volume=None):
    from . import io as mio

    if not os.path.exists(path):
        raise CLIError(f"no such file or folder: {path}")
    try:
        return mio.load(path, series_uid, volume=volume)
    except FileNotFoundError as exc:
        raise CLIError(f"cannot read {path}: {exc}") from exc
    except Exception as exc:
        from ._errors import InvalidParameterError, MedsegError

        if isinstance(exc, (MedsegError, OSError, ValueError)):
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if path not in msg:
                msg = f"{path}: {msg}"
            for option, flag in (("volume=", "--volume N"), ("series_uid=", "--series-uid UID"),
                                 ("recursive=", "--recursive")):
                if option in msg:
                    msg += f" (on the command line: {flag})"
                    break
            if isinstance(exc, InvalidParameterError):  # an option that does not fit this input
                raise CLIError(f"cannot load {msg}", EXIT_USAGE) from exc
            raise CLIError(f"cannot load {msg}", EXIT_FAIL) from exc
        raise


def _check_output(path, what, suffixes=None):
    path = os.fspath(path)
    if suffixes and not path.lower().endswith(suffixes):
        raise CLIError(f"{what} {path!r} must end in {' or '.join(suffixes)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"{what} {path!r}: folder {folder} does not exist")
    return path


def _fmt_tuple(values, fmt="{:.4g}") -> str:
    return " x ".join(fmt.format(v) for v in values)


def _value_range(a):
    if a.size == 0:
        return None
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            a = a[finite]
            if a.size == 0:
                return None
    return a.min().item(), a.max().item()


# --------------------------------------------------------------------------- subcommands

def _cmd_info(args) -> int:
    import warnings

    from ._errors import MedsegWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MedsegWarning)  # listed below from meta['warnings']
        img = _load(args.path, series_uid=args.series_uid, volume=args.volume)
    meta = img.meta
    vr = _value_range(img.array)
    warns = [str(w) for w in meta.get("warnings", [])]
    info = {
        "path": os.fspath(args.path),
        "format": meta.get("format"),
        "modality": meta.get("modality") or None,
        "shape": list(img.array.shape),
        "spacing_mm": [float(s) for s in img.spacing],
        "orientation": meta.get("orientation"),
        "orientation_xyz": meta.get("orientation_xyz"),
        "dtype": str(img.array.dtype),
        "value_range": list(vr) if vr is not None else None,
        "series_uid": meta.get("series_uid") or None,
        "origin_mm": [float(v) for v in np.asarray(img.affine)[:3, 3]],
        "warnings": warns,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    rows = [
        ("file", f"{info['path']} ({info['format'] or 'unknown format'})"),
        ("modality", info["modality"] or "unknown"),
        ("shape", f"{_fmt_tuple(info['shape'], '{}')} (z, y, x)"),
        ("spacing", f"{_fmt_tuple(info['spacing_mm'])} mm (dz, dy, dx)"),
        ("orientation", f"{info['orientation']} for the array axes (z, y, x); "
                        f"{info['orientation_xyz']} for the NIfTI axes (x, y, z)"),
        ("origin", f"({', '.join(f'{v:.4g}' for v in info['origin_mm'])}) mm RAS"),
        ("dtype", info["dtype"]),
        ("value range", f"{vr[0]:.6g} .. {vr[1]:.6g}" if vr is not None else "no finite values"),
        ("series UID", info["series_uid"] or "-"),
        ("warnings", "none" if not warns else f"{len(warns)}"),
    ]
    for k, v in rows:
        print(f"{k:>12}: {v}")
    for w in warns:
        print(f"{'':>12}  - {w}")
    return EXIT_OK


def _resolve_method(name, methods, problems):
    if name not in methods:
        valid = ", ".join(methods) or "none"
        raise CLIError(f"unknown method {name!r}; valid methods: {valid} (see --method list)"
                       f"{_unavailable_note(problems)}")
    return methods[name]


def _cmd_segment(args) -> int:
    methods, problems = discover_methods()
    if args.list_methods or args.method == "list":
        print(_format_methods(methods, problems))
        return EXIT_OK
    if args.method is None:
        raise CLIError(f"segment needs --method NAME; valid methods: {', '.join(methods)} (see --method list)")
    entry = _resolve_method(args.method, methods, problems)
    params = parse_params(args.method, entry["params"], args.param)
    if args.path is None:
        raise CLIError("segment needs the input PATH (a NIfTI file, DICOM file or DICOM folder)")
    if args.output is None:
        raise CLIError("segment needs -o OUT.nii.gz")
    out = _check_output(args.output, "output", (".nii", ".nii.gz"))
    preview = _check_output(args.preview, "preview") if args.preview else None
    parse_window(args.window)
    if args.backend is not None:
        from ._backend import use_backend

        try:
            with use_backend(args.backend):
                pass
        except Exception as exc:
            raise CLIError(f"--backend {args.backend}: {exc}") from None

    from . import io as mio

    prog = _Progress(3 + (preview is not None), enabled=not args.quiet)
    with prog.step(f"loading {args.path}"):
        img = _load(args.path, series_uid=args.series_uid, volume=args.volume)
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    with prog.step(f"{args.method}({shown}) on {_fmt_tuple(img.array.shape, '{}')} {img.array.dtype}"):
        t0 = time.perf_counter()
        try:
            result = run_method(entry, img.array, img.spacing, params, backend=args.backend,
                                num_threads=args.threads, name=args.method)
        except CLIError:
            raise
        except Exception as exc:
            if args.debug:
                raise
            raise CLIError(f"method {args.method} failed: {type(exc).__name__}: {exc}", EXIT_FAIL) from exc
        elapsed = time.perf_counter() - t0
    with prog.step(f"saving {out}"):
        mio.save(result, out, reference=img)
    print(f"{args.method}: {_summary(result)} in {elapsed:.3f} s -> {out}")
    if preview is not None:
        with prog.step(f"preview {preview}"):
            from ._png import write_png

            rgb = render_preview(img.array, result, img.spacing, img.affine, modality=img.meta.get("modality"),
                                 window=args.window, name=args.method)
            write_png(preview, rgb)
        print(f"preview: {rgb.shape[1]}x{rgb.shape[0]} PNG -> {preview}")
    return EXIT_OK


def _demo_samples(quick: bool):
    """(name, description, Image, display slice spec) of the built-in samples."""
    from pydicom.data import get_testdata_file

    from . import io as mio
    from ._phantom import ct_phantom, phantom_affine

    samples = []
    path = get_testdata_file("CT_small.dcm")
    if path is not None:
        samples.append(("ct_small", "pydicom CT_small.dcm", mio.load(path)))
    shape = (48, 64, 64) if quick else (96, 128, 128)
    spacing = (5.0, 1.6, 1.6) if quick else (2.5, 0.8, 0.8)
    array, _truth, spacing = ct_phantom(shape, spacing)
    image = mio.Image(array, spacing=spacing, affine=phantom_affine(shape, spacing),
                      meta={"modality": "CT", "source": "medseg_fast._phantom"})
    samples.append(("phantom", f"CT-like phantom {_fmt_tuple(shape, '{}')}", image))
    return samples


def _cmd_demo(args) -> int:
    from . import io as mio
    from ._png import tile, write_png

    out_dir = os.path.abspath(args.out)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the output folder {out_dir}: {exc}") from None
    methods, problems = discover_methods()
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in methods]
        if unknown:
            raise CLIError(f"unknown method(s) {', '.join(unknown)}; valid methods: {', '.join(methods)}")
        methods = {m: methods[m] for m in wanted}
    for where, why in problems.items():
        print(f"note: {where} not available: {why}", file=sys.stderr)
    t_start = time.perf_counter()
    print(f"medseg-fast demo: {len(methods)} method(s) -> {out_dir}", flush=True)
    samples = _demo_samples(args.quick)
    rows_panels, rows_titles = [], []
    n_ok = n_fail = 0
    for sname, desc, img in samples:
        arr = img.array
        print(f"{sname}: {desc}, {img.meta.get('modality') or '?'} {_fmt_tuple(arr.shape, '{}')} {arr.dtype}, "
              f"spacing {_fmt_tuple(img.spacing)} mm", flush=True)
        if img.meta.get("source") == "medseg_fast._phantom":
            p = mio.save(arr, os.path.join(out_dir, f"{sname}.nii.gz"), reference=img, label=False)
            print(f"  wrote the phantom scan -> {p}")
        r = _Renderer(arr, img.spacing, img.affine, modality=img.meta.get("modality"), panel_size=args.panel_size)
        ax = r.axial_axis()
        k_ax = 0 if arr.shape[ax] == 1 else int(0.4 * arr.shape[ax])
        views = [(ax, k_ax)]
        if arr.ndim == 3 and min(arr.shape) > 1:
            cor = next(a for a in range(3) if a != ax)
            views.append((cor, arr.shape[cor] // 2))
        for axis, k in views:
            rows_panels.append([r.panel(axis, k)])
            rows_titles.append([f"{sname} {r.plane_name(axis)} {'zyx'[axis]}={k}"])
        for mname, entry in methods.items():
            t0 = time.perf_counter()
            try:
                result = run_method(entry, arr, img.spacing, {}, backend=args.backend, num_threads=args.threads,
                                    name=mname)
            except Exception as exc:
                if args.debug:
                    raise
                n_fail += 1
                msg = str(exc).splitlines()[0] if str(exc) else ""
                print(f"  {mname:<14} FAILED after {time.perf_counter() - t0:.3f} s: {type(exc).__name__}: {msg}",
                      flush=True)
                continue
            dt = time.perf_counter() - t0
            fname = os.path.join(out_dir, f"{sname}_{mname}.nii.gz")
            mio.save(result, fname, reference=img)
            n_ok += 1
            print(f"  {mname:<14} {dt:8.3f} s  {_summary(result)} -> {os.path.basename(fname)}", flush=True)
            vmax = r.heat_scale(result) if result.dtype.kind == "f" else None
            for row, (axis, k) in zip(range(len(views)), views):
                idx = len(rows_panels) - len(views) + row
                rows_panels[idx].append(r.panel(axis, k, result, vmax=vmax))
                rows_titles[idx].append(f"{mname} {dt:.2f}s")
    # one overview: a row per sample view, the image first then one column per method
    ncols = max(len(p) for p in rows_panels)
    panels, titles = [], []
    for rp, rt in zip(rows_panels, rows_titles):
        cell_h = max(p.shape[0] for p in rp)
        for p, t in zip(rp, rt):
            panels.append(p)
            titles.append(t)
        for _ in range(ncols - len(rp)):
            panels.append(np.zeros((cell_h, 1, 3), np.uint8) + 20)
            titles.append("")
    overview = os.path.join(out_dir, "overview.png")
    write_png(overview, tile(panels, titles, ncols=ncols))
    total = time.perf_counter() - t_start
    print(f"overview -> {overview}")
    print(f"done: {n_ok} result(s) written, {n_fail} failed, {total:.2f} s in total")
    return EXIT_OK if n_ok else EXIT_FAIL


def _cmd_bench(args) -> int:
    try:
        bench = importlib.import_module(f"{__package__}._bench")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__package__}._bench":
            print(f"{PROG} bench: benchmarks are not available in this installation "
                  f"(medseg_fast._bench is missing); see benchmarks/README.md to run the pytest-benchmark suite",
                  file=sys.stderr)
            return EXIT_FAIL
        raise
    run = getattr(bench, "run", None)
    if not callable(run):
        raise CLIError("medseg_fast._bench has no run() function", EXIT_FAIL)
    kwargs = {}
    for key in ("size", "repeat", "backend", "num_threads"):
        value = getattr(args, "threads" if key == "num_threads" else key)
        if value is not None:
            if not _accepts(run, key):
                raise CLIError(f"bench does not support --{'threads' if key == 'num_threads' else key}")
            kwargs[key] = value
    from ._errors import InvalidParameterError

    try:
        rv = run(**kwargs)
    except InvalidParameterError as exc:  # --size / --repeat / ... values run() refuses
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CLIError(f"bench: {first}", EXIT_USAGE) from exc
    return int(rv) if isinstance(rv, (int, np.integer)) and not isinstance(rv, bool) else EXIT_OK


# --------------------------------------------------------------------------- argument parsing

class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one usage line + the error, exit code 2 (argparse's convention)
        self.print_usage(sys.stderr)
        raise CLIError(message, EXIT_USAGE)


def _size(text):
    return int(text) if text.strip().isdigit() else text


def _int_at_least(low, note=""):
    """An argparse type: an integer >= low (argparse turns the error into exit code 2)."""
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}{note}, got {n}")
        return n
    return parse


_positive_int = _int_at_least(1)
_threads = _int_at_least(0, " (0: all cores)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``medseg-fast`` command."""
    from . import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show full tracebacks on errors")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="no progress lines on stderr")
    parser = _Parser(prog=PROG, description="Fast medical image segmentation from the command line.",
                     epilog="Exit codes: 0 ok, 1 the data or a computation failed, 2 bad command line.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", parents=[common], help="describe a scan (NIfTI file, DICOM file or folder)",
                       description="Modality, shape, spacing, orientation, value range, dtype, series UID, "
                                   "warnings.")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--series-uid", help="DICOM folder or multi-frame file: the series or sub-volume to load "
                                        "(default: the one with most slices)")
    p.add_argument("--volume", type=int, help="4D NIfTI: the volume index to read")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("segment", parents=[common], help="run a method and write the mask as NIfTI",
                       description="Run a segmentation method; the result is written on the input's grid.")
    p.add_argument("path", metavar="PATH", nargs="?", help="NIfTI file, DICOM file or DICOM series folder")
    p.add_argument("-m", "--method", metavar="NAME", help="method name, or 'list' to list the methods")
    p.add_argument("-p", "--param", metavar="NAME=VALUE", action="append", default=[],
                   help="method parameter (repeatable)")
    p.add_argument("-o", "--output", metavar="OUT.nii.gz", help="output NIfTI (.nii or .nii.gz)")
    p.add_argument("--preview", metavar="OUT.png", help="also write a PNG preview of the result")
    p.add_argument("--window", default="auto",
                   help="preview intensity window: auto (CT: soft tissue L40/W400, else 1-99 %%), ct, "
                        "percentile or LEVEL,WIDTH")
    p.add_argument("--backend", choices=("auto", "cpu", "numba", "cuda"), help="compute backend")
    p.add_argument("--threads", type=_threads, help="CPU threads (0: all cores)")
    p.add_argument("--series-uid", help="DICOM folder or multi-frame file: the series or sub-volume to load")
    p.add_argument("--volume", type=int, help="4D NIfTI: the volume index to read")
    p.add_argument("--list-methods", action="store_true", help="list the methods and their parameters")

    p = sub.add_parser("demo", parents=[common], help="run every method on built-in samples",
                       description="Runs every method with default parameters on pydicom's CT_small.dcm and a "
                                   "generated 3D CT-like phantom; writes the results and overview.png.")
    p.add_argument("--out", default="medseg_fast_demo", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--methods", metavar="A,B", help="only these methods (comma-separated)")
    p.add_argument("--quick", action="store_true", help="a smaller phantom (48x64x64)")
    p.add_argument("--panel-size", type=int, default=192, help="overview panel size in pixels")
    p.add_argument("--backend", choices=("auto", "cpu", "numba", "cuda"), help="compute backend")
    p.add_argument("--threads", type=_threads, help="CPU threads (0: all cores)")

    p = sub.add_parser("bench", parents=[common], help="time medseg_fast against the reference libraries",
                       description="Runs medseg_fast._bench when installed.")
    p.add_argument("--size", type=_size, help="problem size")
    p.add_argument("--repeat", type=_positive_int, help="repetitions per measurement (>= 1)")
    p.add_argument("--backend", choices=("auto", "cpu", "numba", "cuda"), help="compute backend")
    p.add_argument("--threads", type=_threads, help="CPU threads (0: all cores)")
    return parser


_COMMANDS = {"info": _cmd_info, "segment": _cmd_segment, "demo": _cmd_demo, "bench": _cmd_bench}


def main(argv=None) -> int:
    """Entry point of ``medseg-fast``; returns the exit code (the console script exits with it).

    Examples
    --------
    >>> import contextlib, io
    >>> from medseg_fast.cli import main
    >>> with contextlib.redirect_stdout(io.StringIO()) as out:
    ...     code = main(["segment", "--method", "list"])
    >>> code, "canny" in out.getvalue()
    (0, True)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help / --version
            return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
        for key in ("debug", "quiet"):
            if not hasattr(args, key):
                setattr(args, key, False)
        debug = args.debug
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        import warnings

        from ._errors import MedsegWarning

        with warnings.catch_warnings():
            warnings.simplefilter("always", MedsegWarning)  # every data quirk, each time
            warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except CLIError as exc:
        if debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{PROG}: error: {type(exc).__name__}: {first} (run with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_FAIL
