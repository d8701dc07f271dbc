"""The typed error hierarchy.

Class names are part of the interface: the state machines Retry/Catch on them by name
(Step Functions sees the exception class name as the error name), so never rename one.
Every message names the file (or dataset) and what is wrong with it.
"""

from __future__ import annotations


class IsrflowError(Exception):
    """Base of every error isrflow raises on purpose."""


class ConfigError(IsrflowError):
    """A configuration (ISR config, camera description, CLI option) is invalid."""


class CameraError(IsrflowError):
    """A camera description is invalid or a camera/detector is unknown."""


class IsrInputError(IsrflowError):
    """A raw frame cannot be used: unreadable or truncated FITS, wrong HDUs or shape."""


class MissingHeaderKeywordError(IsrInputError):
    """A header keyword the translator or geometry needs is absent or unparsable."""


class CalibrationError(IsrflowError):
    """A calibration file is unreadable or malformed."""


class TruncatedCalibrationError(CalibrationError):
    """A calibration (or other image product) file ends before its headers say it should."""


class CalibrationMismatchError(CalibrationError):
    """A calibration belongs to another detector, or its shape does not match the frame."""


class MissingCalibrationError(CalibrationError):
    """A step needs a calibration that was not supplied."""


# --- Registry -------------------------------------------------------------------------------


class RegistryError(IsrflowError):
    """The registry refused an operation (bad collection, bad data id, schema mismatch, ...)."""


class RegistryUnavailableError(RegistryError):
    """The registry database cannot be reached or failed mid-transaction; retry the whole operation."""


class RepoError(RegistryError):
    """A data repository directory is missing, incomplete or its config file is invalid."""


class DataIdError(RegistryError):
    """A data id does not fit its dataset type (missing or extra keys, wrong value types)."""


class CollectionError(RegistryError):
    """A collection is unknown, of the wrong type (RUN/CALIBRATION/CHAINED), or a chain is cyclic."""


class QueryError(RegistryError):
    """A ``--where`` data query is invalid; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, query: str = "", position: int = 0) -> None:
        self.query = query
        self.position = position
        self.reason = message
        super().__init__(f"{message} at position {position} of query {query!r}" if query else message)

    def pointer(self) -> str:
        """Two lines: the query, and a caret under the offending character."""
        return f"{self.query}\n{' ' * self.position}^"


class QuerySyntaxError(QueryError):
    """The query does not parse: unexpected character, token or end of input."""


class QueryFieldError(QueryError):
    """The query names a field that does not exist."""


class QueryTypeError(QueryError):
    """A literal's type does not fit its field (a string for ``detector``, a number for ``band``, ...)."""


class OutputExistsError(RegistryError):
    """The output RUN already holds datasets the plan would write (mode ``fail``)."""

    def __init__(self, message: str, conflicts: list[str] | None = None) -> None:
        self.conflicts = list(conflicts or [])
        super().__init__(message)


class CalibrationLookupError(RegistryError):
    """A calibration lookup is ambiguous (several certified datasets match one exposure)."""


class CertificationConflictError(RegistryError):
    """A certification would overlap an existing validity range of the same dataset type and data id."""


class MissingParentError(RegistryError):
    """A write refers to a dataset, dimension or collection that is not registered (yet)."""


class RejectedMessageError(RegistryError):
    """A registry message can never be applied (malformed, unknown instrument, conflicting content)."""


class WaitTimeoutError(RegistryError):
    """``wait_applied`` gave up before all of an execution's messages were applied."""


# --- Uploads, operations ----------------------------------------------------------------------


class NotFitsError(IsrInputError):
    """An object is not a FITS file (no ``SIMPLE = T`` card where the primary header must start)."""


class TruncatedFitsError(IsrInputError):
    """A FITS file ends before its headers say it should (an incomplete upload or copy)."""


class UnsafeKeyError(IsrflowError):
    """An object key or path would resolve outside its datastore root (``..``, an absolute path,
    a symlink out) or lies outside the prefix that may be ingested (``raw/``)."""


class ImmutableCalibrationError(RegistryError):
    """A calibration file already registered would be overwritten (registered calibrations are immutable)."""


class ChecksumMismatchError(CalibrationError):
    """A registered file's bytes no longer match the sha256 the registry recorded for it."""


class OutputWriteError(IsrflowError):
    """An output file cannot be written: its directory cannot be made or is not writable, or the disk is full."""


class QuantaNotFoundError(RegistryError):
    """Explicitly requested quanta have no raw in the input collections (not ingested, or not applied yet)."""


class WorkerProcessError(IsrflowError):
    """A forked worker process (the combine's) cannot be started, or died before answering."""


class ExecutionNotFoundError(IsrflowError):
    """No execution with this name or ARN is known (locally: no record under the repository)."""


class PriceTableError(ConfigError):
    """A price table file is missing, unreadable or lacks a price."""


class NothingSelectedError(RegistryError):
    """A data query selects no input datasets in the input collections, so there is nothing to run."""


class InvalidArgumentError(ConfigError):
    """A command-line value no command can accept: a NUL byte, or a value its model refuses."""
