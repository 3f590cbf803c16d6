"""The eight flips and rotations of the square (the dihedral group D4) on the last two axes.

Training augments with them and inference averages over them (test-time augmentation):
noise statistics and anatomy are the same under all eight.
"""

from __future__ import annotations

import torch

# Elements averaged at inference for each test-time-augmentation count.
TTA_ELEMENTS = {1: (0,), 2: (0, 3), 4: (0, 3, 5, 6), 8: tuple(range(8))}


def dihedral(x: torch.Tensor, element: int) -> torch.Tensor:
    """Apply one of the 8 flips/rotations of the square to the last two axes."""
    if element & 4:
        x = x.transpose(-1, -2)
    if element & 1:
        x = x.flip(-1)
    if element & 2:
        x = x.flip(-2)
    return x


def inverse_dihedral(x: torch.Tensor, element: int) -> torch.Tensor:
    if element & 2:
        x = x.flip(-2)
    if element & 1:
        x = x.flip(-1)
    if element & 4:
        x = x.transpose(-1, -2)
    return x
