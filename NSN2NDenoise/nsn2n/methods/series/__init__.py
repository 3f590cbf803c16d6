"""The series method: NS-N2N with time as the neighbour axis, for a 4-D series of repeated
volumes of one anatomy (``config`` and ``method``)."""

from .config import PRESETS, SeriesConfig, config_for
from .method import Series, SeriesReport

__all__ = ["PRESETS", "Series", "SeriesConfig", "SeriesReport", "config_for"]
