"""Before/after picture: the same slices of input, output and their difference, as PNG
(written by SimpleITK, so the engine needs no plotting library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .volume import check_writable_folder


def check_png_path(path) -> Path:
    """Validate a picture path before any work is done."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the preview must be a .png file, not {path.name!r}")
    return check_writable_folder(path)


def write_png(path, gray: np.ndarray) -> Path:
    """Write an 8-bit grayscale image (rows, cols) as PNG."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(gray, dtype=np.uint8))
    sitk.WriteImage(image, str(path))
    return Path(path)


def montage(before: np.ndarray, after: np.ndarray, slice_axis: int = 0,
            count: int = 3) -> np.ndarray:
    """Rows of [input | output | difference] for ``count`` evenly spaced slices.

    Input and output share one window (0.5-99.5 percentiles of the input) so they compare
    honestly; the difference is centred on mid-gray with its own symmetric window.
    """
    before = np.moveaxis(before, slice_axis, 0).astype(np.float32)
    after = np.moveaxis(after, slice_axis, 0).astype(np.float32)
    low, high = np.percentile(before, [0.5, 99.5])
    difference = before - after
    spread = float(np.percentile(np.abs(difference), 99.5)) or 1.0
    count = min(count, before.shape[0])  # a single 2-D image gives one row
    picks = np.linspace(0, before.shape[0] - 1, count + 2)[1:-1].round().astype(int)

    def window(x, lo, hi):
        return np.clip((x - lo) / max(hi - lo, 1e-12) * 255.0, 0, 255)

    gap = np.full((before.shape[1], 4), 255.0)
    rows = [np.hstack([window(before[k], low, high), gap, window(after[k], low, high), gap,
                       window(difference[k], -spread, spread)]) for k in picks]
    separator = np.full((4, rows[0].shape[1]), 255.0)
    stacked = [rows[0]]
    for row in rows[1:]:
        stacked += [separator, row]
    # Flip rows so "up" in the picture is anterior/superior for the usual LPS layout.
    return np.flipud(np.vstack(stacked)) if slice_axis != 0 else np.vstack(stacked)
