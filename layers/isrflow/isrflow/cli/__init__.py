"""The ``isrflow`` command line.

Each command family lives in its own module exposing ``register(group)``; this module only
builds the group. Errors a user can fix exit non-zero with one line, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import IsrflowError

# Modules that add commands to the group, in the order they appear in --help.
COMMAND_MODULES = ("simulate_cmd", "isr_cmd", "registry_cmds", "run_cmds", "calib_cmds", "demo_cmd", "ops_cmds",
                   "local_cmds", "events_cmd", "redrive_cmd")


class _Group(click.Group):
    """A click group that turns isrflow errors into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except IsrflowError as exc:
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="isrflow")
def cli() -> None:
    """isrflow: instrument signature removal and calibration for CCD cameras."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(cli)


_register_all()


def main() -> None:
    cli(prog_name="isrflow")
