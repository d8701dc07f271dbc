"""The Mosaics step (``previews``): one focal-plane mosaic PNG per exposure of the manifest."""

from __future__ import annotations

import json

from isrflow.io.storage import storage_for
from isrflow.model.messages import Cluster, MosaicEvent


def make_mosaics(event: MosaicEvent) -> dict:
    """Assemble the mosaic of every exposure the execution planned, from the thumbnails next to
    its outputs (detectors without one, e.g. failed ones, are left out)."""
    from isrflow.render.previews import exposure_directories, write_mosaic

    clusters = [
        Cluster.model_validate(c)
        for c in json.loads(storage_for(event.manifest_uri).read_bytes(event.manifest_uri))
    ]
    outputs = [(q.instrument, q.exposure, q.output.uri) for c in clusters for q in c.quanta]
    written = []
    for (instrument, exposure), directory in sorted(exposure_directories(outputs).items()):
        uri = write_mosaic(directory, instrument, exposure)
        if uri is not None:
            written.append(uri)
    return {"mosaics": written}
