"""NS-N2N, Neighboring Slice Noise2Noise (Zhou et al., arXiv 2411.10831).

``config`` (settings and presets), ``pairs`` (slice runs and weight masks W), ``losses``
(L_Recon, L_RC, L_IC) and ``method`` (training, inference, refinement, the ``NSN2N``
method of the registry).
"""

from .config import PRESETS, NSN2NConfig, config_for
from .method import NSN2N, NSN2NReport, estimate, fit_predict

__all__ = ["NSN2N", "NSN2NConfig", "NSN2NReport", "PRESETS", "config_for",
           "estimate", "fit_predict"]
