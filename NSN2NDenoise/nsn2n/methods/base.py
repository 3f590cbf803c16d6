"""What every denoising method provides (:class:`Method`) and what a run reports
(:class:`RunReport`).

The pipeline knows methods only through this protocol: it picks one from the registry
(``methods/__init__.py``), builds its config from the user's options, and hands it the
volume.  Everything specific to a method, from how it turns a volume into the stack it
trains on to how it turns the result back, lives in the method's own folder.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple, Type

import numpy as np

from ..options import DenoiseOptions
from ..runtime import CancelEvent, Estimate, ProgressCallback
from ..volume import Volume


@dataclasses.dataclass(frozen=True)
class RunReport:
    """What one run did; every method extends it with what it measured.

    The first fields come from training; the next four are filled in when the run is
    placed in its volume (slice axis, modality) and its options (preset, seed).
    """

    method: str
    device: str
    steps: int
    train_seconds: float
    total_seconds: float
    recoveries: int  # divergence recoveries of the training loop (training.py)
    final_loss: float
    slice_axis: Optional[int] = None
    modality: Optional[str] = None
    preset: Optional[str] = None
    seed: Optional[int] = None
    warning: Optional[str] = None  # for the user, when the output needs a careful look
    precision: Optional[str] = None  # the autocast type used: fp32, bf16 or fp16
    # Wall seconds per phase of the run (runtime.Stopwatch), in the order they ran.
    phase_seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
    estimated_seconds: Optional[float] = None  # the estimate shown before the run

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunReport":
        """The report :meth:`to_dict` (or its JSON) gave; keys this class lacks are left
        out, so a report written by a newer engine still reads."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def summary(self) -> str:
        """What the user should know beyond steps and time, as a clause (or empty)."""
        return ""


class Method(Protocol):
    """A denoising method: its config, presets, the volume it accepts, a time estimate."""

    name: str  # one of options.METHODS
    config_class: Type
    report_class: Type[RunReport]
    presets: Mapping[str, Mapping[str, Any]]  # keys: options.PRESETS
    default_for: Tuple[str, ...]  # modalities for which ``auto`` picks this method
    series: bool  # it takes 4-D series of volumes (and only those)

    def config(self, options: DenoiseOptions) -> Any:
        """The config ``options`` ask for (its preset, with the options that override
        it); ValueError if invalid."""

    def stack_shape(self, volume: Volume, options: DenoiseOptions) -> Tuple[int, int, int]:
        """The ``(D, H, W)`` stack of 2-D images the method trains on and denoises."""

    def denoise(self, volume: Volume, config: Any, options: DenoiseOptions,
                modality: Optional[str], progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[Volume, RunReport]:
        """The denoised volume (same geometry and pixel type) and the run's report.
        ``reference`` is a clean array for the benchmark's supervised bound; a method
        without one raises ValueError."""

    def estimate(self, shape: Tuple[int, int, int], config: Any) -> Estimate:
        """Expected wall seconds per phase on this machine for a stack of ``shape`` (slice
        axis first); measured by timing the method on small probes."""


def preset_config(config_class, presets: Mapping[str, Mapping[str, Any]], preset: str,
                  overrides: Mapping[str, Any]):
    """``config_class`` built from ``presets[preset]`` with the non-None ``overrides``."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets)}")
    values = dict(presets[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_class(**values)


def training_overrides(options: DenoiseOptions) -> Dict[str, Any]:
    """What every learned method takes from the options besides the preset."""
    return dict(steps=options.steps, max_seconds=options.max_seconds, seed=options.seed,
                device=options.device, precision=options.precision)


def stack_of(shape: Tuple[int, ...], axis: int) -> Tuple[int, int, int]:
    """The ``(D, H, W)`` shape of a 3-D ``shape`` cut along ``axis``."""
    return (shape[axis],) + tuple(n for i, n in enumerate(shape[:3]) if i != axis)
