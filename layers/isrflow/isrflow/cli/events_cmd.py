"""``isrflow events render``: the sample events with a deployed stack's names.

The files in events/ name the AWS resources of a stack called ``isrflow`` in account
123456789012 (listed once, in events/names.json). This writes copies of them into a folder with
each of those names replaced by the given ones, ready for ``sam local invoke -e`` or
``aws lambda invoke`` against a real stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

NAMES_FILE = "names.json"
#: names.json keys -> the option that replaces each
RENAMED = ("bucket", "registry_queue", "registry_dlq", "registry_secret", "account", "region", "stack")


def render_events(events_dir: Path, out: Path, names: dict[str, str]) -> list[Path]:
    """Copies of every event with the sample names replaced (longest names first)."""
    sample = json.loads((events_dir / NAMES_FILE).read_text())
    pairs = sorted(((sample[k], v) for k, v in names.items() if v and k in sample and sample[k] != v),
                   key=lambda kv: -len(kv[0]))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(events_dir.glob("*.json")):
        if path.name == NAMES_FILE:
            continue
        text = path.read_text()
        for old, new in pairs:
            text = text.replace(old, new)
        json.loads(text)  # still JSON
        (out / path.name).write_text(text)
        written.append(out / path.name)
    return written


def register(group: click.Group) -> None:
    group.add_command(events_group)


@click.group("events")
def events_group() -> None:
    """The sample events of events/ (one per function and state machine)."""


@events_group.command("render")
@click.option("--events-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=Path("events"),
              show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="folder to write")
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
