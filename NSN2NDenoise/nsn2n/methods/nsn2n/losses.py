"""NS-N2N losses as pure functions of tensors.

For a run of K consecutive slices ``x`` (B, K, H, W), network outputs ``y = f(x)``, pair
weights ``w`` (B, K-1, H, W) and ``m = f((x_k + x_{k+1}) / 2)`` (B, K-1, H, W):

* L_Recon: weighted Noise2Noise in both directions,
  ``0.5 * (|W (y_k - x_{k+1})|^2 + |W (y_{k+1} - x_k)|^2)``;
* L_RC (regional consistency): ``|W (y_k - y_{k+1})|^2``, gradients through both outputs;
* L_IC (inter-slice continuity): ``|m_k - (y_k + y_{k+1}) / 2|^2``, unmasked, over the
  pairs listed in ``pairs`` (B, P) when given: a random subset of pairs is an unbiased
  estimate of the same mean at a fraction of the extra forward passes.

Choices where the paper is silent (docs/nsn2n.md, "The paper and its gaps"):
masked means are normalised by the number of active pixels (sum W), as in NGPS's
re-implementation, so L_Recon and L_RC keep their scale when the mask drops pixels and
lambda_RC = 0.5, lambda_IC = 1.0 keep their meaning; the L_IC target is detached, as NGPS
does, so L_IC shapes f at the midpoint rather than dragging the two end outputs toward it.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor,
                 weight: torch.Tensor) -> torch.Tensor:
    """Mean of ``weight * (prediction - target)^2`` over the active pixels (sum of weight)."""
    return (weight * (prediction - target) ** 2).sum() / weight.sum().clamp_min(1.0)


def reconstruction_loss(outputs: torch.Tensor, inputs: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    forward = weighted_mse(outputs[:, :-1], inputs[:, 1:], weights)
    backward = weighted_mse(outputs[:, 1:], inputs[:, :-1], weights)
    return 0.5 * (forward + backward)


def regional_consistency_loss(outputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return weighted_mse(outputs[:, :-1], outputs[:, 1:], weights)


def _select_pairs(tensor: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    index = pairs[:, :, None, None].expand(-1, -1, *tensor.shape[2:])
    return torch.gather(tensor, 1, index)


def interslice_continuity_loss(midpoint_outputs: torch.Tensor, outputs: torch.Tensor,
                               pairs: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``midpoint_outputs[:, p]`` is f of the mean of slices ``pairs[:, p]`` and ``+1``."""
    target = 0.5 * (outputs[:, :-1] + outputs[:, 1:])
    if pairs is not None:
        target = _select_pairs(target, pairs)
    return ((midpoint_outputs - target.detach()) ** 2).mean()


def nsn2n_loss(outputs: torch.Tensor, inputs: torch.Tensor, weights: torch.Tensor,
               midpoint_outputs: Optional[torch.Tensor], lambda_rc: float, lambda_ic: float,
               pairs: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
    """``L = L_Recon + lambda_RC * L_RC + lambda_IC * L_IC`` and its parts for logging."""
    recon = reconstruction_loss(outputs, inputs, weights)
    total = recon
    parts = {"recon": float(recon.detach())}
    if lambda_rc:
        rc = regional_consistency_loss(outputs, weights)
        total = total + lambda_rc * rc
        parts["rc"] = float(rc.detach())
    if lambda_ic:
        if midpoint_outputs is None:
            raise ValueError("lambda_ic > 0 needs the midpoint outputs")
        ic = interslice_continuity_loss(midpoint_outputs, outputs, pairs)
        total = total + lambda_ic * ic
        parts["ic"] = float(ic.detach())
    return total, parts
