"""The series method's settings: NS-N2N's, with the stride between volumes of one kind and
a non-local search that reaches across volumes rather than across slices."""

from __future__ import annotations

import dataclasses
from typing import Dict

from ..base import preset_config
from ..nsn2n.config import NSN2NConfig, explicit_steps


@dataclasses.dataclass(frozen=True)
class SeriesConfig(NSN2NConfig):
    """NS-N2N's settings, applied to each slice's volumes in time order."""

    stride: int = 1  # volumes of the same kind are this many apart (ASL label/control: 2)
    context: int = 4  # volumes of the same kind on each side averaged into the 2nd input

    def __post_init__(self):
        super().__post_init__()
        if self.stride < 1:
            raise ValueError("stride must be >= 1")
        if self.context < 1:
            raise ValueError("context must be >= 1")


# The presets as NS-N2N's were before they were sized for fp32 CPUs (issue 23): the series
# results (docs/nsn2n.md, "Series") were measured with them and not re-measured since.
# The output is the network's: its second input already averages the repeats, and on the
# real ASL series each of NS-N2N's refinement stages (guided non-local means, Wiener,
# guard: kept at zero here, like block matching, which came after) took 1.7-1.9 dB of its
# 4 dB gain away (docs/nsn2n.md, "Series").
PRESETS: Dict[str, Dict] = {
    name: dict(steps=steps, tta=tta, width=16, guard_factor=0.0, wiener_stride=0,
               nonlocal_strength=0.0, block_stride=0)
    for name, steps, tta in (("fast", 500, 4), ("balanced", 1000, 8), ("best", 5000, 8))}


def config_for(preset: str = "balanced", **overrides) -> SeriesConfig:
    return preset_config(SeriesConfig, PRESETS, preset, explicit_steps(overrides))
