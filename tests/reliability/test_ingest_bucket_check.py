"""On AWS the ingest function reads only the data bucket's raw/ uploads: an event naming another bucket
is refused before anything is read (the EventBridge rule matches only that bucket; this is the code's
own check)."""

from __future__ import annotations

import pytest

from isrflow.model.errors import UnsafeKeyError
from isrflow.prompt.ingest import object_uri


def test_only_the_datastores_bucket_is_read():
    assert (
        object_uri("s3://data-bucket", "data-bucket", "raw/HSC/a.fits") == "s3://data-bucket/raw/HSC/a.fits"
    )
    assert object_uri("s3://data-bucket/prefix", "data-bucket", "raw/a.fits") == "s3://data-bucket/raw/a.fits"
    with pytest.raises(UnsafeKeyError, match="not the datastore's bucket 'data-bucket'"):
        object_uri("s3://data-bucket", "someone-elses-bucket", "raw/HSC/a.fits")
    with pytest.raises(UnsafeKeyError, match="not an object key under raw/"):
        object_uri("s3://data-bucket", "data-bucket", "results/x.json")
