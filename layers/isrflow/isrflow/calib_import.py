"""Import calibration files made elsewhere (or the simulator's true ones) into a repository.

Each file is an isrflow calibration (MEF, or a DEFECTS table) whose primary header names
``INSTRUME``, ``DETECTOR``, ``DETNAME``, ``OBSTYPE`` (bias, dark, flat, defects) and, for
flats, ``FILTER``. The file is copied into the datastore under the RUN collection's layout
and registered as a dataset (instrument and detector records included); certify it
afterwards with ``isrflow calib certify`` or :meth:`Registry.certify`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from . import formats
from .errors import CalibrationError
from .messages import DatasetMessage, DetectorRecord, InstrumentRecord
from .registry.datastore import dataset_uri
from .registry.models import DatasetRef
from .storage import storage_for


def _header(path: Path) -> dict:
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            return dict(hdul[0].header)
    except Exception as exc:
        raise CalibrationError(f"{path}: not a readable FITS file ({exc})") from None


def calibration_message(path: Path, run: str, root: str) -> tuple[DatasetMessage, list, bytes]:
    """The dataset message (+ dimension records) for one calibration file, and its bytes."""
    header = _header(path)
    missing = [k for k in (formats.KW_INSTRUMENT, formats.KW_DETECTOR, formats.KW_CALIB_TYPE) if k not in header]
    if missing:
        raise CalibrationError(f"{path}: calibration header lacks {', '.join(missing)}")
    calib_type = str(header[formats.KW_CALIB_TYPE]).strip().lower()
    if calib_type not in formats.CALIB_UNITS:
        raise CalibrationError(f"{path}: OBSTYPE {calib_type!r} is not a calibration type (bias, dark, flat, defects)")
    instrument = str(header[formats.KW_INSTRUMENT]).strip()
    detector = int(header[formats.KW_DETECTOR])
    data_id: dict = {"instrument": instrument, "detector": detector}
    if calib_type == "flat":
        if formats.KW_FILTER not in header:
            raise CalibrationError(f"{path}: a flat needs the FILTER keyword (its physical filter)")
        data_id["physical_filter"] = str(header[formats.KW_FILTER]).strip()
    data = path.read_bytes()
    uri = dataset_uri(root, run, calib_type, data_id)
    message = DatasetMessage(dataset_type=calib_type, run=run, data_id=data_id, uri=uri, size=len(data),
                             sha256=hashlib.sha256(data).hexdigest())
    dims = [InstrumentRecord(name=instrument),
            DetectorRecord(instrument=instrument, id=detector, name=str(header.get(formats.KW_DETNAME, detector)))]
    return message, dims, data


def import_calibrations(registry, files: Iterable[str | Path], run: str) -> list[DatasetRef]:
    """Copy calibration files into the datastore and register them in RUN ``run`` (one transaction)."""
    root = registry.datastore_root if hasattr(registry, "datastore_root") else None
    if not root:
        raise CalibrationError("the registry has no datastore root to copy calibrations into")
    messages, dims, refs = [], {}, []
    for f in files:
        message, records, data = calibration_message(Path(f), run, str(root))
        storage_for(message.uri).write_bytes(message.uri, data)
        messages.append(message)
        for r in records:
            dims[(r.kind, getattr(r, "name", None), getattr(r, "id", None))] = r
        refs.append(DatasetRef(id=message.dataset_id, dataset_type=message.dataset_type, run=run,
                               data_id=message.data_id, uri=message.uri, size=message.size, sha256=message.sha256))
    registry.apply([*dims.values(), *messages])
    return refs
