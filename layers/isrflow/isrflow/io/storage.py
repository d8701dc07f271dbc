"""The storage interface handlers use: whole objects by URI, ``file://`` or ``s3://``.

One small interface, chosen by the URI's scheme, so the same handler code runs against the
local file datastore and against S3. Writes are atomic: a local file is written under a
temporary name and renamed; an S3 PUT is atomic by nature. Nothing here imports numpy.

An S3 PUT of a dataset object carries its lifecycle tag (:mod:`isrflow.io.lifecycle`), which the
data bucket's lifecycle rules select on. ``delete`` removes objects (missing ones are no error).
"""

from __future__ import annotations

import builtins
import logging
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from isrflow.io.datastore import path_to_uri, uri_to_path
from isrflow.io.filemode import honour_umask
from isrflow.model.errors import IsrflowError


class StorageError(IsrflowError):
    """An object cannot be read or written."""


class ObjectNotFoundError(StorageError):
    """The object does not exist."""


class ObjectChangedError(StorageError):
    """The object no longer has the ETag the reader expected (it was overwritten meanwhile)."""


class Storage(Protocol):
    def read_bytes(self, uri: str) -> bytes: ...

    def write_bytes(self, uri: str, data: bytes) -> None: ...

    def exists(self, uri: str) -> bool: ...

    def list(self, prefix_uri: str) -> builtins.list[str]: ...

    def read_range(self, uri: str, start: int, length: int, if_match: str | None = None) -> bytes: ...

    def delete(self, uris: builtins.list[str]) -> int: ...


logger = logging.getLogger("isrflow.io.storage")
#: Keys per S3 DeleteObjects request (the API's maximum).
S3_DELETE_BATCH = 1000


class FileStorage:
    """``file://`` URIs (and plain paths) on the local file system."""

    def read_bytes(self, uri: str) -> bytes:
        path = _local(uri)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{uri}: no such object") from None
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read ({exc.strerror})") from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        path = _local(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            honour_umask(fd)  # mkstemp makes 0600 files
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, uri: str) -> bool:
        return _local(uri).is_file()

    def read_range(self, uri: str, start: int, length: int, if_match: str | None = None) -> bytes:
        """Up to ``length`` bytes from ``start`` (``if_match`` is an S3 notion: ignored here)."""
        try:
            with open(_local(uri), "rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{uri}: no such object") from None
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read ({exc.strerror})") from None

    def list(self, prefix_uri: str) -> builtins.list[str]:
        root = _local(prefix_uri)
        if not root.is_dir():
            return []
        return sorted(path_to_uri(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def delete(self, uris: builtins.list[str]) -> int:
        """Remove the files at ``uris``; returns how many existed."""
        removed = 0
        for uri in uris:
            path = _local(uri)
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StorageError(f"{uri}: cannot delete ({exc.strerror})") from None
        return removed


class S3Storage:
    """``s3://bucket/key`` URIs through boto3 (endpoint and credentials from the environment)."""

    def __init__(self, client=None):
        self._client = client
        self._given = client is not None
        self._endpoint: str | None = None

    @property
    def client(self):
        from isrflow.infra.aws_clients import aws_client, endpoint_override

        # a client made for another endpoint override (a test's moto server that has gone) is remade
        if self._client is None or (not self._given and self._endpoint != endpoint_override()):
            self._endpoint = endpoint_override()
            self._client = aws_client("s3")
        return self._client

    def read_bytes(self, uri: str) -> bytes:
        bucket, key = split_s3(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFoundError(f"{uri}: no such object") from None

    def write_bytes(self, uri: str, data: bytes) -> None:
        """PUT the object, tagged with its lifecycle class when it has one. A PUT refused with
        AccessDenied while tagged (a role without s3:PutObjectTagging) is retried untagged and
        logged: the object is written, the bucket's lifecycle rules just do not see it."""
        from isrflow.io.lifecycle import tagging_for

        bucket, key = split_s3(uri)
        tagging = tagging_for(key)
        if tagging is None:
            self.client.put_object(Bucket=bucket, Key=key, Body=data)
            return
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, Tagging=tagging)
        except Exception as exc:  # botocore ClientError
            if getattr(exc, "response", {}).get("Error", {}).get("Code") != "AccessDenied":
                raise
            logger.warning(
                "%s: PUT with Tagging=%s refused (AccessDenied: the role needs s3:PutObjectTagging); "
                "written untagged, so no lifecycle rule applies to it",
                uri,
                tagging,
            )
            self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def read_range(self, uri: str, start: int, length: int, if_match: str | None = None) -> bytes:
        """A ranged GET of ``length`` bytes from ``start``; with ``if_match`` (an ETag) S3 refuses
        the read if the object has been overwritten since (ObjectChangedError)."""
        bucket, key = split_s3(uri)
        extra = {"IfMatch": if_match} if if_match else {}
        try:
            reply = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}", **extra
            )
        except self.client.exceptions.NoSuchKey:
            raise ObjectNotFoundError(f"{uri}: no such object") from None
        except Exception as exc:  # botocore ClientError
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412"):
                raise ObjectChangedError(
                    f"{uri}: the object changed (ETag is no longer {if_match})"
                ) from None
            raise
        return reply["Body"].read()

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:  # botocore ClientError 404
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix_uri: str) -> builtins.list[str]:
        bucket, prefix = split_s3(prefix_uri)
        uris: builtins.list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            uris.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        return sorted(uris)

    def delete(self, uris: builtins.list[str]) -> int:
        """DeleteObjects in batches of 1,000 keys per bucket; returns how many keys were asked for
        (S3 does not say which existed). A key S3 could not delete raises StorageError."""
        by_bucket: dict[str, builtins.list[str]] = {}
        for uri in uris:
            bucket, key = split_s3(uri)
            by_bucket.setdefault(bucket, []).append(key)
        for bucket, keys in by_bucket.items():
            for i in range(0, len(keys), S3_DELETE_BATCH):
                batch = keys[i : i + S3_DELETE_BATCH]
                reply = self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
                errors = reply.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"s3://{bucket}/{first.get('Key')}: cannot delete ({first.get('Code')}: "
                        f"{first.get('Message')}); {len(errors)} key(s) not deleted"
                    )
        return len(uris)


def split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageError(f"{uri!r} is not an s3://bucket/key URI")
    return parts.netloc, parts.path.lstrip("/")


def _local(uri: str) -> Path:
    return uri_to_path(uri) if uri.startswith("file://") else Path(uri)


_FILE = FileStorage()
_S3: S3Storage | None = None


def storage_for(uri: str) -> Storage:
    """The storage that serves this URI's scheme."""
    global _S3
    if uri.startswith("s3://"):
        if _S3 is None:
            _S3 = S3Storage()
        return _S3
    if uri.startswith("file://") or "://" not in uri:
        return _FILE
    raise StorageError(f"unsupported URI scheme in {uri!r} (file:// or s3://)")


def join(prefix: str, *parts: str) -> str:
    """Join URI path parts with '/'."""
    return "/".join([prefix.rstrip("/"), *(p.strip("/") for p in parts)])
