"""What every stage of a run shares: progress reports, cancel, the device and its precision.

Nothing here is specific to a method; the training loop, inference, the refinement stages
and the methods all report and stop through these few functions.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional, Protocol

import torch

from .errors import Cancelled, InputError


class CancelEvent(Protocol):
    def is_set(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a progress callback receives; ``remaining`` is an estimate in seconds."""

    phase: str  # "prepare", "train", "predict", "refine"
    step: int
    total: int
    loss: float
    elapsed: float
    remaining: float


ProgressCallback = Callable[[Progress], None]


def report_pace(progress: Optional[ProgressCallback], phase: str, done: int, total: int,
                started: float) -> None:
    """Report ``done`` of ``total`` items since ``started`` (``time.perf_counter()``), the
    time left extrapolated from the pace so far (unknown before the first item)."""
    if progress is None:
        return
    elapsed = time.perf_counter() - started
    remaining = elapsed * (total - done) / done if done > 0 else float("nan")
    progress(Progress(phase, done, total, float("nan"), elapsed, remaining))


def check_cancel(cancel: Optional[CancelEvent]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; a named device must exist."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but no CUDA GPU is available")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise InputError("device 'mps' requested but Apple MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """bfloat16 where the hardware runs it natively, else full precision.

    On CPUs with AVX512-BF16/AMX, bf16 autocast made a training step about 5x faster than
    fp32 at this network size (docs/design.md, "Precision"); on CPUs without it bf16 is
    emulated and slower, so those stay in fp32.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None
