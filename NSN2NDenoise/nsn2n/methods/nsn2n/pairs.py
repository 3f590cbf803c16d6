"""Neighbouring-slice pairs and their weight masks W (NS-N2N, Zhou et al. 2024).

Slices ``k`` and ``k+1`` of one volume are a Noise2Noise pair where anatomy continues
across them.  W_k marks those pixels: it compares strongly low-pass filtered neighbours,
so the noise cannot decide the matched/unmatched split, while the training targets stay
the raw noisy slices (a filtered target would break the Noise2Noise argument).

Choice where the paper is silent: the low-pass is a Gaussian (sigma 2 px) rather than
NLM + 5x5 median.  On the MRI slab it matched the NLM mask's quality at a fraction of its
cost (docs/nsn2n.md, "Choices where the paper is silent"); NLM dominates NS-N2N's preparation time.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch

from ...filters import gaussian_lowpass
from ...noise import half_normal_std
from ...runtime import CancelEvent, check_cancel
from ...symmetry import dihedral


class PairWeights(NamedTuple):
    """W_k for the pairs (k, k+1), k = 0 .. D-2, and the threshold actually used."""

    weights: torch.Tensor  # (D-1, H, W), bool (a quarter of float32 on a large CT)
    tau: float
    matched_fraction: float


def pair_weights(slices: torch.Tensor, tau: float, lowpass_sigma: float,
                 cap: Optional[float] = 2.0, chunk: int = 32,
                 cancel: Optional[CancelEvent] = None) -> PairWeights:
    """Hard mask ``W_k = 1[|LPF(x_k) - LPF(x_{k+1})| <= tau]`` on the normalized scale.

    ``tau`` is on the normalized [0, 1] intensity scale.  It is raised to the noise floor,
    three robust standard deviations of the filtered residual, when the noise is so strong
    that its low-passed remainder alone would exceed ``tau``: otherwise noise, not anatomy,
    would decide the mask.  It is lowered to ``cap`` times that floor when the noise is
    weak (``None`` keeps the paper's fixed ``tau``): a fixed 0.03 lets every anatomical
    change below 3 % of the range into the targets, and on a nearly clean volume those
    changes outweigh the noise (measured at 600 steps, inside the body: CT at 1e6 photons
    44.5 dB with the fixed tau, 49.2 dB with the cap, 47.9 dB for the input; MRI at 1 %
    in docs/benchmarks.md, "Nearly clean volumes").  At the benchmark's noise levels the floor is
    within a factor of two of 0.03, so the cap does not change tau there.  Works in
    chunks of slices so a 512x512x300 CT stays in memory bounds.
    """
    depth = slices.shape[0]
    if depth < 2:
        raise ValueError("need at least two slices to form a pair")
    residuals = torch.empty((depth - 1,) + tuple(slices.shape[1:]), dtype=torch.float32)
    previous = None
    for start in range(0, depth, chunk):
        check_cancel(cancel)
        low = gaussian_lowpass(slices[start:start + chunk].float(), lowpass_sigma)
        if previous is not None:
            residuals[start - 1] = (low[0] - previous).abs()
        if low.shape[0] > 1:
            residuals[start:start + low.shape[0] - 1] = (low[1:] - low[:-1]).abs()
        previous = low[-1]
    check_cancel(cancel)
    noise_floor = 3.0 * half_normal_std(residuals)
    used_tau = max(float(tau), noise_floor)
    if cap is not None:
        used_tau = min(used_tau, cap * noise_floor)
    weights = residuals <= used_tau
    del residuals
    return PairWeights(weights, used_tau, int(weights.sum()) / weights.numel())


class RunBatch(NamedTuple):
    """Where to crop a batch of runs of consecutive slices, and how to augment each."""

    starts: np.ndarray  # first slice of each run
    rows: np.ndarray
    cols: np.ndarray
    transforms: np.ndarray  # dihedral group element 0..7 per run


def sample_runs(depth: int, height: int, width: int, run_length: int, patch: int,
                batch: int, rng: np.random.Generator) -> RunBatch:
    """Draw ``batch`` runs of ``run_length`` consecutive slices and their crop positions.

    A run of K slices holds K-1 neighbouring pairs, each used in both directions, so every
    forward pass of a slice is used against both of its neighbours.  K = 2 is the paper's
    pair sampling.
    """
    if run_length < 2 or run_length > depth:
        raise ValueError(f"run_length must be in [2, {depth}], got {run_length}")
    return RunBatch(
        rng.integers(0, depth - run_length + 1, size=batch),
        rng.integers(0, max(1, height - patch + 1), size=batch),
        rng.integers(0, max(1, width - patch + 1), size=batch),
        rng.integers(0, 8, size=batch),
    )


def gather_runs(volume: torch.Tensor, weights: torch.Tensor, runs: RunBatch, run_length: int,
                patch: int):
    """Crop the sampled runs: images ``(B, K, P, P)`` and their pair weights ``(B, K-1, P, P)``.

    The same crop and the same dihedral transform go to every slice of a run and to its
    weights, so pairs stay aligned.
    """
    images, masks = [], []
    for start, row, col, element in zip(*runs):
        window = (slice(row, row + patch), slice(col, col + patch))
        img = volume[start:start + run_length][(slice(None),) + window]
        msk = weights[start:start + run_length - 1][(slice(None),) + window]
        if element & 4 and img.shape[-1] != img.shape[-2]:
            element = element & 3  # transposing a non-square crop would break the batch
        images.append(dihedral(img, int(element)))
        masks.append(dihedral(msk, int(element)))
    return torch.stack(images), torch.stack(masks).float()
