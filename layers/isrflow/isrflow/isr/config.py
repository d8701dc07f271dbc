"""IsrConfig: which ISR steps run and with which options (YAML/JSON-loadable)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isrflow.model.errors import ConfigError

OverscanFit = Literal["MEDIAN", "MEAN", "MEDIAN_PER_ROW", "MEAN_PER_ROW", "POLY"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SaturationConfig(_Section):
    enabled: bool = True
    suspect: bool = True
    grow: int = Field(default=1, ge=0, description="grow SAT footprints by this many pixels (Manhattan)")
    widen_trails: bool = Field(default=True, description="widen wide saturated row spans (ip_isr rule)")


class OverscanConfig(_Section):
    enabled: bool = True
    fit_type: OverscanFit = "MEDIAN_PER_ROW"
    order: int = Field(default=1, ge=0, description="polynomial order for POLY")
    clip_sigma: float | None = Field(
        default=3.0, gt=0, description="outlier rejection in robust sigmas; None = off"
    )
    parallel: bool = Field(default=False, description="also subtract a per-column parallel-overscan level")


class LinearityConfig(_Section):
    enabled: bool = False
    coefficients: dict[str, list[float]] | None = Field(
        default=None, description="per amp name [c2, c3, ...]; None = the camera model's coefficients"
    )


class CrosstalkConfig(_Section):
    enabled: bool = False
    matrix: list[list[float]] | None = Field(
        default=None, description="matrix[victim][source]; None = the camera model's matrix"
    )


class CosmicRayConfig(_Section):
    enabled: bool = False
    threshold: float = Field(default=5.0, gt=0, description="detection threshold in sigma above background")
    sharpness: float = Field(default=2.5, gt=1, description="peak over median-of-8-neighbours ratio")
    grow: int = Field(default=1, ge=0)


class IsrConfig(_Section):
    """The ISR configuration of :func:`isrflow.isr.run_isr`: every step, in execution order.

    A step whose calibration is not supplied is skipped and recorded as not applied. Built from
    keyword arguments or a mapping (pydantic validation: an unknown key or a bad value raises
    with the field named), e.g. ``IsrConfig(dark=False, edge_width=4)``.

    Attributes
    ----------
    saturation, overscan, linearity, crosstalk, cosmic_rays : sections
        Each with ``enabled`` and its own parameters (levels in ADU or e- as each section says).
    gain, variance, bias, dark, flat, defects, nan_masking, interpolate : bool
        Whether each step runs (when its calibration or input is there).
    edge_width : int
        Pixels masked as EDGE at the detector border (>= 0).
    interpolate_planes : list of str
        Mask planes whose pixels are interpolated over (default BAD and SAT).
    """

    saturation: SaturationConfig = SaturationConfig()
    overscan: OverscanConfig = OverscanConfig()
    linearity: LinearityConfig = LinearityConfig()
    crosstalk: CrosstalkConfig = CrosstalkConfig()
    gain: bool = True
    variance: bool = True
    bias: bool = True
    dark: bool = True
    flat: bool = True
    defects: bool = True
    nan_masking: bool = True
    edge_width: int = Field(
        default=0, ge=0, description="mask this many pixels at the detector border as EDGE"
    )
    cosmic_rays: CosmicRayConfig = CosmicRayConfig()
    interpolate: bool = True
    interpolate_planes: list[str] = Field(default_factory=lambda: ["BAD", "SAT"])

    @classmethod
    def from_file(cls, path: str | Path) -> IsrConfig:
        """Load from YAML or JSON; ConfigError naming the file and the bad field."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read ISR config ({exc})") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{path}: ISR config field {field!r}: {first['msg']}") from None
