"""isrflow: instrument signature removal and calibration for astronomical CCD cameras.

The package is the Lambda layer and is copied into every container image. Importing it is
cheap: the science stack (numpy, astropy) is only imported by the modules that need it, so
the registry-only functions can ship without it.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from isrflow import Client`` (imported on first use, so ``import isrflow`` stays cheap)."""
    if name in ("Client", "Execution"):
        from isrflow import client

        return getattr(client, name)
    raise AttributeError(f"module 'isrflow' has no attribute {name!r}")
