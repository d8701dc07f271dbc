"""What building each calibration type means: inputs, ISR step set, scaling, combine settings.

After cp_pipe's per-type pipelines (``cpBias``, ``cpDark``, ``cpFlat``, ``cpDefects``; see
the reference, section 2.3), in electrons:

============  ===========  ==================================================  ============  =================
type          inputs       ISR step set                                        scaling       intermediate
============  ===========  ==================================================  ============  =================
``bias``      bias raws    overscan, assembly, gain, variance (+ SAT flags,    unity         ``cpBiasProc``
                           no growth or trail widening)
``dark``      dark raws    ... + bias                                          dark time     ``cpDarkProc``
``flat``      flat raws    ... + bias + dark                                   Normalize     ``cpFlatProc``
``defects``   the master   none (hot pixels from the dark, cold from the flat)  -             -
              dark + flat
============  ===========  ==================================================  ============  =================

Linearity, crosstalk, defects, flat, cosmic-ray masking and interpolation are off in every
step set (``isr_config`` overrides in the build input are applied on top). Masters are in the
calibration MEF format: bias in e-, dark in e- per second of dark time, flat dimensionless
(keeping the detector-to-detector response), defects as a DEFECTS table.

Pure Python (pydantic only): the plan and summary Lambdas import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from isrflow.isr.config import IsrConfig
from isrflow.model.errors import ConfigError

CalibType = Literal["bias", "dark", "flat", "defects"]
CALIB_TYPES: tuple[str, ...] = ("bias", "dark", "flat", "defects")
Scaling = Literal["unity", "darktime", "normalize", "none"]

#: Input mask planes a combine ignores (cp_pipe's ``mask`` plus BAD and NO_DATA, which mark
#: non-finite and missing pixels here); non-finite values are always ignored.
DEFAULT_MASK_PLANES: tuple[str, ...] = ("BAD", "SAT", "INTRP", "CR", "DETECTED", "NO_DATA")


@dataclass(frozen=True)
class BuildSpec:
    """How one calibration type is built."""

    calib_type: str
    obs_type: str | None  # raws of this observation type are the inputs (None: masters are)
    intermediate: str | None  # dataset type of the ISR'd inputs
    needed_calibs: tuple[str, ...]  # calibrations the inputs' ISR uses
    scaling: Scaling
    per_filter: bool  # one master per physical filter
    isr: dict[str, Any]  # the ISR step set (IsrConfig fields)


_OFF = {
    "linearity": {"enabled": False},
    "crosstalk": {"enabled": False},
    "defects": False,
    "flat": False,
    "cosmic_rays": {"enabled": False},
    "interpolate": False,
    "edge_width": 0,
    "gain": True,
    "variance": True,
    "nan_masking": True,
    "overscan": {"enabled": True},
}

SPECS: dict[str, BuildSpec] = {
    "bias": BuildSpec(
        "bias",
        "bias",
        "cpBiasProc",
        (),
        "unity",
        False,
        {
            **_OFF,
            "saturation": {"enabled": True, "suspect": False, "grow": 0, "widen_trails": False},
            "bias": False,
            "dark": False,
        },
    ),
    "dark": BuildSpec(
        "dark",
        "dark",
        "cpDarkProc",
        ("bias",),
        "darktime",
        False,
        {**_OFF, "saturation": {"enabled": False}, "bias": True, "dark": False},
    ),
    "flat": BuildSpec(
        "flat",
        "flat",
        "cpFlatProc",
        ("bias", "dark"),
        "normalize",
        True,
        {**_OFF, "saturation": {"enabled": False}, "bias": True, "dark": True},
    ),
    "defects": BuildSpec("defects", None, None, (), "none", False, {}),
}


def spec(calib_type: str) -> BuildSpec:
    try:
        return SPECS[calib_type]
    except KeyError:
        raise ConfigError(
            f"unknown calibration type {calib_type!r}; build one of {', '.join(CALIB_TYPES)}"
        ) from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def isr_config_for(calib_type: str, overrides: dict[str, Any] | None = None) -> IsrConfig:
    """The ISR step set of a calibration type as an :class:`IsrConfig`, with ``overrides``
    (IsrConfig fields, nested sections merged) applied on top."""
    build = spec(calib_type)
    if build.intermediate is None:
        raise ConfigError(f"{calib_type} is built from master calibrations, not from ISR'd raws")
    try:
        return IsrConfig.model_validate(_merge(build.isr, overrides or {}))
    except Exception as exc:  # pydantic ValidationError -> a ConfigError naming the field
        errors = getattr(exc, "errors", None)
        if callable(errors):
            first = errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"isr_config field {field!r}: {first['msg']}") from None
        raise ConfigError(f"isr_config: {exc}") from None
