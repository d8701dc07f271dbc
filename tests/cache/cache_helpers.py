"""Helpers for the calibration cache tests: registered-looking refs over an in-memory "S3"."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from isrflow.io.storage import ObjectNotFoundError
from isrflow.model.datasets import DatasetRef


class FakeS3:
    """``s3://`` objects in a dict; counts GETs and the bytes they returned."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.gets = 0
        self.bytes_read = 0

    def read_bytes(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise ObjectNotFoundError(f"{uri}: no such object")
        self.gets += 1
        self.bytes_read += len(self.objects[uri])
        return self.objects[uri]


def ref_for(
    store: FakeS3,
    key: str,
    data: bytes,
    *,
    dataset_id: uuid.UUID | None = None,
    kind: str = "bias",
    detector: int = 0,
    sha256: str | None = "auto",
) -> DatasetRef:
    """Put ``data`` at s3://calibs/KEY and return a ref to it as the registry would hold it."""
    uri = f"s3://calibs/{key}"
    store.objects[uri] = data
    sha = hashlib.sha256(data).hexdigest() if sha256 == "auto" else sha256
    return DatasetRef(
        id=dataset_id or uuid.uuid4(),
        dataset_type=kind,
        run="Generic/calib/test",
        data_id={"instrument": "Generic", "detector": detector},
        uri=uri,
        size=len(data),
        sha256=sha,
    )


def calib_bytes(night, kind: str = "bias", detector: int = 0) -> bytes:
    cal = night.calibrations[detector]
    path = {"bias": cal.bias, "dark": cal.dark, "defects": cal.defects}.get(kind) or next(
        iter(cal.flat.values())
    )
    return Path(path).read_bytes()


def altered(data: bytes, delta: float) -> bytes:
    """An uncompressed calibration like ``data`` with ``delta`` added to its floating-point planes
    (variants of one file have the same size, whatever compression the original used)."""
    import io

    import numpy as np
    from astropy.io import fits

    with fits.open(io.BytesIO(data)) as hdul:
        out = fits.HDUList([fits.PrimaryHDU(header=hdul[0].header)])
        for hdu in hdul[1:]:
            if isinstance(hdu, (fits.ImageHDU, fits.CompImageHDU)):
                pixels = np.array(hdu.data)
                if np.issubdtype(pixels.dtype, np.floating):
                    pixels = (pixels + delta).astype(np.float32)
                out.append(fits.ImageHDU(pixels, name=hdu.name))
            else:
                out.append(hdu.copy())
        buffer = io.BytesIO()
        out.writeto(buffer)
    return buffer.getvalue()


def variants(data: bytes, n: int) -> list[bytes]:
    """``n`` distinct calibrations of the same size (pixel offsets 0, 1, ...)."""
    return [altered(data, float(i)) for i in range(n)]


def populate_in_child(directory: str, data: dict[str, bytes], barrier, reverse: bool, replies) -> None:
    """Run in a spawned process: wait for the others, then read every calibration of ``data``
    through a cache on the shared ``directory`` (disk tier only); put the digests of the decoded
    images and the number of datastore reads on ``replies``."""
    from isrflow.io import calib_cache
    from isrflow.io.calib_cache import CacheConfig, CalibrationCache

    store = FakeS3()
    calib_cache.storage_for = lambda uri: store
    refs = {
        kind: ref_for(store, f"{kind}.fits", value, dataset_id=uuid.UUID(int=i + 1), kind=kind)
        for i, (kind, value) in enumerate(sorted(data.items()))
    }
    cache = CalibrationCache(
        CacheConfig(directory=Path(directory), disk_bytes=sum(map(len, data.values())), memory_bytes=0)
    )
    barrier.wait(timeout=60)
    answers: dict = {}
    for kind in sorted(refs, reverse=reverse):
        image = cache.get(kind, refs[kind]).item.exposure.image
        answers[kind] = hashlib.sha256(image.tobytes()).hexdigest()
    answers["datastore_reads"] = store.gets
    replies.put(answers)
