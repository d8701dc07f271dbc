"""Per-amplifier corrections on overscan-subtracted ADU, before gain: linearity and crosstalk."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isrflow.camera.model import Amplifier
from isrflow.isr.assembly import assembled_view, readout_view
from isrflow.model.errors import ConfigError


def linearize(values: np.ndarray, coefficients: Sequence[float]) -> None:
    """In place: ``x <- x + c2 x^2 + c3 x^3 + ...`` (x in overscan-subtracted ADU)."""
    if not coefficients:
        return
    correction = np.full_like(values, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        correction *= values
        correction += c
    correction *= values
    correction *= values
    values += correction


def delinearize(linear: np.ndarray, coefficients: Sequence[float], iterations: int = 30) -> np.ndarray:
    """Exact inverse of :func:`linearize` (Newton's method, float64): raw ADU from linear ADU."""
    target = np.asarray(linear, dtype=np.float64)
    x = target.copy()
    if not coefficients:
        return x
    for _ in range(iterations):
        f = x.copy()
        deriv = np.ones_like(x)
        for k, c in enumerate(coefficients, start=2):
            f += c * x**k
            deriv += k * c * x ** (k - 1)
        step = (f - target) / deriv
        x -= step
        if np.max(np.abs(step), initial=0.0) < 1e-9:
            break
    return x


def apply_linearity(
    image: np.ndarray, amps: Sequence[Amplifier], overrides: dict[str, list[float]] | None
) -> bool:
    """Linearize every amplifier's assembled box in place. Returns True if any amp was corrected."""
    applied = False
    for amp in amps:
        coeffs = overrides.get(amp.name) if overrides is not None else amp.linearity
        if coeffs:
            linearize(assembled_view(image, amp), coeffs)
            applied = True
    return applied


def crosstalk_subtrahends(
    image: np.ndarray, amps: Sequence[Amplifier], matrix: Sequence[Sequence[float]]
) -> list[np.ndarray | None]:
    """Per victim, the crosstalk signal in the victim's readout order: sum_s c[v][s] * source_s."""
    n = len(amps)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ConfigError(f"crosstalk matrix must be {n}x{n} for this detector, got {len(matrix)} rows")
    shapes = {amp.data.shape for amp in amps}
    if len(shapes) != 1:
        raise ConfigError("crosstalk needs amplifiers of one data shape")
    sources = [readout_view(image, amp) for amp in amps]
    out: list[np.ndarray | None] = []
    for v in range(n):
        total = None
        for s in range(n):
            c = matrix[v][s]
            if s == v or c == 0.0:
                continue
            term = sources[s] * np.float32(c)
            total = term if total is None else total + term
        out.append(total)
    return out


def apply_crosstalk(image: np.ndarray, amps: Sequence[Amplifier], matrix: Sequence[Sequence[float]]) -> None:
    """Remove crosstalk in place (coefficients dimensionless, on overscan-subtracted ADU)."""
    subtrahends = crosstalk_subtrahends(image, amps, matrix)
    for amp, sub in zip(amps, subtrahends, strict=True):
        if sub is not None:
            readout_view(image, amp)[...] -= sub
