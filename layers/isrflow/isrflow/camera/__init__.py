"""Built-in camera descriptions (package data) and their loader.

``load_camera("hsc" | "lsstcam" | "decam")`` returns a validated :class:`Camera`. The
``generic`` camera has no fixed description: its geometry is read from each raw's headers
(:mod:`isrflow.camera.generic`); the ``generic`` data file only holds the layouts the
simulator writes.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import ValidationError

from isrflow.camera.model import Amplifier, Box, Camera, Detector, Electronics
from isrflow.model.errors import CameraError

__all__ = [
    "CAMERA_NAMES",
    "Amplifier",
    "Box",
    "Camera",
    "Detector",
    "Electronics",
    "camera_for_instrument",
    "load_camera",
]

#: CLI camera names -> data file stem. The same names are used by ``--camera`` everywhere.
CAMERA_NAMES = ("hsc", "lsstcam", "decam", "generic")

#: Header INSTRUME values (upper-cased) -> camera name.
_INSTRUMENT_TO_CAMERA = {"HSC": "hsc", "HYPER SUPRIME-CAM": "hsc", "LSSTCAM": "lsstcam", "DECAM": "decam"}


@cache
def load_camera(name: str) -> Camera:
    """Load and validate a built-in camera description by CLI name (case-insensitive)."""
    key = name.lower()
    if key not in CAMERA_NAMES:
        raise CameraError(f"unknown camera {name!r}; known: {', '.join(CAMERA_NAMES)}")
    text = resources.files(__package__).joinpath("data", f"{key}.yaml").read_text()
    try:
        return Camera.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        raise CameraError(f"camera description {key}.yaml is invalid: {exc}") from exc


def camera_for_instrument(instrument: str) -> str | None:
    """The built-in camera name for a header INSTRUME value, or None (generic)."""
    return _INSTRUMENT_TO_CAMERA.get(str(instrument).strip().upper())
