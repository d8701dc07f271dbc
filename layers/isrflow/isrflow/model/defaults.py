"""Defaults that the event models, the CLI and the Python API share, named once here.

Plain Python (no pydantic), so the CLI can use them in its option declarations without
importing the models at start-up.
"""

from __future__ import annotations

#: Exposures of one detector (which share its calibrations) per ISR invocation, unless an input
#: says otherwise: a worker decodes the calibrations for the first and reuses them for the rest.
DEFAULT_CLUSTER_SIZE = 4

__all__ = ["DEFAULT_CLUSTER_SIZE"]
