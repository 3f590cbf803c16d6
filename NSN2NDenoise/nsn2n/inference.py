"""Apply a trained 2-D network to every full slice, tiled so memory stays bounded."""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .runtime import (CancelEvent, ProgressCallback, autocast_dtype, check_cancel,
                      report_pace)
from .symmetry import dihedral, inverse_dihedral


def tile_spans(length: int, tile: int, margin: int) -> List[Tuple[int, int, int, int]]:
    """Cover ``[0, length)`` with cores of at most ``tile`` pixels, each read with
    ``margin`` pixels of context on both sides (clipped at the border).

    Returns ``(core_start, core_end, read_start, read_end)``; the cores partition the axis,
    so stitching is a plain copy and tiles never show seams inside the receptive margin.
    """
    spans = []
    for start in range(0, length, tile):
        end = min(length, start + tile)
        spans.append((start, end, max(0, start - margin), min(length, end + margin)))
    return spans


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad ``(..., H, W)`` at the bottom and right to multiples of ``multiple``
    (replicate where the image is too small to reflect); crop with ``[..., :H, :W]``."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x


@torch.inference_mode()
def predict_volume(model: torch.nn.Module, slices: np.ndarray, device: torch.device,
                   multiple: int, transforms=(0,), batch: int = 8, tile: int = 384,
                   margin: int = 32, progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelEvent] = None) -> np.ndarray:
    """Denoise every slice of a ``(D, H, W)`` float32 stack, or of ``(D, C, H, W)`` for a
    network of ``C`` input channels; average over ``transforms``.

    ``transforms`` are dihedral group elements (test-time augmentation): the network was
    trained on all eight, so averaging its predictions over several is a cheap ensemble.
    """
    model = model.to(device).eval()
    dtype = autocast_dtype(device)
    if slices.ndim == 3:
        slices = slices[:, None]
    depth, _, height, width = slices.shape
    output = np.empty((depth, height, width), dtype=np.float32)
    rows, cols = tile_spans(height, tile, margin), tile_spans(width, tile, margin)
    total = depth * len(rows) * len(cols) * len(transforms)
    done, started = 0, time.perf_counter()
    for first in range(0, depth, batch):
        chunk = torch.from_numpy(np.ascontiguousarray(slices[first:first + batch]))
        for core_r0, core_r1, read_r0, read_r1 in rows:
            for core_c0, core_c1, read_c0, read_c1 in cols:
                check_cancel(cancel)
                region = chunk[:, :, read_r0:read_r1, read_c0:read_c1].to(device)
                accumulated = torch.zeros_like(region[:, :1], dtype=torch.float32)
                for element in transforms:
                    x = dihedral(region, element)
                    h, w = x.shape[-2:]
                    x = pad_to_multiple(x, multiple)
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        y = model(x)
                    accumulated += inverse_dihedral(y[..., :h, :w].float(), element)
                    done += chunk.shape[0]
                result = (accumulated / len(transforms))[:, 0].cpu().numpy()
                output[first:first + batch, core_r0:core_r1, core_c0:core_c1] = result[
                    :, core_r0 - read_r0:core_r1 - read_r0, core_c0 - read_c0:core_c1 - read_c0]
                report_pace(progress, "predict", done, total, started)
    return output
