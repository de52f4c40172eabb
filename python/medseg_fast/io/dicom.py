"""DICOM series assembly and pixel decoding (pydicom based).

Axis convention
---------------
A DICOM volume is returned in **(z, y, x)** order: the slices (single-frame files,
or the frames of a multi-frame file) are stacked along axis 0 in **increasing
position along the slice normal** ``n = row_cosines x column_cosines`` of
ImageOrientationPatient, and each slice is pydicom's ``(rows, columns)`` array. A
single-frame file gives shape ``(1, rows, columns)``. ``Image.spacing`` is
``(dz, dy, dx)`` in mm: ``dz`` is the median gap between neighbouring slice
positions projected on the normal -- or, when slices are missing, the grid step
that every gap is a whole multiple of -- (never SliceThickness, except for a lone slice,
where SliceThickness or 1.0 stands in and ``meta['slice_spacing_source']`` says
which), ``dy, dx`` = PixelSpacing. ``Image.affine`` maps ``(z, y, x, 1)`` to RAS+
mm: DICOM's LPS coordinates with the first two world rows negated. Its first
column is the real step between slices, so a gantry-tilted stack gets a
**sheared** affine (never a silently orthogonal one).

What the reader does (HAZARDS D1-D11, P1-P6)
--------------------------------------------
* headers are read with ``dcmread(stop_before_pixels=True)`` (no ``force=True``);
  non-DICOM files, DICOMDIRs, objects without pixel data and LOCALIZER images are
  skipped with a reason per file; a file that has image attributes but no pixel
  data, or fewer pixel bytes than it declares, is recorded as corrupt and raises
  :class:`~medseg_fast.CorruptFileError` if its series is loaded -- or, when it was
  cut before its SeriesInstanceUID, if any series it does not contradict
  (study, modality, description, series date/time, ...) is loaded;
* files are grouped by (StudyInstanceUID, SeriesInstanceUID) and split into
  sub-series by orientation, Rows x Columns and the first two ImageType values
  (the frames of one multi-frame file too);
  when positions repeat, by EchoNumbers / TemporalPosition / AcquisitionNumber /
  StackID where that separates them;
* slices are sorted by ``dot(IPP, n)`` (InstanceNumber only breaks exact ties);
  repeated positions raise :class:`~medseg_fast.DuplicatePositionError`; uneven
  gaps (beyond 1 % + 0.01 mm) warn, or raise
  :class:`~medseg_fast.UnevenSpacingError` with ``strict=True``; when every gap is
  a whole multiple of the smallest one, that step is ``dz`` and
  ``meta['missing_slices_estimate']`` counts the holes;
* RescaleSlope/Intercept are applied per slice/frame: int16 (int32 when the range
  needs it) for integral slope and intercept, float32 otherwise, never float64;
* MONOCHROME1, colour and palette images raise
  :class:`~medseg_fast.InvalidImageError`; compressed data without an installed
  decoder raises :class:`~medseg_fast.UnsupportedTransferSyntaxError` naming the
  transfer syntax and ``pip install "medseg-fast[dicom-codecs]"``.
"""

from __future__ import annotations

import io
import math
import os
import struct
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from .._errors import (
    AmbiguousSeriesError,
    CorruptFileError,
    DuplicatePositionError,
    InvalidImageError,
    InvalidParameterError,
    MedsegError,
    MissingGeometryError,
    NotAnImageError,
    UnevenSpacingError,
    UnsupportedTransferSyntaxError,
)
from ._image import Image
from ._util import UnsupportedMosaicError, WarningLog, apply_rescale, check_exists, rescaled_dtype

__all__ = ["load_dicom", "list_series", "show_decoders", "read_dicom_bytes", "SeriesList"]

CODECS_HINT = 'pip install "medseg-fast[dicom-codecs]"'

#: Two slices closer than this along the normal are "at the same position" (mm).
DUPLICATE_TOL_MM = 0.01
#: A gap is uneven when it differs from the median gap by more than this
#: fraction of the median plus the absolute tolerance (HAZARDS D3).
GAP_REL_TOL = 0.01
GAP_ABS_TOL_MM = 0.01
#: Orientation vectors equal within this (max abs difference) share a sub-series.
IOP_TOL = 1e-3

_PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_DICOMDIR_SOP = "1.2.840.10008.1.3.10"
_GREY = ("MONOCHROME2",)
_PIXEL_SOP_NAMES = {"Segmentation Storage", "RT Dose Storage", "Parametric Map Storage"}


# --------------------------------------------------------------------------- records


@dataclass
class _Frame:
    """One 2D slice: a single-frame file or one frame of a multi-frame file."""

    file: "_File"
    index: int  # frame index inside the file
    ipp: tuple | None
    iop: tuple | None
    pixel_spacing: tuple | None  # (row spacing, column spacing)
    thickness: float | None
    slope: float
    intercept: float
    split: dict = field(default_factory=dict)  # echo / temporal / acquisition / stack values

    @property
    def label(self) -> str:
        return self.file.path if self.file.n_frames == 1 else f"{self.file.path} [frame {self.index}]"


@dataclass
class _File:
    path: str
    source: Any  # path or bytes, for re-reading with pixels
    transfer_syntax: str
    study_uid: str
    series_uid: str
    modality: str | None
    description: str
    series_number: Any
    rows: int
    cols: int
    n_frames: int
    image_type: tuple
    photometric: str
    samples: int
    instance: int | None
    sop_class: str
    corrupt: str | None = None
    frames: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    #: series-level attributes (keyword -> str) used to tell whether a corrupt file
    #: without a SeriesInstanceUID can belong to a series (see :func:`_compatible`)
    hints: dict = field(default_factory=dict)


class SeriesList(list):
    """The list returned by :func:`list_series`; ``.skipped`` maps file -> reason."""

    skipped: dict


# --------------------------------------------------------------------------- small parsers


def _floats(value, n: int):
    """Return *value* as a tuple of *n* finite floats, or None when absent/malformed."""
    if value is None:
        return None
    try:
        seq = list(value) if not isinstance(value, (str, bytes, float, int)) else [value]
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError):
        return None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        return None
    return out


def _float(value, default=None):
    t = _floats(value, 1)
    return t[0] if t else default


def _int(value, default=None):
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _str(value) -> str:
    if value is None:
        return ""
    return str(value).strip()


def _get(ds, keyword, default=None):
    try:
        return ds.get(keyword, default)
    except Exception:  # a malformed value that pydicom cannot convert
        return default


def _item(group, seq_keyword):
    """First item of *seq_keyword* inside a functional-group item, or None."""
    if group is None:
        return None
    seq = _get(group, seq_keyword)
    if seq is None:
        return None
    try:
        return seq[0] if len(seq) else None
    except TypeError:
        return None


def _frame_attr(per_frame, shared, seq_keyword, keyword):
    """Per-frame functional group value, falling back to the shared group."""
    for group in (per_frame, shared):
        it = _item(group, seq_keyword)
        if it is not None and keyword in it:
            return _get(it, keyword)
    return None


def _valid_iop(iop):
    """*iop* when its two direction vectors are non-zero and not parallel, else None."""
    if iop is None:
        return None
    r, c = np.asarray(iop[:3]), np.asarray(iop[3:])
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if nr < 1e-3 or nc < 1e-3 or np.linalg.norm(np.cross(r / nr, c / nc)) < 1e-3:
        return None
    return iop


def _normal(iop) -> np.ndarray:
    r = np.asarray(iop[:3], dtype=np.float64)
    c = np.asarray(iop[3:], dtype=np.float64)
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise MissingGeometryError("ImageOrientationPatient has parallel row and column vectors")
    return n / norm


# --------------------------------------------------------------------------- header scan


def _probe_pixels(fp, ds, size: int, ts: str):
    """Look at the element where ``stop_before_pixels`` stopped.

    Returns ``(has_pixels, problem, length)``: whether a pixel data element starts
    there, a message when its declared length runs past the end of the file, and the
    declared length (None when unknown or undefined, i.e. encapsulated).
    """
    if ts == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return None, None, None  # the file position does not map to the inflated stream
    pos = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return False, None, None
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is None:
        little = True
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    if (group, elem) not in _PIXEL_TAGS:
        return False, None, None
    if implicit is None:
        implicit = head[4:6] not in (b"OB", b"OW", b"OF", b"OD", b"UN")
    if implicit:
        length = struct.unpack(e + "I", head[4:8])[0]
        start = pos + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return True, "the file ends inside the pixel data element header", None
        length = struct.unpack(e + "I", head[8:12])[0]
        start = pos + 12
    else:
        length = struct.unpack(e + "H", head[6:8])[0]
        start = pos + 8
    if length == 0xFFFFFFFF:
        return True, None, None
    if start + length > size:
        return True, (
            f"pixel data declares {length} bytes but only {max(size - start, 0)} remain: "
            "truncated file"
        ), length
    return True, None, length


#: Series-level attributes compared between a corrupt file that lacks its
#: SeriesInstanceUID and a candidate series (HAZARDS D11).
_HINT_KEYWORDS = (
    "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "SeriesDate",
    "SeriesTime", "FrameOfReferenceUID", "Rows", "Columns",
)


def _sop_kind(sop_class: str) -> str:
    """The SOP class name (or the UID itself, or 'unknown SOP class')."""
    if not sop_class:
        return "unknown SOP class"
    try:
        return UID(sop_class).name
    except Exception:  # noqa: BLE001
        return sop_class


def _is_image_sop(kind: str) -> bool:
    return "Image Storage" in kind or kind in _PIXEL_SOP_NAMES


def _hints(ds, truncated: bool) -> dict:
    """Series-level attributes of *ds* as strings (empty values left out).

    For a truncated dataset the last top-level element read may hold a cut value,
    so it and everything after it are left out.
    """
    from pydicom.datadict import tag_for_keyword

    last = None
    if truncated:
        try:
            last = max(ds.keys())
        except ValueError:
            return {}
    out = {}
    for kw in _HINT_KEYWORDS:
        if last is not None and tag_for_keyword(kw) >= last:
            continue
        v = _str(_get(ds, kw))
        if v:
            out[kw] = v
    return out


def _compatible(f: "_File", member: "_File") -> bool:
    """False when a recorded attribute of *f* contradicts the series of *member*."""
    if f.sop_class and member.sop_class and f.sop_class != member.sop_class:
        return False
    if "SeriesInstanceUID" in f.hints and f.hints["SeriesInstanceUID"] != member.series_uid:
        return False
    return all(member.hints.get(k, v) == v for k, v in f.hints.items())


def _unassigned_corrupt(source, name: str, ts: str, sop_class: str, reason: str, hints: dict) -> "_File":
    """A corrupt image file whose series is unknown: kept so that loading refuses it."""
    return _File(
        path=name, source=source, transfer_syntax=ts, study_uid=hints.get("StudyInstanceUID", ""),
        series_uid="", modality=hints.get("Modality") or None, description="", series_number=None,
        rows=0, cols=0, n_frames=0, image_type=(), photometric="", samples=1, instance=None,
        sop_class=sop_class, corrupt=reason, hints=hints,
    )


def _meta_truncated(fp, size: int) -> bool:
    """True when the file ends inside its file meta group (by its group length).

    After the 128-byte preamble and 'DICM' comes (0002,0000) UL, 12 bytes, whose
    value is the length of the rest of the group.
    """
    try:
        fp.seek(128)
        head = fp.read(16)
    except Exception:  # noqa: BLE001
        return False
    if head[:4] != b"DICM":
        return False
    if len(head) < 16:
        return True  # not even the group length element is complete
    if head[4:10] != b"\x02\x00\x00\x00UL" or head[10:12] != b"\x04\x00":
        return False
    return size < 144 + struct.unpack("<I", head[12:16])[0]


def _media_sop_class(fp) -> str | None:
    """MediaStorageSOPClassUID from the file meta group, or None when unreadable."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    try:
        fp.seek(0)
        read_preamble(fp, False)
        return _str(_get(_read_file_meta_info(fp), "MediaStorageSOPClassUID")) or None
    except Exception:  # noqa: BLE001
        return None


def _read_header(source, name: str, *, skip_localizers: bool):
    """Scan one file. Returns ``(_File, None)`` or ``(None, reason)``.

    A file that is recognisably a damaged DICOM image (truncated before its pixel
    data, or with an unreadable header behind a 'DICM' prefix and an image SOP
    class in its file meta) is returned as a ``_File`` with ``corrupt`` set and
    no frames, so that loading its series -- or, when it lost its
    SeriesInstanceUID, any series it cannot be told apart from -- raises
    :class:`~medseg_fast.CorruptFileError` instead of silently losing a slice.
    """
    try:
        if isinstance(source, (bytes, bytearray)):
            size = len(source)
            fp = io.BytesIO(source)
        else:
            size = os.path.getsize(source)
            fp = open(source, "rb")
    except OSError as exc:
        return None, f"cannot open: {exc}"
    if size == 0:
        fp.close()
        return None, "empty file (0 bytes)"
    try:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except InvalidDicomError:
            return None, "not a DICOM file (no 'DICM' prefix after the 128-byte preamble)"
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types on junk
            reason = f"corrupt DICOM header: {type(exc).__name__}: {exc}"
            if _meta_truncated(fp, size):
                return _unassigned_corrupt(
                    source, name, "", "",
                    f"corrupt: the file ends inside its DICOM file meta header ({size} bytes): "
                    "truncated file", {},
                ), None
            media = _media_sop_class(fp)
            if media is not None and media != _DICOMDIR_SOP and _is_image_sop(_sop_kind(media)):
                return _unassigned_corrupt(
                    source, name, "", media,
                    f"corrupt: a {_sop_kind(media)} file whose header cannot be read "
                    f"({type(exc).__name__}: {exc}): the file is probably truncated or damaged", {},
                ), None
            return None, reason
        meta = getattr(ds, "file_meta", None)
        ts = _str(_get(meta, "TransferSyntaxUID")) if meta is not None else ""
        try:
            has_pixels, problem, pixel_bytes = _probe_pixels(fp, ds, size, ts)
        except Exception:  # noqa: BLE001
            has_pixels, problem, pixel_bytes = None, None, None
        meta_cut = _meta_truncated(fp, size)
    finally:
        fp.close()

    media_sop = _str(_get(meta, "MediaStorageSOPClassUID")) if meta is not None else ""
    if meta_cut or (not ts and len(ds) == 0):
        return _unassigned_corrupt(
            source, name, "", "",
            f"corrupt: the file ends inside its DICOM file meta header ({size} bytes): truncated file",
            {},
        ), None
    if media_sop == _DICOMDIR_SOP or "DirectoryRecordSequence" in ds:
        return None, "DICOMDIR (a directory index, not an image)"
    sop_class = _str(_get(ds, "SOPClassUID")) or media_sop
    rows, cols = _int(_get(ds, "Rows")), _int(_get(ds, "Columns"))
    if not rows or not cols:
        if has_pixels:
            return None, "pixel data without Rows/Columns"
        kind = _sop_kind(sop_class)
        if _is_image_sop(kind):
            reason = (
                f"corrupt: a {kind} object without Rows, Columns or pixel data: the file is "
                "probably truncated"
            )
            # Keep it (without frames) so that loading its series can refuse it; without
            # a SeriesInstanceUID, every series it does not contradict refuses it.
            hints = _hints(ds, truncated=True)
            f = _unassigned_corrupt(source, name, ts, sop_class, reason, hints)
            f.series_uid = hints.get("SeriesInstanceUID", "")
            return f, None
        return None, f"not an image: no pixel data ({kind})"
    image_type = tuple(_str(v).upper() for v in (_get(ds, "ImageType") or ()))
    if skip_localizers and "LOCALIZER" in image_type:
        return None, "localizer (ImageType " + "\\".join(image_type) + ")"
    corrupt = problem
    if has_pixels is False:
        corrupt = (
            "has image attributes (Rows, Columns) but no pixel data: the file is "
            "probably truncated"
        )
    n_frames = max(_int(_get(ds, "NumberOfFrames"), 1) or 1, 1)
    samples = _int(_get(ds, "SamplesPerPixel"), 1) or 1
    bits = _int(_get(ds, "BitsAllocated"), 16) or 16
    if pixel_bytes is not None and corrupt is None:
        need = (rows * cols * samples * n_frames * bits + 7) // 8
        if pixel_bytes < need:
            corrupt = (
                f"pixel data holds {pixel_bytes} bytes but {n_frames} frame(s) of "
                f"{rows}x{cols}x{samples} at {bits} bits need {need}"
            )
    elif n_frames > size // 8 and corrupt is None:  # every encapsulated frame takes >= 8 bytes
        corrupt = f"NumberOfFrames {n_frames} cannot fit in a {size}-byte file"
    if corrupt and n_frames > 1:
        n_frames = 1  # do not build frame records for a bogus count
    f = _File(
        path=name,
        source=source,
        transfer_syntax=ts,
        study_uid=_str(_get(ds, "StudyInstanceUID")),
        series_uid=_str(_get(ds, "SeriesInstanceUID")),
        modality=_str(_get(ds, "Modality")) or None,
        description=_str(_get(ds, "SeriesDescription")),
        series_number=_int(_get(ds, "SeriesNumber")),
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        image_type=image_type,
        photometric=_str(_get(ds, "PhotometricInterpretation")).upper() or "MONOCHROME2",
        samples=samples,
        instance=_int(_get(ds, "InstanceNumber")),
        sop_class=sop_class,
        corrupt=corrupt,
        hints=_hints(ds, truncated=False),
    )
    f.info = {
        "manufacturer": _str(_get(ds, "Manufacturer")) or None,
        "rescale_type": _str(_get(ds, "RescaleType")) or None,
        "bits_stored": _int(_get(ds, "BitsStored")),
        "bits_allocated": _int(_get(ds, "BitsAllocated")),
        "pixel_representation": _int(_get(ds, "PixelRepresentation")),
        "frame_of_reference_uid": _str(_get(ds, "FrameOfReferenceUID")) or None,
    }
    try:
        f.frames = _frames_of(ds, f)
    except Exception as exc:  # noqa: BLE001 - malformed functional groups
        return None, f"corrupt: unreadable frame geometry: {type(exc).__name__}: {exc}"
    return f, None


def _frames_of(ds, f: _File) -> list:
    """Per-frame geometry and rescale, with fallback to the shared groups and top level."""
    top_ipp = _floats(_get(ds, "ImagePositionPatient"), 3)
    top_iop = _valid_iop(_floats(_get(ds, "ImageOrientationPatient"), 6))
    top_ps = _floats(_get(ds, "PixelSpacing"), 2)
    top_th = _float(_get(ds, "SliceThickness"))
    top_slope = _float(_get(ds, "RescaleSlope"), 1.0)
    top_inter = _float(_get(ds, "RescaleIntercept"), 0.0)
    if top_slope == 0.0:
        top_slope = 1.0
    top_split = {
        "echo": _str(_get(ds, "EchoNumbers")),
        "temporal": _str(_get(ds, "TemporalPositionIdentifier")),
        "acquisition": _str(_get(ds, "AcquisitionNumber")),
    }
    pff = _get(ds, "PerFrameFunctionalGroupsSequence")
    sfg = _item(ds, "SharedFunctionalGroupsSequence")
    n = f.n_frames
    frames = []
    offsets = _get(ds, "GridFrameOffsetVector")  # RT Dose
    grid = None
    if n > 1 and offsets is not None and top_ipp is not None and top_iop is not None:
        off = [_float(v) for v in offsets]
        if len(off) == n and all(v is not None for v in off):
            nrm = _normal(top_iop)
            grid = [tuple(np.asarray(top_ipp) + o * nrm) for o in off]
    for k in range(n):
        pf = None
        if pff is not None:
            try:
                pf = pff[k]
            except (IndexError, TypeError):
                pf = None
        if pf is None and sfg is None:
            ipp = top_ipp if n == 1 else (grid[k] if grid else None)
            frames.append(_Frame(f, k, ipp, top_iop, top_ps, top_th, top_slope, top_inter, dict(top_split)))
            continue
        ipp = _floats(_frame_attr(pf, sfg, "PlanePositionSequence", "ImagePositionPatient"), 3)
        iop = _valid_iop(
            _floats(_frame_attr(pf, sfg, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        )
        ps = _floats(_frame_attr(pf, sfg, "PixelMeasuresSequence", "PixelSpacing"), 2)
        th = _float(_frame_attr(pf, sfg, "PixelMeasuresSequence", "SliceThickness"))
        slope = _float(_frame_attr(pf, sfg, "PixelValueTransformationSequence", "RescaleSlope"))
        inter = _float(_frame_attr(pf, sfg, "PixelValueTransformationSequence", "RescaleIntercept"))
        if slope is None:
            slope, inter = top_slope, top_inter
        if inter is None:
            inter = 0.0
        if slope == 0.0:
            slope = 1.0
        if ipp is None:
            ipp = grid[k] if grid else (top_ipp if n == 1 else None)
        split = dict(top_split)
        fc = _item(pf, "FrameContentSequence")
        if fc is not None:
            split["temporal"] = _str(_get(fc, "TemporalPositionIndex")) or split["temporal"]
            split["stack"] = _str(_get(fc, "StackID"))
        echo = _frame_attr(pf, None, "MREchoSequence", "EffectiveEchoTime")
        if echo is not None:
            split["echo"] = _str(echo)
        seg = _frame_attr(pf, None, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        if seg is not None:
            split["segment"] = _str(seg)
        frames.append(
            _Frame(f, k, ipp, iop or top_iop, ps or top_ps, th if th is not None else top_th,
                   slope, inter, split)
        )
    return frames


# --------------------------------------------------------------------------- grouping

_SPLITTERS = (
    ("echo", "EchoNumbers / echo time"),
    ("temporal", "temporal position"),
    ("acquisition", "AcquisitionNumber"),
    ("stack", "StackID"),
    ("segment", "segment number"),
)


def _has_duplicates(frames) -> bool:
    withpos = [fr for fr in frames if fr.ipp is not None and fr.iop is not None]
    if len(withpos) < 2:
        return False
    nrm = _normal(withpos[0].iop)
    proj = np.sort([float(np.dot(fr.ipp, nrm)) for fr in withpos])
    return bool(np.any(np.diff(proj) < DUPLICATE_TOL_MM))


def _split_by_value(frames):
    """Split a group with repeated positions by the first attribute that resolves them."""
    if not _has_duplicates(frames):
        return [(frames, None)]
    for key, label in _SPLITTERS:
        groups: dict = {}
        for fr in frames:
            groups.setdefault(fr.split.get(key, ""), []).append(fr)
        if len(groups) > 1 and not any(_has_duplicates(g) for g in groups.values()):
            return [(g, f"{label}={v}") for v, g in sorted(groups.items(), key=lambda kv: kv[0])]
    return [(frames, None)]


def _group(files) -> list:
    """Group frames into candidate series; returns a list of dicts (internal)."""
    by_series: dict = {}
    frameless = []  # corrupt image files that yielded no frames (HAZARDS D11)
    for f in files:
        if f.frames:
            by_series.setdefault((f.study_uid, f.series_uid), []).append(f)
        else:
            frameless.append(f)
    candidates = []
    for (study, series), members in by_series.items():
        # a corrupt file belongs to every series it cannot be told apart from
        orphans = [f for f in frameless if _compatible(f, members[0])]
        clusters: list = []  # [key, iop representative, frames]
        for f in members:
            for fr in f.frames:
                base = (f.rows, f.cols, f.image_type[:2])
                for cl in clusters:
                    if cl[0] != base:
                        continue
                    a, b = cl[1], fr.iop
                    if (a is None) != (b is None):
                        continue
                    if a is None or max(abs(x - y) for x, y in zip(a, b)) <= IOP_TOL:
                        cl[2].append(fr)
                        break
                else:
                    clusters.append([base, fr.iop, [fr]])
        parts = []
        for base, iop, frs in clusters:
            for sub, why in _split_by_value(frs):
                parts.append((base, iop, sub, why))
        multi = len(parts) > 1
        for k, (base, iop, frs, why) in enumerate(sorted(parts, key=lambda p: -len(p[2]))):
            reasons = []
            if multi:
                if len(clusters) > 1:
                    reasons.append(f"{base[0]}x{base[1]}, ImageType {'/'.join(base[2])}, orientation {iop}")
                if why:
                    reasons.append(why)
            candidates.append({
                "study_uid": study,
                "uid": series,
                "frames": frs,
                "split_by": "; ".join(reasons) if reasons else None,
                "_sub": k + 1 if multi else None,
                "orphans": orphans,
            })
    # unique ids
    seen: dict = {}
    for c in candidates:
        cid = c["uid"] if c["_sub"] is None else f"{c['uid']}#{c['_sub']}"
        if cid in seen:  # the same SeriesInstanceUID in two studies
            seen[cid] += 1
            cid = f"{cid}@{seen[cid]}"
        else:
            seen[cid] = 1
        c["id"] = cid
    candidates.sort(key=lambda c: (-len(c["frames"]), c["id"]))
    return candidates


def _describe(c) -> dict:
    frames = c["frames"]
    f0 = frames[0].file
    files = list(dict.fromkeys(fr.file.path for fr in frames))
    return {
        "id": c["id"],
        "uid": c["uid"],
        "study_uid": c["study_uid"],
        "description": f0.description,
        "series_number": f0.series_number,
        "modality": f0.modality,
        "n_slices": len(frames),
        "n_files": len(files),
        "rows": f0.rows,
        "cols": f0.cols,
        "image_type": "\\".join(f0.image_type),
        "orientation": frames[0].iop,
        "photometric": f0.photometric,
        "transfer_syntaxes": sorted({fr.file.transfer_syntax for fr in frames}),
        "split_by": c["split_by"],
        "corrupt_files": {
            **{f.path: f.corrupt for f in c["orphans"]},
            **{fr.file.path: fr.file.corrupt for fr in frames if fr.file.corrupt},
        },
        "files": files,
    }


def _scan_folder(folder: str, recursive: bool):
    files, skipped = [], {}
    if recursive:
        paths = []
        for root, dirs, names in os.walk(folder):
            dirs.sort()
            paths.extend(os.path.join(root, n) for n in sorted(names))
    else:
        paths = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
        paths = [p for p in paths if os.path.isfile(p)]
    for p in paths:
        f, reason = _read_header(p, p, skip_localizers=True)
        if f is None:
            skipped[p] = reason
        else:
            if not f.frames:
                skipped[p] = f.corrupt
            files.append(f)
    return files, skipped


def list_series(folder, *, recursive: bool = False) -> SeriesList:
    """Describe the DICOM image series found in *folder* (or in one DICOM file).

    Parameters
    ----------
    folder : str or os.PathLike
        Folder to scan (only its files; subfolders too with ``recursive=True``), or
        a single DICOM file: a multi-frame file whose frames differ in orientation,
        size or time point lists one entry per sub-volume.
    recursive : bool, default False
        Also scan subfolders (folders only).

    Returns
    -------
    SeriesList
        A list with one dict per candidate volume, largest first, with keys
        ``id`` (pass it as ``series_uid=`` to :func:`~medseg_fast.io.load`; equal to
        ``uid`` unless a series had to be split, then ``uid#k``), ``uid``
        (SeriesInstanceUID), ``study_uid``, ``description``, ``series_number``,
        ``modality``, ``n_slices`` (frames), ``n_files``, ``rows``, ``cols``,
        ``image_type``, ``orientation`` (ImageOrientationPatient), ``photometric``,
        ``transfer_syntaxes``, ``split_by`` (why a series was split, or None),
        ``corrupt_files`` (file -> reason) and ``files``. The list's ``skipped``
        attribute maps every file that was left out to the reason (not DICOM,
        DICOMDIR, no pixel data, localizer, ...).

    Raises
    ------
    NotAnImageError, CorruptFileError
        *folder* is a single file that is not a readable DICOM image.

    Examples
    --------
    >>> import os, shutil, tempfile, pydicom.data
    >>> from medseg_fast.io import list_series
    >>> d = tempfile.mkdtemp()
    >>> _ = shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), d)
    >>> _ = open(os.path.join(d, "notes.txt"), "w").write("hello")
    >>> series = list_series(d)
    >>> [(s["modality"], s["n_slices"], s["rows"], s["cols"]) for s in series]
    [('CT', 1, 128, 128)]
    >>> sorted(os.path.basename(p) for p in series.skipped)
    ['notes.txt']
    >>> [s["n_slices"] for s in list_series(pydicom.data.get_testdata_file("rtdose.dcm"))]
    [15]
    """
    folder = os.fspath(folder)
    check_exists(folder)
    if not os.path.isdir(folder):
        if recursive:
            raise InvalidParameterError(f"{folder}: recursive= applies to folders, not to a single file")
        return _series_list([_read_one(folder, folder)], {})
    files, skipped = _scan_folder(folder, recursive)
    return _series_list(files, skipped)


def _series_list(files, skipped) -> SeriesList:
    out = SeriesList(_describe(c) for c in _group(files))
    out.skipped = dict(skipped)
    return out


# --------------------------------------------------------------------------- decoders

_TS_LIST = (
    "ImplicitVRLittleEndian", "ExplicitVRLittleEndian", "ExplicitVRBigEndian",
    "DeflatedExplicitVRLittleEndian", "RLELossless", "JPEGBaseline8Bit",
    "JPEGExtended12Bit", "JPEGLossless", "JPEGLosslessSV1", "JPEGLSLossless",
    "JPEGLSNearLossless", "JPEG2000Lossless", "JPEG2000", "HTJ2KLossless",
    "HTJ2KLosslessRPCL", "HTJ2K",
)


def show_decoders(*, file=None) -> dict:
    """Print and return which DICOM transfer syntaxes can be decoded here.

    The pydicom decoder plugins are probed when this is called (not at import).

    Parameters
    ----------
    file : file-like, optional
        Where to print the table (default ``sys.stdout``); pass ``False`` to print
        nothing.

    Returns
    -------
    dict
        ``{transfer syntax name: {"uid", "available", "plugins", "missing"}}``,
        where ``plugins`` are the installed decoders and ``missing`` says what the
        others need.

    Examples
    --------
    >>> from medseg_fast.io import show_decoders
    >>> table = show_decoders(file=False)
    >>> table["Explicit VR Little Endian"]["available"]
    True
    """
    from pydicom.pixels import get_decoder

    table = {}
    for kw in _TS_LIST:
        uid = getattr(pydicom.uid, kw, None)
        if uid is None:
            continue
        try:
            dec = get_decoder(uid)
            entry = {
                "uid": str(uid),
                "available": bool(dec.is_available),
                "plugins": tuple(dec.available_plugins) if uid.is_compressed else ("pydicom",),
                "missing": list(dec.missing_dependencies),
            }
        except NotImplementedError:
            entry = {"uid": str(uid), "available": False, "plugins": (), "missing": ["no decoder in pydicom"]}
        table[uid.name] = entry
    if file is not False:
        out = file or sys.stdout
        width = max(len(k) for k in table)
        print(f"{'transfer syntax':<{width}}  ok   decoders", file=out)
        for name, e in table.items():
            plugins = ", ".join(e["plugins"]) or "-"
            print(f"{name:<{width}}  {'yes' if e['available'] else 'NO ':<3}  {plugins}", file=out)
        if not all(e["available"] for e in table.values()):
            print(f"Missing decoders: {CODECS_HINT}", file=out)
    return table


def _check_decoder(ts: str, name: str, log: WarningLog) -> None:
    """Raise UnsupportedTransferSyntaxError when *ts* cannot be decoded here."""
    if not ts:
        return
    uid = UID(ts)
    if not uid.is_transfer_syntax or not uid.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        dec = get_decoder(uid)
    except NotImplementedError:
        raise UnsupportedTransferSyntaxError(
            f"{name}: pixel data uses transfer syntax '{uid.name}' ({uid}), which no "
            "pydicom decoder supports (convert it, e.g. with dcmtk or gdcmconv)"
        ) from None
    if not dec.is_available:
        missing = "; ".join(dec.missing_dependencies)
        raise UnsupportedTransferSyntaxError(
            f"{name}: pixel data is compressed with '{uid.name}' ({uid}) and no decoder "
            f"for it is installed. Install the DICOM codecs with: {CODECS_HINT} "
            f"(pydicom reports: {missing})"
        )
    if tuple(dec.available_plugins) == ("pillow",) and "2000" in uid.name:
        log.warn(
            f"{name}: only Pillow can decode '{uid.name}' here, which pydicom does not "
            f"recommend; install pylibjpeg-openjpeg ({CODECS_HINT})"
        )


# --------------------------------------------------------------------------- assembly


def _check_photometric(frames) -> None:
    for fr in frames:
        f = fr.file
        if f.samples != 1 or f.photometric not in _GREY:
            if f.photometric == "MONOCHROME1":
                why = ("MONOCHROME1 (white = low values): invert it explicitly if you need "
                       "MONOCHROME2")
            else:
                why = f"{f.photometric} with {f.samples} sample(s) per pixel (colour or palette)"
            raise InvalidImageError(f"{f.path}: {why}; only MONOCHROME2 grey-level images are loaded")
        if "MOSAIC" in f.image_type:
            raise UnsupportedMosaicError(
                f"{f.path}: Siemens MOSAIC image (several slices tiled in one frame); convert "
                "the series with dcm2niix"
            )
        if f.corrupt:
            raise CorruptFileError(f"{f.path}: {f.corrupt}")


def _grid_step(gaps):
    """Slice step of a sorted stack: ``(step, missing slices, uneven mask)``.

    Even gaps (each within ``GAP_REL_TOL * median + GAP_ABS_TOL_MM`` of the
    median, HAZARDS D3) give the median gap. Otherwise the largest step ``g``
    such that every gap is a whole multiple of ``g`` (within ``GAP_REL_TOL`` of
    the gap + ``GAP_ABS_TOL_MM``) is sought among the smallest gap and its halves
    and thirds, the smallest gap first; ``g`` is then refined to
    ``span / number of grid steps``. A grid on which more than half as many
    slices would be missing as are present is not believed: the median gap is
    used, with no missing-slice estimate. ``uneven`` flags the gaps that differ
    from the step returned.
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    med = float(np.median(gaps))
    uneven = np.abs(gaps - med) > GAP_REL_TOL * med + GAP_ABS_TOL_MM
    if not uneven.any():
        return med, 0, uneven
    tol = GAP_REL_TOL * gaps + GAP_ABS_TOL_MM
    smallest = float(gaps.min())
    for k in (1, 2, 3):
        g = smallest / k
        multiples = np.round(gaps / g)
        if multiples.min() < 1 or np.any(np.abs(gaps - multiples * g) > tol):
            continue
        g = float(gaps.sum() / multiples.sum())
        if np.any(np.abs(gaps - multiples * g) > tol):
            continue
        n_missing = int(multiples.sum()) - gaps.size
        if 2 * n_missing > gaps.size + 1:  # holes for more than a third of the grid: not believed
            break
        return g, n_missing, np.abs(gaps - g) > GAP_REL_TOL * g + GAP_ABS_TOL_MM
    return med, 0, uneven


def _geometry(frames, strict: bool, log: WarningLog, name: str):
    """Sort the frames and build affine, spacing and the position metadata."""
    meta: dict[str, Any] = {}
    n = len(frames)
    if n == 1:
        fr = frames[0]
        defaults = []
        iop = fr.iop
        if iop is None:
            iop = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
            defaults.append("ImageOrientationPatient -> identity")
        ipp = fr.ipp
        if ipp is None:
            ipp = (0.0, 0.0, 0.0)
            defaults.append("ImagePositionPatient -> (0, 0, 0)")
        ps = fr.pixel_spacing
        if ps is None:
            ps = (1.0, 1.0)
            defaults.append("PixelSpacing -> 1.0 mm")
        if defaults:
            log.warn(f"{fr.label}: missing geometry, defaults used: {', '.join(defaults)}")
            meta["geometry_defaults"] = defaults
        if fr.thickness is not None and fr.thickness > 0:
            dz, meta["slice_spacing_source"] = fr.thickness, "SliceThickness"
        else:
            dz, meta["slice_spacing_source"] = 1.0, "default 1.0"
        nrm = _normal(iop)
        stack = nrm * dz
        order = [0]
        proj = [float(np.dot(ipp, nrm))]
        positions = np.asarray([ipp], dtype=np.float64)
        meta.update(slice_gaps_mm=[], uneven_spacing=False, missing_slices_estimate=0,
                    gantry_tilt_deg=0.0, sheared=False)
    else:
        missing = []
        for fr in frames:
            for attr, tag in (("ipp", "ImagePositionPatient"), ("iop", "ImageOrientationPatient"),
                              ("pixel_spacing", "PixelSpacing")):
                if getattr(fr, attr) is None:
                    missing.append(f"{fr.label}: {tag}")
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise MissingGeometryError(
                f"{name}: cannot assemble {n} slices into a volume, geometry tags are absent "
                f"or malformed: {'; '.join(missing[:5])}{more}"
            )
        iop = frames[0].iop
        nrm = _normal(iop)
        proj_all = [float(np.dot(fr.ipp, nrm)) for fr in frames]
        order = sorted(
            range(n),
            key=lambda i: (proj_all[i], frames[i].file.instance if frames[i].file.instance is not None else 0,
                           frames[i].file.path, frames[i].index),
        )
        proj = [proj_all[i] for i in order]
        positions = np.asarray([frames[i].ipp for i in order], dtype=np.float64)
        gaps = np.diff(proj)
        dup = np.nonzero(gaps < DUPLICATE_TOL_MM)[0]
        if dup.size:
            i = int(dup[0])
            a, b = frames[order[i]], frames[order[i + 1]]
            raise DuplicatePositionError(
                f"{name}: {dup.size} pair(s) of neighbouring slices share a "
                f"position along the slice normal, e.g. {a.label} and {b.label} at "
                f"{proj[i]:.3f} mm. These are probably several echoes, time points or "
                "repeated acquisitions in one series; see list_series() and load one "
                "sub-series with series_uid=."
            )
        gap, n_missing, uneven = _grid_step(gaps)
        meta["slice_gaps_mm"] = [float(g) for g in gaps]
        meta["uneven_spacing"] = bool(uneven.any())
        meta["missing_slices_estimate"] = n_missing
        if uneven.any():
            msg = (
                f"{name}: uneven slice spacing: gaps along the normal range from "
                f"{gaps.min():.4g} to {gaps.max():.4g} mm (median {float(np.median(gaps)):.4g} mm, "
                f"{int(uneven.sum())} of {gaps.size} gaps differ from the {gap:.4g} mm step by "
                f"more than {GAP_REL_TOL:.0%} + {GAP_ABS_TOL_MM} mm)"
            )
            if n_missing:
                msg += (
                    f"; every gap is a whole multiple of {gap:.4g} mm, so about {n_missing} "
                    "slice(s) seem to be missing"
                )
                how = f"the {gap:.4g} mm grid step"
            else:
                how = "the median gap"
            msg += (
                f". The affine uses {how}, so positions are approximate; the true "
                "positions are in meta['slice_positions_mm']."
            )
            if strict:
                raise UnevenSpacingError(msg + " (strict=True)")
            log.warn(msg)
        total = positions[-1] - positions[0]
        along = float(np.dot(total, nrm))
        perp = total - along * nrm
        perp_len = float(np.linalg.norm(perp))
        if perp_len > max(GAP_ABS_TOL_MM, 1e-4 * abs(along)):
            stack = total * (gap / along)
            tilt = math.degrees(math.atan2(perp_len, along))
            meta["sheared"] = True
            log.warn(
                f"{name}: the slices are stacked along a direction {tilt:.2f} degrees away from "
                "the image-plane normal (gantry tilt); the affine is sheared (its first "
                "column is the real step between slices). Resample if a tool needs an "
                "orthogonal grid; saved to NIfTI the shear goes to the sform only."
            )
        else:
            stack = nrm * gap
            tilt = 0.0
            meta["sheared"] = False
        meta["gantry_tilt_deg"] = tilt
        # positions off the straight stacking line (should not happen)
        direction = stack / np.linalg.norm(stack)
        rel = positions - positions[0]
        off = rel - np.outer(rel @ direction, direction)
        worst = float(np.max(np.linalg.norm(off, axis=1)))
        if worst > max(0.5 * min(frames[0].pixel_spacing), GAP_ABS_TOL_MM):
            log.warn(
                f"{name}: slice positions are not on one line (up to {worst:.3g} mm off); "
                "the affine is only approximate"
            )
        ps_all = {fr.pixel_spacing for fr in frames}
        if len(ps_all) > 1:
            log.warn(f"{name}: PixelSpacing differs between slices {sorted(ps_all)}; using the first")
        ps = frames[order[0]].pixel_spacing
        ipp = positions[0]
    row_cos = np.asarray(iop[:3], dtype=np.float64)
    col_cos = np.asarray(iop[3:], dtype=np.float64)
    row_cos /= np.linalg.norm(row_cos)
    col_cos /= np.linalg.norm(col_cos)
    lps = np.eye(4)
    lps[:3, 0] = stack
    lps[:3, 1] = col_cos * ps[0]  # down the rows (array axis 1)
    lps[:3, 2] = row_cos * ps[1]  # along a row (array axis 2)
    lps[:3, 3] = ipp
    ras = lps.copy()
    ras[:2, :] *= -1.0
    ras[3, 3] = 1.0
    spacing = (float(abs(np.dot(stack, nrm))), float(ps[0]), float(ps[1]))
    meta["slice_positions_mm"] = [float(p) for p in proj]
    meta["slice_ipp_lps_mm"] = [tuple(float(v) for v in p) for p in positions]
    meta["image_orientation_patient"] = tuple(float(v) for v in iop)
    return order, ras, spacing, meta


def _decode_into(frames, order, name: str, log: WarningLog):
    """Read every frame's stored values into one preallocated (n, rows, cols) array."""
    from pydicom.pixels import iter_pixels

    n = len(order)
    rows, cols = frames[0].file.rows, frames[0].file.cols
    target = {id(frames[i]): k for k, i in enumerate(order)}
    by_file: dict = {}
    for fr in frames:
        by_file.setdefault(id(fr.file), (fr.file, []))[1].append(fr)
    for ts in {fr.file.transfer_syntax for fr in frames}:
        _check_decoder(ts, name if len(frames) > 1 else frames[0].file.path, log)
    raw = None
    mins = np.zeros(n)
    maxs = np.zeros(n)
    done = 0
    for f, frs in sorted(by_file.values(), key=lambda it: min(target[id(x)] for x in it[1])):
        src = io.BytesIO(f.source) if isinstance(f.source, (bytes, bytearray)) else f.source
        try:
            ds = pydicom.dcmread(src)
        except Exception as exc:  # noqa: BLE001
            raise CorruptFileError(f"{f.path}: cannot read the file: {type(exc).__name__}: {exc}") from exc
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise CorruptFileError(f"{f.path}: no pixel data (truncated file?)")
        wanted = {fr.index: target[id(fr)] for fr in frs}
        indices = sorted(wanted)
        try:
            it = iter_pixels(ds, indices=indices if f.n_frames > 1 else None)
            for idx, arr in zip(indices, it):
                if arr.shape != (rows, cols):
                    raise CorruptFileError(
                        f"{f.path}: frame {idx} decodes to shape {arr.shape}, expected {(rows, cols)}"
                    )
                k = wanted[idx]
                if raw is None:
                    raw = np.empty((n, rows, cols), dtype=arr.dtype.newbyteorder("="))
                elif not np.can_cast(arr.dtype, raw.dtype, "safe"):
                    new = np.result_type(raw.dtype, arr.dtype)
                    raw = raw.astype(new)  # mixed pixel types in one series (rare)
                raw[k] = arr
                if arr.dtype.kind != "f":
                    mins[k], maxs[k] = arr.min(), arr.max()
                done += 1
        except MedsegError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoders raise ValueError/RuntimeError/...
            msg = f"{type(exc).__name__}: {exc}"
            plugins = ()
            try:
                from pydicom.pixels import get_decoder

                if UID(f.transfer_syntax).is_compressed:
                    plugins = tuple(get_decoder(f.transfer_syntax).available_plugins)
            except Exception:  # noqa: BLE001
                pass
            if plugins == ("pillow",):
                raise UnsupportedTransferSyntaxError(
                    f"{f.path}: Pillow, the only decoder installed for '{UID(f.transfer_syntax).name}', "
                    f"failed ({msg}). Install better decoders: {CODECS_HINT}"
                ) from exc
            raise CorruptFileError(f"{f.path}: the pixel data cannot be decoded ({msg})") from exc
    if done != n:
        raise CorruptFileError(f"{name}: decoded {done} of {n} frames")
    return raw, mins, maxs


def _assemble(frames, *, strict: bool, name: str, source: str, log: WarningLog,
              extra_meta: dict | None = None) -> Image:
    _check_photometric(frames)
    order, affine, spacing, gmeta = _geometry(frames, strict, log, name)
    raw, mins, maxs = _decode_into(frames, order, name, log)
    slopes = [frames[i].slope for i in order]
    inters = [frames[i].intercept for i in order]
    stored = str(raw.dtype)
    if raw.dtype.kind == "f":
        array = raw.astype(np.float32, copy=False)
        applied = False
    else:
        out_dtype = rescaled_dtype(raw.dtype, slopes, inters, mins, maxs)
        array = apply_rescale(raw, slopes, inters, out_dtype)
        applied = not all(s == 1.0 and b == 0.0 for s, b in zip(slopes, inters))
    per_frame = len(set(zip(slopes, inters))) > 1
    f0 = frames[order[0]].file
    sorted_frames = [frames[i] for i in order]
    meta: dict[str, Any] = {
        "source": source,
        "format": "dicom",
        "modality": f0.modality,
        "series_uid": f0.series_uid,
        "study_uid": f0.study_uid,
        "series_description": f0.description,
        "series_number": f0.series_number,
        "manufacturer": f0.info.get("manufacturer"),
        "frame_of_reference_uid": f0.info.get("frame_of_reference_uid"),
        "warnings": log,
        "rescale": {
            "slope": [float(s) for s in slopes] if per_frame else float(slopes[0]),
            "intercept": [float(b) for b in inters] if per_frame else float(inters[0]),
            "per_frame": per_frame,
            "applied": applied,
            "stored_dtype": stored,
            "type": f0.info.get("rescale_type"),
        },
        "photometric": f0.photometric,
        "transfer_syntax": sorted({UID(fr.file.transfer_syntax).name if fr.file.transfer_syntax else "unknown"
                                   for fr in frames}),
        "files": [fr.file.path for fr in sorted_frames],
        "frame_indices": [fr.index for fr in sorted_frames],
        "instance_numbers": [fr.file.instance for fr in sorted_frames],
        "slice_thickness": sorted_frames[0].thickness,
        "bits_stored": f0.info.get("bits_stored"),
        "pixel_representation": f0.info.get("pixel_representation"),
        "image_type": "\\".join(f0.image_type),
    }
    meta.update(gmeta)
    if extra_meta:
        meta.update(extra_meta)
    image = Image(array, spacing=spacing, affine=affine, meta=meta)
    image.meta["warnings"] = list(log)
    return image


# --------------------------------------------------------------------------- public loaders


def _read_one(source, name: str) -> _File:
    """Header of a single DICOM file given on its own; raise when it holds no image."""
    f, reason = _read_header(source, name, skip_localizers=False)
    if f is None:
        if reason.startswith(("empty file", "corrupt", "cannot open")):
            raise CorruptFileError(f"{name}: {reason}")
        raise NotAnImageError(f"{name}: {reason}")
    if not f.frames:
        raise CorruptFileError(f"{name}: {f.corrupt}")
    return f


def _listing(items) -> str:
    return "; ".join(
        f"{d['id'] or '<empty SeriesInstanceUID>'} ({d['modality']}, {d['description']!r}, "
        f"{d['n_slices']} slices{', ' + d['split_by'] if d['split_by'] else ''})"
        for d in items
    )


def _select(candidates, series_uid, name: str, log: WarningLog, *, what: str):
    """Pick one candidate volume; returns ``(index, described candidates)``.

    The one folders and single files share: the candidate whose ``id`` (or failing
    that, SeriesInstanceUID) is *series_uid*, else the largest, with a
    MedsegWarning naming the others when there is a choice. *what* names the
    candidates in messages ('image series' or 'sub-volumes').
    """
    described = [_describe(c) for c in candidates]
    if series_uid is not None:
        series_uid = str(series_uid)
        sel = [i for i, d in enumerate(described) if d["id"] == series_uid]
        if not sel:
            sel = [i for i, d in enumerate(described) if d["uid"] == series_uid]
        if not sel:
            raise AmbiguousSeriesError(
                f"{name}: no series with uid {series_uid!r}; available: {_listing(described)}"
            )
        pick = sel[0]
        if len(sel) > 1:
            log.warn(
                f"{name}: series {series_uid} holds {len(sel)} sub-volumes; loading the largest, "
                f"{described[pick]['id']}. Others: {_listing([described[i] for i in sel[1:]])}"
            )
    else:
        pick = 0
        if len(described) > 1:
            log.warn(
                f"{name}: {len(described)} {what} found; loading the one with most slices, "
                f"{_listing([described[0]])}. Others (pass series_uid=): {_listing(described[1:])}"
            )
    return pick, described


def _load_candidates(candidates, series_uid, *, strict: bool, name: str, what: str,
                     extra: dict | None = None) -> Image:
    """Select one candidate (see :func:`_select`), refuse corrupt members, assemble it."""
    log = WarningLog()
    pick, described = _select(candidates, series_uid, name, log, what=what)
    bad = described[pick]["corrupt_files"]
    if bad:
        path, why = next(iter(bad.items()))
        more = f" ({len(bad) - 1} more corrupt file(s) in this series)" if len(bad) > 1 else ""
        sid = described[pick]["id"] or "<empty SeriesInstanceUID>"
        if any(f.path == path and not f.series_uid for f in candidates[pick]["orphans"]):
            tie = f"it has no readable SeriesInstanceUID and nothing in it rules out the series {sid}"
        else:
            tie = f"it belongs to the series {sid}"
        raise CorruptFileError(
            f"{path}: {why}{more}; {tie} being loaded (replace or remove the file)"
        )
    meta = {
        "series_id": described[pick]["id"],
        "other_series": [
            {k: d[k] for k in ("id", "uid", "description", "modality", "n_slices", "split_by")}
            for i, d in enumerate(described) if i != pick
        ],
    }
    meta.update(extra or {})
    return _assemble(candidates[pick]["frames"], strict=strict, name=name, source=name, log=log,
                     extra_meta=meta)


def _load_file(source, name: str, strict: bool, series_uid=None) -> Image:
    # A multi-frame file goes through the same grouping as a folder: frames of
    # different orientation, size or time point are separate candidate volumes.
    f = _read_one(source, name)
    return _load_candidates(_group([f]), series_uid, strict=strict, name=name, what="sub-volumes")


def _load_folder(folder: str, series_uid, strict: bool, recursive: bool) -> Image:
    files, skipped = _scan_folder(folder, recursive)
    candidates = _group(files)
    if not candidates:
        corrupt = [f for f in files if f.corrupt]
        if corrupt:
            more = f" ({len(corrupt) - 1} more corrupt file(s))" if len(corrupt) > 1 else ""
            raise CorruptFileError(
                f"{corrupt[0].path}: {corrupt[0].corrupt}{more}; no readable image series in {folder}"
            )
        reasons: dict = {}
        for r in skipped.values():
            key = r.split(":")[0].split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
        summary = ", ".join(f"{v} x {k}" for k, v in reasons.items()) or "the folder is empty"
        hint = "" if recursive else " (subfolders are not scanned; pass recursive=True)"
        raise NotAnImageError(f"{folder}: no DICOM image series found{hint}: {summary}")
    return _load_candidates(candidates, series_uid, strict=strict, name=folder, what="image series",
                            extra={"skipped_files": dict(skipped)})


def load_dicom(path, series_uid: str | None = None, *, strict: bool = False,
               recursive: bool = False) -> Image:
    """Load a DICOM file (single- or multi-frame) or one series from a folder.

    Parameters
    ----------
    path : str or os.PathLike
        A DICOM file, or a folder holding DICOM files.
    series_uid : str, optional
        The SeriesInstanceUID (or the ``id`` from :func:`list_series`) to load. A
        single file is split like a folder (frames of another orientation, size or
        time point are separate sub-volumes ``uid#k``). By default the candidate
        with most slices is loaded, with a MedsegWarning naming the others.
    strict : bool, default False
        Raise :class:`~medseg_fast.UnevenSpacingError` instead of warning when the
        slice gaps are uneven or slices are missing.
    recursive : bool, default False
        Also scan subfolders.

    Returns
    -------
    Image
        (z, y, x) array; see the module docstring for geometry and ``meta``.

    Examples
    --------
    >>> import pydicom.data
    >>> from medseg_fast.io import load
    >>> img = load(pydicom.data.get_testdata_file("CT_small.dcm"))
    >>> img.shape, img.dtype, img.meta["slice_spacing_source"]
    ((1, 128, 128), dtype('int16'), 'SliceThickness')
    >>> int(img.array.min()) >= -1024          # Hounsfield units (intercept applied)
    True
    """
    path = os.fspath(path)
    check_exists(path)
    if os.path.isdir(path):
        return _load_folder(path, series_uid, strict, recursive)
    return _load_file(path, path, strict, series_uid)


def read_dicom_bytes(data: bytes, *, strict: bool = False, name: str = "<bytes>",
                     series_uid: str | None = None) -> Image:
    """Parse one DICOM file held in memory (single- or multi-frame).

    ``series_uid`` selects a sub-volume of a multi-frame file as in :func:`load_dicom`.

    Only :mod:`medseg_fast` exceptions are raised on bad input, which makes this
    the entry point for fuzzing.

    Examples
    --------
    >>> import pydicom.data
    >>> from medseg_fast.io import read_dicom_bytes
    >>> blob = open(pydicom.data.get_testdata_file("MR_small.dcm"), "rb").read()
    >>> read_dicom_bytes(blob).shape
    (1, 64, 64)
    """
    data = bytes(data)
    try:
        return _load_file(data, name, strict, series_uid)
    except MedsegError:
        raise
    except Exception as exc:  # noqa: BLE001 - defensive: fuzzing entry point
        raise CorruptFileError(f"{name}: {type(exc).__name__}: {exc}") from exc
