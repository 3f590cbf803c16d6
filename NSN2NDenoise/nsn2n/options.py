"""What a user can choose, as one frozen, validated value; torch-free.

The command line, the Slicer panel (whose parameter node uses the same field names) and
scripts all build a :class:`DenoiseOptions`; the pipeline turns it into a method's config.
Importing this module imports neither torch nor anything heavy, so the Slicer module can
offer the choices before torch is installed.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Union

from .errors import InputError

METHODS = ("auto", "nsn2n", "speckle2self", "series")
PRESETS = ("fast", "balanced", "best")
MODALITIES = ("CT", "MR", "US")
SLICE_AXES = ("auto", "0", "1", "2")
BIAS_CORRECTION = {"auto": None, "on": True, "off": False}
# auto: bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16 or
# AMX), fp16 with loss scaling on other CUDA GPUs, else fp32 (runtime.autocast_dtype).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclasses.dataclass(frozen=True)
class DenoiseOptions:
    """``None`` (and ``"auto"``) mean "decide from the data".

    ``slice_axis`` also takes the strings ``"0"``..``"2"`` and ``bias_correction`` the
    words ``"auto"``, ``"on"``, ``"off"`` (what a combo box or a command line gives); they
    are stored as ``int`` and ``Optional[bool]``.
    """

    method: str = "auto"
    preset: str = "balanced"
    steps: Optional[int] = None  # training steps; None: the preset's
    max_minutes: Optional[float] = None  # a time budget for the whole run
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    slice_axis: Union[str, int] = "auto"
    modality: Optional[str] = None
    bias_correction: Optional[bool] = None
    # A series: volumes of the same kind are this many apart (2 for ASL label / control).
    series_stride: int = 1
    # Train once, apply to many (NS-N2N): start from the network saved at ``model`` and
    # fine-tune it (checkpoint.py); write the trained network to ``save_model``.
    model: Optional[str] = None
    save_model: Optional[str] = None
    # NS-N2N: the noise's standard deviation in the input's units, when the user knows it
    # (from a repeat or a noise scan); None: estimated from the volume.
    noise_sigma: Optional[float] = None

    def __post_init__(self):
        axis = self.slice_axis
        if isinstance(axis, str) and axis in SLICE_AXES[1:]:
            axis = int(axis)
        if axis not in ("auto", 0, 1, 2) or isinstance(axis, bool):
            raise InputError(f"slice axis must be auto, 0, 1 or 2, not {self.slice_axis!r}")
        object.__setattr__(self, "slice_axis", axis)
        bias = self.bias_correction
        if isinstance(bias, str):
            if bias not in BIAS_CORRECTION:
                raise InputError(f"bias correction must be auto, on or off, not {bias!r}")
            object.__setattr__(self, "bias_correction", BIAS_CORRECTION[bias])
        elif bias not in (None, True, False):
            raise InputError(f"bias correction must be auto, on or off, not {bias!r}")
        checks = [
            (self.method in METHODS, f"unknown method {self.method!r}; choose one of "
             + ", ".join(METHODS)),
            (self.preset in PRESETS, f"unknown preset {self.preset!r}; choose one of "
             + ", ".join(PRESETS)),
            (self.steps is None or (_is_int(self.steps) and self.steps >= 1),
             f"steps must be a whole number >= 1, not {self.steps!r}"),
            (self.max_minutes is None or (isinstance(self.max_minutes, (int, float))
                                          and self.max_minutes > 0),
             f"max minutes must be > 0, not {self.max_minutes!r}"),
            (_is_int(self.seed) and self.seed >= 0,
             f"seed must be a whole number >= 0, not {self.seed!r}"),
            (isinstance(self.device, str) and bool(_DEVICE.match(self.device.lower())),
             f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps"),
            (self.precision in PRECISIONS, f"unknown precision {self.precision!r}; choose "
             "one of " + ", ".join(PRECISIONS)),
            (_is_int(self.series_stride) and self.series_stride >= 1,
             f"series stride must be a whole number >= 1, not {self.series_stride!r}"),
            (self.modality is None or str(self.modality).upper() in MODALITIES + ("MRI",),
             f"unknown modality {self.modality!r}; use one of " + ", ".join(MODALITIES)),
            (self.noise_sigma is None or (isinstance(self.noise_sigma, (int, float))
                                          and not isinstance(self.noise_sigma, bool)
                                          and 0 < self.noise_sigma < float("inf")),
             f"noise sigma must be a number > 0, not {self.noise_sigma!r}"),
            (all(path is None or (isinstance(path, str) and path.lower().endswith(".pt"))
                 for path in (self.model, self.save_model)),
             "a saved network is a .pt file"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)

    @property
    def max_seconds(self) -> Optional[float]:
        return None if self.max_minutes is None else 60.0 * self.max_minutes


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
