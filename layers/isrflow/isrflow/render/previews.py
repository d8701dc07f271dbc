"""Previews next to the outputs: a PNG per detector and a binned focal-plane mosaic per exposure.

For an output ``.../postISRCCD/<INST>/<EXPOSURE>/postISRCCD_<INST>_<EXPOSURE>_<DET>.fits``:

- ``postISRCCD_<INST>_<EXPOSURE>_<DET>.png``: the image binned so its longer side is at most
  1024 pixels (mean of the unmasked pixels of each bin), zscale stretch to grey, masked pixels
  coloured (a bin is coloured when any of its pixels carries the plane; first in
  :data:`MASK_COLOURS` wins);
- ``postISRCCD_<INST>_<EXPOSURE>_<DET>.thumb.npz``: the same at most 256 pixels long, unstretched
  (float32 image + OR-ed mask), the input of the mosaic;
- ``mosaic_<INST>_<EXPOSURE>.png``: every thumbnail of the exposure directory placed by the camera
  model's detector positions (``x_mm``, ``y_mm``; rotations by multiples of 90 degrees), one
  zscale stretch for all, the longer side at most 2048 pixels. Detectors with no position (a
  generic camera read from headers) are laid out in a grid by id.

Rows are flipped in every PNG so that the image's +y axis points up. Writes are atomic
(storage interface), so a preview is either whole or absent.
"""

from __future__ import annotations

import io
import itertools
import math
from dataclasses import dataclass

import numpy as np

from isrflow.io.formats import MASK_BITS
from isrflow.io.storage import storage_for
from isrflow.render.png import encode_png
from isrflow.render.zscale import zscale

DETECTOR_MAX = 1024
THUMB_MAX = 256
MOSAIC_MAX = 2048
#: Gap between neighbouring detectors in a mosaic whose positions are sparse, as a fraction of a detector.
GAP = 0.05
BACKGROUND = (0, 0, 0)
#: Mask plane -> RGB, by priority (the first plane a pixel carries gives its colour).
MASK_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("NO_DATA", (0, 0, 255)),
    ("SAT", (0, 255, 0)),
    ("BAD", (255, 0, 0)),
    ("CR", (255, 0, 255)),
    ("EDGE", (255, 255, 0)),
    ("SUSPECT", (255, 128, 0)),
    ("INTRP", (0, 255, 255)),
)
COLOURED_BITS = 0
for _name, _ in MASK_COLOURS:
    COLOURED_BITS |= 1 << MASK_BITS[_name]


# --------------------------------------------------------------------------- names


def preview_uri(output_uri: str) -> str:
    return _stem(output_uri) + ".png"


def thumbnail_uri(output_uri: str) -> str:
    return _stem(output_uri) + ".thumb.npz"


def mosaic_uri(directory_uri: str, instrument: str, exposure: int) -> str:
    return f"{directory_uri.rstrip('/')}/mosaic_{instrument}_{exposure}.png"


def _stem(uri: str) -> str:
    return uri.removesuffix(".fits")


def _directory(uri: str) -> str:
    return uri.rsplit("/", 1)[0]


# --------------------------------------------------------------------------- pixels


def bin_factor(shape: tuple[int, int], limit: int) -> int:
    return max(1, math.ceil(max(shape) / limit))


def bin_image(image: np.ndarray, mask: np.ndarray | None, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin by ``factor``: mean of the pixels not in a coloured plane (NaN if none), mask OR-ed."""
    rows, cols = image.shape
    mask = np.zeros(image.shape, dtype=np.int32) if mask is None else mask.astype(np.int32, copy=False)
    if factor == 1:
        values = np.where(mask & COLOURED_BITS, np.nan, image).astype(np.float32)
        return values, mask.copy()
    out_rows, out_cols = math.ceil(rows / factor), math.ceil(cols / factor)
    pad_r, pad_c = out_rows * factor - rows, out_cols * factor - cols
    img = np.pad(image.astype(np.float64), ((0, pad_r), (0, pad_c)), constant_values=np.nan)
    msk = np.pad(mask, ((0, pad_r), (0, pad_c)), constant_values=0)
    valid = np.isfinite(img) & ((msk & COLOURED_BITS) == 0)
    blocks = (out_rows, factor, out_cols, factor)
    total = np.where(valid, img, 0.0).reshape(blocks).sum(axis=(1, 3))
    count = valid.reshape(blocks).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    ored = np.bitwise_or.reduce(np.bitwise_or.reduce(msk.reshape(blocks), axis=3), axis=1)
    return mean, ored.astype(np.int32)


def render(
    values: np.ndarray,
    mask: np.ndarray,
    limits: tuple[float, float] | None = None,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """RGB uint8 (rows flipped: +y up) of a binned image: grey zscale, coloured mask planes,
    :data:`BACKGROUND` where ``present`` is False."""
    finite = np.isfinite(values)
    if present is not None:
        finite &= present
    z1, z2 = limits if limits is not None else zscale(values[finite])
    scale = 255.0 / (z2 - z1) if z2 > z1 else 0.0
    grey = np.zeros(values.shape, dtype=np.uint8)
    grey[finite] = np.clip((values[finite] - z1) * scale, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for name, colour in reversed(MASK_COLOURS):  # lowest priority first, so the first entry wins
        rgb[(mask & (1 << MASK_BITS[name])) != 0] = colour
    if present is not None:
        rgb[~present] = BACKGROUND
    return np.ascontiguousarray(rgb[::-1])


# --------------------------------------------------------------------------- one detector


@dataclass
class Thumbnail:
    instrument: str
    detector: int
    shape: tuple[int, int]  # native (rows, cols) of the detector image
    values: np.ndarray
    mask: np.ndarray

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            values=self.values,
            mask=self.mask,
            meta=np.array([self.detector, self.shape[0], self.shape[1]], dtype=np.int64),
            instrument=np.array(self.instrument),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Thumbnail:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            detector, rows, cols = (int(v) for v in npz["meta"])
            return cls(
                instrument=str(npz["instrument"]),
                detector=detector,
                shape=(rows, cols),
                values=npz["values"],
                mask=npz["mask"],
            )


def detector_preview(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The RGB preview of one detector image (at most :data:`DETECTOR_MAX` pixels long)."""
    values, ored = bin_image(image, mask, bin_factor(image.shape, DETECTOR_MAX))
    return render(values, ored)


def write_detector_preview(exposure, output_uri: str, instrument: str, detector: int) -> tuple[str, str]:
    """Write the PNG and the thumbnail of one processed detector next to its output."""
    png = preview_uri(output_uri)
    storage_for(png).write_bytes(png, encode_png(detector_preview(exposure.image, exposure.mask)))
    values, ored = bin_image(exposure.image, exposure.mask, bin_factor(exposure.image.shape, THUMB_MAX))
    thumb = thumbnail_uri(output_uri)
    data = Thumbnail(instrument, detector, tuple(exposure.image.shape), values, ored).to_bytes()
    storage_for(thumb).write_bytes(thumb, data)
    return png, thumb


# --------------------------------------------------------------------------- the mosaic


def _camera_for(instrument: str):
    from isrflow.camera import camera_for_instrument, load_camera
    from isrflow.model.errors import CameraError

    name = camera_for_instrument(instrument)
    if name is None and instrument == load_camera("generic").instrument:
        name = "generic"  # the simulator's generic camera: positions from its data file
    try:
        return load_camera(name) if name else None
    except CameraError:
        return None


def _placements(thumbs: list[Thumbnail], camera) -> list[tuple[float, float, int]]:
    """Per thumbnail: (x centre, y centre) in native pixels on the focal plane, quarter turns."""
    dets = []
    if camera is not None:
        from isrflow.model.errors import CameraError

        try:
            dets = [camera.detector(t.detector) for t in thumbs]
        except CameraError:
            dets = []
    if dets and len({(d.x_mm, d.y_mm) for d in dets}) == len(dets):
        turns = [round(d.rotation_deg / 90.0) % 4 for d in dets]
        sizes = [
            t.shape[::-1] if k % 2 == 0 else t.shape for t, k in zip(thumbs, turns, strict=False)
        ]  # (cols, rows) as placed
        pitch = camera.pixel_size_um
        needs = []
        for axis, extent in ((0, max(s[0] for s in sizes)), (1, max(s[1] for s in sizes))):
            coords = sorted({round((d.x_mm, d.y_mm)[axis], 3) for d in dets})
            steps = [b - a for a, b in itertools.pairwise(coords) if b - a > 0]
            if steps:
                needs.append(min(steps) * 1000.0 / (extent * (1 + GAP)))
        if needs:
            pitch = max(pitch, min(needs))  # sparse positions (small frames): close the gaps
        return [
            (d.x_mm * 1000.0 / pitch, d.y_mm * 1000.0 / pitch, k) for d, k in zip(dets, turns, strict=False)
        ]
    # No usable positions: a grid by detector id.
    order = sorted(range(len(thumbs)), key=lambda i: thumbs[i].detector)
    columns = math.ceil(math.sqrt(len(thumbs)))
    width = max(t.shape[1] for t in thumbs) * (1 + GAP)
    height = max(t.shape[0] for t in thumbs) * (1 + GAP)
    out: list[tuple[float, float, int]] = [(0.0, 0.0, 0)] * len(thumbs)
    for rank, i in enumerate(order):
        out[i] = ((rank % columns) * width, -(rank // columns) * height, 0)
    return out


def mosaic_image(thumbs: list[Thumbnail], camera=None, max_size: int = MOSAIC_MAX) -> np.ndarray:
    """The RGB mosaic of an exposure's thumbnails (see the module docstring)."""
    if not thumbs:
        raise ValueError("no thumbnails to make a mosaic of")
    places = _placements(thumbs, camera)
    boxes = []
    for t, (x, y, k) in zip(thumbs, places, strict=False):
        rows, cols = t.shape if k % 2 == 0 else t.shape[::-1]
        boxes.append((x - cols / 2.0, y - rows / 2.0, rows, cols))
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    width = max(b[0] + b[3] for b in boxes) - x0
    height = max(b[1] + b[2] for b in boxes) - y0
    factor = max(1, math.ceil(max(width, height) / max_size))
    out_rows, out_cols = math.ceil(height / factor), math.ceil(width / factor)
    values = np.full((out_rows, out_cols), np.nan, dtype=np.float32)
    mask = np.zeros((out_rows, out_cols), dtype=np.int32)
    present = np.zeros((out_rows, out_cols), dtype=bool)
    for t, (bx, by, rows, cols), (_, _, k) in zip(thumbs, boxes, places, strict=False):
        v, m = np.rot90(t.values, k), np.rot90(t.mask, k)
        r_out, c_out = max(1, math.ceil(rows / factor)), max(1, math.ceil(cols / factor))
        ri = np.minimum((np.arange(r_out) * v.shape[0]) // r_out, v.shape[0] - 1)
        ci = np.minimum((np.arange(c_out) * v.shape[1]) // c_out, v.shape[1] - 1)
        r0 = min(round((by - y0) / factor), out_rows - r_out)
        c0 = min(round((bx - x0) / factor), out_cols - c_out)
        values[r0 : r0 + r_out, c0 : c0 + c_out] = v[np.ix_(ri, ci)]
        mask[r0 : r0 + r_out, c0 : c0 + c_out] = m[np.ix_(ri, ci)]
        present[r0 : r0 + r_out, c0 : c0 + c_out] = True
    return render(values, mask, present=present)


def write_mosaic(directory_uri: str, instrument: str, exposure: int) -> str | None:
    """Assemble the mosaic of every thumbnail in an exposure's output directory; None if there is none."""
    store = storage_for(directory_uri)
    thumbs = [
        Thumbnail.from_bytes(store.read_bytes(u))
        for u in store.list(directory_uri.rstrip("/") + "/")
        if u.endswith(".thumb.npz")
    ]
    thumbs = [t for t in thumbs if t.instrument == instrument]
    if not thumbs:
        return None
    target = mosaic_uri(directory_uri, instrument, exposure)
    storage_for(target).write_bytes(target, encode_png(mosaic_image(thumbs, _camera_for(instrument))))
    return target


def exposure_directories(outputs: list[tuple[str, int, str]]) -> dict[tuple[str, int], str]:
    """(instrument, exposure) -> the directory holding its outputs, from (instrument, exposure, output URI)."""
    return {(inst, exp): _directory(uri) for inst, exp, uri in outputs}


def write_run_previews(refs, progress=None) -> tuple[list[str], list[str]]:
    """PNG previews of the postISRCCD datasets ``refs`` (registry refs) and a mosaic per exposure;
    returns (preview URIs, mosaic URIs). ``progress(done, total)`` after each detector."""
    from isrflow.io.exposure_io import read_exposure

    pngs = []
    for i, ref in enumerate(refs, 1):
        exposure = read_exposure(storage_for(ref.uri).read_bytes(ref.uri), ref.uri)
        png, _ = write_detector_preview(exposure, ref.uri, ref.data_id["instrument"], ref.data_id["detector"])
        pngs.append(png)
        if progress is not None:
            progress(i, len(refs))
    outputs = [(r.data_id["instrument"], r.data_id["exposure"], r.uri) for r in refs]
    mosaics = [
        m
        for (inst, exp), d in sorted(exposure_directories(outputs).items())
        if (m := write_mosaic(d, inst, exp)) is not None
    ]
    return pngs, mosaics


__all__ = [
    "MASK_COLOURS",
    "Thumbnail",
    "bin_image",
    "detector_preview",
    "exposure_directories",
    "mosaic_image",
    "mosaic_uri",
    "preview_uri",
    "render",
    "thumbnail_uri",
    "write_detector_preview",
    "write_mosaic",
    "write_run_previews",
]
