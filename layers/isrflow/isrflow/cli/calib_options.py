"""The options of ``isrflow calib build``, grouped by what they decide.

:func:`grouped_build_options` turns the click options into five objects: what to build
(:class:`BuildTarget`), where the inputs come from (:class:`BuildSource`), how the masters are
made (:class:`CombineOptions`), what is certified (:class:`Certification`) and how the command
runs (:class:`RunOptions`). Each dataclass field is named as its click parameter.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click


@dataclasses.dataclass(frozen=True)
class BuildTarget:
    """What to build: the calibration type, the RUN collection for the masters and
    intermediates, and what to do when outputs exist (``fail`` or ``replace``)."""

    calib_type: str
    output_run: str
    mode: str


@dataclasses.dataclass(frozen=True)
class BuildSource:
    """Where the inputs come from: the ``--where`` data query, the input collections (empty =
    the repository's defaults) and the calibration collection the inputs' ISR uses."""

    where: str | None
    input_collections: tuple[str, ...]
    calib_collection: str | None


@dataclasses.dataclass(frozen=True)
class CombineOptions:
    """How the masters are made: the combine statistic, its clip (sigma) and iterations, the
    good inputs a master needs, where combines run, the fraction of masters allowed to fail,
    an IsrConfig override file, and whether the ISR'd inputs are kept."""

    statistic: str
    clip: float
    iterations: int
    min_inputs: int
    route: str
    max_failure_fraction: float
    isr_config_path: Path | None
    keep_intermediates: bool

    def isr_overrides(self) -> dict[str, Any]:
        """The IsrConfig fields of ``--isr-config`` (YAML); {} without one."""
        if self.isr_config_path is None:
            return {}
        import yaml

        try:
            return yaml.safe_load(self.isr_config_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise click.BadParameter(f"{self.isr_config_path}: {exc}", param_hint="--isr-config") from None


@dataclasses.dataclass(frozen=True)
class Certification:
    """What is certified: with ``certify``, the masters go into ``collection`` (None = the
    repository's default) for ``[begin, end)``, aware UTC datetimes (None = unbounded)."""

    certify: bool
    collection: str | None
    begin: datetime | None
    end: datetime | None


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How the command runs: locally against ``repo_dir`` with ``workers`` processes (None =
    all cores), or on the deployed ``stack`` (``use_aws``); ``as_json`` prints JSON."""

    repo_dir: Path | None
    workers: int | None
    use_aws: bool
    stack: str
    as_json: bool


def _take(cls: type[Any], options: dict[str, Any]) -> Any:
    """An instance of dataclass ``cls`` from (and removing) its fields' entries in ``options``."""
    return cls(**{f.name: options.pop(f.name) for f in dataclasses.fields(cls)})


def grouped_build_options(func: Callable[..., None]) -> Callable[..., None]:
    """Call ``func(target, source, combine, certification, run)`` with the command's options
    grouped. ``--begin``/``--end`` are parsed here (ISO 8601, UTC if no offset) and refused
    without ``--certify``, as is ``--collection``."""

    @functools.wraps(func)
    def wrapper(**options: Any) -> None:
        from isrflow.cli.registry_cmds import _parse_time

        given = options["begin"] or options["end"] or options["collection"]
        options["begin"] = _parse_time(options["begin"], "--begin")
        options["end"] = _parse_time(options["end"], "--end")
        if given and not options["certify"]:
            raise click.UsageError("--collection, --begin and --end go with --certify")
        target, source, combine, certification, run = (
            _take(cls, options)
            for cls in (BuildTarget, BuildSource, CombineOptions, Certification, RunOptions)
        )
        if options:
            raise TypeError(f"calib build: options not grouped: {', '.join(sorted(options))}")
        func(target, source, combine, certification, run)

    return wrapper
