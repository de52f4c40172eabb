"""Dependency-free PNG previews: a PNG writer, intensity windows, label and heat overlays, tiling.

Everything here works on small 2D slices (a preview never touches a whole
volume except through :func:`percentile_range`, which subsamples).  The PNG
encoder follows the PNG specification (ISO/IEC 15948, W3C PNG 2nd edition):
an 8-byte signature, then IHDR, one IDAT holding the zlib stream of the
scanlines (each row prefixed by filter type 0, "None") and IEND; every chunk is
length + type + data + CRC-32 of type and data.  Only 8-bit greyscale (colour
type 0) and 8-bit RGB (colour type 2) are written.

The 5x7 bitmap font is our own; it covers A-Z (lower case is drawn as upper
case), 0-9 and a little punctuation, enough for panel titles.

>>> import numpy as np
>>> from medseg_fast._png import encode_png
>>> data = encode_png(np.zeros((2, 3, 3), np.uint8))
>>> data[:8] == b"\\x89PNG\\r\\n\\x1a\\n", data[12:16]
(True, b'IHDR')
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

__all__ = [
    "encode_png", "write_png", "ct_window", "percentile_range", "window", "to_rgb", "contour",
    "overlay_labels", "overlay_heat", "resize_nearest", "draw_text", "text_width", "tile", "COLOURS",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# A fixed colour table for labels 1, 2, 3, ... (label k uses COLOURS[(k - 1) % len(COLOURS)]):
# saturated, mutually distinct hues that read well over grey CT/MR slices.
COLOURS = np.array([
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 255, 255),
], dtype=np.uint8)


# --------------------------------------------------------------------------- PNG encoding

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image, *, level: int = 6) -> bytes:
    """PNG bytes of an 8-bit greyscale (H, W) or RGB (H, W, 3) image.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) array of uint8
    level : int
        zlib compression level (0-9).

    Examples
    --------
    >>> import numpy as np, zlib
    >>> png = encode_png(np.full((4, 5, 3), 200, np.uint8))
    >>> width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    >>> width, height, png[24], png[25]          # bit depth 8, colour type 2 (RGB)
    (5, 4, 8, 2)
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"encode_png needs uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        colour_type, channels = 0, 1
    elif a.ndim == 3 and a.shape[2] == 3:
        colour_type, channels = 2, 3
    else:
        raise ValueError(f"encode_png needs an (H, W) or (H, W, 3) array, got shape {a.shape}")
    h, w = a.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot encode an empty image of shape {a.shape}")
    rows = np.ascontiguousarray(a).reshape(h, w * channels)
    raw = np.empty((h, w * channels + 1), np.uint8)
    raw[:, 0] = 0  # filter type None for every scanline
    raw[:, 1:] = rows
    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", ihdr), _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)),
                     _chunk(b"IEND", b"")))


def write_png(path, image, *, level: int = 6) -> str:
    """Write :func:`encode_png` bytes to *path* (folders must exist); returns the path."""
    path = os.fspath(path)
    data = encode_png(image, level=level)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --------------------------------------------------------------------------- intensity scaling

def ct_window(level: float = 40.0, width: float = 400.0) -> tuple[float, float]:
    """(low, high) of a CT window; the default is the soft-tissue window L40 / W400 HU.

    >>> ct_window()
    (-160.0, 240.0)
    """
    return float(level - width / 2.0), float(level + width / 2.0)


def percentile_range(array, low: float = 1.0, high: float = 99.0, *, max_samples: int = 1_000_000):
    """(low, high) percentiles of *array*, from an even subsample of at most *max_samples* voxels.

    Non-finite values are ignored; a constant image gives (v, v + 1).

    >>> import numpy as np
    >>> percentile_range(np.arange(101.0))
    (1.0, 99.0)
    """
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // max_samples)
    sample = flat[::step]
    if sample.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample.astype(np.float32, copy=False), [low, high]))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def window(slice2d, low: float, high: float) -> np.ndarray:
    """Map [low, high] linearly to 0..255 (clipped); returns uint8 greyscale.

    >>> import numpy as np
    >>> window(np.array([[-1000, 40, 1000]]), -160, 240).tolist()
    [[0, 128, 255]]
    """
    a = np.asarray(slice2d, dtype=np.float32)
    scale = 255.0 / max(float(high) - float(low), 1e-12)
    out = (a - np.float32(low)) * np.float32(scale)
    np.nan_to_num(out, copy=False, nan=0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb(grey) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) uint8."""
    g = np.asarray(grey, dtype=np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------- overlays

def contour(labels) -> np.ndarray:
    """Boundary pixels of a 2D label image: labelled pixels with a 4-neighbour of another value.

    Pixels on the image border count as boundary.

    >>> import numpy as np
    >>> m = np.zeros((5, 5), int); m[1:4, 1:4] = 1
    >>> contour(m).astype(int)[2].tolist()
    [0, 1, 0, 1, 0]
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"contour needs a 2D label image, got shape {lab.shape}")
    inner = np.zeros(lab.shape, bool)
    inner[1:-1, 1:-1] = True
    c = lab[1:-1, 1:-1]
    inner[1:-1, 1:-1] &= (c == lab[:-2, 1:-1]) & (c == lab[2:, 1:-1]) & (c == lab[1:-1, :-2]) & (c == lab[1:-1, 2:])
    return (lab != 0) & ~inner


def _label_colours(lab) -> np.ndarray:
    idx = (np.asarray(lab, dtype=np.int64) - 1) % len(COLOURS)
    return COLOURS[idx]


def overlay_labels(rgb, labels, *, alpha: float = 0.35, draw_contour: bool = True) -> np.ndarray:
    """Blend a 2D mask or label image over an RGB slice with the fixed colour table.

    Label ``k > 0`` gets ``COLOURS[(k - 1) % 20]`` (a bool mask is label 1), filled
    with opacity *alpha*; with *draw_contour* its boundary is drawn opaque, so thin
    structures (edges) appear in full colour.  Negative labels count as labelled.

    >>> import numpy as np
    >>> rgb = np.zeros((3, 3, 3), np.uint8); m = np.zeros((3, 3), bool); m[1, 1] = True
    >>> overlay_labels(rgb, m)[1, 1].tolist()          # a one-pixel region is all contour
    [230, 25, 75]
    """
    out = np.array(rgb, dtype=np.uint8, copy=True)
    lab = np.asarray(labels)
    if lab.shape != out.shape[:2]:
        raise ValueError(f"labels shape {lab.shape} does not match the image shape {out.shape[:2]}")
    if lab.dtype == np.bool_:
        lab = lab.view(np.uint8)
    on = lab != 0
    if not on.any():
        return out
    col = _label_colours(lab[on]).astype(np.float32)
    base = out[on].astype(np.float32)
    out[on] = np.rint((1.0 - alpha) * base + alpha * col).astype(np.uint8)
    if draw_contour:
        edge = contour(lab)
        out[edge] = _label_colours(lab[edge])
    return out


def _heat(t) -> np.ndarray:
    """A black-red-yellow-white heat colour map of t in [0, 1] (like matplotlib's 'hot')."""
    t = np.clip(np.asarray(t, dtype=np.float32), 0.0, 1.0)
    r = np.clip(3.0 * t, 0, 1)
    g = np.clip(3.0 * t - 1.0, 0, 1)
    b = np.clip(3.0 * t - 2.0, 0, 1)
    return np.stack([r, g, b], axis=-1) * 255.0


def overlay_heat(rgb, values, vmax: float, *, alpha: float = 0.85) -> np.ndarray:
    """Blend a non-negative float map (e.g. a gradient magnitude) over an RGB slice as a heat map.

    ``t = values / vmax`` (clipped to [0, 1]) selects the colour and scales the
    opacity (``alpha * t``), so zero leaves the slice untouched.

    >>> import numpy as np
    >>> rgb = np.full((1, 2, 3), 100, np.uint8)
    >>> overlay_heat(rgb, np.array([[0.0, 2.0]]), vmax=2.0, alpha=1.0).tolist()
    [[[100, 100, 100], [255, 255, 255]]]
    """
    out = np.asarray(rgb, dtype=np.float32)
    v = np.asarray(values, dtype=np.float32)
    if v.shape != out.shape[:2]:
        raise ValueError(f"values shape {v.shape} does not match the image shape {out.shape[:2]}")
    t = np.clip(np.nan_to_num(v) / np.float32(max(float(vmax), 1e-12)), 0.0, 1.0)
    a = (alpha * t)[:, :, None]
    blended = (1.0 - a) * out + a * _heat(t)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def resize_nearest(image, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) or (H, W, C) image to (height, width).

    >>> import numpy as np
    >>> resize_nearest(np.array([[1, 2]]), 2, 4).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
    """
    a = np.asarray(image)
    h, w = a.shape[:2]
    height, width = max(1, int(height)), max(1, int(width))
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.intp), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.intp), w - 1)
    return a[rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- text

_GLYPHS = {
    "A": (0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11), "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E), "D": (0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F), "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F), "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E), "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11), "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11), "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D), "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E), "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E), "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A), "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04), "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E), "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F), "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02), "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E), "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E), "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    " ": (0, 0, 0, 0, 0, 0, 0), ".": (0, 0, 0, 0, 0, 0x0C, 0x0C), ",": (0, 0, 0, 0, 0x0C, 0x04, 0x08),
    "-": (0, 0, 0, 0x1F, 0, 0, 0), "_": (0, 0, 0, 0, 0, 0, 0x1F), ":": (0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0),
    "/": (0, 0x01, 0x02, 0x04, 0x08, 0x10, 0), "(": (0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02),
    ")": (0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08), "%": (0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03),
    "=": (0, 0, 0x1F, 0, 0x1F, 0, 0), "+": (0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0),
    "x": (0, 0, 0x11, 0x0A, 0x04, 0x0A, 0x11), "?": (0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04),
    "[": (0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E), "]": (0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E),
}
_GLYPH_W, _GLYPH_H = 5, 7
_BITMAPS = {
    ch: np.array([[(row >> (4 - i)) & 1 for i in range(_GLYPH_W)] for row in rows], bool)
    for ch, rows in _GLYPHS.items()
}


def _glyph(ch: str, before: str = "", after: str = "") -> np.ndarray:
    # a lower-case x between digits is the small dimension sign ("96x128"); other letters are drawn upper case
    if ch == "x" and before.isdigit() and after.isdigit():
        return _BITMAPS["x"]
    return _BITMAPS.get(ch.upper(), _BITMAPS["?"])


def text_width(text: str, scale: int = 1) -> int:
    """Width in pixels of *text* drawn by :func:`draw_text` (6 * scale per character, minus the last gap)."""
    return max(0, (len(text) * (_GLYPH_W + 1) - 1) * scale)


def text_height(scale: int = 1) -> int:
    """Height in pixels of a line drawn by :func:`draw_text`."""
    return _GLYPH_H * scale


def draw_text(rgb, text: str, y: int, x: int, colour=(255, 255, 255), scale: int = 1) -> np.ndarray:
    """Draw *text* in place with the 5x7 font, top-left corner at (y, x); clipped at the edges.

    >>> import numpy as np
    >>> img = np.zeros((9, 20, 3), np.uint8)
    >>> _ = draw_text(img, "HI", 1, 1)
    >>> int(img[..., 0].astype(bool).sum())           # lit pixels of H (17) and I (11)
    28
    """
    h, w = rgb.shape[:2]
    colour = np.asarray(colour, dtype=np.uint8)
    for k, ch in enumerate(text):
        g = _glyph(ch, text[k - 1] if k else "", text[k + 1] if k + 1 < len(text) else "")
        if scale > 1:
            g = np.repeat(np.repeat(g, scale, axis=0), scale, axis=1)
        y0, x0 = int(y), int(x) + k * (_GLYPH_W + 1) * scale
        y1, x1 = min(h, y0 + g.shape[0]), min(w, x0 + g.shape[1])
        if x0 >= w or y0 >= h or y1 <= 0 or x1 <= 0:
            continue
        gy0, gx0 = max(0, -y0), max(0, -x0)
        sub = g[gy0:y1 - y0, gx0:x1 - x0]
        region = rgb[max(0, y0):y1, max(0, x0):x1]
        region[sub] = colour
    return rgb


# --------------------------------------------------------------------------- tiling

def tile(panels, titles=None, *, ncols: int | None = None, gap: int = 6, scale: int = 1,
         background=(20, 20, 20), text_colour=(235, 235, 235)) -> np.ndarray:
    """Arrange RGB panels into a grid (row-major), with optional titles above each panel.

    Panels may differ in size; each grid row is as tall as its tallest panel and
    panels are top-left aligned in their cells.  Titles longer than the panel
    are clipped.

    Parameters
    ----------
    panels : sequence of (H, W, 3) uint8 arrays
    titles : sequence of str, optional
    ncols : int, optional
        Panels per row (default: all in one row).
    gap : int
        Pixels between panels and around the border.
    scale : int
        Font scale for the titles.

    >>> import numpy as np
    >>> grid = tile([np.zeros((4, 4, 3), np.uint8)] * 3, ncols=2, gap=1)
    >>> grid.shape
    (11, 11, 3)
    """
    panels = [np.asarray(p, dtype=np.uint8) for p in panels]
    if not panels:
        raise ValueError("tile needs at least one panel")
    n = len(panels)
    ncols = n if ncols is None else max(1, min(int(ncols), n))
    title_h = text_height(scale) + 4 if titles is not None else 0
    rows = [panels[i:i + ncols] for i in range(0, n, ncols)]
    col_w = [max(panels[i].shape[1] for i in range(c, n, ncols)) for c in range(ncols)]
    row_h = [max(p.shape[0] for p in r) + title_h for r in rows]
    height = sum(row_h) + gap * (len(rows) + 1)
    width = sum(col_w) + gap * (ncols + 1)
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = np.asarray(background, dtype=np.uint8)
    y = gap
    for r, row in enumerate(rows):
        x = gap
        for c, p in enumerate(row):
            k = r * ncols + c
            if titles is not None and k < len(titles) and titles[k]:
                cell = canvas[y:y + title_h, x:x + col_w[c]]
                draw_text(cell, str(titles[k]), 1, 0, text_colour, scale)
            canvas[y + title_h:y + title_h + p.shape[0], x:x + p.shape[1]] = p
            x += col_w[c] + gap
        y += row_h[r] + gap
    return canvas
