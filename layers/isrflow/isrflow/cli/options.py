"""Option types shared by every command, so each interface is spelled once."""

from __future__ import annotations

import click

from ..camera import CAMERA_NAMES


def parse_id_list(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (inclusive ranges, order kept, duplicates dropped)."""
    ids: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                ids.extend(range(a, b + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an id or an a-b range (e.g. 0-3,7)") from None
    seen: set[int] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]


class IdList(click.ParamType):
    name = "IDS"

    def convert(self, value, param, ctx):  # type: ignore[override]
        return value if isinstance(value, list) else parse_id_list(value)


camera_option = click.option(
    "--camera", type=click.Choice(CAMERA_NAMES, case_sensitive=False), help="camera model (default: from the headers)"
)
detectors_option = click.option("--detectors", type=IdList(), help="native detector ids, e.g. 0-3,7")
json_option = click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")


def subgroup(group: click.Group, name: str, help: str) -> click.Group:
    """The named subgroup of ``group`` (another command module may have made it), created if needed."""
    existing = group.commands.get(name)
    if isinstance(existing, click.Group):
        return existing
    sub = click.Group(name=name, help=help)
    group.add_command(sub)
    return sub
