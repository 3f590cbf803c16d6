"""What every stage of a run shares: progress reports, cancel, the device and its precision.

Nothing here is specific to a method; the training loop, inference, the refinement stages
and the methods all report and stop through these few functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Callable, Dict, Iterator, Optional, Protocol

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


# Peak resident memory of a run per voxel of the volume: 3.18 GiB for a 512x512x300 int16
# CT, 43 bytes per voxel including the interpreter and torch (docs/benchmarks.md, "Memory").
PEAK_BYTES_PER_VOXEL = 44


def available_memory() -> Optional[int]:
    """Bytes the system can still give this process (Linux: MemAvailable; elsewhere the
    free pages where the OS reports them); None where it cannot tell."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def require_memory(voxels: int, available: Optional[int] = None) -> None:
    """An InputError before anything starts when a volume of ``voxels`` cannot fit in the
    memory that is free (``available``: :func:`available_memory`)."""
    available = available_memory() if available is None else available
    needed = PEAK_BYTES_PER_VOXEL * voxels
    if available is not None and needed > available:
        raise InputError(f"denoising this volume needs about {needed / 2 ** 30:.1f} GB of "
                         f"memory and {available / 2 ** 30:.1f} GB are free; close other "
                         "programs or crop the volume")


def member_progress(progress: Optional[ProgressCallback], member: int, members: int
                    ) -> Optional[ProgressCallback]:
    """The progress of part ``member`` of ``members`` equal parts of one phase (the
    networks of an ensemble, trained one after the other) as progress of the whole phase:
    steps counted on, and the parts still to come added to the time left at this part's
    pace."""
    if progress is None or members == 1:
        return progress

    def forward(p: Progress) -> None:
        per_part = p.elapsed * p.total / p.step if p.step > 0 else float("nan")
        progress(dataclasses.replace(p, step=member * p.total + p.step,
                                     total=members * p.total,
                                     remaining=p.remaining + (members - 1 - member) * per_part))
    return forward


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


def autocast_dtype(device: torch.device, precision: str = "auto") -> Optional[torch.dtype]:
    """The autocast type of ``precision`` (``options.PRECISIONS``) on ``device``; None is
    full precision (fp32).

    ``auto``: bfloat16 where the hardware runs it natively, float16 on CUDA GPUs without
    bf16 (the training loop then scales the loss, training.py), else fp32.  On CPUs with
    AVX512-BF16/AMX bf16 autocast made a training step 1.5-1.7x (2-core AMD EPYC,
    2026-12-04) to 5x (earlier machines) faster than fp32 at this network size
    (docs/design.md, "Precision"); on CPUs without it bf16 is emulated and slower, so
    those stay in fp32.  Apple MPS stays in fp32.
    """
    if precision != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None


def precision_of(dtype: Optional[torch.dtype]) -> str:
    """The name (``options.PRECISIONS``) of an autocast type from :func:`autocast_dtype`."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


class Stopwatch:
    """Seconds spent per named phase of a run, for the report's profile.

    ``with stopwatch("wiener"): ...`` adds the block's wall time to that phase; a phase
    entered twice (the guard) accumulates.  ``seconds`` keeps the order of first entry.
    """

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = (self.seconds.get(phase, 0.0)
                                   + time.perf_counter() - started)

    def rounded(self) -> Dict[str, float]:
        return {phase: round(seconds, 2) for phase, seconds in self.seconds.items()}


# The phases a run reports progress in, in the order they happen.
PHASES = ("prepare", "train", "predict", "refine")


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A run's expected wall seconds per phase of :data:`PHASES`, made before it starts."""

    phases: Dict[str, float]
    # The least training a time budget may leave (seconds; pipeline.training_seconds):
    # below it the output is worse than no training budget justifies.  0: no floor known.
    train_floor: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(self.phases.values())


# Phases whose progress comes from several stages one after the other, each reporting
# its own pace (refine: non-local means, then the Wiener stage): the pace of one stage
# leaves out the stages after it, so the time left of such a phase is never less than
# the estimate leaves of it.  Without this the time left shown during the non-local stage
# of `best` left out its Wiener stage: 50 % of the run off (docs/benchmarks.md, "Speed").
SEVERAL_STAGES = ("refine",)


class RunClock:
    """Turns per-phase progress into time left for the whole run.

    Each phase extrapolates only its own remaining time; the phases still to come are
    taken from the estimate made before the run (``estimate``: seconds per phase of
    :data:`PHASES`), scaled by how the finished phases compared with their estimates, so
    the time left converges to zero as the run ends, whichever phase errs.
    """

    def __init__(self, estimate: Dict[str, float], progress: ProgressCallback):
        self.estimate = estimate
        self.progress = progress
        self.finished: Dict[str, float] = {}  # phase -> seconds it took
        self.phase: Optional[str] = None
        self.phase_started = 0.0
        self.started = time.perf_counter()

    def __call__(self, p: Progress) -> None:
        now = time.perf_counter()
        if p.phase != self.phase:
            if self.phase is not None:
                self.finished[self.phase] = now - self.phase_started
            self.phase, self.phase_started = p.phase, now
        planned = sum(self.estimate.get(name, 0.0) for name in self.finished)
        drift = sum(self.finished.values()) / planned if planned > 0 else 1.0
        planned_left = max(0.0, drift * self.estimate.get(p.phase, 0.0)
                           - (now - self.phase_started))
        own = p.remaining
        if own != own:  # no pace yet: the estimate, less the time already spent in it
            own = planned_left
        elif p.phase in SEVERAL_STAGES:  # the pace is the current stage's only
            own = max(own, planned_left)
        later = PHASES[PHASES.index(p.phase) + 1:] if p.phase in PHASES else ()
        remaining = own + drift * sum(self.estimate.get(name, 0.0) for name in later)
        self.progress(dataclasses.replace(p, elapsed=now - self.started, remaining=remaining))

    def finish(self) -> None:
        """Report the run's end: its last phase done, nothing left.  The stages after a
        phase's last pace report (the mix, guard and check after the Wiener stage) report
        nothing, so without this the last line could still show their estimate."""
        phase = self.phase or PHASES[-1]
        self.progress(Progress(phase, 1, 1, float("nan"),
                               time.perf_counter() - self.started, 0.0))
