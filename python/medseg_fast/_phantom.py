"""A synthetic CT-like 3D phantom with known truth, for the demo and tests (no download needed).

The phantom is drawn in physical millimetres, so anisotropic spacing gives the
same anatomy on a coarser grid: an elliptic-cylinder "body" of soft tissue in
air, two "lungs" (air-like, -800 HU), a "liver" ellipsoid (120 HU, as with contrast), a "spine"
(bone, 700 HU) behind the lungs, and Gaussian noise.  Values are rounded to
int16 HU, like a rescaled CT.

>>> from medseg_fast._phantom import ct_phantom
>>> image, truth, spacing = ct_phantom((24, 32, 32), noise=0)
>>> image.dtype, truth.dtype, spacing
(dtype('int16'), dtype('uint8'), (2.5, 0.8, 0.8))
>>> sorted(set(truth.ravel().tolist())) == sorted(PHANTOM_LABELS)
True
>>> phantom_affine((24, 32, 32), spacing)[:3, :3].diagonal().tolist()      # SPL, like an axial DICOM series
[0.0, -0.8, 0.0]
"""

from __future__ import annotations

import numpy as np

__all__ = ["ct_phantom", "phantom_affine", "PHANTOM_LABELS", "PHANTOM_HU"]

#: label value -> structure name in the truth map
PHANTOM_LABELS = {0: "air", 1: "body", 2: "lung", 3: "liver", 4: "bone"}
#: label value -> mean intensity (HU) before noise
PHANTOM_HU = {0: -1000, 1: 40, 2: -800, 3: 120, 4: 700}


def ct_phantom(shape=(96, 128, 128), spacing=(2.5, 0.8, 0.8), *, seed: int = 0, noise: float = 20.0):
    """A CT-like phantom: ``(image int16 HU, truth uint8 labels, spacing)``.

    Parameters
    ----------
    shape : (nz, ny, nx)
        Grid size in (z, y, x) order.
    spacing : (dz, dy, dx)
        Voxel size in mm.  The anatomy is defined relative to the field of view
        (``shape * spacing``), so it always fits.
    seed : int
        Seed of the noise generator (the result is reproducible).
    noise : float
        Standard deviation of the additive Gaussian noise in HU (0: none).

    Returns
    -------
    image : ndarray of int16, shape *shape*
    truth : ndarray of uint8, shape *shape*
        Labels as in :data:`PHANTOM_LABELS` (0 air, 1 body, 2 lung, 3 liver, 4 bone).
    spacing : tuple of 3 floats

    Examples
    --------
    >>> import numpy as np
    >>> img, truth, sp = ct_phantom((16, 24, 24), noise=0)
    >>> int(img[truth == 2].mean()), int(img[truth == 4].max())
    (-800, 700)
    """
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be 3 positive sizes, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers, got {spacing}")
    # voxel centres in mm relative to the centre of the field of view; open grids keep memory at one volume
    half = [0.5 * n * s for n, s in zip(shape, spacing)]
    z, y, x = (((np.arange(n, dtype=np.float32) + 0.5) * s - h).astype(np.float32)
               for n, s, h in zip(shape, spacing, half))
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    hz, hy, hx = half

    def ellipsoid(cz, cy, cx, rz, ry, rx):
        return ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0

    truth = np.zeros(shape, np.uint8)
    # body: elliptic cylinder along z over the central 90 % of the slab
    body = (((y / (0.70 * hy)) ** 2 + (x / (0.85 * hx)) ** 2) <= 1.0) & (np.abs(z) <= 0.9 * hz)
    truth[body] = 1
    # liver: lower part, on the patient's right (x index -> patient left, so negative x is right)
    truth[ellipsoid(-0.40 * hz, 0.0, -0.30 * hx, 0.45 * hz, 0.40 * hy, 0.40 * hx) & body] = 3
    # lungs: upper part of the slab (larger z), either side of the midline, their bases over the liver dome
    for side in (-1.0, 1.0):
        truth[ellipsoid(0.30 * hz, -0.05 * hy, side * 0.42 * hx, 0.55 * hz, 0.42 * hy, 0.30 * hx) & body] = 2
    # spine: posterior (larger y = posterior, as a DICOM row index) bony column
    spine = (((y - 0.50 * hy) / (0.13 * hy)) ** 2 + (x / (0.11 * hx)) ** 2 <= 1.0) & (np.abs(z) <= 0.9 * hz)
    truth[spine] = 4

    lut = np.array([PHANTOM_HU[k] for k in sorted(PHANTOM_HU)], np.float32)
    image = lut[truth]
    if noise:
        rng = np.random.default_rng(seed)
        image += rng.standard_normal(shape, dtype=np.float32) * np.float32(noise)
    np.rint(image, out=image)
    np.clip(image, -1024, 3071, out=image)
    return image.astype(np.int16), truth, spacing


def phantom_affine(shape, spacing) -> np.ndarray:
    """An axial-CT-like (z, y, x) -> RAS+ affine for the phantom, centred on the world origin.

    Array axis 0 runs toward Superior, axis 1 (rows) toward Posterior and axis 2
    (columns) toward patient Left: orientation code ``'SPL'``, as
    :func:`medseg_fast.io.load` reports for an axial DICOM series.

    >>> import numpy as np
    >>> a = phantom_affine((10, 20, 30), (2.0, 1.0, 1.0))
    >>> (a @ [4.5, 9.5, 14.5, 1])[:3].tolist()     # the centre of the grid
    [0.0, 0.0, 0.0]
    """
    dz, dy, dx = (float(s) for s in spacing)
    affine = np.zeros((4, 4))
    affine[2, 0] = dz   # z index -> +S
    affine[1, 1] = -dy  # y index (rows) -> -A = posterior
    affine[0, 2] = -dx  # x index (columns) -> -R = patient left
    affine[3, 3] = 1.0
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = -affine[:3, :3] @ centre
    return affine
