"""Instrument signature removal for one detector: pure functions over float32 arrays.

:func:`isrflow.isr.pipeline.run_isr` composes the steps in the order documented there; each
step module does one job and states its units. Names are imported lazily so that
``isrflow.isr.config`` (pydantic only) can be used where numpy is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "IsrConfig": ".config",
    "Calibrations": ".pipeline",
    "CalibrationInput": ".pipeline",
    "load_calibrations": ".pipeline",
    "run_isr": ".pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
