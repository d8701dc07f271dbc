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

from pydantic import ValidationError

from isrflow.io import formats
from isrflow.io.datastore import dataset_uri
from isrflow.io.storage import storage_for
from isrflow.model.datasets import DatasetRef
from isrflow.model.errors import CalibrationError, ImmutableCalibrationError
from isrflow.model.ids import check_collection_name
from isrflow.model.messages import DatasetMessage, DetectorRecord, InstrumentRecord
from isrflow.model.validation import summary


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
    missing = [
        k for k in (formats.KW_INSTRUMENT, formats.KW_DETECTOR, formats.KW_CALIB_TYPE) if k not in header
    ]
    if missing:
        raise CalibrationError(f"{path}: calibration header lacks {', '.join(missing)}")
    calib_type = str(header[formats.KW_CALIB_TYPE]).strip().lower()
    if calib_type not in formats.CALIB_UNITS:
        raise CalibrationError(
            f"{path}: OBSTYPE {calib_type!r} is not a calibration type (bias, dark, flat, defects)"
        )
    instrument = str(header[formats.KW_INSTRUMENT]).strip()
    try:
        detector = int(str(header[formats.KW_DETECTOR]).strip())
    except ValueError:
        raise CalibrationError(
            f"{path}: header keyword {formats.KW_DETECTOR} = {header[formats.KW_DETECTOR]!r} "
            "is not a detector id (an integer)"
        ) from None
    data_id: dict = {"instrument": instrument, "detector": detector}
    if calib_type == "flat":
        if formats.KW_FILTER not in header:
            raise CalibrationError(f"{path}: a flat needs the FILTER keyword (its physical filter)")
        data_id["physical_filter"] = str(header[formats.KW_FILTER]).strip()
    data = path.read_bytes()
    if calib_type != "defects":
        _check_pixels(path, calib_type, data)
    try:
        uri = dataset_uri(root, run, calib_type, data_id)
        message = DatasetMessage(
            dataset_type=calib_type,
            run=run,
            data_id=data_id,
            uri=uri,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        dims = [
            InstrumentRecord(name=instrument),
            DetectorRecord(
                instrument=instrument, id=detector, name=str(header.get(formats.KW_DETNAME, detector))
            ),
        ]
    except ValidationError as exc:  # a header value the registry models refuse (instrument name, ...)
        raise CalibrationError(f"{path}: calibration header cannot be registered: {summary(exc)}") from None
    return message, dims, data


def _check_pixels(path: Path, calib_type: str, data: bytes) -> None:
    """Refuse an all-NaN bias/dark or a zero flat at import, as ISR would refuse it at use."""
    from isrflow.io.exposure_io import read_exposure
    from isrflow.isr.calibrate import check_calibration_pixels

    check_calibration_pixels(str(path), calib_type, read_exposure(data, name=str(path)))


def registered_identical(registry, message: DatasetMessage, source: Path) -> bool:
    """Whether ``message``'s calibration is already registered with these very bytes (nothing to write).

    Registered calibrations are immutable: ImmutableCalibrationError (naming ``source``) if the
    target URI, or the dataset id, belongs to a registered dataset with other bytes or another id.
    Checked before anything is written.
    """
    import sqlalchemy as sa

    from isrflow.registry import schema as s
    from isrflow.registry.engine import transaction

    d = s.dataset.c
    with transaction(registry.engine, write=False) as conn:
        rows = conn.execute(
            sa.select(d.id, d.run, d.sha256).where(sa.or_(d.uri == message.uri, d.id == message.dataset_id))
        ).all()
    if not rows:
        return False
    if all(r.id == message.dataset_id and r.sha256 == message.sha256 for r in rows):
        return True
    r = rows[0]
    raise ImmutableCalibrationError(
        f"{source}: {message.dataset_type} {message.data_id} is already registered in RUN {r.run} "
        f"(dataset {r.id}, sha256 {str(r.sha256)[:12]}...) with other content; registered calibrations "
        f"are immutable: import into a new RUN"
    )


def import_calibrations(registry, files: Iterable[str | Path], run: str) -> list[DatasetRef]:
    """Copy calibration files into the datastore and register them in RUN ``run`` (one transaction).

    Every file is checked first (:func:`registered_identical`): a file that would overwrite a
    registered calibration refuses the whole import before anything is written.
    """
    check_collection_name(run)  # before any file is read or written
    root = registry.datastore_root if hasattr(registry, "datastore_root") else None
    if not root:
        raise CalibrationError("the registry has no datastore root to copy calibrations into")
    planned = []
    for f in files:
        message, records, data = calibration_message(Path(f), run, str(root))
        planned.append((message, records, Path(f), registered_identical(registry, message, Path(f))))
        del data  # read again when copied: one file's bytes in memory at a time
    messages, dims, refs = [], {}, []
    for message, records, path, registered in planned:
        if not registered:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != message.sha256:
                raise CalibrationError(f"{path}: the file changed while it was being imported")
            storage_for(message.uri).write_bytes(message.uri, data)
        messages.append(message)
        for r in records:
            dims[(r.kind, getattr(r, "name", None), getattr(r, "id", None))] = r
        refs.append(
            DatasetRef(
                id=message.dataset_id,
                dataset_type=message.dataset_type,
                run=run,
                data_id=message.data_id,
                uri=message.uri,
                size=message.size,
                sha256=message.sha256,
            )
        )
    registry.apply([*dims.values(), *messages])
    return refs
