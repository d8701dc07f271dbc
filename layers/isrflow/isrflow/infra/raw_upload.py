"""``isrflow ingest --repo s3://bucket/prefix FILES``: upload raws under ``raw/`` of a deployed
stack's data bucket, where each upload's S3 event runs the stack's ingest function (which
registers the raw and, with prompt processing on, starts ProcessVisit on it).

Only the upload happens here: registration is the ingest function's, exactly as for files
copied there by hand. Each file is checked to be readable and a FITS file before anything is
uploaded, so a typo in a path uploads nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from isrflow.io.storage import join, split_s3, storage_for
from isrflow.model.errors import InvalidArgumentError

#: What a FITS file starts with (the first card of its primary header).
FITS_MAGIC = b"SIMPLE  ="


def raw_key(destination: str, path: str | Path) -> str:
    """The upload's URI: ``<destination>/raw/<file name>``."""
    return join(destination, "raw", Path(path).name)


def upload_raws(
    destination: str, files: Sequence[str | Path], progress: Callable[[int, int], None] | None = None
) -> list[str]:
    """PUT each raw file to ``<destination>/raw/<name>`` (``destination``: ``s3://bucket`` or
    ``s3://bucket/prefix``); returns the URIs written, in the order given. Raises
    InvalidArgumentError naming the file when one is unreadable or not FITS (nothing is uploaded)."""
    split_s3(destination.rstrip("/") + "/x")  # refuses a destination that is not s3://bucket[/prefix]
    paths = [Path(f) for f in files]
    for path in paths:
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(FITS_MAGIC))
        except OSError as exc:
            raise InvalidArgumentError(f"{path}: cannot read ({exc.strerror})") from None
        if head != FITS_MAGIC:
            raise InvalidArgumentError(
                f"{path}: not a FITS file (it does not start with {FITS_MAGIC.decode()!r})"
            )
    names = [p.name for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgumentError(f"two files would upload to the same key raw/{twice[0]}")
    written = []
    for done, path in enumerate(paths, 1):
        uri = raw_key(destination, path)
        storage_for(uri).write_bytes(uri, path.read_bytes())
        written.append(uri)
        if progress is not None:
            progress(done, len(paths))
    return written


__all__ = ["FITS_MAGIC", "raw_key", "upload_raws"]
