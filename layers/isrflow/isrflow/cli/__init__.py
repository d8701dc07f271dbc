"""The ``isrflow`` command line.

Each command family lives in its own module exposing ``register(group)``; this module only
builds the group. Errors a user can fix exit non-zero with one line, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from isrflow.model.errors import InvalidArgumentError, IsrflowError

# Modules that add commands to the group, in the order they appear in --help.
COMMAND_MODULES = (
    "simulate_cmd",
    "isr_cmd",
    "registry_cmds",
    "run_cmds",
    "calib_cmds",
    "demo_cmd",
    "ops_cmds",
    "local_cmds",
    "events_cmd",
    "redrive_cmd",
    "verify_cmd",
    "tune_cmd",
    "night_cmd",
)


class _Group(click.Group):
    """A click group that turns isrflow errors into a one-line message and exit code 1.

    Input no command can use is refused here, once for all: an argument holding a NUL byte (no
    path, name or query can contain one) is refused, and a pydantic validation error of a
    value given on the command line (a collection name, a fraction) is reported as its field
    and what is wrong, not as a traceback.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for i, arg in enumerate(args):
            if "\x00" in arg:
                shown = arg.replace(chr(0), "<NUL>")[:60]
                click.echo(
                    f"error: {InvalidArgumentError.__name__}: argument {i + 1} ({shown!r}): "
                    "contains a NUL byte",
                    err=True,
                )
                sys.exit(1)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except IsrflowError as exc:
            click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(1)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first.get("loc", ())) or exc.title
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            click.echo(
                f"error: {InvalidArgumentError.__name__}: {field}: {first.get('msg', str(exc))}{more}",
                err=True,
            )
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
