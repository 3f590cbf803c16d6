"""Speckle2Self (Li, Navab, Jiang, arXiv 2507.06828): ultrasound speckle reduction.

``config`` (settings and presets), ``msp`` (multi-scale perturbation and augmentation),
``net`` (three encoders, one decoder), ``losses``, ``pretrained`` (the shipped weights in
``weights/``), ``restore`` (the guided average after the network) and ``method``
(fine-tuning, inference, the ``Speckle2Self`` method of the registry).
"""

from .config import PRESETS, Speckle2SelfConfig, config_for
from .method import Speckle2Self, Speckle2SelfReport, estimate, fit_predict

__all__ = ["PRESETS", "Speckle2Self", "Speckle2SelfConfig", "Speckle2SelfReport",
           "config_for", "estimate", "fit_predict"]
