"""The observation model: what every camera's header translator produces.

One model for all cameras, so the registry, the simulator and ISR speak the same language.
Times are timezone-aware UTC datetimes; exposure and dark times are in seconds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ObsType = Literal["bias", "dark", "flat", "science", "other"]


class ObservationInfo(BaseModel):
    """Metadata of one raw detector frame, translated from the camera's own header keywords."""

    model_config = ConfigDict(frozen=True)

    instrument: str = Field(description="Instrument name as used in the registry, e.g. 'HSC'.")
    detector: int = Field(description="Native detector id (HSC 0-111, LSSTCam 0-188, DECam CCDNUM 1-62).")
    detector_name: str = Field(description="Native detector name, e.g. '1_53', 'R22_S11', 'S1'.")
    exposure: int = Field(description="Exposure id (a science exposure is a visit).")
    obs_type: ObsType = Field(description="Normalised observation type.")
    physical_filter: str = Field(description="Filter as the camera names it; 'NONE' for dark/bias.")
    band: str = Field(description="Abstract band (g, r, i, z, y, ...); '' when not applicable.")
    exptime: float = Field(ge=0, description="Exposure (shutter-open) time in seconds.")
    darktime: float = Field(ge=0, description="Dark time in seconds (dark current accumulates this long).")
    begin: datetime = Field(description="Exposure start, UTC.")
    end: datetime = Field(description="Exposure end, UTC.")
    day_obs: int = Field(description="Observing day as YYYYMMDD (local day of the night's start).")

    @property
    def data_id(self) -> dict[str, object]:
        """The registry data id of this raw: instrument, exposure, detector."""
        return {"instrument": self.instrument, "exposure": self.exposure, "detector": self.detector}
