"""Speckle2Self's multi-scale perturbation (MSP) and its shared augmentation.

Pure functions of tensors; the only randomness is drawn from a ``numpy.random.Generator``
passed in, so a seed fixes every crop, flip and affine.  Follows the authors' code
(docs/speckle2self.md, "The published method"):

* each copy is resampled down by its scale and back up to the full size with bilinear
  interpolation and no anti-aliasing: the aliasing is part of the perturbation;
* each copy is min-max normalised to [0, 1] on its own;
* one random augmentation is applied to all copies alike, so the consistency loss compares
  the same geometry.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

SCALES = (1.0, 0.5, 0.25)


def minmax_normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Each image of ``(..., H, W)`` mapped to [0, 1] by its own minimum and maximum."""
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    return (x - low) / (high - low).clamp_min(eps)


def resample(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Down by ``scale`` and back up to the original size, bilinear, no anti-aliasing."""
    if scale == 1.0:
        return x
    height, width = x.shape[-2:]
    small = (max(1, int(height * scale)), max(1, int(width * scale)))
    down = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=False)
    return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)


def perturb(images: torch.Tensor, scales: Sequence[float] = SCALES) -> torch.Tensor:
    """``(N, 1, H, W)`` -> ``(N, len(scales), H, W)``: one normalised copy per scale."""
    return torch.cat([minmax_normalize(resample(images, s)) for s in scales], dim=1)


def random_affines(count: int, rng: np.random.Generator, p_hflip: float = 0.3,
                   p_vflip: float = 0.3, p_affine: float = 0.3, shift: float = 0.1,
                   scale: float = 0.2, rotate_degrees: float = 30.0) -> torch.Tensor:
    """``(count, 2, 3)`` sampling matrices for ``affine_grid``: the published augmentation
    (horizontal and vertical flips, shift-scale-rotate), each applied with its probability."""
    thetas = np.zeros((count, 2, 3))
    for index in range(count):
        matrix = np.eye(2)
        offset = np.zeros(2)
        if rng.random() < p_affine:
            angle = math.radians(rng.uniform(-rotate_degrees, rotate_degrees))
            zoom = rng.uniform(1 - scale, 1 + scale)
            rotation = np.array([[math.cos(angle), -math.sin(angle)],
                                 [math.sin(angle), math.cos(angle)]])
            matrix = rotation / zoom  # the grid samples the input: inverse of the zoom
            offset = rng.uniform(-shift, shift, size=2) * 2  # grid units span [-1, 1]
        flips = np.diag([-1.0 if rng.random() < p_hflip else 1.0,
                         -1.0 if rng.random() < p_vflip else 1.0])
        thetas[index, :, :2] = matrix @ flips
        thetas[index, :, 2] = offset
    return torch.from_numpy(thetas).float()


def augment(copies: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
    """Apply one affine per sample to every channel (copy) of ``(N, C, H, W)`` alike.

    Reflection at the border, as the published augmentation does; identity matrices are
    returned untouched (bilinear resampling would blur them for nothing).
    """
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    moved = ~torch.isclose(thetas, identity).flatten(1).all(dim=1)
    if not moved.any():
        return copies
    out = copies.clone()
    grid = F.affine_grid(thetas[moved].to(copies.device, copies.dtype),
                         list(copies[moved].shape), align_corners=False)
    out[moved] = F.grid_sample(copies[moved], grid, mode="bilinear",
                               padding_mode="reflection", align_corners=False)
    return out
