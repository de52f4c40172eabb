"""The medseg-fast command line: info, segment, demo, bench, method discovery, PNG previews, phantom.

References: pydicom (tags and pixels of CT_small.dcm), nibabel (NIfTI geometry of
inputs and outputs), scikit-image (``feature.canny`` for the 2D Canny the CLI runs,
``segmentation.find_boundaries`` for the preview contours), Pillow when installed
(the PNGs decode to the pixels we wrote), and the phantom's known truth.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import types
import zlib

import nibabel as nib
import numpy as np
import pytest

from conftest import nibabel_file, pydicom_file
from medseg_fast import _png, cli
from medseg_fast._phantom import PHANTOM_HU, ct_phantom, phantom_affine
from medseg_fast.cli import main

REVERSE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # (z,y,x) <-> (i,j,k)


# --------------------------------------------------------------------------- helpers

def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_png(path):
    """Decode an 8-bit non-interlaced greyscale/RGB PNG (filter type 0 rows) with zlib, checking every CRC."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + n
    assert pos == len(data)
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, comp, filt, interlace) == (8, 0, 0, 0) and ctype in (0, 2)
    ch = 3 if ctype == 2 else 1
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, w * ch + 1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, ch) if ch == 3 else rows[:, 1:].reshape(h, w)


def assert_pillow_agrees(path, pixels):
    try:
        from PIL import Image as PILImage
    except ImportError:
        return
    with PILImage.open(path) as im:
        im.load()
        assert np.array_equal(np.asarray(im), pixels)


@pytest.fixture(scope="module")
def ct_path():
    return pydicom_file("CT_small.dcm")


@pytest.fixture(scope="module")
def phantom_nifti(tmp_path_factory):
    """A 3D CT-like phantom written by nibabel directly (not by medseg_fast.io), with an SPL affine."""
    shape, spacing = (24, 40, 40), (2.5, 0.8, 0.8)
    image, truth, spacing = ct_phantom(shape, spacing, noise=10.0)
    affine_zyx = phantom_affine(shape, spacing)
    affine_zyx[:3, 3] += (12.5, -30.0, 7.0)
    path = str(tmp_path_factory.mktemp("phantom") / "phantom.nii.gz")
    nib.save(nib.Nifti1Image(image.T.copy(), affine_zyx @ REVERSE), path)
    return path, image, truth, spacing, affine_zyx


# --------------------------------------------------------------------------- info

def test_info_ct_small_matches_pydicom(capsys, ct_path):
    import pydicom

    ds = pydicom.dcmread(ct_path)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    code, out, err = run_cli(capsys, "info", ct_path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["modality"] == ds.Modality == "CT"
    assert info["series_uid"] == ds.SeriesInstanceUID
    assert info["shape"] == [1, ds.Rows, ds.Columns]
    assert info["spacing_mm"][1:] == pytest.approx([float(v) for v in ds.PixelSpacing])
    assert info["value_range"] == [hu.min(), hu.max()]
    assert info["orientation"] == "SPL"  # axial: slices toward S, rows toward P, columns toward L
    assert info["dtype"] == "int16"
    # the text form carries the same facts
    code, out, _ = run_cli(capsys, "info", ct_path)
    assert code == 0
    for needle in ("CT", "1 x 128 x 128", "SPL", ds.SeriesInstanceUID, f"{hu.min():.6g} .. {hu.max():.6g}",
                   "warnings: none"):
        assert needle in out


def test_info_nifti_matches_nibabel(capsys):
    path = nibabel_file("tests", "data", "anatomical.nii")  # big-endian int16, LAS
    ref = nib.load(path)
    data = np.asanyarray(ref.dataobj)
    code, out, err = run_cli(capsys, "info", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["shape"] == list(ref.shape[::-1])
    assert info["spacing_mm"] == pytest.approx([float(z) for z in ref.header.get_zooms()[::-1]])
    assert info["orientation_xyz"] == "".join(nib.aff2axcodes(ref.affine))
    assert info["orientation"] == "".join(nib.aff2axcodes(ref.affine))[::-1]
    assert info["value_range"] == [data.min().item(), data.max().item()]
    assert info["format"] == "nifti" and info["series_uid"] is None


def test_info_4d_needs_volume(capsys):
    path = nibabel_file("tests", "data", "example4d.nii.gz")
    code, _, err = run_cli(capsys, "info", path)
    assert code == 1 and "--volume" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, "info", path, "--volume", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["shape"] == list(nib.load(path).shape[:3][::-1])


def test_series_uid_selects_a_series(capsys, ct_path, tmp_path):
    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path / "two_series"
    folder.mkdir()
    uids = []
    for k, offset in enumerate((0, 100)):
        ds = pydicom.dcmread(ct_path)
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.RescaleIntercept = float(ds.RescaleIntercept) + offset
        ds.save_as(folder / f"file{k}.dcm")
        uids.append(ds.SeriesInstanceUID)
    for uid, offset in zip(uids, (0, 100)):
        code, out, err = run_cli(capsys, "info", folder, "--series-uid", uid, "--json")
        assert code == 0, err
        info = json.loads(out)
        assert info["series_uid"] == uid
        assert info["value_range"][0] == -896 + offset
    out_path = tmp_path / "m.nii.gz"
    code, _, err = run_cli(capsys, "segment", folder, "--series-uid", uids[1], "-m", "canny", "-o", out_path, "-q")
    assert code == 0, err
    code, _, err = run_cli(capsys, "info", folder, "--series-uid", "1.2.3.4")
    assert code == 1 and "1.2.3.4" in err and "Traceback" not in err


def test_version_and_help(capsys):
    import medseg_fast

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and medseg_fast.__version__ in out
    code, out, _ = run_cli(capsys, "segment", "--help")
    assert code == 0 and "--param" in out and "--preview" in out


def test_python_dash_m_subprocess(ct_path, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "medseg_fast", "info", ct_path], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "modality: CT" in res.stdout and "SPL" in res.stdout
    res = subprocess.run([sys.executable, "-m", "medseg_fast", "info", str(tmp_path / "missing.dcm")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2
    assert "no such file" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- segment

def test_segment_canny_ct_small_equals_skimage(capsys, ct_path, tmp_path):
    import pydicom
    from skimage.feature import canny as sk_canny

    out, png = tmp_path / "edges.nii.gz", tmp_path / "edges.png"
    code, stdout, err = run_cli(capsys, "segment", ct_path, "--method", "canny", "--param", "sigma=1.5",
                                "-o", out, "--preview", png)
    assert code == 0, err
    assert "[4/4] preview" in err  # progress lines
    assert "canny" in stdout and str(out) in stdout

    ds = pydicom.dcmread(ct_path)
    dy, dx = (float(v) for v in ds.PixelSpacing)
    assert dy == dx
    # sigma 1.5 mm = 1.5/dy voxels; quantile thresholds do not depend on the gradient's scale
    ref = sk_canny(ds.pixel_array.astype(np.float32), sigma=1.5 / dy, low_threshold=0.8, high_threshold=0.9,
                   use_quantiles=True)
    saved = nib.load(str(out))
    mask = np.asanyarray(saved.dataobj)
    assert saved.get_data_dtype() == np.uint8 and mask.shape == (ds.Columns, ds.Rows, 1)
    assert np.array_equal(mask[:, :, 0].T.astype(bool), ref)
    assert ref.sum() > 100

    from medseg_fast.io import load

    src, back = load(ct_path), load(str(out))
    assert back.shape == src.shape
    np.testing.assert_allclose(back.affine, src.affine, atol=1e-5)
    # the file's own (i, j, k) affine, read by nibabel, is the input's geometry
    np.testing.assert_allclose(saved.affine, src.affine @ REVERSE, atol=1e-5)

    pixels = read_png(png)
    assert pixels.ndim == 3 and pixels.shape[0] >= 128 and pixels.shape[1] >= 256
    assert_pillow_agrees(png, pixels)
    # the overlay's first colour (label 1, opaque contour) is present, and only in the right-hand panel
    red = np.all(pixels == _png.COLOURS[0], axis=2)
    assert red.sum() > 100
    assert red[:, : pixels.shape[1] // 2].sum() == 0


def test_segment_phantom_nifti_geometry_and_truth(capsys, phantom_nifti, tmp_path):
    path, image, truth, spacing, affine_zyx = phantom_nifti
    out, png = tmp_path / "ph.nii.gz", tmp_path / "ph.png"
    code, _, err = run_cli(capsys, "segment", path, "-m", "canny", "-o", out, "--preview", png, "--quiet")
    assert code == 0, err
    assert err == ""  # --quiet: no progress
    src, res = nib.load(path), nib.load(str(out))
    assert res.shape == src.shape
    np.testing.assert_allclose(res.affine, src.affine, atol=1e-5)
    assert res.header["qform_code"] == src.header["qform_code"]
    assert res.header["sform_code"] == src.header["sform_code"]
    mask = np.asanyarray(res.dataobj).T.astype(bool)

    from medseg_fast.edges import canny

    expect = canny(image, sigma=1.0, low_threshold=0.8, high_threshold=0.9, use_quantiles=True, spacing=spacing)
    assert np.array_equal(mask, expect)
    # known truth: edges lie on the structure boundaries (within one voxel of a label change)
    from scipy import ndimage as ndi

    boundary = np.zeros(truth.shape, bool)
    for ax in range(3):
        d = np.diff(truth.astype(np.int16), axis=ax) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        boundary[tuple(lo)] |= d
        boundary[tuple(hi)] |= d
    near = ndi.binary_dilation(boundary, iterations=1)
    assert mask.sum() > 500
    assert (mask & near).sum() / mask.sum() > 0.97

    pixels = read_png(png)
    assert_pillow_agrees(png, pixels)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400  # 3 axial panels + coronal + sagittal in 2 rows


def test_segment_sobel_is_a_float_map_in_units_per_mm(capsys, tmp_path):
    # a ramp of 3 units per mm along x (plus 0.5 / mm along z) has a physical gradient of sqrt(9 + 0.25)
    shape, spacing = (12, 16, 20), (2.0, 0.7, 0.5)
    z, _, x = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    ramp = (3.0 * x + 0.5 * z).astype(np.float32)
    src = tmp_path / "ramp.nii"
    nib.save(nib.Nifti1Image(ramp.T.copy(), np.diag([*spacing[::-1], 1.0])), str(src))
    out, png = tmp_path / "grad.nii.gz", tmp_path / "grad.png"
    code, stdout, err = run_cli(capsys, "segment", src, "-m", "sobel", "-o", out, "--preview", png)
    assert code == 0, err
    assert "float32 map" in stdout
    res = nib.load(str(out))
    assert res.get_data_dtype() == np.float32
    grad = np.asanyarray(res.dataobj).T
    interior = grad[1:-1, 1:-1, 1:-1]
    np.testing.assert_allclose(interior, np.sqrt(9.25), rtol=1e-5)
    pixels = read_png(png)
    assert_pillow_agrees(png, pixels)


def test_real_tilted_ct_warnings_are_one_line_each(capsys, shared_data, tmp_path):
    folder = shared_data / "dcm_qa_ct_ge"
    if not folder.is_dir():
        pytest.skip("dcm_qa_ct_ge not in the shared data")
    code, out, err = run_cli(capsys, "info", folder, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["shape"] == [28, 512, 512] and info["modality"] == "CT"
    assert len(info["warnings"]) == 2 and any("tilt" in w for w in info["warnings"])
    assert "warning" not in err  # listed once, in the output, not also on stderr
    out_path = tmp_path / "grad.nii.gz"
    code, out, err = run_cli(capsys, "segment", folder, "-m", "sobel", "-o", out_path)
    assert code == 0, err
    warn_lines = [ln for ln in err.splitlines() if ln.startswith("medseg-fast: warning: ")]
    assert any("tilt" in ln for ln in warn_lines) and any("sheared" in ln for ln in warn_lines)
    assert "cli.py" not in err and "Traceback" not in err
    saved = nib.load(str(out_path))
    assert saved.header["qform_code"] == 0 and saved.header["sform_code"] > 0  # the shear lives in the sform


def test_segment_threads_agree_and_backend_is_passed_on(capsys, monkeypatch, ct_path, tmp_path):
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"cpu{threads}.nii.gz"
        code, _, err = run_cli(capsys, "segment", ct_path, "-m", "canny", "-o", out, "--backend", "cpu",
                               "--threads", threads, "-q")
        assert code == 0, err
        results.append(np.asanyarray(nib.load(str(out)).dataobj))
    assert np.array_equal(results[0], results[1]) and results[0].any()
    # --backend reaches the method as a keyword and, through use_backend, everything it calls
    from medseg_fast import _backend

    seen = []

    def run(image, spacing, *, backend="auto"):
        seen.append((backend, _backend.resolve("auto", image)))
        return image > 0

    table = {"probe": {"run": run, "help": "", "params": {}}}
    monkeypatch.setitem(sys.modules, "medseg_fast.semantic", _fake_module("medseg_fast.semantic", table))
    for backend in _backend.available_backends():
        if backend == "cuda":
            continue
        code, _, err = run_cli(capsys, "segment", ct_path, "-m", "probe", "--backend", backend,
                               "-o", tmp_path / "p.nii.gz", "-q")
        assert code == 0, err
        assert seen[-1] == (backend, backend)
    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "probe", "--backend", "nosuch", "-o", tmp_path / "p.nii.gz")
    assert code == 2 and "invalid choice" in err


def test_list_methods(capsys):
    for argv in (["segment", "--method", "list"], ["segment", "--list-methods"]):
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0
        assert "canny" in out and "sobel" in out
        assert "sigma (float, default 1.0)" in out and "use_quantiles (bool, default True)" in out


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("argv, needles", [
    (["segment", "{ct}", "-m", "nosuch", "-o", "{tmp}/o.nii.gz"], ["unknown method 'nosuch'", "canny", "sobel"]),
    (["segment", "{ct}", "-m", "canny", "-p", "sgma=2", "-o", "{tmp}/o.nii.gz"],
     ["unknown parameter 'sgma'", "sigma", "low_threshold", "use_quantiles"]),
    (["segment", "{ct}", "-m", "canny", "-p", "sigma=abc", "-o", "{tmp}/o.nii.gz"], ["sigma=abc", "float"]),
    (["segment", "{ct}", "-m", "canny", "-p", "use_quantiles=maybe", "-o", "{tmp}/o.nii.gz"], ["boolean"]),
    (["segment", "{ct}", "-m", "canny", "-p", "sigma", "-o", "{tmp}/o.nii.gz"], ["name=value"]),
    (["segment", "{tmp}/missing.dcm", "-m", "canny", "-o", "{tmp}/o.nii.gz"], ["no such file"]),
    (["segment", "{ct}", "-m", "canny", "-o", "{tmp}/o.png"], [".nii.gz"]),
    (["segment", "{ct}", "-m", "canny", "-o", "{tmp}/nofolder/o.nii.gz"], ["does not exist"]),
    (["segment", "{ct}", "-m", "canny"], ["-o"]),
    (["segment", "-m", "canny", "-o", "{tmp}/o.nii.gz"], ["PATH"]),
    (["info", "{tmp}/missing.nii.gz"], ["no such file"]),
    (["segment", "{ct}", "-m", "canny", "-o", "{tmp}/o.nii.gz", "--threads", "-3"], ["--threads"]),
    (["segment", "{ct}", "-m", "canny", "-o", "{tmp}/o.nii.gz", "--preview", "{tmp}/p.png", "--window", "40,-1"],
     ["--window"]),
    (["demo", "--out", "{tmp}/demo", "--methods", "canny,nosuch"], ["unknown method(s) nosuch", "sobel"]),
    (["frobnicate"], ["invalid choice"]),
    ([], []),
])
def test_usage_errors_exit_2_without_traceback(capsys, tmp_path, ct_path, argv, needles):
    argv = [a.format(ct=ct_path, tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_method_failure_and_corrupt_file_exit_1(capsys, tmp_path, ct_path):
    junk = tmp_path / "junk.dcm"
    # fixed bytes: random ones look like an explicit-VR element about 1% of the
    # time, and pydicom's warning about that then adds a line to stderr
    junk.write_bytes(b"\x00" * 128 + b"DICM" + np.random.default_rng(0).bytes(300))
    code, _, err = run_cli(capsys, "info", junk)
    assert code == 1 and "junk.dcm" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # the method itself rejects the parameter (sigma <= 0): reported, exit 1
    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "canny", "-p", "sigma=-1", "-o", tmp_path / "o.nii.gz",
                           "-q")
    assert code == 1 and "canny failed" in err and "sigma" in err and "Traceback" not in err
    assert not (tmp_path / "o.nii.gz").exists()


def test_debug_shows_the_exception(tmp_path, ct_path):
    from medseg_fast._errors import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        main(["segment", ct_path, "-m", "canny", "-p", "sigma=-1", "-o", str(tmp_path / "o.nii.gz"), "--debug", "-q"])


# --------------------------------------------------------------------------- discovery and parameters

def _fake_module(name, table):
    mod = types.ModuleType(name)
    mod.CLI_METHODS = table
    return mod


def test_discovery_merges_modules_and_reports_broken_ones(capsys, monkeypatch, ct_path, tmp_path):
    calls = []

    def run_threshold(image, spacing, *, level=0.0, invert=False, num_threads=None):
        calls.append((image.shape, tuple(spacing), level, invert, num_threads))
        out = image > level
        return ~out if invert else out

    def run_labels(image, spacing, *, sizes=(1, 2), mode="a"):
        calls.append((sizes, mode))
        return np.zeros(image.shape, np.int32)

    table = {
        "above": {"run": run_threshold, "help": "voxels above a level",
                  "params": {"level": (float, 0.0, "HU"), "invert": (bool, False, "flip")}},
        "canny": {"run": lambda image, spacing: np.zeros(image.shape, bool), "help": "module's canny", "params": {}},
        "labels": {"run": run_labels, "help": "tuple/choice params",
                   "params": {"sizes": (tuple, (1, 2), "sizes"), "mode": (("a", "b"), "a", "mode")}},
        "bad entry": {"run": None},
    }
    monkeypatch.setitem(sys.modules, "medseg_fast.threshold", _fake_module("medseg_fast.threshold", table))
    monkeypatch.setitem(sys.modules, "medseg_fast.region", None)  # "does not exist": skipped silently
    real_import = cli.importlib.import_module

    def fake_import(name, *a, **k):
        if name == "medseg_fast.cluster":
            raise ImportError("libfoo.so: cannot open shared object file")
        return real_import(name, *a, **k)

    monkeypatch.setattr(cli.importlib, "import_module", fake_import)
    methods, problems = cli.discover_methods()
    assert {"above", "canny", "labels", "sobel"} <= set(methods)
    assert methods["canny"]["module"] == "medseg_fast.threshold"  # module entries win
    assert methods["sobel"]["module"] == "medseg_fast.cli"
    assert "medseg_fast.cluster" in problems and "libfoo" in problems["medseg_fast.cluster"]
    assert "medseg_fast.threshold:bad entry" in problems
    assert not any(k.startswith("medseg_fast.region") for k in problems)

    out = tmp_path / "above.nii.gz"
    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "above", "-p", "level=100", "-p", "invert=yes",
                           "--threads", "1", "-o", out, "-q")
    assert code == 0, err
    # a single-slice scan reaches the method as 2D with in-plane spacing; --threads is passed on
    shape, spacing, level, invert, nt = calls[-1]
    assert shape == (128, 128) and len(spacing) == 2 and (level, invert, nt) == (100.0, True, 1)
    from medseg_fast.io import load

    ct = load(ct_path)
    assert np.array_equal(load(str(out)).array.astype(bool), ~(ct.array > 100))

    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "labels", "-p", "sizes=3,4.5", "-p", "mode=b",
                           "-o", tmp_path / "l.nii.gz", "-q")
    assert code == 0, err
    assert calls[-1] == ((3, 4.5), "b")
    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "labels", "-p", "mode=c", "-o", tmp_path / "l.nii.gz")
    assert code == 2 and "one of a, b" in err

    code, out_text, _ = run_cli(capsys, "segment", "--method", "list")
    assert code == 0 and "above" in out_text and "libfoo" in out_text


def test_method_returning_the_wrong_shape_is_reported(capsys, monkeypatch, ct_path, tmp_path):
    table = {"broken": {"run": lambda image, spacing: np.zeros((3, 3), bool), "help": "", "params": {}}}
    monkeypatch.setitem(sys.modules, "medseg_fast.instance", _fake_module("medseg_fast.instance", table))
    code, _, err = run_cli(capsys, "segment", ct_path, "-m", "broken", "-o", tmp_path / "b.nii.gz", "-q")
    assert code == 1 and "shape (3, 3)" in err and "Traceback" not in err


def test_summary_of_results():
    assert cli._summary(np.zeros((2, 3, 4), bool)) == "mask: 0 voxels (0.00 %)"
    lab = np.zeros((300, 10, 10), np.uint16)
    lab[5, 1, 1], lab[250, 2, 2], lab[100, 3, 3] = 7, 300, 7
    assert cli._summary(lab) == "labels: 2 (values 7..300)"
    assert "range 0..2.5" in cli._summary(np.array([[[0.0, 2.5, np.nan]]], np.float32))


def test_parse_params_types():
    spec = {"n": (int, 3, ""), "x": (float, None, ""), "flag": (bool, False, ""), "s": (str, "a", "")}
    got = cli.parse_params("m", spec, ["n=7", "x=none", "flag=ON", "s=hello=world"])
    assert got == {"n": 7, "x": None, "flag": True, "s": "hello=world"}
    with pytest.raises(cli.CLIError) as exc:
        cli.parse_params("m", spec, ["n=2.5"])
    assert exc.value.code == 2 and "int" in str(exc.value)
    with pytest.raises(cli.CLIError):
        cli.parse_params("m", {"n": (int, 3, "")}, ["n=none"])  # None only where the default is None


# --------------------------------------------------------------------------- demo and bench

def test_demo_writes_masks_and_overview(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run_cli(capsys, "demo", "--out", out_dir, "--quick")
    assert code == 0, err
    methods, _ = cli.discover_methods()
    for m in methods:  # one report line per sample and method, with its time or its failure
        lines = [ln for ln in out.splitlines() if ln.strip().split(" ")[0] == m]
        assert len(lines) == 2 and all(" s " in ln or "FAILED" in ln for ln in lines), out
    for sample in ("ct_small", "phantom"):
        for m in ("canny", "sobel"):
            f = out_dir / f"{sample}_{m}.nii.gz"
            assert f.exists()
    assert "done:" in out and "in total" in out
    phantom = nib.load(str(out_dir / "phantom.nii.gz"))
    edges = nib.load(str(out_dir / "phantom_canny.nii.gz"))
    assert edges.shape == phantom.shape == (64, 64, 48)
    np.testing.assert_allclose(edges.affine, phantom.affine)
    assert "".join(nib.aff2axcodes(phantom.affine)) == "LPS"
    pixels = read_png(out_dir / "overview.png")
    assert_pillow_agrees(out_dir / "overview.png", pixels)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300


def test_demo_reports_a_failing_method(capsys, monkeypatch, tmp_path):
    def boom(image, spacing):
        raise RuntimeError("no seeds given")

    table = {"needs-seeds": {"run": boom, "help": "", "params": {}}}
    monkeypatch.setitem(sys.modules, "medseg_fast.region", _fake_module("medseg_fast.region", table))
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path, "--quick", "--methods", "needs-seeds,sobel")
    assert code == 0
    assert out.count("needs-seeds") >= 2 and "FAILED" in out and "no seeds given" in out
    assert (tmp_path / "phantom_sobel.nii.gz").exists() and not (tmp_path / "phantom_needs-seeds.nii.gz").exists()


def test_bench_delegates_or_says_unavailable(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "medseg_fast._bench", None)
    code, _, err = run_cli(capsys, "bench")
    assert code == 1 and "not available" in err
    seen = {}
    fake = types.ModuleType("medseg_fast._bench")

    def run(size=None, repeat=None):
        seen.update(size=size, repeat=repeat)
        print("table")
        return 0

    fake.run = run
    monkeypatch.setitem(sys.modules, "medseg_fast._bench", fake)
    code, out, _ = run_cli(capsys, "bench", "--size", "64", "--repeat", "3")
    assert code == 0 and seen == {"size": 64, "repeat": 3} and "table" in out


# --------------------------------------------------------------------------- preview pieces

def test_png_roundtrip_rgb_and_grey(tmp_path):
    rng = np.random.default_rng(0)
    for shape in [(17, 31, 3), (5, 9)]:
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        path = _png.write_png(tmp_path / "a.png", img)
        back = read_png(path)
        assert np.array_equal(back, img)
        assert_pillow_agrees(path, img)
    with pytest.raises(TypeError):
        _png.encode_png(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        _png.encode_png(np.zeros((0, 2, 3), np.uint8))


def test_contour_equals_skimage_inner_boundaries():
    from skimage.segmentation import find_boundaries

    rng = np.random.default_rng(1)
    lab = np.zeros((40, 50), np.int32)
    for k in range(1, 6):
        y, x = rng.integers(5, 35), rng.integers(5, 45)
        lab[y - 4:y + 5, x - 3:x + 7] = k
    ours = _png.contour(lab)
    ref = find_boundaries(lab, connectivity=1, mode="inner")
    assert np.array_equal(ours[1:-1, 1:-1], ref[1:-1, 1:-1])


def test_overlays_and_tiling():
    rgb = np.full((6, 8, 3), 100, np.uint8)
    lab = np.zeros((6, 8), np.uint8)
    lab[1:5, 1:5] = 1
    lab[2:4, 6:8] = 2
    out = _png.overlay_labels(rgb, lab, alpha=0.5)
    assert out[0, 0].tolist() == [100, 100, 100]  # background untouched
    assert out[1, 1].tolist() == _png.COLOURS[0].tolist()  # contour opaque
    expect = np.rint(0.5 * 100 + 0.5 * _png.COLOURS[0].astype(float)).astype(np.uint8)
    assert out[2, 2].tolist() == expect.tolist()  # interior blended
    heat = _png.overlay_heat(rgb, np.linspace(0, 2, 48).reshape(6, 8), vmax=1.0)
    assert heat[0, 0].tolist() == [100, 100, 100] and heat[-1, -1].tolist() != [100, 100, 100]
    with pytest.raises(ValueError):
        _png.overlay_labels(rgb, lab[:5])
    grid = _png.tile([np.zeros((10, 20, 3), np.uint8), np.zeros((5, 5, 3), np.uint8)] * 2, ["A", "B", "C", "D"],
                     ncols=2, gap=2)
    th = _png.text_height() + 4
    assert grid.shape == (2 * (10 + th) + 3 * 2, 20 + 5 + 3 * 2, 3)
    assert (grid[2:2 + th] != 20).any()  # a title was drawn


def test_display_orientation_is_radiological():
    vol = np.zeros((4, 6, 8), np.int16)
    vol[:, 0, 0] = 1  # first row, first column of every axial slice
    spl = phantom_affine(vol.shape, (2.0, 1.0, 1.0))  # rows toward P, columns toward L: shown as stored
    sl, axes = cli._display_plane(vol, 0, 2, spl)
    assert axes == [1, 2] and sl[0, 0] == 1
    ras = np.diag([2.0, 1.0, 1.0, 1.0])[:, [2, 1, 0, 3]]  # x index -> R, y index -> A, z index -> S
    sl, _ = cli._display_plane(vol, 0, 2, ras)
    assert sl[-1, -1] == 1  # anterior is up, patient right is on the left of the screen
    # coronal: superior at the top
    sl, axes = cli._display_plane(vol, 1, 0, spl)
    assert axes == [0, 2] and sl.shape == (4, 8) and sl[-1, 0] == 1


# --------------------------------------------------------------------------- phantom

def test_phantom_truth_and_physical_size():
    img, truth, sp = ct_phantom((48, 64, 64), (2.5, 0.8, 0.8), noise=0)
    for label, hu in PHANTOM_HU.items():
        assert (img[truth == label] == hu).all() and (truth == label).any()
    a, _, _ = ct_phantom((48, 64, 64), seed=3)
    b, _, _ = ct_phantom((48, 64, 64), seed=3)
    assert np.array_equal(a, b) and a.dtype == np.int16
    # the anatomy is drawn in mm, so a coarser grid of the same field of view holds the same volumes
    _, coarse, sp2 = ct_phantom((24, 32, 32), (5.0, 1.6, 1.6), noise=0)
    for label in (1, 2, 3):
        fine_mm3 = (truth == label).sum() * np.prod(sp)
        coarse_mm3 = (coarse == label).sum() * np.prod(sp2)
        assert coarse_mm3 == pytest.approx(fine_mm3, rel=0.1)
    with pytest.raises(ValueError):
        ct_phantom((0, 4, 4))


# --------------------------------------------------------------------------- bad values exit 2

def test_bad_bench_values_exit_2(capsys, monkeypatch):
    from medseg_fast._errors import InvalidParameterError

    code, _, err = run_cli(capsys, "bench", "--repeat", "0")
    assert code == 2 and "--repeat" in err and "Traceback" not in err
    fake = types.ModuleType("medseg_fast._bench")

    def run(size=None, repeat=None):
        raise InvalidParameterError(f"size must be one of tiny, small, full, got {size!r}")

    fake.run = run
    monkeypatch.setitem(sys.modules, "medseg_fast._bench", fake)
    code, _, err = run_cli(capsys, "bench", "--size", "bogus")
    assert code == 2 and "bogus" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_real_bench_rejects_a_bogus_size_with_exit_2(capsys):
    pytest.importorskip("medseg_fast._bench")
    code, _, err = run_cli(capsys, "bench", "--size", "bogus")
    assert code == 2 and "bogus" in err and "Traceback" not in err


def test_options_that_do_not_fit_the_input_exit_2(capsys):
    path = nibabel_file("tests", "data", "anatomical.nii")
    code, _, err = run_cli(capsys, "info", path, "--series-uid", "1.2.3")
    assert code == 2 and "--series-uid" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "info", path, "--volume", "5")
    assert code == 2 and "--volume" in err
