"""The datastore layout: one URI template for ``file://`` and ``s3://`` roots.

``{root}/{run}/{dataset_type}/{instrument}/{exposure}/{dataset_type}_{instrument}_{exposure}_{detector}.fits``

- ``exposure`` is the exposure id; data ids without one (calibrations) put the physical filter
  there (flats) or ``all`` (bias, dark, defects).
- A raw file that holds several detectors (a DECam exposure) is stored once, with the
  ``_{detector}`` part dropped: every detector's dataset points at that one file and readers
  pick the detector by data id.
- Path components are sanitised: characters other than letters, digits, ``. _ + -`` become
  ``_`` (a DECam filter such as ``g DECam SDSS c0001 4720.0 1520.0`` becomes one word).

Pure Python: no SQLAlchemy, numpy or astropy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def _part(value: Any) -> str:
    text = _UNSAFE.sub("_", str(value))
    if text in ("", ".", ".."):
        text = text.replace(".", "_") or "_"
    return text


def normalize_root(root: str | Path) -> str:
    """A datastore root as a URI without trailing '/': ``s3://bucket/prefix`` or ``file:///abs/dir``.

    A plain (relative or absolute) path becomes an absolute ``file://`` URI.
    """
    text = str(root)
    if text.startswith("s3://"):
        return text.rstrip("/")
    if text.startswith("file://"):
        return path_to_uri(uri_to_path(text))
    if "://" in text:
        from isrflow.model.errors import RegistryError

        raise RegistryError(f"unsupported datastore root {text!r}: use a path, file:// or s3://")
    return path_to_uri(Path(text))


def path_to_uri(path: str | Path) -> str:
    """The ``file://`` URI of a local path (made absolute, not resolved through symlinks)."""
    return "file://" + quote(str(Path(path).absolute()), safe="/._-+~:@")


def uri_to_path(uri: str) -> Path:
    """The local path of a ``file://`` URI; RegistryError for any other scheme."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        from isrflow.model.errors import RegistryError

        raise RegistryError(f"{uri!r} is not a local file:// URI")
    return Path(unquote(parts.path))


def check_key(key: str, *, prefix: str | None = None) -> str:
    """``key`` unchanged if it is a safe relative object key, else UnsafeKeyError naming it.

    Refused: an empty or absolute key, a ``.`` or ``..`` segment, a NUL character, and (with
    ``prefix``, e.g. ``"raw"``) a key whose first segment is not ``prefix``. Pure text: nothing
    is read, so it is the check to make before any read on S3.
    """
    from isrflow.model.errors import UnsafeKeyError

    segments = key.split("/")
    if not key or key.startswith("/") or "\0" in key or any(s in (".", "..") for s in segments):
        raise UnsafeKeyError(f"{key!r}: unsafe object key (absolute, '.' or '..' segment, or NUL)")
    if prefix is not None and (len(segments) < 2 or segments[0] != prefix or not segments[-1]):
        raise UnsafeKeyError(f"{key!r}: not an object key under {prefix}/")
    return key


def contained_path(root: str | Path, key: str, *, prefix: str | None = None) -> Path:
    """The local path of object ``key`` under a ``file://`` (or plain path) datastore root.

    The key passes :func:`check_key`, then the joined path is resolved (through symlinks, as
    far as it exists) and must stay inside the resolved root: UnsafeKeyError naming the key if not.
    """
    from isrflow.model.errors import UnsafeKeyError

    check_key(key, prefix=prefix)
    base = uri_to_path(normalize_root(root))
    path = base / key
    resolved_base = base.resolve()
    if not path.resolve().is_relative_to(resolved_base):
        raise UnsafeKeyError(f"{key!r}: resolves outside the datastore {resolved_base}")
    return path


def dataset_uri(root: str | Path, run: str, dataset_type: str, data_id: Mapping[str, Any]) -> str:
    """The URI of one dataset under a datastore root (``file://``, ``s3://`` or a plain path).

    ``data_id`` is used as given (normalise it first); without a ``detector`` key the name has
    no ``_{detector}`` suffix (the one-file-for-many-detectors case).
    """
    base = normalize_root(root)
    instrument = _part(data_id["instrument"])
    if "exposure" in data_id:
        slot = _part(data_id["exposure"])
    elif "physical_filter" in data_id:
        slot = _part(data_id["physical_filter"])
    else:
        slot = "all"
    run_path = "/".join(_part(p) for p in run.split("/"))
    stem = f"{_part(dataset_type)}_{instrument}_{slot}"
    if "detector" in data_id:
        stem += f"_{_part(data_id['detector'])}"
    return f"{base}/{run_path}/{_part(dataset_type)}/{instrument}/{slot}/{stem}.fits"


def dataset_type_of(uri_or_key: str) -> str | None:
    """The dataset type a datastore URI (or bucket key) was laid out for by :func:`dataset_uri`,
    or None when the name does not follow the layout (manifests, results, previews, ...).

    ``.../{dataset_type}/{instrument}/{slot}/{dataset_type}_{instrument}_{slot}[_{detector}].fits``:
    the directory three levels up must be the prefix of the file name.
    """
    parts = uri_or_key.rstrip("/").split("/")
    if len(parts) < 5 or not parts[-1].endswith(".fits"):
        return None
    dataset_type, instrument, slot = parts[-4], parts[-3], parts[-2]
    stem = parts[-1][: -len(".fits")]
    prefix = f"{dataset_type}_{instrument}_{slot}"
    return dataset_type if stem == prefix or stem.startswith(prefix + "_") else None
