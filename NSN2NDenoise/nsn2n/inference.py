"""Apply a trained 2-D network to every full slice, tiled so memory stays bounded."""

from __future__ import annotations

import logging
import math
import time
from typing import Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .runtime import CancelEvent, ProgressCallback, autocast_dtype, check_cancel, report_pace

log = logging.getLogger(__name__)
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


def predict_volume(model: torch.nn.Module, slices: np.ndarray, device: torch.device,
                   multiple: int, transforms=(0,), batch: int = 8,
                   tile: Optional[int] = None, margin: int = 32,
                   dtype: Optional[torch.dtype] = None,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelEvent] = None) -> np.ndarray:
    """Denoise every slice of a ``(D, H, W)`` float32 stack, or of ``(D, C, H, W)`` for a
    network of ``C`` input channels; average over ``transforms``.

    ``transforms`` are dihedral group elements (test-time augmentation): the network was
    trained on all eight, so averaging its predictions over several is a cheap ensemble.
    ``dtype``: the autocast type (``runtime.autocast_dtype``); None is fp32.  ``tile``:
    the side of the tiles' cores; None sizes them to the device's free memory
    (:func:`tile_side`).  When the device runs out of memory the run starts again with
    tiles half as large, and on the CPU once they would be smaller than :data:`MIN_TILE`
    (:func:`fallbacks`).
    """
    if tile is None:
        tile = tile_side(device, model, batch, margin)
    for try_device, try_tile in fallbacks(device, tile):
        try_dtype = dtype if try_device == device else autocast_dtype(try_device)
        try:
            return _predict(model, slices, try_device, multiple, transforms, batch, try_tile,
                            margin, try_dtype, progress, cancel)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(exc):
                raise
            free_device_memory(try_device)
            log.warning("%s ran out of memory with %d px tiles; trying smaller tiles or "
                        "the CPU", try_device, try_tile)
    raise MemoryError("out of memory even with the smallest tiles on the CPU")


# Tiles are never made smaller than this on a GPU (below it the margins cost more than
# the cores) nor larger than MAX_TILE (no gain in throughput).
MIN_TILE, MAX_TILE, CPU_TILE = 64, 1024, 384
# Peak bytes per pixel of a tile and per channel of the network's first level, for
# inference in fp32: 41 / 34 / 30 for UNet2d widths 8 / 16 / 32 (growth of the peak
# resident memory of one batch of 8 tiles of 448 px on the CPU, 2026-12-04); 50 leaves
# room for the allocator's fragmentation.
BYTES_PER_PIXEL_CHANNEL = 50


def tile_side(device: torch.device, model: torch.nn.Module, batch: int, margin: int,
              free_bytes: Optional[int] = None) -> int:
    """The tile core side for ``device``: :data:`CPU_TILE` on the CPU; on a GPU the
    largest that lets a batch of tiles use half of the free memory."""
    if device.type != "cuda" and free_bytes is None:
        return CPU_TILE
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    channels = max(module.out_channels for module in model.modules()
                   if isinstance(module, torch.nn.Conv2d) and module.in_channels <= 2)
    per_pixel = batch * channels * BYTES_PER_PIXEL_CHANNEL
    side = int(math.sqrt(0.5 * free_bytes / per_pixel)) - 2 * margin
    return int(min(MAX_TILE, max(MIN_TILE, side // 32 * 32)))


def fallbacks(device: torch.device, tile: int) -> Iterator[Tuple[torch.device, int]]:
    """What to try, in order, when memory runs out: ``tile`` on ``device``, then halves of
    it down to :data:`MIN_TILE`, then the CPU with its own tile."""
    yield device, tile
    while tile // 2 >= MIN_TILE:
        tile //= 2
        yield device, tile
    if device.type != "cpu":
        yield torch.device("cpu"), CPU_TILE


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_device_memory(device: torch.device) -> None:
    """Give the failed attempt's cached blocks back before the next one."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()


@torch.inference_mode()
def _predict(model: torch.nn.Module, slices: np.ndarray, device: torch.device, multiple: int,
             transforms, batch: int, tile: int, margin: int, dtype: Optional[torch.dtype],
             progress: Optional[ProgressCallback], cancel: Optional[CancelEvent]
             ) -> np.ndarray:
    model = model.to(device).eval()
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
