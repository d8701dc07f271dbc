"""Instrument signature removal for one detector: pure functions over float32 arrays.

:func:`isrflow.isr.pipeline.run_isr` composes the steps in the order documented there; each
step module does one job and states its units.
"""

from .config import IsrConfig
from .pipeline import Calibrations, load_calibrations, run_isr

__all__ = ["IsrConfig", "Calibrations", "load_calibrations", "run_isr"]
