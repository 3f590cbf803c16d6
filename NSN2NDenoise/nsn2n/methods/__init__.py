"""The denoising methods and the registry the pipeline picks them from.

Each method lives in its own folder and implements the ``Method`` protocol of
``base.py``: its config and presets, the volumes it accepts, its pre- and
post-processing, a time estimate and a typed run report.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .base import Method, RunReport
from .nsn2n import NSN2N
from .series import Series
from .speckle2self import Speckle2Self

# Keyed by the names of options.METHODS ("auto" aside).
REGISTRY: Dict[str, Method] = {method.name: method
                               for method in (NSN2N(), Speckle2Self(), Series())}
# ``auto`` runs, among the methods for the input's kind (a volume or a series), the one
# that claims its modality (``Method.default_for``), else this one for a volume: NS-N2N
# only assumes noise independent across slices, true of most CT and MRI.
AUTO_FALLBACK = "nsn2n"


def method_named(name: str) -> Method:
    return REGISTRY[name]


def resolve_method(requested: str, modality: Optional[str], series: bool = False) -> Method:
    """The method a request picks: by name, or for ``auto`` by the kind of input (a 4-D
    series or not) and the modality."""
    if requested != "auto":
        return REGISTRY[requested]
    kind = [method for method in REGISTRY.values() if method.series == series]
    fallback = REGISTRY[AUTO_FALLBACK] if REGISTRY[AUTO_FALLBACK] in kind else kind[0]
    return next((method for method in kind if modality in method.default_for), fallback)


def method_of_config(config: Any) -> Method:
    """The method whose config ``config`` is."""
    for method in REGISTRY.values():
        if type(config) is method.config_class:
            return method
    raise TypeError(f"no method takes a {type(config).__name__}")


def report_from_dict(data: Dict[str, Any]) -> RunReport:
    """The typed report of a run from its ``--report`` JSON (``RunReport.to_dict``)."""
    method = REGISTRY.get(data.get("method"))
    return (method.report_class if method else RunReport).from_dict(data)


__all__ = ["AUTO_FALLBACK", "REGISTRY", "Method", "RunReport", "method_named",
           "method_of_config", "report_from_dict", "resolve_method"]
