"""Flat normalisation over the focal plane: one scale per exposure from every detector.

After cp_pipe's ``CpFlatNormalizationTask`` (itself after pipe_drivers and Pan-STARRS
``pmFlatNormalize.c``). The background level ``B[d, e]`` of detector ``d`` in flat exposure
``e`` (the clipped mean of the ISR'd frame, in e-) is modelled as ``E[e] x G[d]``: an
exposure's illumination times a detector's response. In log space, with weights ``w[d, e]``
(the number of pixels the level was measured on; 0 where the frame is missing):

1. ``G = 0``; ``E[e]`` = weighted mean over detectors of ``log B[d, e]``;
2. ``iterations`` times: ``G[d]`` = weighted mean over exposures of ``log B - E`` (a detector
   with no data gets the mean of the others); ``G`` is shifted so that the weighted mean of
   ``exp(G)`` is 1; ``E[e]`` = weighted mean over detectors of ``log B - G``.

Each input (d, e) is then divided by ``exp(E[e])`` alone, so the master flat of each detector
keeps its response ``exp(G[d])`` relative to the focal plane (mean 1), as cp_pipe does.

Pure Python (``math`` only): the Normalize step runs in a Lambda without numpy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

from isrflow.model.errors import CalibrationError

ITERATIONS = 10


@dataclass(frozen=True)
class FlatScales:
    exposure: dict[Hashable, float]  # linear E[e]: what every input of exposure e is divided by
    detector: dict[Hashable, float]  # linear G[d]: each detector's response (weighted mean 1)


def normalize(
    levels: Mapping[tuple[Hashable, Hashable], tuple[float | None, float | None]],
    iterations: int = ITERATIONS,
) -> FlatScales:
    """Solve ``B[d, e] ~ E[e] G[d]`` for ``levels`` = {(detector, exposure): (level, weight)}.

    Levels that are not positive and finite, or have no weight, are ignored. Raises
    CalibrationError when nothing usable is left.
    """
    logs: dict[tuple[Hashable, Hashable], tuple[float, float]] = {}
    for (d, e), (level, weight) in levels.items():
        if level is not None and weight and weight > 0 and math.isfinite(level) and level > 0:
            logs[(d, e)] = (math.log(level), float(weight))
    if not logs:
        raise CalibrationError("flat normalisation: no flat frame has a positive, finite level")
    detectors = sorted({d for d, _ in logs}, key=repr)
    exposures = sorted({e for _, e in logs}, key=repr)
    by_exp: dict[Hashable, list[tuple[Hashable, float, float]]] = {e: [] for e in exposures}
    by_det: dict[Hashable, list[tuple[Hashable, float, float]]] = {d: [] for d in detectors}
    for (d, e), (b, w) in logs.items():
        by_exp[e].append((d, b, w))
        by_det[d].append((e, b, w))

    def wmean(pairs: list[tuple[float, float]]) -> float:
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total

    g = dict.fromkeys(detectors, 0.0)
    e_log = {e: wmean([(b - g[d], w) for d, b, w in by_exp[e]]) for e in exposures}
    det_weight = {d: sum(w for _, _, w in by_det[d]) for d in detectors}
    for _ in range(max(1, iterations)):
        g = {d: wmean([(b - e_log[e], w) for e, b, w in by_det[d]]) for d in detectors}
        shift = math.log(sum(det_weight[d] * math.exp(g[d]) for d in detectors) / sum(det_weight.values()))
        g = {d: v - shift for d, v in g.items()}
        e_log = {e: wmean([(b - g[d], w) for d, b, w in by_exp[e]]) for e in exposures}
    return FlatScales(
        exposure={e: math.exp(v) for e, v in e_log.items()}, detector={d: math.exp(v) for d, v in g.items()}
    )
