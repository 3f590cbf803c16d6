"""The Speckle2Self loss as a pure function of tensors."""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch


def speckle2self_loss(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
                      consistency_weight: float = 1.0
                      ) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Speckle2Self: each branch reconstructs its own perturbed input (MSE), and every
    pair of branch outputs agrees (L1), weighted by ``consistency_weight`` (1 as
    published; ``Speckle2SelfConfig`` explains its default)."""
    if consistency_weight < 0:
        raise ValueError("consistency_weight must be >= 0")
    reconstruction = sum(((out - x) ** 2).mean() for out, x in zip(outputs, inputs))
    consistency = sum((outputs[a] - outputs[b]).abs().mean()
                      for a in range(len(outputs)) for b in range(a + 1, len(outputs)))
    return (reconstruction + consistency_weight * consistency,
            {"reconstruction": float(reconstruction.detach()),
             "consistency": float(consistency.detach())})
