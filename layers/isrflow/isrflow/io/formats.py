"""File-format names, defined once: extension names, header keywords and mask planes.

Processed exposures (``postISRCCD``) and calibrations share one multi-extension FITS layout:
an empty primary HDU carrying the metadata, then IMAGE (float32), MASK (int32) and VARIANCE
(float32). Defects are a binary table EXTNAME=DEFECTS of 0-based boxes in assembled
detector coordinates.
"""

from __future__ import annotations

# --- extensions -------------------------------------------------------------------------------
EXT_IMAGE = "IMAGE"
EXT_MASK = "MASK"
EXT_VARIANCE = "VARIANCE"
EXT_DEFECTS = "DEFECTS"
DEFECT_COLUMNS = ("x0", "y0", "width", "height")

# --- primary-header keywords of isrflow products ------------------------------------------------
KW_INSTRUMENT = "INSTRUME"
KW_DETECTOR = "DETECTOR"  # native detector id (int)
KW_DETNAME = "DETNAME"  # native detector name
KW_CALIB_TYPE = "OBSTYPE"  # bias | dark | flat | defects for calibrations
KW_FILTER = "FILTER"  # physical filter of a flat
KW_UNITS = "BUNIT"
KW_EXPOSURE = "EXPOSURE"
KW_DARKTIME = "DARKTIME"
KW_SOFTWARE = "ISRFVER"

#: Units of each calibration's IMAGE plane (what ``isrflow isr`` expects).
CALIB_UNITS = {"bias": "electron", "dark": "electron/s", "flat": "", "defects": ""}

# --- mask planes: the afw bit numbers ---------------------------------------------------------
MASK_BITS = {
    "BAD": 0,
    "SAT": 1,
    "INTRP": 2,
    "CR": 3,
    "EDGE": 4,
    "DETECTED": 5,
    "DETECTED_NEGATIVE": 6,
    "SUSPECT": 7,
    "NO_DATA": 8,
}
BAD = 1 << MASK_BITS["BAD"]
SAT = 1 << MASK_BITS["SAT"]
INTRP = 1 << MASK_BITS["INTRP"]
CR = 1 << MASK_BITS["CR"]
EDGE = 1 << MASK_BITS["EDGE"]
SUSPECT = 1 << MASK_BITS["SUSPECT"]
NO_DATA = 1 << MASK_BITS["NO_DATA"]


def mask_plane_cards() -> list[tuple[str, int, str]]:
    """Header cards ``MP_<NAME> = bit`` describing the mask planes."""
    return [
        (f"HIERARCH MP_{name}", bit, f"mask plane {name} is bit {bit}") for name, bit in MASK_BITS.items()
    ]
