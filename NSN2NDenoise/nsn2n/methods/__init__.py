"""The denoising methods and the registry the pipeline picks them from.

Each method lives in its own folder and implements the ``Method`` protocol of
``base.py``: its config and presets, the volumes it accepts, its pre- and
post-processing, a time estimate and a typed run report.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .base import Method, RunReport
from .nsn2n import NSN2N
from .speckle2self import Speckle2Self

# Keyed by the names of options.METHODS ("auto" aside).
REGISTRY: Dict[str, Method] = {method.name: method for method in (NSN2N(), Speckle2Self())}
# ``auto`` runs the method that claims the modality (``Method.default_for``), else this
# one: NS-N2N only assumes noise independent across slices, true of most CT and MRI.
AUTO_FALLBACK = "nsn2n"


def method_named(name: str) -> Method:
    return REGISTRY[name]


def resolve_method(requested: str, modality: Optional[str]) -> Method:
    """The method a request picks: by name, or for ``auto`` by the modality."""
    if requested != "auto":
        return REGISTRY[requested]
    return next((method for method in REGISTRY.values() if modality in method.default_for),
                REGISTRY[AUTO_FALLBACK])


def method_of_config(config: Any) -> Method:
    """The method whose config ``config`` is."""
    for method in REGISTRY.values():
        if isinstance(config, method.config_class):
            return method
    raise TypeError(f"no method takes a {type(config).__name__}")


__all__ = ["AUTO_FALLBACK", "REGISTRY", "Method", "RunReport", "method_named",
           "method_of_config", "resolve_method"]
