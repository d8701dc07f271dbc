"""Previews: ProcessVisit with ``previews`` writes one PNG per processed detector and one focal-plane
mosaic per exposure next to the outputs; sizes are checked and masked pixels are coloured.
PNGs are decoded with Pillow, independently of the project's encoder."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from astropy.visualization import ZScaleInterval
from click.testing import CliRunner
from ops_helpers import CALIB_COLLECTION, make_prompt_repo
from PIL import Image

from isrflow.cli import cli
from isrflow.io.exposure_io import read_exposure
from isrflow.io.formats import BAD, CR, EDGE, INTRP, NO_DATA, SAT, SUSPECT
from isrflow.registry import ingest, uri_to_path
from isrflow.render.png import encode_png, png_size
from isrflow.render.previews import mosaic_uri, preview_uri, thumbnail_uri
from isrflow.render.zscale import zscale

RUN = "Generic/runs/previews"
HIGHER_THAN_BAD = NO_DATA | SAT  # planes whose colour wins over BAD's
COLOURED = BAD | SAT | INTRP | CR | EDGE | SUSPECT | NO_DATA


def _png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image)


@pytest.fixture(scope="module")
def previewed(tmp_path_factory):
    repo = make_prompt_repo(tmp_path_factory.mktemp("previews"), detectors=(0, 1), science=2)
    assert ingest(repo.registry, [r.path for r in repo.night.raws]).ok
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "process-visit",
            "--repo",
            str(repo.root),
            "--where",
            "instrument = 'Generic'",
            "--output-run",
            RUN,
            "--calib-collection",
            CALIB_COLLECTION,
            "--cluster-size",
            "2",
            "--previews",
            "--workers",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return repo, repo.registry.query_datasets("postISRCCD", [RUN])


def test_one_png_per_detector_sized_like_the_image_with_masked_pixels_coloured(previewed):
    repo, outputs = previewed
    assert len(outputs) == 4
    pngs = sorted(p.name for p in (repo.root / RUN).rglob("postISRCCD_*.png"))
    assert pngs == sorted(uri_to_path(preview_uri(o.uri)).name for o in outputs)
    for output in outputs:
        exposure = read_exposure(uri_to_path(output.uri))
        rgb = _png(uri_to_path(preview_uri(output.uri)))[::-1]  # PNG rows run top-down; +y is up
        assert rgb.shape == (*exposure.image.shape, 3)  # small frames: no binning
        bad = ((exposure.mask & BAD) != 0) & ((exposure.mask & HIGHER_THAN_BAD) == 0)
        assert bad.sum() > 0  # the simulated defects
        assert (rgb[bad] == [255, 0, 0]).all()
        saturated = (exposure.mask & (SAT | NO_DATA)) == SAT
        assert (rgb[saturated] == [0, 255, 0]).all()
        clean = (exposure.mask & COLOURED) == 0
        assert (rgb[clean][:, 0] == rgb[clean][:, 1]).all() and (rgb[clean][:, 1] == rgb[clean][:, 2]).all()
        assert len(np.unique(rgb[clean][:, 0])) > 50  # a real stretch, not a flat image
        assert uri_to_path(thumbnail_uri(output.uri)).is_file()


def test_one_mosaic_per_exposure_placed_by_detector_positions(previewed):
    repo, outputs = previewed
    mosaics = sorted((repo.root / RUN).rglob("mosaic_*.png"))
    exposures = sorted({o.data_id["exposure"] for o in outputs})
    assert [m.name for m in mosaics] == [f"mosaic_Generic_{e}.png" for e in exposures]
    rows, cols = read_exposure(uri_to_path(outputs[0].uri)).image.shape
    for path in mosaics:
        rgb = _png(path)
        # CCD0 and CCD1 sit side by side (x = -33 and -11 mm, same y): one row of two detectors with
        # a gap of at most 10% of a detector between them.
        assert rgb.shape[0] == rows and 2 * cols < rgb.shape[1] <= 2.1 * cols
        gap = rgb[:, cols : rgb.shape[1] - cols]
        assert gap.size and (gap == 0).all()  # background between the detectors
        red = (rgb == [255, 0, 0]).all(axis=2)
        assert red[:, :cols].any() and red[:, -cols:].any()  # each detector's defects are coloured


def test_preview_command_rewrites_the_same_files(previewed):
    repo, outputs = previewed
    before = {p: p.read_bytes() for p in (repo.root / RUN).rglob("*.png")}
    result = CliRunner().invoke(cli, ["preview", "--repo", str(repo.root), "--collection", RUN, "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert len(written["previews"]) == 4 and len(written["mosaics"]) == 2
    directory = outputs[0].uri.rsplit("/", 1)[0]
    assert mosaic_uri(directory, "Generic", outputs[0].data_id["exposure"]) in written["mosaics"]
    assert {p: p.read_bytes() for p in before} == before  # deterministic


def test_png_encoder_round_trip_and_zscale():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = encode_png(rgb)
    assert png_size(data) == (53, 37)
    with Image.open(io.BytesIO(data)) as image:
        assert (np.asarray(image) == rgb).all()
    sky = rng.normal(100.0, 5.0, (200, 200))
    sky[rng.random(sky.shape) < 0.01] = 10000.0  # stars / cosmic rays do not stretch the range
    z1, z2 = zscale(sky)
    assert 70 < z1 < 100 < z2 < 140
    a1, a2 = ZScaleInterval().get_limits(sky)  # astropy's implementation of the same algorithm
    assert abs(z1 - a1) < 0.05 * (a2 - a1) and abs(z2 - a2) < 0.05 * (a2 - a1)
    assert zscale(np.full((10, 10), 7.0)) == (7.0, 8.0) and zscale(np.array([np.nan])) == (0.0, 1.0)
