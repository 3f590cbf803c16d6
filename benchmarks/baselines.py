"""Classical filters the benchmark compares against, each given its best shot.

Every filter is told the true noise level where it takes one, and its free parameters
are chosen per case from a small grid by PSNR against the clean reference (an oracle a
real user does not have), so the comparison flatters the classical filters, not NS-N2N.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, Optional, Tuple

import numpy as np

from nsn2n.metrics import psnr


def curvature_anisotropic_diffusion(noisy: np.ndarray, spacing, conductance: float,
                                    iterations: int, time_step: Optional[float] = None
                                    ) -> np.ndarray:
    """SimpleITK's filter, as in Slicer's "Curvature Anisotropic Diffusion" module (whose
    default time step is 0.0625)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(noisy.astype(np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing))
    # The largest stable time step depends on the smallest spacing (spacing / 2^(d+1)).
    step = min(spacing) / 2 ** 4 if time_step is None else time_step
    out = sitk.CurvatureAnisotropicDiffusion(image, timeStep=step,
                                             conductanceParameter=conductance,
                                             numberOfIterations=iterations)
    return sitk.GetArrayFromImage(out)


def gaussian(noisy: np.ndarray, sigma_voxels: float) -> np.ndarray:
    """In-plane Gaussian blur (``sigma_voxels`` px), slice by slice."""
    import torch

    from nsn2n.filters import gaussian_lowpass

    return gaussian_lowpass(torch.from_numpy(noisy.astype(np.float32)), sigma_voxels).numpy()


def non_local_means(noisy: np.ndarray, sigma: float, strength: float) -> np.ndarray:
    """scikit-image NLM in 3-D, patch 5, search distance 6, h = strength * sigma."""
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(noisy.astype(np.float32), patch_size=5, patch_distance=6,
                            h=strength * sigma, sigma=sigma, fast_mode=True,
                            channel_axis=None).astype(np.float32)


def bm4d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM4D with the true (white) noise level.  Benchmark-only: bm4d is not open source."""
    import bm4d as bm4d_package

    return np.asarray(bm4d_package.bm4d(noisy.astype(np.float32), sigma), dtype=np.float32)


def best_of(run: Callable[..., np.ndarray], grid: Iterable[Dict], clean: np.ndarray,
            mask: np.ndarray) -> Tuple[np.ndarray, Dict, float]:
    """Run every setting, keep the best inside the mask; time is that setting's own run."""
    best = None
    for params in grid:
        started = time.perf_counter()
        out = run(**params)
        seconds = time.perf_counter() - started
        score = psnr(out, clean, mask)
        if best is None or score > best[3]:
            best = (out, params, seconds, score)
    return best[0], best[1], best[2]
