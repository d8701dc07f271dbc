"""``isrflow events render``: the sample events with a deployed stack's names.

The files in events/ name the AWS resources of a stack called ``isrflow`` in account
123456789012 (listed once, in events/names.json). This writes copies of them into a folder with
each of those names replaced by the given ones, ready for ``sam local invoke -e`` or
``aws lambda invoke`` against a real stack.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from isrflow.model.errors import ConfigError, InvalidArgumentError

NAMES_FILE = "names.json"
#: names.json keys -> what a valid replacement looks like (AWS's naming rules for each resource)
NAME_RULES: dict[str, tuple[str, str]] = {
    "bucket": (r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "3-63 lower-case letters, digits, '.' or '-'"),
    "registry_queue": (r"[A-Za-z0-9_-]{1,80}(\.fifo)?", "1-80 letters, digits, '-' or '_'"),
    "registry_dlq": (r"[A-Za-z0-9_-]{1,80}(\.fifo)?", "1-80 letters, digits, '-' or '_'"),
    "registry_secret": (r"[A-Za-z0-9/_+=.@-]{1,512}", "1-512 letters, digits or /_+=.@-"),
    "account": (r"[0-9]{12}", "12 digits"),
    "region": (r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", "a region name such as eu-west-1"),
    "stack": (r"[A-Za-z][A-Za-z0-9-]{0,127}", "a letter, then up to 127 letters, digits or '-'"),
}
#: names.json keys -> the option that replaces each
RENAMED = tuple(NAME_RULES)


def _check_names(names: dict[str, str | None]) -> None:
    for key, value in names.items():
        if value is None:
            continue
        pattern, rule = NAME_RULES[key]
        if not re.fullmatch(pattern, value):
            raise InvalidArgumentError(f"--{key.replace('_', '-')} {value[:80]!r}: not a valid name ({rule})")


def _renamed(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """``value`` (parsed JSON) with every occurrence of each old name in its strings replaced."""
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_renamed(v, pairs) for v in value]
    if isinstance(value, dict):
        return {_renamed(k, pairs): _renamed(v, pairs) for k, v in value.items()}
    return value


def render_events(events_dir: Path, out: Path, names: dict[str, str | None]) -> list[Path]:
    """Copies of every event with the sample names replaced (longest names first); names are
    checked against AWS's rules first, so nothing is written for an invalid one."""
    _check_names(names)
    try:
        sample = json.loads((events_dir / NAMES_FILE).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{events_dir}: no {NAMES_FILE} (the sample names); is this the events/ folder?"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{events_dir / NAMES_FILE}: unreadable: {exc}") from None
    pairs = sorted(
        ((sample[k], v) for k, v in names.items() if v and k in sample and sample[k] != v),
        key=lambda kv: -len(kv[0]),
    )
    rendered = {}
    for path in sorted(events_dir.glob("*.json")):
        if path.name == NAMES_FILE:
            continue
        try:
            rendered[path.name] = _renamed(json.loads(path.read_text()), pairs)
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event in rendered.items():
        (out / name).write_text(json.dumps(event, indent=2) + "\n")
        written.append(out / name)
    return written


def register(group: click.Group) -> None:
    group.add_command(events_group)


@click.group("events")
def events_group() -> None:
    """The sample events of events/ (one per function and state machine)."""


@events_group.command("render")
@click.option(
    "--events-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("events"),
    show_default=True,
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder to write"
)
@click.option("--bucket", default=None, help="the stack's DataBucketName")
@click.option("--registry-queue", default=None, help="the registry queue's name")
@click.option("--registry-dlq", default=None, help="its dead-letter queue's name")
@click.option("--registry-secret", default=None, help="the registry secret's name")
@click.option("--account", default=None, help="AWS account id")
@click.option("--region", default=None, help="AWS region")
@click.option("--stack", default=None, help="stack name (state machine and function name prefix)")
def render_command(events_dir, out, **names):
    """Write the sample events with a deployed stack's names instead of the samples' (events/names.json)."""
    written = render_events(events_dir, out, names)
    click.echo(f"wrote {len(written)} events to {out}")
