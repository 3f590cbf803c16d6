"""The series method's settings: NS-N2N's, with the stride between volumes of one kind and
a non-local search that reaches across volumes rather than across slices."""

from __future__ import annotations

import dataclasses
from typing import Dict

from ..base import preset_config
from ..nsn2n.config import PRESETS as NSN2N_PRESETS
from ..nsn2n.config import NSN2NConfig


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


# The presets' step counts are NS-N2N's.  The output is the network's: its second input
# already averages the repeats, and on the real ASL series each of NS-N2N's refinement
# stages (guided non-local means, Wiener, guard: kept at zero here) took 1.7-1.9 dB of its
# 4 dB gain away (docs/nsn2n.md, "Series").
PRESETS: Dict[str, Dict] = {name: dict(values, guard_factor=0.0, wiener_stride=0,
                                       nonlocal_strength=0.0)
                            for name, values in NSN2N_PRESETS.items()}


def config_for(preset: str = "balanced", **overrides) -> SeriesConfig:
    return preset_config(SeriesConfig, PRESETS, preset, overrides)
