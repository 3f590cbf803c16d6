"""Neighbor2Neighbor (Huang et al., CVPR 2021): the single-image self-supervised baseline of
the ultrasound benchmark, trained on the same frames for the same wall time as
Speckle2Self.  Benchmark-only.

Each 2x2 cell gives two different random neighbours, so every noisy crop yields two
half-size sub-images g1, g2 with (nearly) independent noise for pixel-wise noise;
``f(g1)`` is trained to predict ``g2`` plus the regulariser
``gamma * |f(g1) - g2 - (g1(f(y)) - g2(f(y)))|^2`` with ``f(y)`` computed without gradients.
"""

from __future__ import annotations

import numpy as np
import torch

from nsn2n.inference import predict_volume
from nsn2n.methods.speckle2self.msp import minmax_normalize
from nsn2n.nets import UNet2d
from nsn2n.runtime import autocast_dtype, resolve_device
from nsn2n.training import Schedule, train

# The eight ordered pairs of distinct 4-neighbours inside a 2x2 cell (positions 0..3 as
# (0,0), (0,1), (1,0), (1,1)); diagonal pairs are excluded as in the paper.
_PAIRS = np.array([(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1), (2, 3), (3, 2)])


def subsample(images: torch.Tensor, choice: torch.Tensor):
    """``(N, 1, H, W)`` and one pair index per cell ``(N, H/2, W/2)`` -> two sub-images."""
    n, _, height, width = images.shape
    cells = images.reshape(n, height // 2, 2, width // 2, 2).permute(0, 1, 3, 2, 4)
    cells = cells.reshape(n, height // 2, width // 2, 4)
    pairs = torch.from_numpy(_PAIRS).to(images.device)[choice]  # (N, h, w, 2)
    first = torch.gather(cells, 3, pairs[..., :1])[..., 0]
    second = torch.gather(cells, 3, pairs[..., 1:])[..., 0]
    return first[:, None], second[:, None]


def fit_predict(frames: np.ndarray, seconds: float, seed: int = 0, patch: int = 128,
                batch: int = 8, width: int = 32, gamma: float = 2.0,
                device: str = "auto") -> np.ndarray:
    """Train on ``frames`` ``(N, H, W)`` for ``seconds``; denoise them (per-frame min-max
    scale in, input scale out)."""
    device_ = resolve_device(device)
    rng = np.random.default_rng(seed)
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
    low = tensor.amin(dim=(-2, -1), keepdim=True)
    high = tensor.amax(dim=(-2, -1), keepdim=True)
    normalized = minmax_normalize(tensor)
    count, _, height, width_ = normalized.shape
    patch = min(patch, height // 16 * 16, width_ // 16 * 16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = UNet2d(width, depth=3)
    model = model.to(device_)
    dtype = autocast_dtype(device_)

    def batch_loss(step: int, spent: float) -> torch.Tensor:
        index = rng.integers(0, count, batch)
        top = rng.integers(0, height - patch + 1, batch)
        left = rng.integers(0, width_ - patch + 1, batch)
        crops = torch.stack([normalized[i, :, t:t + patch, l:l + patch]
                             for i, t, l in zip(index, top, left)]).to(device_)
        choice = torch.from_numpy(rng.integers(0, len(_PAIRS), (batch, patch // 2, patch // 2)))
        g1, g2 = subsample(crops, choice.to(device_))
        with torch.autocast(device_.type, dtype=dtype, enabled=dtype is not None):
            with torch.no_grad():
                full = model(crops).float()
            out = model(g1).float()
        f1, f2 = subsample(full, choice.to(device_))
        return ((out - g2) ** 2).mean() + gamma * ((out - g2 - (f1 - f2)) ** 2).mean()

    result = train(model, batch_loss, Schedule(10 ** 7, seconds, 1e-3), average_tail=0.25)
    out = predict_volume(result.averaged, normalized[:, 0].numpy(), device_, multiple=8,
                         dtype=dtype)
    return (low[:, 0] + torch.from_numpy(out) * (high - low)[:, 0]).numpy()
