"""The SAM template reader's one exception."""


class TemplateError(ValueError):
    """The template cannot be read or evaluated for the local runtime."""
