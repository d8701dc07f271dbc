"""Exceptions of the local ASL interpreter.

Two families:

- load time: :class:`DefinitionError` (an invalid definition) and its subclass
  :class:`UnsupportedFeatureError` (valid ASL, outside the subset this interpreter runs).
  Each carries ``problems``: a list of ``(location, message)`` pairs, where the location
  names the state and field, e.g. ``States.Process.Retry[1].ErrorEquals``.
- run time: :class:`TaskFailure` is what an integration raises to fail a Task with an
  error name and a cause (the ASL error output ``{"Error", "Cause"}``).
"""

from __future__ import annotations


class AslError(Exception):
    """Base of every exception this package raises on purpose."""


class DefinitionError(AslError, ValueError):
    """A state machine definition is invalid (or, for the subclass, unsupported).

    ``problems`` lists every ``(location, message)`` found, not only the first.
    """

    def __init__(self, problems: list[tuple[str, str]], machine: str | None = None):
        self.problems = list(problems)
        self.machine = machine
        head = f"state machine {machine!r}: " if machine else ""
        lines = [f"{loc}: {msg}" if loc else msg for loc, msg in self.problems]
        if len(lines) == 1:
            text = head + lines[0]
        else:
            text = head + f"{len(lines)} problems in the definition:\n  " + "\n  ".join(lines)
        super().__init__(text)


class UnsupportedFeatureError(DefinitionError):
    """The definition uses ASL the local interpreter deliberately does not run
    (ItemBatcher, ToleratedFailure*, JSONata, variables, ...)."""


class TaskFailure(AslError):
    """Raised by an integration to fail the current Task state.

    ``error`` is the ASL error name Retry/Catch match on (for a Lambda handler: the
    exception class name); ``cause`` is human-readable text (for a Lambda handler: the
    JSON ``{"errorMessage", "errorType", ...}`` AWS produces).
    """

    def __init__(self, error: str, cause: str | None = None):
        self.error = error
        self.cause = cause
        super().__init__(f"{error}: {cause}" if cause else error)

    def __reduce__(self):  # picklable across a process pool
        return (type(self), (self.error, self.cause))


class IntegrationNotConfigured(AslError):
    """A Task names a resource no local implementation is registered for.

    The interpreter turns it into a ``States.Runtime`` failure (neither retried nor caught),
    because it is a configuration mistake, not a task outcome.
    """

    def __init__(self, resource: str, hint: str = ""):
        self.resource = resource
        super().__init__(
            f"no local implementation is configured for Task resource {resource!r}"
            + (f"; {hint}" if hint else "")
        )


class ExecutionAlreadyExists(AslError):
    """An execution with this name already exists for this state machine (as on AWS)."""


class ExecutionDoesNotExist(AslError, KeyError):
    """No execution with this ARN."""
