"""Image quality metrics with the project's conventions (benchmark-data.md section 4).

PSNR and SSIM use data range = clean max - clean min; "inside" figures restrict PSNR to
a head or body mask.  SSIM is 3-D (scikit-image, part of the ``bench`` extra).
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def data_range(clean: np.ndarray) -> float:
    return float(clean.max() - clean.min())


def psnr(estimate: np.ndarray, clean: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    error = (estimate.astype(np.float64) - clean.astype(np.float64)) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(data_range(clean) ** 2 / mse)


def ssim(estimate: np.ndarray, clean: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean.astype(np.float64), estimate.astype(np.float64),
                                       data_range=data_range(clean)))
