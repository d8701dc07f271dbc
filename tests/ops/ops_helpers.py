"""Helpers of the operations tests: a repository ready for uploads, FITS files from real header dumps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from isrflow.registry import create_repo
from isrflow.registry.calib_import import import_calibrations
from isrflow.simulate import SimulationRequest, simulate

CALIB_RUN = "Generic/calib/truth"
CALIB_COLLECTION = "Generic/calib"

# Structural keywords astropy writes itself from the data; everything else is copied from the dumps.
STRUCTURAL = {
    "SIMPLE",
    "BITPIX",
    "NAXIS",
    "NAXIS1",
    "NAXIS2",
    "EXTEND",
    "BZERO",
    "BSCALE",
    "XTENSION",
    "PCOUNT",
    "GCOUNT",
    "TFIELDS",
    "CHECKSUM",
    "DATASUM",
    "ZIMAGE",
    "ZBITPIX",
    "ZNAXIS",
    "ZNAXIS1",
    "ZNAXIS2",
    "ZPCOUNT",
    "ZGCOUNT",
    "ZTILE1",
    "ZTILE2",
    "ZCMPTYPE",
    "ZNAME1",
    "ZVAL1",
    "ZNAME2",
    "ZVAL2",
    "ZQUANTIZ",
    "ZSIMPLE",
    "ZEXTEND",
    "ZTENSION",
    "ZHECKSUM",
    "ZDATASUM",
    "TTYPE1",
    "TFORM1",
    "NEXTEND",
    "ZDITHER0",
    "ZBLANK",
    "ZBLOCKED",
}


@dataclass
class PromptRepo:
    root: Path
    registry: object
    night: object  # SimulationManifest

    @property
    def science(self) -> list[Path]:
        return [Path(r.path) for r in self.night.raws_of("science")]


def make_prompt_repo(tmp_path: Path, detectors=(0, 1), science=1, seed=5) -> PromptRepo:
    """A repository with the simulator's true calibrations certified and NO raws: they arrive as uploads."""
    registry = create_repo(tmp_path / "repo")
    night = simulate(
        SimulationRequest(
            camera="generic",
            small=True,
            detectors=list(detectors),
            science=science,
            seed=seed,
            out=tmp_path / "sim",
        )
    )
    files = [
        f
        for cal in night.calibrations.values()
        for f in (cal.bias, cal.dark, cal.defects, *cal.flat.values())
    ]
    refs = import_calibrations(registry, files, CALIB_RUN)
    registry.register_collection(CALIB_COLLECTION, "CALIBRATION")
    registry.certify([r.id for r in refs], CALIB_COLLECTION, None, None)
    return PromptRepo(root=tmp_path / "repo", registry=registry, night=night)


class _AnyTagLoader(yaml.SafeLoader):
    pass


_AnyTagLoader.add_multi_constructor(
    "",
    lambda loader, suffix, node: (
        loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node, deep=True)
    ),
)


def header_dump(path: Path) -> tuple[list[tuple[str, object]], list[tuple[str, object]]]:
    """(primary cards, extension cards) of a real header dump (primary, then one extension from XTENSION on)."""
    data = yaml.load(path.read_text(), Loader=_AnyTagLoader)
    rows = (
        list(data.items()) if isinstance(data, dict) else [(r[0], r[2]) for r in data if isinstance(r, list)]
    )
    split = next((i for i, (k, _) in enumerate(rows) if k == "XTENSION"), len(rows))

    def keep(part):
        return [(k, v) for k, v in part if k not in STRUCTURAL and k not in ("COMMENT", "HISTORY", "")]

    return keep(rows[:split]), keep(rows[split:])


def fill(header, cards) -> None:
    for key, value in cards:
        if value is None:
            continue
        card_key = key if len(key) <= 8 and " " not in key else f"HIERARCH {key}"
        header[card_key] = value


def hsc_raw_bytes(reference_dir: Path) -> bytes:
    """A full-size HSC raw (zero pixels) with a REAL detector-50 header, as FITS bytes."""
    import io

    import numpy as np
    from astropy.io import fits

    primary, _ = header_dump(reference_dir / "headers" / "hsc-raw-det50.yaml")
    hdu = fits.PrimaryHDU(np.zeros((4241, 2144), dtype=np.uint16))
    fill(hdu.header, primary)
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    return buffer.getvalue()
