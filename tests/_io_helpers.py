"""Shared helpers for the medseg_fast.io tests: data locations and a DICOM series builder."""

from __future__ import annotations

import copy
import importlib.util
import os
import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

REPO_ROOT = Path(__file__).resolve().parents[1]
# <repo root>/../shared/data, or $MEDSEG_FAST_SHARED_DATA (as in conftest.py)
SHARED_DATA = Path(os.environ.get("MEDSEG_FAST_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"
NIBABEL_DATA = Path(importlib.util.find_spec("nibabel").origin).parent / "tests" / "data"
# medseg_fast affines map (k, j, i) array indices; NIfTI's map (i, j, k): the
# same matrix with its first three columns reversed.
REVERSE = [2, 1, 0, 3]

NICOM_DATA = Path(importlib.util.find_spec("nibabel").origin).parent / "nicom" / "tests" / "data"


def pydicom_file(name: str) -> str:
    """A file shipped in pydicom's wheel (never downloaded); skip when absent."""
    p = PYDICOM_DATA / name
    if not p.exists():
        pytest.skip(f"pydicom test file {name} is not installed")
    return str(p)


def nibabel_file(name: str) -> str:
    p = NIBABEL_DATA / name
    if not p.exists():
        pytest.skip(f"nibabel test file {name} is not installed")
    return str(p)


def nicom_file(name: str) -> str:
    p = NICOM_DATA / name
    if not p.exists():
        pytest.skip(f"nibabel nicom test file {name} is not installed")
    return str(p)


def shared(*parts: str) -> Path:
    """A path under <repo root>/../shared/data; skip the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data {p} is not available")
    return p


def decoder_available(transfer_syntax) -> bool:
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


def need_decoder(transfer_syntax) -> None:
    if not decoder_available(transfer_syntax):
        pytest.skip(f"no decoder installed for {pydicom.uid.UID(transfer_syntax).name}")


def normal_of(iop) -> np.ndarray:
    return np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))


def write_series(
    folder,
    offsets_mm,
    *,
    iop=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    origin=(-158.135803, -179.035797, -75.699997),
    series_uid=None,
    study_uid=None,
    description="test series",
    stack_direction=None,
    seed=0,
    prefix="",
    marker_base=1000,
):
    """Write one CT series built from pydicom's CT_small.dcm.

    Slice ``k`` sits at ``origin + offsets_mm[k] * direction`` (direction = the IOP
    normal unless *stack_direction* is given) and has stored value
    ``marker_base + k`` at pixel (0, 0), so the order can be checked after loading.
    File names are shuffled, InstanceNumber is scrambled, SliceLocation is set to
    a misleading value and SliceThickness (7 mm) differs from every spacing, so a
    loader that uses any of them fails the tests.

    Returns ``(series_uid, paths)`` with ``paths[k]`` the file of slice ``k``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    base = src.pixel_array.copy()
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or src.StudyInstanceUID
    direction = np.asarray(stack_direction if stack_direction is not None else normal_of(iop), float)
    rng = random.Random(seed)
    n = len(offsets_mm)
    names = [f"{prefix}{i:04d}_{rng.randrange(10**6):06d}.dcm" for i in range(n)]
    rng.shuffle(names)
    instances = list(range(1, n + 1))
    rng.shuffle(instances)
    paths = []
    for k, off in enumerate(offsets_mm):
        ds = copy.deepcopy(src)
        pos = np.asarray(origin, float) + float(off) * direction
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.SliceLocation = f"{-3.0 * k:.3f}"
        ds.SliceThickness = "7"
        ds.InstanceNumber = instances[k]
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesDescription = description
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        arr = base.copy()
        arr[0, 0] = marker_base + k
        ds.PixelData = arr.tobytes()
        p = folder / names[k]
        ds.save_as(p, enforce_file_format=True)
        paths.append(str(p))
    return series_uid, paths
