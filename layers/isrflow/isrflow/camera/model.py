"""Camera descriptions as validated data.

A camera is a list of detectors; each detector uses an amplifier *layout* (the boxes of every
amplifier in the raw file) and may override per-amplifier electronics. Layouts are shared so
that 189 LSSTCam detectors do not repeat 16 amplifier boxes each.

Coordinates: boxes are 0-based ``(x0, y0, width, height)`` in the amplifier's HDU as stored on
disk (x is the fast, serial axis; numpy arrays are indexed ``[y, x]``). ``assembled`` boxes are
in the trimmed, assembled detector image. Gains are e-/ADU, read noise e-, saturation and
suspect levels raw ADU (pedestal included).
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from isrflow.model.errors import CameraError

ReadoutCorner = Literal["LL", "LR", "UR", "UL"]
RawFormat = Literal["single_hdu", "amp_hdus", "exposure_mef"]


class Box(BaseModel):
    """A 0-based pixel box: columns x0..x0+width-1, rows y0..y0+height-1."""

    model_config = ConfigDict(frozen=True)

    x0: int = Field(ge=0)
    y0: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    @classmethod
    def of(cls, x0: int, y0: int, width: int, height: int) -> Box:
        return cls(x0=x0, y0=y0, width=width, height=height)

    @property
    def x1(self) -> int:
        """One past the last column."""
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        """One past the last row."""
        return self.y0 + self.height

    @property
    def shape(self) -> tuple[int, int]:
        """numpy shape (rows, columns)."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """numpy index ``[y, x]`` selecting this box."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def contains(self, other: Box) -> bool:
        return self.x0 <= other.x0 and self.y0 <= other.y0 and other.x1 <= self.x1 and other.y1 <= self.y1

    def overlaps(self, other: Box) -> bool:
        return not (other.x1 <= self.x0 or self.x1 <= other.x0 or other.y1 <= self.y0 or self.y1 <= other.y0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.width, self.height)


def _box(value: object) -> object:
    """Accept ``[x0, y0, w, h]`` lists in data files as well as mappings."""
    if isinstance(value, (list, tuple)):
        if len(value) != 4:
            raise ValueError(f"a box needs 4 numbers (x0, y0, width, height), got {value!r}")
        return {"x0": value[0], "y0": value[1], "width": value[2], "height": value[3]}
    return value


class Electronics(BaseModel):
    """Per-amplifier electronic properties (what a detector may override)."""

    model_config = ConfigDict(frozen=True)

    gain: float = Field(gt=0, description="e- per ADU")
    read_noise: float = Field(ge=0, description="e- rms")
    saturation: float = Field(gt=0, description="raw ADU, pedestal included")
    suspect: float | None = Field(default=None, description="raw ADU; None = no suspect level")
    linearity: list[float] | None = Field(
        default=None,
        description=(
            "polynomial coefficients [c2, c3, ...]: linear = x + c2 x^2 + c3 x^3 + ..., x in "
            "overscan-subtracted ADU"
        ),
    )
    bias_level: float = Field(default=1000.0, description="typical pedestal, ADU (simulator only)")


class Amplifier(Electronics):
    """One amplifier: where its pixels are on disk and where they go in the detector."""

    name: str
    hdu: str | None = Field(
        default=None,
        description="EXTNAME of the amplifier's own HDU (amp_hdus cameras); None = the detector HDU",
    )
    raw_box: Box = Field(description="the whole amplifier readout (prescan+data+overscans) in its HDU")
    data: Box = Field(description="the imaging pixels in the HDU")
    serial_overscan: Box
    serial_prescan: Box | None = None
    parallel_overscan: Box | None = None
    flip_x: bool = Field(default=False, description="flip columns when assembling into the detector")
    flip_y: bool = Field(default=False, description="flip rows when assembling into the detector")
    assembled: Box = Field(description="where the trimmed data lands in the assembled detector")
    readout_corner: ReadoutCorner = Field(
        default="LL", description="corner of the on-disk data box read out first"
    )

    _normalise_boxes = field_validator(
        "raw_box",
        "data",
        "serial_overscan",
        "serial_prescan",
        "parallel_overscan",
        "assembled",
        mode="before",
    )(_box)

    @model_validator(mode="after")
    def _check_boxes(self) -> Amplifier:
        if self.assembled.shape != self.data.shape:
            raise ValueError(
                f"amp {self.name}: assembled box {self.assembled.shape} != data {self.data.shape}"
            )
        for label in ("data", "serial_overscan", "serial_prescan", "parallel_overscan"):
            box = getattr(self, label)
            if box is not None and not self.raw_box.contains(box):
                raise ValueError(f"amp {self.name}: {label} box lies outside the raw box")
        if self.data.overlaps(self.serial_overscan):
            raise ValueError(f"amp {self.name}: data and serial overscan boxes overlap")
        if self.serial_overscan.height < self.data.height or not (
            self.serial_overscan.y0 <= self.data.y0 and self.data.y1 <= self.serial_overscan.y1
        ):
            raise ValueError(f"amp {self.name}: serial overscan must span every data row")
        return self

    @property
    def readout_flips(self) -> tuple[bool, bool]:
        """Flips (x, y) taking the on-disk data box into readout order (first pixel at [0, 0])."""
        return (self.readout_corner in ("LR", "UR"), self.readout_corner in ("UR", "UL"))


class Detector(BaseModel):
    """One detector: identity, focal-plane place and its amplifiers (layout + overrides)."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(ge=0)
    name: str
    kind: Literal["science", "focus", "guider", "wavefront"] = "science"
    layout: str = Field(description="key of the camera's amplifier layout")
    hdu: str | None = Field(default=None, description="EXTNAME in an exposure file (exposure_mef)")
    x_mm: float = Field(default=0.0, description="focal-plane x of the detector centre, mm")
    y_mm: float = Field(default=0.0, description="focal-plane y of the detector centre, mm")
    rotation_deg: float = Field(default=0.0, description="detector rotation on the focal plane, degrees")
    serial: str = ""
    overrides: dict[str, dict[str, object]] = Field(
        default_factory=dict, description="per-amp Electronics overrides, keyed by amp name"
    )


class Camera(BaseModel):
    """A whole camera as loaded from its data file."""

    model_config = ConfigDict(frozen=True)

    instrument: str = Field(description="registry instrument name, e.g. 'HSC'")
    translator: str = Field(description="header translator key")
    raw_format: RawFormat
    raw_dtype: Literal["uint16", "int32"]
    pixel_size_um: float = Field(gt=0)
    layouts: dict[str, list[Amplifier]]
    crosstalk: dict[str, list[list[float]]] = Field(
        default_factory=dict,
        description="per layout: matrix[victim][source], dimensionless, on overscan-subtracted ADU",
    )
    detectors: list[Detector]

    @model_validator(mode="after")
    def _check(self) -> Camera:
        ids = [d.id for d in self.detectors]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.instrument}: duplicate detector ids")
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.instrument}: duplicate detector names")
        for det in self.detectors:
            if det.layout not in self.layouts:
                raise ValueError(f"{self.instrument} detector {det.id}: unknown layout {det.layout!r}")
            amp_names = {a.name for a in self.layouts[det.layout]}
            unknown = set(det.overrides) - amp_names
            if unknown:
                raise ValueError(f"{self.instrument} detector {det.id}: overrides for unknown amps {unknown}")
        for key, amps in self.layouts.items():
            _check_layout(self.instrument, key, amps)
        for key, matrix in self.crosstalk.items():
            n = len(self.layouts.get(key, []))
            if key not in self.layouts or len(matrix) != n or any(len(r) != n for r in matrix):
                raise ValueError(f"{self.instrument}: crosstalk matrix for {key!r} must be {n}x{n}")
        return self

    @cached_property
    def _by_id(self) -> dict[int, Detector]:
        return {d.id: d for d in self.detectors}

    @cached_property
    def _by_name(self) -> dict[str, Detector]:
        return {d.name: d for d in self.detectors}

    def detector(self, key: int | str) -> Detector:
        """Look a detector up by native id or name; CameraError if unknown."""
        found = self._by_id.get(key) if isinstance(key, int) else self._by_name.get(key)
        if found is None and isinstance(key, str) and key.isdigit():
            found = self._by_id.get(int(key))
        if found is None:
            raise CameraError(f"{self.instrument} has no detector {key!r}")
        return found

    def amplifiers(self, detector: int | str | Detector) -> list[Amplifier]:
        """The detector's amplifiers with its per-amp overrides applied."""
        det = detector if isinstance(detector, Detector) else self.detector(detector)
        amps = self.layouts[det.layout]
        if not det.overrides:
            return list(amps)
        return [a.model_copy(update=det.overrides.get(a.name, {})) for a in amps]

    def assembled_shape(self, detector: int | str | Detector) -> tuple[int, int]:
        """(rows, columns) of the trimmed, assembled detector image."""
        amps = self.amplifiers(detector)
        return (max(a.assembled.y1 for a in amps), max(a.assembled.x1 for a in amps))

    def crosstalk_matrix(self, detector: int | str | Detector) -> list[list[float]] | None:
        det = detector if isinstance(detector, Detector) else self.detector(detector)
        return self.crosstalk.get(det.layout)


def _check_layout(instrument: str, key: str, amps: list[Amplifier]) -> None:
    """Amplifiers of one layout must tile the assembled detector without overlap."""
    if not amps:
        raise ValueError(f"{instrument} layout {key!r} has no amplifiers")
    names = [a.name for a in amps]
    if len(set(names)) != len(names):
        raise ValueError(f"{instrument} layout {key!r}: duplicate amp names")
    for i, a in enumerate(amps):
        for b in amps[i + 1 :]:
            if a.assembled.overlaps(b.assembled):
                raise ValueError(
                    f"{instrument} layout {key!r}: amps {a.name} and {b.name} overlap when assembled"
                )
            if a.hdu == b.hdu and a.raw_box.overlaps(b.raw_box):
                raise ValueError(f"{instrument} layout {key!r}: raw boxes of {a.name} and {b.name} overlap")
    rows = max(a.assembled.y1 for a in amps)
    cols = max(a.assembled.x1 for a in amps)
    if sum(a.assembled.width * a.assembled.height for a in amps) != rows * cols:
        raise ValueError(f"{instrument} layout {key!r}: amps do not tile the assembled detector")
