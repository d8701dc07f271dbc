"""Storage lifecycle classes of datastore objects, and the S3 object tag that carries them.

The data bucket's lifecycle rules (template.yaml, ``DataBucket``) select objects by this tag,
because the datastore layout puts the RUN first (``{run}/{dataset_type}/...``) and an S3
lifecycle filter has no wildcards:

=============== ===================================== ==============================================
class           dataset types                         rule (template parameter)
=============== ===================================== ==============================================
``intermediate`` cpBiasProc, cpDarkProc, cpFlatProc   expire after ``IntermediateExpirationDays``
``output``       postISRCCD                           to STANDARD_IA after ``OutputsInfrequentAccessDays``
=============== ===================================== ==============================================

Raws, masters, manifests and results carry no tag and stay in S3 Standard (calibrations are
read by every detector's ISR; Standard-IA would charge a retrieval fee per GB read).
:class:`isrflow.io.storage.S3Storage` tags each PUT of a dataset object from its key
(:func:`tagging_for`); BuildCalibration also deletes the intermediates of the masters it
built unless asked to keep them (:mod:`isrflow.build_calibration.cleanup`), so the expiry rule is
the backstop for kept ones and for those of failed masters.

Pure Python.
"""

from __future__ import annotations

from urllib.parse import urlencode

from isrflow.io.datastore import dataset_type_of

#: The S3 object tag key the lifecycle rules filter on.
TAG_KEY = "isrflow-class"
INTERMEDIATE = "intermediate"
OUTPUT = "output"

#: Dataset type -> lifecycle class.
CLASS_OF_TYPE: dict[str, str] = {
    "cpBiasProc": INTERMEDIATE,
    "cpDarkProc": INTERMEDIATE,
    "cpFlatProc": INTERMEDIATE,
    "postISRCCD": OUTPUT,
}


def lifecycle_class(uri_or_key: str) -> str | None:
    """The lifecycle class of the object at ``uri_or_key`` (None: no rule applies)."""
    dataset_type = dataset_type_of(uri_or_key)
    return CLASS_OF_TYPE.get(dataset_type) if dataset_type else None


def tagging_for(uri_or_key: str) -> str | None:
    """The ``Tagging`` value (URL-encoded ``key=value``) of a PUT of this object, or None."""
    cls = lifecycle_class(uri_or_key)
    return urlencode({TAG_KEY: cls}) if cls else None


__all__ = ["CLASS_OF_TYPE", "INTERMEDIATE", "OUTPUT", "TAG_KEY", "lifecycle_class", "tagging_for"]
