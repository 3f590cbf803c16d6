"""Speckle2Self's settings: one frozen, validated config and the presets."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from ...options import PRECISIONS
from ..base import preset_config
from .restore import SEARCH_GRAINS, STRENGTH


@dataclasses.dataclass(frozen=True)
class Speckle2SelfConfig:
    """Every setting of one Speckle2Self run; validated on construction."""

    steps: int = 200
    # Start from the shipped weights (module docstring).  Training from a random start
    # needs a reconstruction-only warm-up and a weaker consistency (docs/speckle2self.md:
    # consistency_weight=0.1, consistency_warmup=0.3, learning_rate=2e-3).
    pretrained: bool = True
    max_seconds: Optional[float] = None
    width: int = 32  # the published encoder/decoder width; the shipped weights need it
    levels: int = 4  # output stride 2**levels = 16, as published
    output_norm: str = "none"
    consistency_weight: float = 0.3  # as in pretraining; module docstring
    consistency_warmup: float = 0.0  # reconstruction only for this fraction of the budget
    patch: int = 128
    batch: int = 8
    learning_rate: float = 5e-4  # fine-tuning; cosine-scheduled (published 1e-3 constant)
    beta1: float = 0.5
    average_tail: float = 0.25
    # restore.py; search_grains = guard_factor = 0 return the network output as
    # it is (published)
    search_grains: float = SEARCH_GRAINS
    nonlocal_strength: float = STRENGTH
    guard_factor: float = 2.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # options.PRECISIONS

    def __post_init__(self):
        multiple = 2 ** self.levels
        checks = [
            (self.precision in PRECISIONS,
             "precision must be one of " + ", ".join(PRECISIONS)),
            (self.steps >= 1, "steps must be >= 1"),
            (self.max_seconds is None or self.max_seconds > 0, "max_seconds must be > 0"),
            (self.width >= 4, "width must be >= 4"),
            (2 <= self.levels <= 5, "levels must be in 2..5"),
            (self.patch >= multiple and self.patch % multiple == 0,
             f"patch must be a positive multiple of {multiple}"),
            (self.batch >= 1, "batch must be >= 1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.consistency_weight >= 0, "consistency_weight must be >= 0"),
            (0 <= self.consistency_warmup < 0.5, "consistency_warmup must be in [0, 0.5)"),
            (0 <= self.beta1 < 1, "beta1 must be in [0, 1)"),
            (0 <= self.average_tail < 1, "average_tail must be in [0, 1)"),
            (self.search_grains >= 0, "search_grains must be >= 0"),
            (self.nonlocal_strength >= 0, "nonlocal_strength must be >= 0"),
            (self.guard_factor >= 0, "guard_factor must be >= 0"),
            (self.output_norm in ("instance", "affine", "none"),
             "output_norm must be instance, affine or none"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def multiple(self) -> int:
        return 2 ** self.levels


# Fine-tuning steps, not seconds, so a seed reproduces (same CPU, same torch thread
# count).  A step of 8 crops of 128x128 takes 0.6-0.75 s in bf16 on the 2-core benchmark
# CPUs and about twice that in fp32.  Measured on both simulated stacks
# (docs/speckle2self.md): the pretrained weights alone already give most of the result;
# 100 and 300 steps added 0.007 and 0.009 SSIM on us-fine and nothing on us-coarse.  So
# the presets fine-tune briefly (issue 23: balanced took 445 s on a 24x256x256 stack on a
# CPU without native bf16 with 200 steps).
PRESETS: Dict[str, Dict] = {
    "fast": dict(steps=10),
    "balanced": dict(steps=40),
    "best": dict(steps=120),
}


def config_for(preset: str = "balanced", **overrides) -> Speckle2SelfConfig:
    return preset_config(Speckle2SelfConfig, PRESETS, preset, overrides)
